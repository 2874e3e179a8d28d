/**
 * `TenantPool`: the facade host applications hold. It owns the registry, the worker slots, the
 * scheduler (weighted admission) and the wallet lifecycle, and drives the scheduler's effects:
 * settling waiters, closing wallets, and one timer for the next deadline or idle expiry.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { resolveConfig, type PoolOptions, type ResolvedOptions } from './config/config.js';
import { EventHub, ms } from './observability/diagnostics.js';
import { asPoolError, poolError, TenantPoolError, withDetails } from '../common/errors.js';
import { Admission } from './engine/admission.js';
import { SessionLedger } from './engine/session-ledger.js';
import type { Clock } from './engine/timers.js';
import { WalletManager, type WalletEntry } from './engine/wallet-manager.js';
import { Endings } from './engine/endings.js';
import { Tracing } from './observability/tracing.js';
import { dispatchMessage, type DispatchMessage } from './dispatch.js';
import { logEvents } from './observability/logging.js';
import type { TenantRecord, Warn } from './store/tenant-store.js';
import { openTenantStore } from './store/open.js';
import { ClusterMember } from './cluster/member.js';
import { clusterFacade } from './cluster/facade.js';
import type { AcquireOptions, ClusterOf, PoolStats } from './pool-types.js';

export type { AcquireOptions, ClusterOf, PoolCluster, PoolStats, PoolTotals } from './pool-types.js';
import type { TenantStore } from './store/tenant-store.js';
import { Scheduler, type Grant, type Weights } from './engine/scheduler.js';
import type { Session, SessionHost, TenantSession } from './session.js';
import { checkPassphrase, kRehash, Tenants } from './tenants/tenants.js';
import { KdfPolicy } from './engine/kdf-policy.js';
import { checkHealth, type PoolHealth } from './observability/health.js';
import type { Argon2Method, KdfParams } from '../common/kdf.js';
import { KDF_PARAMS_FORMAT } from '../common/formats.js';
import { WorkerSlot } from './threads/worker-slot.js';
import { checkOptionalObject, checkTenantId, invalid } from '../common/validate.js';

export type { Clock } from './engine/timers.js';

/** @internal What tests and the bench may set on a pool beyond its options: the clock, each KDF level's current parameters. */
export interface PoolInternals {
  clock?: Clock;
  kdfParams?: Readonly<Record<Argon2Method, KdfParams>>;
  /** False for a read-only tool: no open re-derives a weaker tenant's key. @default true */
  rehash?: boolean;
}

/** @internal Key of the pool's worker slots, for tests and the bench; not exported from the package. */
export const kWorkers = Symbol('tenant-pool.workers');

/** @internal Key of the pool's event hub, for `collectMetrics()` and the live view. */
export const kEvents = Symbol('tenant-pool.events');

/** Default pool close wait for live sessions before revoking them. */
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

/**
 * The pool. `TenantPool.open(options)` types it by the options given: opened with `cluster`,
 * `pool.cluster` is typed present.
 */
export class TenantPool<O extends PoolOptions = PoolOptions> implements AsyncDisposable {
  /** Create, read, update and delete tenants. */
  readonly tenants: Tenants;
  readonly options: ResolvedOptions;
  /** Cluster mode (the `cluster` option): owners and routes of tenants. Undefined otherwise. */
  readonly cluster: ClusterOf<O>;
  readonly #member: ClusterMember | undefined;
  readonly #clock: Clock;
  readonly #registry: TenantStore;
  readonly #workers: WorkerSlot[];
  readonly #wallets: WalletManager;
  readonly #scheduler: Scheduler;
  readonly #ledger: SessionLedger;
  readonly #host: SessionHost;
  readonly #events: EventHub;
  readonly #admission: Admission;
  readonly #totals = { acquired: 0, released: 0, timedOut: 0, rejected: 0 };
  readonly #endings: Endings;
  readonly #tracing: Tracing | undefined;
  #isClosed = false;
  #closed: Promise<void> | undefined;

