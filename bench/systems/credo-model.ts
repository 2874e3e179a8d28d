/**
 * Baseline `credo-model`: the credo-ts tenants lifecycle, rebuilt from its described behaviour.
 *
 * - A global limit on the number of sessions, with no weights: a counter plus a mutex with a
 *   timeout (async-mutex `withTimeout`), locked when the count reaches the limit and unlocked when
 *   it drops below — the logic of credo's TenantSessionMutex.
 * - Per tenant, a mutex around the context: the first session opens the wallet, the last closes it
 *   (no cache).
 * - No worker threads: key derivation and every wallet call run on the main thread, with the same
 *   wallet code the pool's workers use.
 */
import { hkdfSync } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { hashRawSync } from '@node-rs/argon2';
import { Mutex, withTimeout, type MutexInterface } from 'async-mutex';
import { ARGON2_PARAMS, KEY_BYTES } from '../../common/kdf.js';
import { Wallet } from '../../workers/store/sqlite-wallet.js';
import { TenantBook, type TenantMaterial } from './fixtures.js';
import type { BenchSession, System, SystemOptions } from './types.js';

/** The blocking derivation a main-thread agent runs (same parameters as the pool's workers). */
function deriveKeySync(material: TenantMaterial): Buffer {
  if (material.kdf === 'raw') return Buffer.from(hkdfSync('sha256', material.secret, material.salt, 'tenant-pool wallet key v1', KEY_BYTES));
  return hashRawSync(material.secret, { ...ARGON2_PARAMS[material.kdf], salt: material.salt });
}

/** credo's session limiter: a count and a timed mutex that is held while the count is at the limit. */
class SessionLimiter {
  current = 0;
  readonly #max: number;
  readonly #mutex: MutexInterface;

  constructor(max: number, timeoutMs: number) {
    this.#max = max;
    this.#mutex = withTimeout(new Mutex(), timeoutMs, new Error(`Failed to acquire an agent context session within ${timeoutMs}ms`));
  }

  async acquire(): Promise<void> {
    if (this.#mutex.isLocked()) {
      await this.#mutex.acquire();
      if (this.current < this.#max) this.#mutex.release();
    }
    this.current++;
    if (this.current >= this.#max) await this.#mutex.acquire();
  }

  release(): void {
    if (this.current > 0) this.current--;
    if (this.#mutex.isLocked() && this.current < this.#max) this.#mutex.release();
  }
}

interface Context {
  wallet: Wallet;
  sessions: number;
}

export async function openCredoModel(dataDir: string, options: SystemOptions): Promise<System> {
  mkdirSync(dataDir, { recursive: true });
  const tenants = new TenantBook(dataDir);
  const contexts = new Map<string, Context>();
  const mutexes = new Map<string, MutexInterface>();
  const limiter = new SessionLimiter(options.sessionLimit, options.timeoutMs);
  let opens = 0;
  const mutexOf = (tenantId: string): MutexInterface => {
    let m = mutexes.get(tenantId);
    if (m === undefined) mutexes.set(tenantId, (m = withTimeout(new Mutex(), options.timeoutMs)));
    return m;
  };

  return {
    name: 'credo-model',
    createTenants: async (count, kdf, prefix) => tenants.create(count, kdf, prefix),
    async acquire(tenantId) {
      const material = tenants.get(tenantId);
      await limiter.acquire();
      let context: Context;
      try {
        context = await mutexOf(tenantId).runExclusive(() => {
          let ctx = contexts.get(tenantId);
          if (ctx === undefined) {
            const key = deriveKeySync(material);
            ctx = { wallet: Wallet.open(material.path, key), sessions: 0 };
            key.fill(0);
            opens++;
            contexts.set(tenantId, ctx);
          }
          ctx.sessions++;
          return ctx;
        });
      } catch (error) {
        limiter.release();
        throw error;
      }
      let isReleased = false;
      const session: BenchSession = {
        get: async (c, id) => context.wallet.get(c, id),
        save: async (c, id, v) => context.wallet.save(c, id, JSON.stringify(v), {}),
        createKey: async () => context.wallet.createKey().kid,
        sign: async (kid, data) => context.wallet.sign(kid, data),
        async release() {
          if (isReleased) return;
          isReleased = true;
          await mutexOf(tenantId).runExclusive(() => {
            context.sessions--;
            if (context.sessions === 0) {
              context.wallet.close();
              contexts.delete(tenantId);
            }
          });
          limiter.release();
        },
      };
      return session;
    },
    walletOpens: () => opens,
    heldBySessions: () => limiter.current,
    async close() {
      for (const ctx of contexts.values()) ctx.wallet.close();
      contexts.clear();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
