/**
 * Baseline `no-affinity`: a plain piscina pool. Each call of a session goes to whichever worker is
 * free; a wallet is opened on every worker a tenant's calls land on, and closed there by the last
 * session that used it. Admission is a plain count of sessions with a FIFO queue and timeouts.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { BroadcastChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { TenantBook, type TenantMaterial } from './fixtures.js';
import { RELEASE_CHANNEL, type NoAffinityCall } from './no-affinity-worker.js';
import type { BenchSession, System, SystemOptions } from './types.js';

/** A counting semaphore with a FIFO queue and per-acquire timeouts. */
class CountLimit {
  current = 0;
  readonly #max: number;
  readonly #waiters: Array<{ grant: () => void; timer: NodeJS.Timeout }> = [];
  constructor(max: number) {
    this.#max = max;
  }

  async acquire(timeoutMs: number): Promise<void> {
    if (this.current < this.#max && this.#waiters.length === 0) {
      this.current++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: setTimeout(() => {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          reject(new Error(`not admitted within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next !== undefined) next.grant();
    else this.current--;
  }
}

export async function openNoAffinity(dataDir: string, options: SystemOptions): Promise<System> {
  mkdirSync(dataDir, { recursive: true });
  const piscina = new Piscina<NoAffinityCall, { value: unknown; opened: boolean }>({
    filename: new URL(`./no-affinity-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href,
    minThreads: options.workers,
    maxThreads: options.workers,
    atomics: 'disabled',
    idleTimeout: Number.POSITIVE_INFINITY,
  });
  const releases = new BroadcastChannel(RELEASE_CHANNEL);
  const tenants = new TenantBook(dataDir);
  const limit = new CountLimit(options.sessionLimit);
  let opens = 0;
  let nextSession = 1;
  // Start the threads now, not on the first acquire.
  const none: TenantMaterial = { tenantId: '', path: '', kdf: 'raw', salt: Buffer.alloc(0), secret: Buffer.alloc(0) };
  await Promise.all(Array.from({ length: options.workers }, async () => piscina.run({ tenant: none, sessionId: 0, op: 'ping', args: [] })));

  return {
    name: 'no-affinity',
    createTenants: async (count, kdf, prefix) => tenants.create(count, kdf, prefix),
    async acquire(tenantId) {
      const tenant = tenants.get(tenantId);
      await limit.acquire(options.timeoutMs);
      const sessionId = nextSession++;
      const run = async (op: NoAffinityCall['op'], args: unknown[]): Promise<unknown> => {
        const { value, opened } = await piscina.run({ tenant, sessionId, op, args });
        if (opened) opens++;
        return value;
      };
      let isReleased = false;
      return {
        get: async (c, id) => run('get', [c, id]),
        save: async (c, id, v) => void (await run('save', [c, id, v])),
        createKey: async () => (await run('createKey', [])) as string,
        sign: async (kid, data) => (await run('sign', [kid, data])) as Uint8Array,
        async release() {
          if (isReleased) return;
          isReleased = true;
          releases.postMessage({ tenantId, sessionId });
          limit.release();
        },
      } satisfies BenchSession;
    },
    walletOpens: () => opens,
    heldBySessions: () => limit.current,
    async close() {
      releases.close();
      await piscina.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
