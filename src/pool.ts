/**
 * `TenantPool`: the facade host applications hold. It owns the registry, the worker slots and the
 * wallet lifecycle, and hands out sessions.
 */
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { resolveOptions, type PoolOptions, type ResolvedOptions } from './config.js';
import { poolError, TenantPoolError } from './errors.js';
import { WalletManager } from './lifecycle.js';
import { Registry, type TenantRecord } from './registry.js';
import type { Session, SessionHost, TenantSession } from './session.js';
import { checkPassphrase, Tenants } from './tenants.js';
import { WorkerSlot } from './threads.js';
import { checkOptionalObject, checkTenantId, invalid } from './validate.js';

/** Options of one {@link TenantPool.acquire} call. */
export interface AcquireOptions {
  /** Abort while waiting: the acquire rejects with `signal.reason` and holds nothing. */
  signal?: AbortSignal;
  /** Overrides the pool's `acquireTimeoutMs` for this call. */
  timeoutMs?: number;
  /** Required for passphrase tenants. */
  passphrase?: string;
}

export interface PoolTotals {
  acquired: number;
  released: number;
  timedOut: number;
  rejected: number;
  walletOpens: number;
  walletCloses: number;
  evictions: number;
  revoked: number;
  workerCrashes: number;
  /** Key derivations started (wallet opens and tenant creations); a cache hit or a shared open derives nothing. */
  keyDerivations: number;
}

/** A snapshot of the pool, cheap enough to poll. */
export interface PoolStats {
  capacity: number;
  weightInUse: number;
  sessions: number;
  queued: number;
  wallets: { open: number; idle: number; opening: number };
  workers: Array<{ index: number; tenants: number; sessions: number; weight: number; alive: boolean }>;
  totals: PoolTotals;
}

/** The clock the pool reads; monotonic. */
export interface Clock {
  now(): number;
}

/** @internal Key of the pool's worker slots, for tests and the bench; not exported from the package. */
export const kWorkers = Symbol('tenant-pool.workers');

/** Default pool close wait for live sessions before revoking them. */
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

export class TenantPool implements AsyncDisposable {
  /** Create, read, update and delete tenants. */
  readonly tenants: Tenants;
  readonly options: ResolvedOptions;
  readonly #registry: Registry;
  readonly #workers: WorkerSlot[];
  readonly #wallets: WalletManager;
  readonly #live = new Set<Session>();
  readonly #host: SessionHost;
  readonly #totals = { acquired: 0, released: 0, timedOut: 0, rejected: 0, evictions: 0, revoked: 0 };
  #isClosed = false;
  #closed: Promise<void> | undefined;
  #onDrained: (() => void) | undefined;

