/**
 * Further tenant-pool scenarios, beyond the side-by-side ones: costs a user tuning the pool asks
 * about (cold open per KDF, one call against a bare echo, find on a large wallet, memory per wallet).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KdfMethod } from '../common/protocol.js';
import { Registry } from 'prom-client';
import { CHANNEL_NAMES } from '../src/observability/diagnostics.js';
import { collectMetrics } from '../src/observability/metrics.js';
import { kWorkers, TenantPool } from '../src/pool.js';
import { DataDirLock } from '../src/store/data-dir.js';
import { PostgresRegistry } from '../src/store/postgres-registry.js';
import { Registry as TenantRegistry } from '../src/store/registry.js';
import type { Session } from '../src/session.js';
import { writeExport } from '../common/export-format.js';
import { PostgresWalletStore } from '../workers/store/postgres-wallet.js';
import { Wallet } from '../workers/store/sqlite-wallet.js';
import { echoWorker, median, percentile, round } from './measure.js';
import type { Figures, Scenario } from './scenarios.js';
import { dayTwo } from './day-two.js';
import { keyTier } from './key-tier.js';
import { cache } from './cache.js';
import { clusterScale } from './cluster-scale.js';
import { dropBenchSchema } from './systems/tenant-pool.js';
import { benchPostgresUrl, type SystemOptions } from './systems/types.js';

const options = (overrides: Partial<SystemOptions> = {}): SystemOptions => ({
  capacity: 100_000,
  sessionLimit: 100_000,
  timeoutMs: 120_000,
  walletIdleTtlMs: 0,
  workers: 2,
  ...overrides,
});

/** Least-squares slope of ys against their index. */
function slope(ys: number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const mx = (n - 1) / 2;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

async function sample(rounds: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(1000, rounds / 10); i++) await fn();
  const times = new Array<number>(rounds);
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await fn();
    times[i] = performance.now() - t;
  }
  return times;
}

