/**
 * Prometheus metrics of a pool, through `prom-client` (an optional peer dependency: install it to
 * use this entry point; the main entry never loads it).
 *
 * Gauges and counters read `pool.stats()` at scrape time, so they cost nothing between scrapes;
 * histograms are fed by the pool's own events. Durations are in seconds, as Prometheus expects.
 */
import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client';
import type { EventListener } from './diagnostics.js';
import { kEvents, type PoolStats, type PoolTotals, type TenantPool } from '../pool.js';

export interface MetricsOptions {
  /** Prefix of every metric name. @default 'tenant_pool_' */
  prefix?: string;
  /** Labels added to every metric (to tell pools apart in one registry, say). @default {} */
  labels?: Record<string, string>;
}

/** The pool's metrics in a registry; `close()` (or `using`) removes them and stops listening. */
export interface PoolMetrics extends Disposable {
  readonly registry: Registry;
  /** Names of the metrics registered. */
  readonly names: readonly string[];
  close(): void;
}

/** Buckets, in seconds: sub-millisecond cache hits up to multi-second Argon2 queues. */
const WAIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const HOLD_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];
const OPEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5];

const TOTALS: ReadonlyArray<[keyof PoolTotals, string, string]> = [
  ['acquired', 'sessions_acquired_total', 'Sessions handed out.'],
  ['released', 'sessions_released_total', 'Sessions ended (released or revoked).'],
  ['timedOut', 'acquire_timeouts_total', 'Acquires that reached their deadline.'],
  ['rejected', 'acquire_rejections_total', 'Acquires that failed for another reason (queue full, tenant limit, bad key, abort...).'],
  ['walletOpens', 'wallet_opens_total', 'Wallets opened.'],
  ['walletCloses', 'wallet_closes_total', 'Wallets that stopped being open, for any reason.'],
  ['evictions', 'wallet_evictions_total', 'Idle wallets closed to make room.'],
  ['revoked', 'sessions_revoked_total', 'Sessions ended by the pool (maxSessionMs, tenant deleted, pool closed).'],
  ['workerCrashes', 'worker_crashes_total', 'Worker threads that died.'],
  ['keyDerivations', 'key_derivations_total', 'Key derivations run (wallet opens and tenant creations).'],
];

/**
 * Registers the pool's metrics in `registry` (prom-client's default registry if omitted):
 * gauges of sessions, queue, weight, capacity, wallets by state and per-worker load; histograms of
 * acquire wait, session hold, wallet open and key derivation; counters of `stats().totals`, and in
 * cluster mode of leases taken and lost.
 * @example
 * import { collectMetrics } from 'tenant-pool/metrics'
 * const metrics = collectMetrics(pool)
 * app.get('/metrics', async (_, res) => res.type(metrics.registry.contentType).send(await metrics.registry.metrics()))
 */