  private constructor(
    options: ResolvedOptions,
    registry: TenantStore,
    member: ClusterMember | undefined,
    workers: WorkerSlot[],
    clock: Clock,
    events: EventHub,
    warn: Warn,
    tracing: Tracing | undefined,
    kdf: KdfPolicy,
  ) {
    this.options = options;
    this.#tracing = tracing;
    this.#member = member;
    // A pool opened with `cluster` has a member (the config file may give one too: then the type says "maybe").
    this.cluster = (member === undefined ? undefined : clusterFacade(member)) as ClusterOf<O>;
    this.#clock = clock;
    this.#events = events;
    this.#registry = registry;
    this.#workers = workers;
    this.#ledger = new SessionLedger({
      leakWarningMs: options.leakWarningMs,
      maxSessionMs: options.maxSessionMs,
      now: () => clock.now(),
      events,
      hasLogger: options.logger !== undefined,
      revokeOverAge: (session) => this.#endings.overAge(session),
    });
    this.#scheduler = new Scheduler({
      capacity: options.capacity,
      maxQueue: options.maxQueue,
      tenantLimit: options.tenantLimit,
      walletIdleTtlMs: options.walletIdleTtlMs,
      expectedWallets: options.weights.wallet === 0 ? 1024 : Math.ceil(options.capacity / options.weights.wallet),
    });
    const walletPath = (tenant: Pick<TenantRecord, 'walletFile'>): string => registry.walletRef(tenant);
    this.#wallets = new WalletManager({
      workers,
      walletPath,
      kdfConcurrency: options.kdfConcurrency,
      now: () => clock.now(),
      events,
      onOpened: (entry) => this.#scheduler.walletOpened(entry.tenantId),
      ...(options.keyCache.maxEntries > 0 ? { keyTier: { passphrases: options.keyCache.passphrases } } : {}),
      rehash: async (tenant, passphrase) => {
        const target = kdf.rehashTarget(tenant);
        return target === undefined ? undefined : this.tenants[kRehash](tenant, passphrase, target);
      },
      ...(member === undefined
        ? {}
        : {
            leases: {
              take: async (tenantId: string) => {
                const { fence, row, wallet } = await member.takeWithRow(tenantId);
                return { fence, record: row === undefined ? undefined : registry.adoptRow!(row), wallet };
              },
              release: async (tenantId: string) => member.release(tenantId),
              holds: (tenantId: string) => member.holds(tenantId),
              expired: (tenantId: string) => this.#endings.leaseLost(tenantId, 'expired'),
            },
          }),
    });
    this.#admission = new Admission({ scheduler: this.#scheduler, wallets: this.#wallets, clock, events });
    this.#endings = new Endings({
      ledger: this.#ledger,
      wallets: this.#wallets,
      scheduler: this.#scheduler,
      admission: this.#admission,
      workers,
      member,
      events,
      clock,
      warn,
      schema: options.postgres?.schema,
      maxSessionMs: options.maxSessionMs,
      isClosed: () => this.#isClosed,
    });
    this.#host = {
      maxValueBytes: options.maxValueBytes,
      tracing,
      cursorKey: randomBytes(32),
      release: (session) => this.#release(session),
      registerRoute: async (session, publicKey) => registry.addRoute(publicKey, session.tenantId),
      unregisterRoute: async (session, publicKey) => {
        if ((await registry.routeOf(publicKey)) === session.tenantId) await registry.removeRoute(publicKey);
      },
      routeOf: async (publicKey) => registry.routeOf(publicKey),
      isLeased: member === undefined ? () => true : (tenantId) => member.holds(tenantId),
      leaseLost: (tenantId, reason) => this.#endings.leaseLost(tenantId, reason),
      ownershipLost: (error) => this.#endings.ownershipLost(error),
    };
    this.tenants = new Tenants({
      store: registry,
      wallets: this.#wallets,
      workers,
      defaultKdf: options.kdf,
      paramsFor: (method) => kdf.paramsFor(method),
      capacity: options.capacity,
      defaultWeights: options.weights,
      walletPath,
      assertOpen: () => this.#assertOpen(),
      warn,
      now: () => clock.now(),
      events,
      adoptCreated: (record, worker, passphrase) => {
        // In cluster mode a wallet is open only under its lease: a new one is closed, and its first session takes the lease.
        if (member !== undefined || this.#isClosed || !this.#scheduler.adoptIdle(record.tenantId, this.#weightsOf(record), clock.now())) return false;
        this.#wallets.adoptCreated(record, worker, passphrase);
        this.#admission.armTimer(clock.now());
        return true;
      },
      withSession: async (tenantId, passphrase, fn) => this.withSession(tenantId, async (session) => fn(session as Session), passphrase === undefined ? undefined : { passphrase }),
      onUpdated: (record) => {
        this.#scheduler.setLimit(record.tenantId, record.maxSessions ?? options.maxSessionsPerTenant);
        this.#admission.pump();
      },
      revoke: (session) => this.#endings.deleted(session),
      ...(member === undefined
        ? {}
        : {
            claim: async (tenantId: string) => {
              await member.take(tenantId);
              return async () => member.release(tenantId);
            },
          }),
      revokeForRekey: (session) => this.#endings.rekeyed(session),
      onRekeyed: (tenantId) => this.#endings.tenantRekeyed(tenantId),
      onDeleted: (tenantId) => this.#endings.tenantDeleted(tenantId),
    });
  }

  /**
   * Opens a pool: reads options (and the config file), opens the registry, starts the workers.
   * @throws ERR_INVALID_CONFIG for bad options; registry errors as `ERR_WALLET_KEY_INVALID` / `ERR_WALLET_CORRUPT`.
   * @example
   * await using pool = await TenantPool.open({ dataDir: './data' })
   */
  static async open<O extends PoolOptions = PoolOptions>(options: O = {} as O, internals: PoolInternals = {}): Promise<TenantPool<O>> {
    try {
      return (await TenantPool.#openIn(options, internals));
    } catch (error) {
      throw asPoolError(error, 'the pool could not open');
    }
  }

  static async #openIn(options: PoolOptions, internals: PoolInternals): Promise<TenantPool> {
    const { options: resolved, rootKey, postgresUrl } = resolveConfig(options);
    const { logger } = resolved;
    const warn: Warn = logger === undefined ? (message, code) => process.emitWarning(message, { code }) : (message, code) => logger.warn({ code }, message);
    if (resolved.storeChosenBy === 'environment') {
      // Said once, at open: a pool that named no store is on PostgreSQL because the environment said so.
      const message = `tenant-pool: TENANT_POOL_POSTGRES_URL chose the PostgreSQL store (schema ${resolved.postgres!.schema}): no \`postgres\` or \`dataDir\` option was given`;
      if (logger === undefined) process.emitWarning(message, { code: 'TENANT_POOL_STORE_FROM_ENV' });
      else logger.info({ event: 'tenant-pool:pool:store', code: 'TENANT_POOL_STORE_FROM_ENV', store: 'postgres', chosenBy: 'environment' }, message);
    }
    const events = new EventHub();
    if (logger !== undefined) events.on(logEvents(logger));
    // With a logger, the sweep is logged at warn from its event; without, it is a process warning.
    const ref: { pool?: TenantPool } = {};
    const store = await openTenantStore(resolved, rootKey, postgresUrl, warn, (error) => {
      if (ref.pool !== undefined) ref.pool.#endings.ownershipLost(error);
    }, (removed, failed) => {
      if (logger === undefined) {
        warn(
          `tenant-pool removed ${removed.length} ${resolved.postgres === undefined ? 'file(s) of the wallet folder' : 'wallet(s) of the database'} that no tenant owns${removed.length > 0 ? ` (${removed.join(', ')})` : ''}${failed.length > 0 ? `; ${failed.length} could not be removed and are tried again at the next open (${failed.join(', ')})` : ''}`,
          'TENANT_POOL_SWEPT',
        );
      }
      events.emit('tenant-pool:pool:sweep', () => ({ dataDir: resolved.dataDir, removed, failed }));
    });
    let pool: TenantPool;
    let member: ClusterMember | undefined;
    try {
      if (resolved.cluster !== undefined) {
        member = await ClusterMember.join(postgresUrl!, resolved.postgres!.schema, resolved.cluster, {
          onLost: (tenantId, reason) => {
            if (ref.pool !== undefined) ref.pool.#endings.leaseLost(tenantId, reason);
          },
          idleTenants: () => (ref.pool === undefined ? [] : ref.pool.#idleTenants()),
          handOff: (tenantId) => {
            if (ref.pool !== undefined) ref.pool.#handOff(tenantId);
          },
          warn,
          events,
          onOwnershipLost: (error) => {
            if (ref.pool !== undefined) ref.pool.#endings.ownershipLost(error);
          },
        });
      }
      const joined = member;
      const kdf = new KdfPolicy(internals.kdfParams, () => joined?.olderMembers(KDF_PARAMS_FORMAT) ?? [], internals.rehash !== false);
      pool = ref.pool = await TenantPool.#start(resolved, store, member, events, warn, internals.clock ?? performance, kdf);
    } catch (error) {
      await member?.close();
      await store.close();
      throw error;
    }
    try {
      await store.opened();
    } catch (error) {
      await pool.close({ timeoutMs: 0 });
      throw error;
    }
    return pool;
  }

  static async #start(resolved: ResolvedOptions, store: TenantStore, member: ClusterMember | undefined, events: EventHub, warn: Warn, clock: Clock, kdf: KdfPolicy): Promise<TenantPool> {
    const { logger } = resolved;
    // The slots exist before the pool does; a crash during start-up has no wallets to drop.
    const ref: { pool?: TenantPool } = {};
    const workers = Array.from(
      { length: resolved.workers },
      (_, index) =>
        new WorkerSlot({
          index,
          onCrash: (i, error) => {
            if (ref.pool !== undefined) ref.pool.#endings.workerCrashed(i, error);
          },
          onSpawn: (worker, startMs, isReplacement) => events.emit('tenant-pool:worker:spawn', () => ({ worker, startMs: ms(startMs), isReplacement })),
          modules: resolved.modules,
          maxValueBytes: resolved.maxValueBytes,
          startTimeoutMs: resolved.workerStartTimeoutMs,
          allowExitOnIdle: resolved.allowExitOnIdle,
          store: store.workerStore,
          keyCache: { ...resolved.keyCache, maxEntries: Math.ceil(resolved.keyCache.maxEntries / resolved.workers) },
          ...(resolved.workerResourceLimits === undefined ? {} : { resourceLimits: resolved.workerResourceLimits }),
        }),
    );
    try {
      await Promise.all(workers.map(async (w) => w.ready()));
    } catch (error) {
      await Promise.allSettled(workers.map(async (w) => w.close(1000)));
      throw error;
    }
    ref.pool = new TenantPool(resolved, store, member, workers, clock, events, warn, await Tracing.load(), kdf);
    logger?.info({ event: 'tenant-pool:pool:open', store: store.kind, dataDir: store.kind === 'sqlite' ? resolved.dataDir : undefined, workers: resolved.workers, capacity: resolved.capacity }, 'tenant-pool: pool opened');
    return ref.pool;
  }

  /**
   * A session on a tenant: admitted against the pool's capacity (waiting in arrival order if it
   * does not fit), then with the tenant's wallet opened on its worker if it is not open already.
   * @throws ERR_TENANT_NOT_FOUND, ERR_WALLET_KEY_INVALID, ERR_WALLET_CORRUPT, ERR_ACQUIRE_TIMEOUT,
   *   ERR_QUEUE_FULL, ERR_TENANT_LIMIT, ERR_POOL_CLOSED, ERR_WORKER_CRASHED; an aborted acquire
   *   rejects with `signal.reason`.
   */
  async acquire(tenantId: string, options: AcquireOptions = {}): Promise<TenantSession> {
    const startedAt = this.#clock.now();
    let admittedAt: number | undefined;
    // OpenTelemetry, when the host has it: the acquire under the host's active span, its stages under it.
    const span = this.#tracing?.start('tenant-pool acquire', { 'tenant_pool.tenant_id': String(tenantId) });
    try {
      this.#assertOpen();
      const origin = this.options.leakWarningMs > 0 ? new Error('the session was acquired here') : undefined;
      const opts = checkOptionalObject(options, 'options');
      for (const key of Object.keys(opts)) if (!['signal', 'timeoutMs', 'passphrase'].includes(key)) invalid(`Unknown acquire option \`${key}\``);
      const signal = opts['signal'] as AbortSignal | undefined;
      if (signal !== undefined && !(signal instanceof AbortSignal)) invalid('Expected `signal` to be an AbortSignal');
      signal?.throwIfAborted();
      const timeoutMs = checkTimeout(opts['timeoutMs'], this.options.acquireTimeoutMs);
      let tenant = this.#peek(tenantId) ?? (await this.#tenant(tenantId));
      const given = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
      if (tenant.secret !== null && given !== undefined) invalid(`tenant ${tenant.tenantId} is managed: acquire it without a passphrase`);
      let passphrase = given;
      if (tenant.secret === null && passphrase === undefined && this.options.passphraseProvider !== undefined) {
        passphrase = await this.#providedPassphrase(tenant.tenantId);
        this.#assertOpen();
        tenant = await this.#tenant(tenantId);
      }
      if (tenant.secret === null && passphrase === undefined) throw poolError('ERR_WALLET_KEY_INVALID', `tenant ${tenant.tenantId} needs a passphrase`, undefined, { tenantId: tenant.tenantId });

      const deadline = startedAt + timeoutMs;
      const admitting = span === undefined ? undefined : this.#tracing!.start('tenant-pool admission', {}, span.context);
      let grant: Grant;
      try {
        grant = await this.#admission.admit({ tenantId: tenant.tenantId, weights: this.#weightsOf(tenant), maxSessions: tenant.maxSessions ?? this.options.maxSessionsPerTenant, deadline }, signal);
      } finally {
        admitting?.end();
      }
      admittedAt = this.#clock.now();
      const isCacheHit = this.#wallets.entry(tenant.tenantId)?.state === 'open';
      const opening = span === undefined || isCacheHit ? undefined : this.#tracing!.start('tenant-pool wallet.open', { 'tenant_pool.kdf': tenant.kdf }, span.context);
      let session: Session;
      try {
        session = await this.#admission.open(tenant.tenantId, grant, deadline, signal, async () =>
          this.#wallets.openSession(tenant, passphrase, this.#host, grant, async () => this.#registry.get(tenant.tenantId)),
        );
      } catch (error) {
        opening?.end(error);
        throw error;
      }
      if (opening !== undefined) {
        const timings = (session.entry as WalletEntry).timings;
        // The key derivation, as the worker measured it: it ran just before the open itself.
        if (timings !== undefined && timings.deriveMs > 0) {
          const derivedAt = performance.timeOrigin + performance.now() - timings.openMs;
          this.#tracing!.record('tenant-pool key derivation', { 'tenant_pool.kdf': tenant.kdf }, opening.context, derivedAt - timings.deriveMs, derivedAt);
        }
        opening.end();
      }
      this.#ledger.track(session, origin);
      this.#totals.acquired++;
      this.#events.emit('tenant-pool:session:acquire', () => ({
        tenantId: session.tenantId,
        worker: session.entry.worker.index,
        waitMs: ms(session.acquiredAt - startedAt),
        queuedMs: ms(admittedAt! - startedAt),
        isCacheHit,
      }));
      span?.end();
      return session;
    } catch (error) {
      span?.end(error);
      const waitMs = ms(this.#clock.now() - startedAt);
      if (error instanceof TenantPoolError && error.code === 'ERR_ACQUIRE_TIMEOUT') {
        this.#totals.timedOut++;
        const details = { tenantId, waitMs, stage: admittedAt === undefined ? ('admission' as const) : ('open' as const), queued: this.#scheduler.queued, weightInUse: this.#scheduler.weightInUse };
        this.#events.emit('tenant-pool:session:timeout', () => details);
        // What a host needs to answer (503 with Retry-After, say) without parsing the message.
        throw withDetails(error, details);
      } else {
        this.#totals.rejected++;
        this.#events.emit('tenant-pool:session:reject', () => ({
          tenantId: typeof tenantId === 'string' ? tenantId : null,
          code: error instanceof TenantPoolError ? error.code : 'ABORTED',
          waitMs,
        }));
      }
      throw error;
    }
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

  /**
   * Delivers an inbound message: finds the tenant that made `recipientKey` with
   * `keys.create({ routing: true })`, runs the worker modules' `inbound` handler in a session of
   * that tenant (released also when the handler throws) and returns the handler's result.
   * @throws ERR_ROUTE_NOT_FOUND for an unknown key; the acquire's errors; the handler's error.
   */
  async dispatch(message: DispatchMessage, options?: AcquireOptions): Promise<unknown> {
    this.#assertOpen();
    return dispatchMessage(
      {
        maxValueBytes: this.options.maxValueBytes,
        routeOf: async (recipientKey) => this.#registry.routeOf(recipientKey),
        assertOpen: () => this.#assertOpen(),
        inbound: async (tenantId, delivered) => this.withSession(tenantId, async (session) => (session as Session).inbound(delivered), options),
      },
      message,
    );
  }

  /** The passphrase the host's `passphraseProvider` gives for a tenant; used for this acquire only, never kept. */
  async #providedPassphrase(tenantId: string): Promise<string | undefined> {
    let answer: unknown;
    try {
      answer = await this.options.passphraseProvider!(tenantId);
    } catch (error) {
      throw poolError('ERR_PASSPHRASE_PROVIDER', `the passphraseProvider failed for tenant ${tenantId}`, error, { tenantId });
    }
    if (answer === undefined) return undefined;
    if (typeof answer !== 'string' || answer.length === 0) throw poolError('ERR_PASSPHRASE_PROVIDER', `the passphraseProvider gave ${typeof answer === 'string' ? 'an empty string' : typeof answer} for tenant ${tenantId}, not a passphrase`, undefined, { tenantId });
    try {
      return checkPassphrase(answer);
    } catch (error) {
      throw poolError('ERR_PASSPHRASE_PROVIDER', `the passphraseProvider gave an unusable passphrase for tenant ${tenantId}: ${(error as Error).message}`, undefined, { tenantId });
    }
  }

  /**
   * Closes every idle (cached) wallet now, as if its idle TTL had passed: their weight returns and
   * their next session opens them again. Wallets with sessions are left alone. Resolves with the
   * number closed, once they are and (in a cluster) their leases are given up, so another
   * instance may take those tenants at once.
   */
  async closeIdleWallets(): Promise<number> {
    this.#assertOpen();
    const tenants = this.#scheduler.closeAllIdle();
    await Promise.all(tenants.map(async (tenantId) => this.#admission.closeWallet(tenantId, 'idle')));
    // In a cluster, another instance may take these tenants once this resolves.
    await this.#wallets.leasesGivenUp();
    return tenants.length;
  }

  /** A snapshot of sessions, weight, queue, wallets, workers and totals. */
  stats(): PoolStats {
    const perWorker = this.#workers.map((w) => ({ index: w.index, tenants: 0, sessions: 0, weight: 0, alive: w.isAlive }));
    const wallets = { open: 0, idle: 0, opening: 0 };
    for (const entry of this.#wallets.entries()) {
      const w = perWorker[entry.worker.index]!;
      w.tenants++;
      w.sessions += entry.sessions.size;
      w.weight += this.#scheduler.weightOf(entry.tenantId);
      if (entry.state === 'opening') wallets.opening++;
      else if (entry.sessions.size > 0) wallets.open++;
      else wallets.idle++;
    }
    return {
      capacity: this.options.capacity,
      weightInUse: this.#scheduler.weightInUse,
      sessions: this.#ledger.size,
      queued: this.#scheduler.queued,
      wallets,
      workers: perWorker,
      totals: {
        ...this.#totals,
        revoked: this.#endings.revoked,
        evictions: this.#admission.counters.evictions,
        walletOpens: this.#wallets.counters.walletOpens,
        walletCloses: this.#wallets.counters.walletCloses,
        keyDerivations: this.#wallets.counters.keyDerivations,
        keyTierOpens: this.#wallets.counters.keyTierOpens,
        workerCrashes: this.#workers.reduce((sum, w) => sum + w.crashes, 0),
      },
      store:
        this.options.postgres === undefined
          ? { kind: 'sqlite', chosenBy: this.options.storeChosenBy }
          : { kind: 'postgres', connectionBudget: this.options.postgres.connectionBudget, chosenBy: this.options.storeChosenBy },
    };
  }

  /**
   * Re-seals the registry — every tenant's secret and settings — under a new root key (64 hex
   * characters, or a passphrase through Argon2id), crash-safe: killed at any moment, the store opens
   * with the old key or the new, never neither, and rotating again completes it. Sessions and
   * wallets go on (a wallet's key comes from its tenant's secret, which stays the same). From now
   * on the pool must be opened with the new key. On PostgreSQL, other cluster instances find the
   * new key at their next registry write and refuse it (`ERR_WALLET_KEY_INVALID`): restart them
   * with the new key. A SQLite folder whose key comes from its `root.key` file is refused.
   * @throws ERR_INVALID_ARGUMENT, ERR_UPGRADE_REQUIRED (cluster members of an older release live)
   */
  async rotateRootKey(newRootKey: string): Promise<void> {
    this.#assertOpen();
    if (typeof newRootKey !== 'string' || newRootKey.length === 0 || newRootKey.length > 4096 || !newRootKey.isWellFormed()) invalid('Expected the new root key to be 64 hex characters or a passphrase (a well-formed string of 1 to 4096 characters)');
    await this.#registry.rotateRootKey(newRootKey);
  }

  /**
   * Whether the pool can serve now: workers alive, the store answering one read (with its latency),
   * in cluster mode a live member (its last renewal's age). Resolves within `timeoutMs` (default
   * 2000) also when the store is gone — it never hangs, and never rejects for what it finds. For a
   * readiness probe, `ok`; for liveness, that it answers at all.
   * @throws ERR_INVALID_ARGUMENT for a bad `timeoutMs` (an integer from 1 to 60000)
   */
  async health(options: { timeoutMs?: number } = {}): Promise<PoolHealth> {
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (key !== 'timeoutMs') invalid(`Unknown option \`${key}\` for health; known: timeoutMs`);
    const timeoutMs = opts['timeoutMs'] === undefined ? 2000 : opts['timeoutMs'];
    if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60_000) invalid(`Expected \`timeoutMs\` to be an integer from 1 to 60000, got ${JSON.stringify(timeoutMs) ?? typeof timeoutMs}`);
    return checkHealth({ closed: this.#isClosed, workers: this.#workers, store: this.#registry, member: this.#member }, timeoutMs);
  }

  /**
   * Stops admitting (waiters and new acquires get `ERR_POOL_CLOSED`), waits up to `timeoutMs` for
   * live sessions to be released, revokes the rest, closes every wallet and stops the workers.
   * Idempotent.
   */
  async close(options: { timeoutMs?: number | null } = {}): Promise<void> {
    if (this.#closed === undefined) {
      const opts = checkOptionalObject(options, 'options');
      for (const key of Object.keys(opts)) if (key !== 'timeoutMs') invalid(`Unknown close option \`${key}\``);
      this.#closed = this.#close(checkTimeout(opts['timeoutMs'], DEFAULT_CLOSE_TIMEOUT_MS));
    }
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal For tests and the bench: the worker slots. Not part of the public API. */
  get [kWorkers](): readonly WorkerSlot[] {
    return this.#workers;
  }

  /** @internal The pool's events, for `collectMetrics()` and the live view. Not part of the public API. */
  get [kEvents](): EventHub {
    return this.#events;
  }




  /** @internal Cluster mode: tenants whose wallet is open with no session. */
  #idleTenants(): string[] {
    return this.#isClosed ? [] : this.#scheduler.idleTenants();
  }

  /** @internal Cluster mode: closes an idle wallet so the tenant can move to the member its route points to. */
  #handOff(tenantId: string): void {
    if (this.#isClosed || !this.#scheduler.closeIdle(tenantId)) return;
    void this.#admission.closeWallet(tenantId, 'idle');
  }


  // ---- admission -------------------------------------------------------------------------------

  #weightsOf(tenant: TenantRecord | undefined): Weights {
    return { wallet: tenant?.weights?.wallet ?? this.options.weights.wallet, session: tenant?.weights?.session ?? this.options.weights.session };
  }

  // ---- sessions --------------------------------------------------------------------------------


  #release(session: Session): void {
    if (this.#ledger.forget(session)) {
      this.#totals.released++;
      this.#events.emit('tenant-pool:session:release', () => ({ tenantId: session.tenantId, worker: session.entry.worker.index, holdMs: ms(this.#clock.now() - session.acquiredAt) }));
    }
    this.#wallets.release(session);
    this.#scheduler.release(session.grant, this.#clock.now());
    this.#admission.pump();
  }

  // ---- closing ---------------------------------------------------------------------------------

  async #close(timeoutMs: number): Promise<void> {
    this.#isClosed = true;
    this.#admission.close();
    this.#ledger.stop();
    await this.#ledger.drained(timeoutMs);
    this.#endings.closing();
    await Promise.allSettled(this.#workers.map(async (w) => w.close()));
    this.#wallets.poolClosed();
    // Every lease given up at once: other instances take these tenants without waiting for expiry.
    await this.#member?.close();
    this.#scheduler.reset();
    await this.#registry.close();
    this.options.logger?.info({ event: 'tenant-pool:pool:close' }, 'tenant-pool: pool closed');
  }

  #assertOpen(): void {
    if (this.#isClosed) throw poolError('ERR_POOL_CLOSED', 'the pool is closed');
    const lost = this.#endings.ownershipError();
    if (lost !== undefined) throw lost;
  }

  /** The tenant when the store knows it without a read (null when it does not). @throws ERR_TENANT_NOT_FOUND */
  #peek(tenantId: string): TenantRecord | null {
    const record = this.#registry.peek(checkTenantId(tenantId));
    if (record === undefined) throw poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`, undefined, { tenantId });
    return record;
  }

  async #tenant(tenantId: string): Promise<TenantRecord> {
    const record = await this.#registry.get(checkTenantId(tenantId));
    if (record === undefined) throw poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`, undefined, { tenantId });
    return record;
  }
}


/** A timeout option: a number >= 0, `Infinity` or `null` for no limit; `undefined` takes the default. */
function checkTimeout(value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (value === null) return Number.POSITIVE_INFINITY;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) invalid(`Expected \`timeoutMs\` to be a number >= 0, Infinity or null, got ${typeof value === 'number' ? value : typeof value}`);
  return value;
}