export const extraScenarios: Scenario[] = [
  {
    name: 'soak',
    describe: '10 minutes of mixed load (32 in flight) with a worker killed every 30 s: served, errors by code, RSS, leaked weight',
    systems: ['tenant-pool'],
    onlyWhenNamed: true,
    options: () => options({ capacity: 200, walletIdleTtlMs: 20_000, timeoutMs: 2_000, modules: [join(import.meta.dirname, 'soak-module.ts')] }),
    async run({ system, pool, quick }) {
      if (pool === undefined) throw new Error('soak runs on tenant-pool only');
      const durationMs = quick ? 20_000 : 600_000;
      const ids = [...(await system.createTenants(60, 'raw', 'soak-')), ...(await system.createTenants(4, 'argon2i-int', 'soak-slow-'))];
      const errors: Record<string, number> = {};
      let served = 0;
      let crashes = 0;
      let seed = 17;
      const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
      const data = randomBytes(32);
      // One signing key per tenant, made on first use: the wallets' contents stay bounded, so RSS shows leaks, not data.
      const kids = new Map<string, Promise<string>>();
      const started = performance.now();
      const rss = (): number => round(process.memoryUsage.rss() / 2 ** 20);
      const gc = (globalThis as { gc?: () => void }).gc;
      // A full GC of each worker's heap (through the soak module) and of the main heap, then the sizes:
      // a sample sees live data only, not garbage awaiting collection.
      const collect = async (): Promise<{ heap: number; workerHeap: number }> => {
        const seen = new Set<number>();
        let workerHeap = 0;
        for (const id of ids) {
          if (seen.size === pool[kWorkers].length || id.startsWith('soak-slow-')) break;
          try {
            await pool.withSession(id, async (s) => {
              const { index } = (s as Session).entry.worker;
              if (seen.has(index)) return;
              seen.add(index);
              workerHeap += await s.run<number>('gc');
            });
          } catch {
            // A worker being replaced: sampled next time.
          }
        }
        gc?.();
        return { heap: round(process.memoryUsage().heapUsed / 2 ** 20), workerHeap: round(workerHeap / 2 ** 20) };
      };
      // One clock for kills and samples. A sample is taken a second before each kill, so it sees a settled
      // process, not two workers of one slot alive side by side while a replacement starts.
      const period = quick ? 5 : 30;
      const samples: { at: number; rss: number; heap: number; workerHeap: number }[] = [];
      let rssMax = 0;
      let tick = 0;
      const clock = setInterval(() => {
        tick++;
        rssMax = Math.max(rssMax, rss());
        if (tick % period === period - 1) {
          const at = tick;
          void collect().then((heaps) => samples.push({ at, rss: rss(), ...heaps }));
        } else if (tick % period === 0) {
          const slot = pool[kWorkers][crashes % pool[kWorkers].length];
          crashes++;
          void slot?.thread?.terminate();
        }
      }, 1_000);
      try {
        await Promise.all(
          Array.from({ length: 32 }, async (_, lane) => {
            for (let i = 0; performance.now() - started < durationMs; i++) {
              const id = ids[random(ids.length)]!;
              try {
                const s = await system.acquire(id);
                try {
                  // Few record ids, rewritten over and over: each wallet reaches its full size within seconds.
                  await s.save('soak', `l${lane % 4}-${i % 10}`, { lane, i, at: Date.now() });
                  await s.get('soak', `l${lane % 4}-${(i + 7) % 10}`);
                  let kid = kids.get(id);
                  if (kid === undefined) kids.set(id, (kid = s.createKey()));
                  await s.sign(await kid.catch(async () => s.createKey()), data);
                } finally {
                  await s.release();
                }
                served++;
              } catch (error) {
                const code = (error as { code?: string }).code ?? 'other';
                errors[code] = (errors[code] ?? 0) + 1;
              }
            }
          }),
        );
      } finally {
        clearInterval(clock);
      }
      const seconds = (performance.now() - started) / 1000;
      samples.push({ at: Math.round(seconds), ...(await collect()), rss: rss() });
      // The first minute is warm-up (wallets open, caches and JIT fill); the trend is fitted over the rest.
      const steady = samples.slice(Math.min(samples.length - 2, Math.ceil(60 / period) - 1));
      const first = steady[0]!;
      const last = steady.at(-1)!;
      const figures: Figures = {
        seconds: round(seconds),
        served,
        sessionsPerSec: round(served / seconds),
        workerCrashes: pool.stats().totals.workerCrashes,
        rssStartMb: first.rss,
        rssEndMb: last.rss,
        rssMaxMb: rssMax,
        rssSlopeMbPerMin: round(slope(steady.map((x) => x.rss)) * (60 / period), 2),
        // The fitted trend across the steady part, as a share of where it began.
        rssTrendPct: round((100 * slope(steady.map((x) => x.rss)) * (steady.length - 1)) / first.rss, 1),
        heapStartMb: first.heap,
        heapEndMb: last.heap,
        workerHeapStartMb: first.workerHeap,
        workerHeapEndMb: last.workerHeap,
        leakedWeight: system.heldBySessions(),
      };
      for (const [code, n] of Object.entries(errors)) figures[`errors_${code}`] = n;
      for (const x of samples) figures[`rssAt${x.at}s`] = x.rss;
      return figures;
    },
  },
  {
    name: 'kdf-open',
    describe: 'cold wallet open (acquire of a closed wallet) per KDF method: median ms',
    systems: ['tenant-pool'],
    options: () => options({ walletIdleTtlMs: 0, keyTier: false }),
    async run({ system, quick }) {
      const out: Figures = {};
      for (const kdf of ['raw', 'argon2i-int', 'argon2i-mod', 'argon2id'] as KdfMethod[]) {
        const ids = await system.createTenants(quick ? 2 : 5, kdf, `${kdf}-`);
        const times: number[] = [];
        for (const id of ids) {
          const started = performance.now();
          const s = await system.acquire(id);
          times.push(performance.now() - started);
          await s.release();
        }
        out[`${kdf}MedianMs`] = round(median(times));
      }
      return out;
    },
  },
  {
    name: 'call-latency',
    describe: 'one call at a time through a warm session, against a bare postMessage echo measured alongside',
    systems: ['tenant-pool'],
    options: () => options({ walletIdleTtlMs: 600_000 }),
    async run({ system, quick }) {
      const rounds = quick ? 1_000 : 10_000;
      const echo = await echoWorker();
      try {
        const [id] = await system.createTenants(1, 'raw', 'lat-');
        const s = await system.acquire(id!);
        await s.save('bench', 'r', { hello: 'world', n: 42 });
        const kid = await s.createKey();
        const data = randomBytes(64);
        const echoTimes = await sample(rounds, async () => echo.roundTrip(1));
        const getTimes = await sample(rounds, async () => s.get('bench', 'r'));
        const signTimes = await sample(rounds, async () => s.sign(kid, data));
        await s.release();
        const p50 = (t: number[]): number => percentile(t, 50) * 1000;
        return {
          echoP50Us: round(p50(echoTimes)),
          getP50Us: round(p50(getTimes)),
          getP99Us: round(percentile(getTimes, 99) * 1000),
          signP50Us: round(p50(signTimes)),
          signP99Us: round(percentile(signTimes, 99) * 1000),
          getVsEcho: round(p50(getTimes) / p50(echoTimes)),
          signVsEcho: round(p50(signTimes) / p50(echoTimes)),
        };
      } finally {
        await echo.close();
      }
    },
  },
  {
    name: 'cold-open-raw',
    describe: 'the first session of a raw tenant whose wallet is closed (no Argon2: the open itself), one at a time, ms',
    systems: ['tenant-pool'],
    options: () => options({ walletIdleTtlMs: 600_000 }),
    async run({ system, pool, quick }) {
      const ids = await system.createTenants(quick ? 30 : 300, 'raw', 'cold-');
      const times: number[] = [];
      for (const id of ids) {
        const started = performance.now();
        const session = await system.acquire(id);
        times.push(performance.now() - started);
        await session.release();
      }
      await pool?.closeIdleWallets();
      return { tenants: ids.length, openP50Ms: round(percentile(times, 50), 2), openP99Ms: round(percentile(times, 99), 2) };
    },
  },
  {
    name: 'many-tenants',
    describe: 'open() over a registry of 100,000 tenants (rows loaded in bulk), the main-thread heap over an empty pool, and reads of tenants not yet in memory',
    systems: ['tenant-pool'],
    options: () => options({ workers: 1 }),
    async run({ quick, store }) {
      return manyTenants(quick ? 20_000 : 100_000, store);
    },
  },
  {
    name: 'cluster',
    describe: 'cluster mode on PostgreSQL: takeover after SIGKILL of the owner, lease overhead per cold acquire and per write, sessions/s of 3 instances against 1 (needs a PostgreSQL server)',
    systems: ['tenant-pool'],
    onPostgres: false,
    onlyWhenNamed: benchPostgresUrl === undefined,
    options: () => options(),
    async run({ quick }) {
      return clusterFigures(quick);
    },
  },
  {
    name: 'cluster-scale',
    describe: 'cluster costs against tenants held: rows written and server time per renewal at 100, 10,000 and 100,000 leases (bound to the membership, and renewed one by one while an older release is live); statements and server time per operation (pg_stat_statements), the inputs of the capacity model (needs a PostgreSQL server)',
    systems: ['tenant-pool'],
    onPostgres: false,
    onlyWhenNamed: benchPostgresUrl === undefined,
    options: () => options(),
    run: async ({ quick }) => clusterScale(quick),
  },
  {
    name: 'rekey-10k',
    describe: 'a rekey of a tenant holding 10,000 records with 2 tags each and 10 keys: the default (PostgreSQL rewraps the profile key; SQLite writes the file anew) against one that rotates the data key (every row encrypted again), ms',
    systems: ['tenant-pool'],
    options: () => options({ workers: 1 }),
    async run({ pool, quick }) {
      const records = quick ? 1_000 : 10_000;
      const dir = join(tmpdir(), `tp-bench-rekey-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      try {
        // Loaded through an import (one transaction), not 10,000 sessions' saves.
        const { generateEd25519 } = await import('../workers/ed25519.js');
        const bs58 = (await import('bs58')).default;
        const keys = Array.from({ length: 10 }, (_, i) => {
          const pair = generateEd25519();
          return { kid: `k${i}`, publicKey: bs58.encode(pair.rawPublic), privateKey: pair.pkcs8.toString('base64'), createdAt: new Date().toISOString() };
        });
        const file = join(dir, 'big.tpx');
        const exportKey = randomBytes(32);
        await writeExport(file, exportKey, {
          tenant: { tenantId: 'big', metadata: {}, createdAt: new Date().toISOString(), routes: [] },
          wallet: { records: Array.from({ length: records }, (_, i) => ['cred', `id${i}`, JSON.stringify({ i, text: 'x'.repeat(64) }), JSON.stringify({ bucket: String(i % 100), type: 'degree' })] as [string, string, string, string]), keys },
        });
        await pool!.tenants.import(file, { exportKey });
        const timed = async (fn: () => Promise<unknown>): Promise<number> => {
          const started = performance.now();
          await fn();
          return round(performance.now() - started, 1);
        };
        const rekeyMs = await timed(async () => pool!.tenants.rekey('big'));
        const rotateMs = await timed(async () => pool!.tenants.rekey('big', { rotateDataKey: true }));
        const count = await pool!.withSession('big', async (s) => s.records.count('cred'));
        if (count !== records) throw new Error(`after the rekeys the wallet holds ${count} records, not ${records}`);
        return { records, rekeyMs, rotateDataKeyMs: rotateMs, rotatePerRecordUs: round((rotateMs * 1000) / records, 1) };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: 'find-100k',
    describe: 'records.find on a wallet of 100,000 records with 3 tags each (SQL on the wallet itself), p50 µs',
    systems: ['tenant-pool'],
    options: () => options(),
    async run({ quick, store }) {
      const count = quick ? 10_000 : 100_000;
      if (store === 'postgres') return findOnPostgres(count, quick);
      const dir = join(tmpdir(), `tp-bench-find-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      const key = randomBytes(32);
      const path = join(dir, 'w.sqlite');
      Wallet.create(path, key);
      const wallet = Wallet.open(path, key);
      try {
        wallet.batch(() => {
          for (let i = 0; i < count; i++) wallet.save('cred', `id${i}`, JSON.stringify({ i }), { bucket: String(i % 1000), serial: `s${i}`, type: 'degree' });
        });
        return await findFigures(count, quick, async (tags) => wallet.find('cred', tags, -1));
      } finally {
        wallet.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: 'postgres-wallet',
    // It measures both stores itself.
    onPostgres: false,
    describe: 'one wallet call at a time, PostgreSQL store (encrypted record by record) against the SQLite file, p50 µs; needs TENANT_POOL_BENCH_POSTGRES_URL',
    systems: ['tenant-pool'],
    onlyWhenNamed: true,
    options: () => options(),
    async run({ quick }) {
      const url = process.env['TENANT_POOL_BENCH_POSTGRES_URL'] ?? process.env['TENANT_POOL_TEST_POSTGRES_URL'];
      if (url === undefined) throw new Error('set TENANT_POOL_BENCH_POSTGRES_URL to a PostgreSQL server (source .ci/postgres; start_postgres gives one)');
      const rounds = quick ? 200 : 2000;
      const key = randomBytes(32);
      const schema = `tp_bench_${process.pid}`;
      const store = await PostgresWalletStore.connect(url, schema, 2, { createTables: true });
      const dir = join(tmpdir(), `tp-bench-pgw-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      const path = join(dir, 'w.sqlite');
      Wallet.create(path, key);
      const sqlite = Wallet.open(path, key);
      try {
        (await store.create('bench', 'bench', key)).close();
        const pgWallet = await store.open('bench', key);
        const tags = { state: 'active', theirDid: 'did:example:1' };
        const value = JSON.stringify({ text: 'x'.repeat(200) });
        let n = 0;
        const p50 = async (fn: () => Promise<unknown>): Promise<number> => round(percentile(await sample(rounds, fn), 50) * 1000);
        const figures = {
          pgSaveP50Us: await p50(async () => pgWallet.save('c', `r${n++ % 500}`, value, tags)),
          // The same save by a pool that owns the schema alone: its write checks the ownership epoch first.
          pgOwnedSaveP50Us: await (async () => {
            await store.query('owning the bench schema', `UPDATE ${schema}.ownership SET mode = 'single', epoch = 1`, [], true);
            const owned = await PostgresWalletStore.connect(url, schema, 2, { ownerEpoch: 1 });
            const writer = await owned.open('bench', key);
            try {
              return await p50(async () => writer.save('c', `r${n++ % 500}`, value, tags));
            } finally {
              writer.close();
              await owned.close();
            }
          })(),
          sqliteSaveP50Us: await p50(async () => sqlite.save('c', `r${n++ % 500}`, value, tags)),
          // The records were just written, so this wallet holds them decrypted: a get served from memory.
          pgCachedGetP50Us: await p50(async () => pgWallet.get('c', `r${n++ % 500}`)),
          // A wallet opened afresh, reading each record once: every get a query.
          pgGetP50Us: await (async () => {
            const reader = await store.open('bench', key);
            let m = 0;
            try {
              return round(percentile(await sample(Math.min(rounds, 450), async () => reader.get('c', `r${m++ % 500}`)), 50) * 1000);
            } finally {
              reader.close();
            }
          })(),
          sqliteGetP50Us: await p50(async () => sqlite.get('c', `r${n++ % 500}`)),
          pgFindP50Us: await p50(async () => pgWallet.find('c', { theirDid: 'did:example:1' }, 10)),
          sqliteFindP50Us: await p50(async () => sqlite.find('c', { theirDid: 'did:example:1' }, 10)),
        };
        pgWallet.close();
        return figures;
      } finally {
        sqlite.close();
        rmSync(dir, { recursive: true, force: true });
        await store.query('dropping the bench schema', `DROP SCHEMA ${schema} CASCADE`, []);
        await store.close();
      }
    },
  },
  {
    name: 'cache',
    onPostgres: false,
    describe: 'which wallets stay open: Zipf 0.8/1.0/1.2 traces, each also with a sweep over every tenant, and a hot set that shifts halfway, replayed one session at a time through the pool with room for 5%, 10% and 25% of 1,000 raw tenants; opens against LRU, the static optimum A0 and Belady\'s OPT on the same traces',
    systems: ['tenant-pool'],
    onlyWhenNamed: true,
    options: () => options(),
    run: async ({ quick }) => cache(quick),
  },
  {
    name: 'key-tier',
    onPostgres: false,
    describe: '400 argon2i-int tenants, room for 56 open wallets, Zipf(1.0) with a sweep halfway: derivations per distinct tenant and sessions/s with the key tier on and off; reopen of an evicted argon2i-mod tenant',
    systems: ['tenant-pool'],
    onlyWhenNamed: true,
    options: () => options(),
    run: async ({ quick }) => keyTier(quick),
  },
  {
    name: 'day-two',
    // It measures both stores itself.
    onPostgres: false,
    describe: 'what an operator waits for: upgrading 10,000 tenants of format 1 (and resumed after a SIGKILL in its middle), verify throughput, pool.health() latency; SQLite, and PostgreSQL with a server',
    systems: ['tenant-pool'],
    onlyWhenNamed: true,
    options: () => options(),
    run: async ({ quick }) => dayTwo(quick),
  },
  {
    name: 'warm-sessions',
    describe: 'acquire+release of an open tenant through the pool (main-thread cost): queue empty, 10,000 waiters queued, and observed (metrics + a subscriber on every channel); then 64 lanes at once, each acquiring one of 64 open tenants, reading a record and releasing',
    systems: ['tenant-pool'],
    options: () => options({ walletIdleTtlMs: 600_000 }),
    async run({ system, pool, quick }) {
      if (pool === undefined) throw new Error('warm-sessions runs on tenant-pool only');
      const rounds = quick ? 5_000 : 50_000;
      const [warm, limited] = await system.createTenants(2, 'raw', 'ws-');
      await pool.tenants.update(limited!, { maxSessions: 1 });
      await (await system.acquire(warm!)).release();
      const usPer = async (): Promise<number> => {
        const times = await sample(rounds, async () => (await pool.acquire(warm!)).release());
        return round((times.reduce((a, b) => a + b, 0) / times.length) * 1000);
      };
      const emptyUs = await usPer();
      const holder = await pool.acquire(limited!);
      const parked = Array.from({ length: 10_000 }, async () => pool.acquire(limited!, { timeoutMs: 600_000 }).then(async (s) => s.release(), () => undefined));
      const queued = pool.stats().queued;
      const deepUs = await usPer();
      await holder.release();
      await Promise.all(parked);
      // What observing costs: every event built, delivered to a channel subscriber and fed to the histograms.
      const metrics = collectMetrics(pool, new Registry());
      const noop = (): void => {};
      for (const name of CHANNEL_NAMES) subscribe(name, noop);
      const observedUs = await usPer();
      for (const name of CHANNEL_NAMES) unsubscribe(name, noop);
      metrics.close();
      // Many sessions coming and going at once: the live-session bookkeeping under churn.
      const tenants = await system.createTenants(64, 'raw', 'wsc-');
      await Promise.all(tenants.map(async (id) => (await system.acquire(id)).release()));
      const lanes = async (perLane: number, latencies?: number[]): Promise<void> => {
        await Promise.all(
          tenants.map(async (_, l) => {
            for (let i = 0; i < perLane; i++) {
              const t = performance.now();
              const s = await system.acquire(tenants[(l * 7 + i) % tenants.length]!);
              await s.get('wsc', 'none');
              await s.release();
              latencies?.push(performance.now() - t);
            }
          }),
        );
      };
      await lanes(quick ? 20 : 200);
      const concurrent: number[] = [];
      const started = performance.now();
      await lanes(quick ? 200 : 2_000, concurrent);
      const concurrentSeconds = (performance.now() - started) / 1000;
      return {
        usPerAcquireReleaseQueueEmpty: emptyUs,
        usPerAcquireReleaseQueue10k: deepUs,
        usPerAcquireReleaseObserved: observedUs,
        queued,
        sessionsPerSecQueueEmpty: Math.round(1e6 / emptyUs),
        sessionsPerSecConcurrent64: Math.round(concurrent.length / concurrentSeconds),
        p99MsConcurrent64: round(percentile(concurrent, 99), 3),
      };
    },
  },
  {
    name: 'wallet-memory',
    describe: 'process memory per open wallet (RSS, all threads) against main-thread heap per session',
    systems: ['tenant-pool'],
    options: () => options({ walletIdleTtlMs: 600_000 }),
    async run({ system, quick }) {
      const count = quick ? 50 : 200;
      const ids = await system.createTenants(count, 'raw', 'mem-');
      const before = process.memoryUsage.rss();
      for (const id of ids) await (await system.acquire(id)).release();
      const walletBytes = (process.memoryUsage.rss() - before) / count;
      return { wallets: count, rssBytesPerWallet: Math.round(walletBytes) };
    },
  },
];

/** find-100k's three finds, p50 µs: a rare tag, a common and a rare one, a tag of 100 records. */
async function findFigures(count: number, quick: boolean, find: (tags: Record<string, string>) => Promise<unknown>): Promise<Figures> {
  const p50 = async (tags: Record<string, string>): Promise<number> => round(percentile(await sample(quick ? 100 : 1000, async () => find(tags)), 50) * 1000);
  return {
    records: count,
    rareTagP50Us: await p50({ serial: `s${Math.floor(count / 2)}` }),
    commonAndRareP50Us: await p50({ type: 'degree', serial: 's5' }),
    bucketTagP50Us: await p50({ bucket: '7' }),
  };
}

/** find-100k on the PostgreSQL store: the same records and finds, the wallet encrypted record by record. */
async function findOnPostgres(count: number, quick: boolean): Promise<Figures> {
  const schema = `tp_bench_find_${process.pid}`;
  const store = await PostgresWalletStore.connect(benchPostgresUrl!, schema, 2, { createTables: true });
  const key = randomBytes(32);
  const wallet = await store.create('find.bench', 'find', key);
  try {
    for (let i = 0; i < count; i += 2000) {
      await store.transaction('loading the bench wallet', async (client) => {
        for (let j = i; j < Math.min(count, i + 2000); j++) await wallet.saveOn(client, 'cred', `id${j}`, JSON.stringify({ i: j }), { bucket: String(j % 1000), serial: `s${j}`, type: 'degree' });
      });
    }
    await store.query('analyzing', `ANALYZE ${schema}.items`, []);
    await store.query('analyzing', `ANALYZE ${schema}.item_tags`, []);
    return await findFigures(count, quick, async (tags) => wallet.find('cred', tags, -1));
  } finally {
    wallet.close();
    await store.query('dropping the bench schema', `DROP SCHEMA ${schema} CASCADE`, []);
    await store.close();
  }
}

/** Heap in use on this thread after a full collection, MB (the bench's children run with --expose-gc). */
function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/**
 * many-tenants: a pool opened on an empty store, then on one holding `count` tenants (registry rows
 * written in bulk, as a restore would; 20 of them real tenants with wallets, made through the pool).
 */
async function manyTenants(count: number, store: 'sqlite' | 'postgres'): Promise<Figures> {
  const dataDir = join(tmpdir(), `tp-bench-many-${process.pid}`);
  const schema = `tp_bench_many_${process.pid}`;
  const rootKey = randomBytes(32).toString('hex');
  const poolOptions = { dataDir, rootKey, workers: 1, ...(store === 'postgres' ? { postgres: { connectionString: benchPostgresUrl!, schema } } : {}) };
  try {
    let started = performance.now();
    const empty = await TenantPool.open(poolOptions);
    const emptyOpenMs = performance.now() - started;
    const real: string[] = [];
    for (let i = 0; i < 20; i++) real.push((await empty.tenants.create({ tenantId: `real-${i}` })).tenantId);
    await empty.closeIdleWallets();
    const emptyHeap = heapMb();
    await empty.close();
    // The bulk rows: what tenants.create writes, without wallets (they are never opened here).
    const records = Array.from({ length: count }, (_, i) => ({
      tenantId: `bulk-${String(i).padStart(7, '0')}`,
      label: `tenant ${i}`,
      kdf: 'raw' as const,
      salt: randomBytes(16),
      secret: randomBytes(32),
      verifier: randomBytes(32),
      walletFile: `bulk-${i}.unused`,
      metadata: { plan: i % 3 === 0 ? 'gold' : 'free' },
      createdAt: new Date().toISOString(),
    }));
    if (store === 'postgres') {
      const registry = await PostgresRegistry.open({ connectionString: benchPostgresUrl!, schema, rootKey, cacheSize: 10, maxConnections: 1, connectionsPerWorker: 1 });
      await registry.insertMany(records);
      await registry.close();
    } else {
      const lock = DataDirLock.acquire(dataDir);
      const registry = await TenantRegistry.open(dataDir, rootKey);
      registry.insertMany(records);
      registry.close();
      lock.release();
    }
    records.length = 0;
    heapMb();
    started = performance.now();
    const pool = await TenantPool.open(poolOptions);
    const openMs = performance.now() - started;
    try {
      const heap = heapMb();
      const reads: number[] = [];
      for (let i = 0; i < 200; i++) {
        const t = performance.now();
        await pool.tenants.get(`bulk-${String((i * 7919) % count).padStart(7, '0')}`);
        reads.push(performance.now() - t);
      }
      const pageStarted = performance.now();
      const page = await pool.tenants.page({ limit: 100, metadata: { plan: 'gold' } });
      const pageMs = performance.now() - pageStarted;
      await pool.withSession(real[0]!, async (s) => s.records.save('c', 'r', 1));
      return {
        tenants: count,
        emptyOpenMs: round(emptyOpenMs),
        openMs: round(openMs),
        heapOverEmptyMb: round(heap - emptyHeap, 1),
        getUncachedP50Us: round(percentile(reads, 50) * 1000),
        pageOf100Ms: round(pageMs, 2),
        pageSize: page.tenants.length,
      };
    } finally {
      await pool.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    if (store === 'postgres') await dropBenchSchema(schema);
  }
}

/** Runs a bench child (bench/cluster-instance.ts); resolves with its process once it printed `expect`. */
function clusterChild(args: string[], expect: string): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn(process.execPath, [...process.execArgv, join(import.meta.dirname, 'cluster-instance.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      lines.push(...d.toString().split('\n').filter(Boolean));
      if (lines.some((l) => l.startsWith(expect))) resolve({ child, lines });
    });
    child.on('exit', (code) => {
      if (!lines.some((l) => l.startsWith(expect))) reject(new Error(`cluster child exited ${String(code)} before ${expect}`));
    });
  });
}

async function clusterFigures(quick: boolean): Promise<Figures> {
  if (benchPostgresUrl === undefined) throw new Error('set TENANT_POOL_BENCH_POSTGRES_URL to a PostgreSQL server');
  const ttl = 2000;
  const schema = `tp_bench_cluster_${process.pid}`;
  const rootKey = randomBytes(32).toString('hex');
  const open = async (cluster: boolean, instanceId: string): Promise<TenantPool> =>
    TenantPool.open({ dataDir: join(tmpdir(), `tp-bench-cl-${instanceId}`), rootKey, workers: 2, walletIdleTtlMs: 600_000, postgres: { connectionString: benchPostgresUrl!, schema }, ...(cluster ? { cluster: { instanceId, leaseTtlMs: ttl } } : {}) });
  try {
    // Lease overhead: the same cold acquires and warm writes, without and with cluster mode.
    const overhead = async (cluster: boolean): Promise<{ coldMs: number; writeUs: number }> => {
      const pool = await open(cluster, cluster ? 'solo' : 'plain');
      try {
        const ids: string[] = [];
        for (let i = 0; i < (quick ? 20 : 100); i++) ids.push((await pool.tenants.create({ tenantId: `${cluster ? 'c' : 'p'}${i}` })).tenantId);
        // Resolves once the leases those closes give up are gone.
        await pool.closeIdleWallets();
        const cold: number[] = [];
        for (const id of ids) {
          const t = performance.now();
          const s = await pool.acquire(id);
          cold.push(performance.now() - t);
          await s.release();
        }
        const writes = await pool.withSession(ids[0]!, async (s) => sample(quick ? 200 : 1000, async () => s.records.save('c', 'r', { n: 1 })));
        return { coldMs: percentile(cold, 50), writeUs: percentile(writes, 50) * 1000 };
      } finally {
        await pool.close();
      }
    };
    const plain = await overhead(false);
    const leased = await overhead(true);
    // Takeover after SIGKILL of the owner.
    const setup = await open(true, 'setup');
    await setup.tenants.create({ tenantId: 't' });
    await setup.close();
    const takeovers: number[] = [];
    for (let trial = 0; trial < (quick ? 2 : 5); trial++) {
      const { child } = await clusterChild([schema, rootKey, `holder${trial}`, String(ttl), 'hold'], 'held');
      child.kill('SIGKILL');
      const killedAt = performance.now();
      const heir = await open(true, `heir${trial}`);
      try {
        for (;;) {
          try {
            await heir.withSession('t', async (s) => s.records.get('c', 'r'));
            break;
          } catch (error) {
            if ((error as { code?: string }).code !== 'ERR_TENANT_ELSEWHERE') throw error;
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        }
        takeovers.push(performance.now() - killedAt);
      } finally {
        await heir.close();
      }
    }
    // Sessions/s of 1 instance, then 3 at once (each its own 16 tenants), on this machine's 2 cores:
    // warm (wallets stay open and leased) and cold (each session takes the lease and opens the wallet);
    // and cold on one instance without cluster mode, what the leases cost there.
    const seconds = quick ? 3 : 8;
    const served = async (count: number, temperature: 'warm' | 'cold' | 'cold-solo'): Promise<number> => {
      const prefix = `${temperature}${count}i`;
      const setupPool = await open(true, `mk-${prefix}`);
      for (let i = 0; i < count; i++) for (let j = 0; j < 16; j++) await setupPool.tenants.create({ tenantId: `${prefix}${i}-${j}` });
      await setupPool.close();
      const runs = await Promise.all(Array.from({ length: count }, async (_, i) => clusterChild([schema, rootKey, `${prefix}${i}`, String(ttl), 'load', String(seconds), temperature], 'served')));
      return runs.reduce((sum, r) => sum + Number(r.lines.find((l) => l.startsWith('served'))!.slice(7)), 0) / seconds;
    };
    const one = await served(1, 'warm');
    const three = await served(3, 'warm');
    const oneCold = await served(1, 'cold');
    const threeCold = await served(3, 'cold');
    const oneColdSolo = await served(1, 'cold-solo');
    return {
      leaseTtlMs: ttl,
      takeoverP50Ms: round(percentile(takeovers, 50)),
      takeoverMaxMs: round(Math.max(...takeovers)),
      coldAcquireP50Ms: round(plain.coldMs, 2),
      coldAcquireLeasedP50Ms: round(leased.coldMs, 2),
      leaseOverheadColdMs: round(leased.coldMs - plain.coldMs, 2),
      writeP50Us: round(plain.writeUs),
      writeLeasedP50Us: round(leased.writeUs),
      leaseOverheadWriteMs: round((leased.writeUs - plain.writeUs) / 1000, 3),
      sessionsPerSec1: round(one),
      sessionsPerSec3: round(three),
      threeVsOne: round(three / one, 2),
      coldSessionsPerSec1: round(oneCold),
      coldSessionsPerSec3: round(threeCold),
      coldThreeVsOne: round(threeCold / oneCold, 2),
      coldSessionsPerSecSolo: round(oneColdSolo),
    };
  } finally {
    await dropBenchSchema(schema).catch(() => {});
  }
}