  private constructor(options: ResolvedOptions, registry: Registry, workers: WorkerSlot[], clock: Clock) {
    this.options = options;
    this.#registry = registry;
    this.#workers = workers;
    const walletPath = (tenantId: string): string => join(options.dataDir, 'wallets', `${checkTenantId(tenantId)}.sqlite`);
    this.#wallets = new WalletManager({ workers, walletPath, walletIdleTtlMs: options.walletIdleTtlMs, now: () => clock.now() });
    this.#host = {
      maxValueBytes: options.maxValueBytes,
      release: (session) => this.#release(session),
      registerRoute: () => {
        throw poolError('ERR_INVALID_ARGUMENT', 'routing keys need inbound dispatch, which this pool does not serve yet');
      },
    };
    this.tenants = new Tenants({
      registry,
      wallets: this.#wallets,
      workers,
      defaultKdf: options.kdf,
      walletPath,
      assertOpen: () => this.#assertOpen(),
      revoke: (session) => {
        this.#totals.revoked++;
        session.revoke('ERR_TENANT_DELETED');
      },
    });
  }

  /**
   * Opens a pool: reads options (and the config file), opens the registry, starts the workers.
   * @throws ERR_INVALID_CONFIG for bad options; registry errors as `ERR_WALLET_KEY_INVALID` / `ERR_WALLET_CORRUPT`.
   * @example
   * await using pool = await TenantPool.open({ dataDir: './data' })
   */
  static async open(options: PoolOptions = {}, internals: { clock?: Clock } = {}): Promise<TenantPool> {
    const resolved = resolveOptions(options);
    const isNewDir = !existsSync(resolved.dataDir);
    mkdirSync(join(resolved.dataDir, 'wallets'), { recursive: true, mode: 0o700 });
    if (isNewDir) chmodSync(resolved.dataDir, 0o700);
    const registry = await Registry.open(resolved.dataDir, resolved.rootKey);
    // The slots exist before the pool does; a crash during start-up has no wallets to drop.
    const ref: { pool?: TenantPool } = {};
    const workers = Array.from(
      { length: resolved.workers },
      (_, index) => new WorkerSlot({ index, onCrash: (i) => ref.pool?.workerCrashed(i) }),
    );
    try {
      await Promise.all(workers.map((w) => w.ready()));
    } catch (error) {
      await Promise.allSettled(workers.map((w) => w.close(1000)));
      registry.close();
      throw error;
    }
    ref.pool = new TenantPool(resolved, registry, workers, internals.clock ?? performance);
    return ref.pool;
  }

  /**
   * A session on a tenant, opening its wallet (on its worker) first if needed.
   * @throws ERR_TENANT_NOT_FOUND, ERR_WALLET_KEY_INVALID, ERR_WALLET_CORRUPT, ERR_ACQUIRE_TIMEOUT, ERR_POOL_CLOSED, ERR_WORKER_CRASHED;
   *   an aborted acquire rejects with `signal.reason`.
   */
  async acquire(tenantId: string, options: AcquireOptions = {}): Promise<TenantSession> {
    try {
      this.#assertOpen();
      const opts = checkOptionalObject(options, 'options');
      for (const key of Object.keys(opts)) if (!['signal', 'timeoutMs', 'passphrase'].includes(key)) invalid(`Unknown acquire option \`${key}\``);
      const signal = opts['signal'] as AbortSignal | undefined;
      if (signal !== undefined && !(signal instanceof AbortSignal)) invalid('Expected `signal` to be an AbortSignal');
      signal?.throwIfAborted();
      const timeoutMs = opts['timeoutMs'] ?? this.options.acquireTimeoutMs;
      if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0) invalid('Expected `timeoutMs` to be a number >= 0');
      const tenant = this.#tenant(tenantId);
      const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
      if (tenant.secret === null && passphrase === undefined) throw poolError('ERR_WALLET_KEY_INVALID', `tenant ${tenant.tenantId} needs a passphrase`);
      if (tenant.secret !== null && passphrase !== undefined) invalid(`tenant ${tenant.tenantId} is managed: acquire it without a passphrase`);
      const opening = this.#wallets.openSession(tenant, passphrase, this.#host, () => this.#registry.get(tenant.tenantId) === tenant);
      const session = await this.#settleBy(opening, timeoutMs, signal);
      this.#live.add(session);
      this.#totals.acquired++;
      return session;
    } catch (error) {
      if (error instanceof TenantPoolError && error.code === 'ERR_ACQUIRE_TIMEOUT') this.#totals.timedOut++;
      else this.#totals.rejected++;
      throw error;
    }
  }

  /** Waits for `opening` until the deadline or the signal; a session that arrives too late is released at once. */
  async #settleBy(opening: Promise<Session>, timeoutMs: number, signal: AbortSignal | undefined): Promise<Session> {
    return new Promise<Session>((resolve, reject) => {
      let isSettled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (): boolean => {
        if (isSettled) return false;
        isSettled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = (): void => {
        // Node's convention: an aborted operation rejects with the signal's reason, whatever it is.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        if (finish()) reject(signal?.reason);
      };
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          if (finish()) reject(poolError('ERR_ACQUIRE_TIMEOUT', `the wallet did not open within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      opening.then(
        (session) => {
          if (this.#isClosed) {
            void session.release();
            if (finish()) reject(poolError('ERR_POOL_CLOSED', 'the pool closed while the session was being opened'));
          } else if (finish()) {
            resolve(session);
          } else {
            void session.release();
          }
        },
        (error: Error) => {
          if (finish()) reject(error);
        },
      );
    });
  }

  /** Runs `fn` with a session and always releases it, whether `fn` returns or throws. */
  async withSession<T>(tenantId: string, fn: (session: TenantSession) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    if (typeof fn !== 'function') invalid('Expected `fn` to be a function');
    const session = await this.acquire(tenantId, options);
    try {
      return await fn(session);
    } finally {
      await session.release();
    }
  }

  /** A snapshot of sessions, weight, wallets, workers and totals. */
  stats(): PoolStats {
    const weights = this.options.weights;
    const perWorker = this.#workers.map((w) => ({ index: w.index, tenants: 0, sessions: 0, weight: 0, alive: w.isAlive }));
    const wallets = { open: 0, idle: 0, opening: 0 };
    for (const entry of this.#wallets.entries()) {
      const w = perWorker[entry.worker.index]!;
      const tenant = this.#registry.get(entry.tenantId);
      w.tenants++;
      w.weight += tenant?.weights?.wallet ?? weights.wallet;
      if (entry.state === 'opening') wallets.opening++;
      else if (entry.sessions.size > 0) wallets.open++;
      else wallets.idle++;
    }
    for (const session of this.#live) {
      const w = perWorker[session.entry.worker.index]!;
      w.sessions++;
      w.weight += this.#registry.get(session.tenantId)?.weights?.session ?? weights.session;
    }
    return {
      capacity: this.options.capacity,
      weightInUse: perWorker.reduce((sum, w) => sum + w.weight, 0),
      sessions: this.#live.size,
      queued: 0,
      wallets,
      workers: perWorker,
      totals: {
        ...this.#totals,
        walletOpens: this.#wallets.counters.walletOpens,
        walletCloses: this.#wallets.counters.walletCloses,
        keyDerivations: this.#wallets.counters.keyDerivations,
        workerCrashes: this.#workers.reduce((sum, w) => sum + w.crashes, 0),
      },
    };
  }

  /**
   * Stops admitting, waits up to `timeoutMs` for live sessions to be released, revokes the rest,
   * closes every wallet and stops the workers. Idempotent.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closed ??= this.#close(options.timeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#isClosed = true;
    if (this.#live.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#onDrained = resolve;
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
      for (const session of [...this.#live]) {
        this.#totals.revoked++;
        session.revoke('ERR_SESSION_RELEASED');
      }
    }
    await Promise.allSettled(this.#workers.map((w) => w.close()));
    this.#registry.close();
  }

  #release(session: Session): void {
    if (!this.#live.delete(session)) {
      // A session handed back before the caller got it (timed out, aborted, pool closing).
      this.#wallets.release(session);
      return;
    }
    this.#totals.released++;
    if (!this.#isClosed) this.#wallets.release(session);
    if (this.#live.size === 0) this.#onDrained?.();
  }

  /** @internal For tests and the bench: the worker slots. Not part of the public API. */
  get [kWorkers](): readonly WorkerSlot[] {
    return this.#workers;
  }

  /** @internal Called by a worker slot when its worker died. */
  workerCrashed(index: number): void {
    this.#wallets.workerCrashed(index);
  }

  #assertOpen(): void {
    if (this.#isClosed) throw poolError('ERR_POOL_CLOSED', 'the pool is closed');
  }

  #tenant(tenantId: string): TenantRecord {
    const record = this.#registry.get(checkTenantId(tenantId));
    if (record === undefined) throw poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`);
    return record;
  }
}