export function collectMetrics(pool: TenantPool, registry: Registry = globalRegistry, options: MetricsOptions = {}): PoolMetrics {
  const prefix = options.prefix ?? 'tenant_pool_';
  const constLabels = options.labels ?? {};
  const extra = Object.keys(constLabels);
  const registers = [registry];
  // Names registered so far: if one is already taken half-way, those registered come out again.
  const names: string[] = [];

  // One stats() per scrape, however many metrics read it. A scrape reads the metrics in the order
  // they were registered: the first takes a fresh snapshot, and the rest of that scrape reuse it.
  let snapshot: PoolStats | undefined;
  const stats = (isFirst = false): PoolStats => {
    if (snapshot === undefined || isFirst) {
      snapshot = pool.stats();
      setImmediate(() => (snapshot = undefined));
    }
    return snapshot;
  };

  /** A gauge or counter read from stats() at scrape time, one sample per label set `read` returns. */
  const scraped = (kind: typeof Gauge | typeof Counter, suffix: string, help: string, label: string | undefined, read: (s: PoolStats) => Array<[string, number]>): void => {
    const labelNames = label === undefined ? extra : [...extra, label];
    const isFirst = names.length === 0;
    new kind({
      name: prefix + suffix,
      help,
      labelNames,
      registers,
      collect(this: Gauge | Counter) {
        this.reset();
        for (const [value, n] of read(stats(isFirst))) {
          const labels = label === undefined ? constLabels : { ...constLabels, [label]: value };
          if (this instanceof Gauge) this.set(labels, n);
          else this.inc(labels, n);
        }
      },
    });
    names.push(prefix + suffix);
  };
  const histogram = (suffix: string, help: string, label: string | undefined, buckets: number[]): Histogram => {
    const metric = new Histogram({ name: prefix + suffix, help, labelNames: label === undefined ? extra : [...extra, label], buckets, registers });
    names.push(prefix + suffix);
    return metric;
  };

  const counter = (suffix: string, help: string, label: string | undefined): Counter => {
    const metric = new Counter({ name: prefix + suffix, help, labelNames: label === undefined ? extra : [...extra, label], registers });
    names.push(prefix + suffix);
    return metric;
  };

  let histograms: Record<'acquireWait' | 'sessionHold' | 'walletOpen' | 'keyDerivation', Histogram>;
  let leaseCounters: Record<'takes' | 'losses', Counter>;
  try {
    scraped(Gauge, 'capacity', 'Weight units the pool may hold.', undefined, (s) => [['', s.capacity]]);
    scraped(Gauge, 'weight_in_use', 'Weight units held by wallets and sessions.', undefined, (s) => [['', s.weightInUse]]);
    scraped(Gauge, 'sessions', 'Live sessions.', undefined, (s) => [['', s.sessions]]);
    scraped(Gauge, 'queued', 'Acquires waiting for admission.', undefined, (s) => [['', s.queued]]);
    scraped(Gauge, 'wallets', 'Wallets by state: open (with sessions), idle (cached, no session), opening.', 'state', (s) => Object.entries(s.wallets));
    const perWorker = (suffix: string, help: string, read: (w: PoolStats['workers'][number]) => number): void =>
      scraped(Gauge, suffix, help, 'worker', (s) => s.workers.map((w) => [String(w.index), read(w)]));
    perWorker('worker_tenants', 'Wallets held by each worker.', (w) => w.tenants);
    perWorker('worker_sessions', 'Live sessions on each worker.', (w) => w.sessions);
    perWorker('worker_weight', 'Weight units held on each worker.', (w) => w.weight);
    perWorker('worker_up', 'Whether each worker is serving (1) or being replaced (0).', (w) => (w.alive ? 1 : 0));
    for (const [key, suffix, help] of TOTALS) scraped(Counter, suffix, help, undefined, (s) => [['', s.totals[key]]]);
    histograms = {
      acquireWait: histogram('acquire_wait_seconds', 'Time from acquire() to the session: admission, then the wallet open unless it was cached.', 'wallet', WAIT_BUCKETS),
      sessionHold: histogram('session_hold_seconds', 'Time from acquire to release of each session.', undefined, HOLD_BUCKETS),
      walletOpen: histogram('wallet_open_seconds', 'Time to open a wallet, key derivation and its queue included.', 'kdf', OPEN_BUCKETS),
      keyDerivation: histogram('key_derivation_seconds', 'Time in the key derivation function, per wallet open or tenant creation.', 'kdf', OPEN_BUCKETS),
    };
    leaseCounters = {
      takes: counter('lease_takes_total', 'Cluster mode: tenant leases this instance took (wallet opens, deletes, rekeys).', undefined),
      losses: counter('lease_losses_total', 'Cluster mode: tenant leases this instance lost before giving them up (expired on its clock, taken, fenced at a write); their sessions were revoked.', 'reason'),
    };
  } catch (error) {
    for (const n of names) registry.removeSingleMetric(n);
    throw error;
  }
  const { acquireWait, sessionHold, walletOpen, keyDerivation } = histograms;
  const { takes: leaseTakes, losses: leaseLosses } = leaseCounters;

  const listener: EventListener = (...[event, p]) => {
    if (event === 'tenant-pool:session:acquire') {
      acquireWait.observe({ ...constLabels, wallet: p.isCacheHit ? 'cached' : 'opened' }, p.waitMs / 1000);
    } else if (event === 'tenant-pool:session:release') {
      sessionHold.observe(constLabels, p.holdMs / 1000);
    } else if (event === 'tenant-pool:wallet:open') {
      walletOpen.observe({ ...constLabels, kdf: p.kdf }, p.totalMs / 1000);
      keyDerivation.observe({ ...constLabels, kdf: p.kdf }, p.deriveMs / 1000);
    } else if (event === 'tenant-pool:tenant:create') {
      keyDerivation.observe({ ...constLabels, kdf: p.kdf }, p.deriveMs / 1000);
    } else if (event === 'tenant-pool:lease:take') {
      leaseTakes.inc(constLabels);
    } else if (event === 'tenant-pool:lease:lost') {
      leaseLosses.inc({ ...constLabels, reason: p.reason });
    }
  };
  const off = pool[kEvents].on(listener);

  let isClosed = false;
  const close = (): void => {
    if (isClosed) return;
    isClosed = true;
    off();
    for (const n of names) registry.removeSingleMetric(n);
  };
  return { registry, names, close, [Symbol.dispose]: close };
}
