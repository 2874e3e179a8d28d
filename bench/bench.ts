/**
 * tenant-pool benchmark.
 *
 *   npm run bench                       all scenarios
 *   npm run bench -- --scenario NAME    one scenario (repeatable)
 *   npm run bench -- --quick            small sizes
 *   npm run bench -- --json FILE        also write the results to FILE
 *
 * Always writes bench/results/latest.json. Every figure of a run is measured in that run, so ratios
 * between them hold even on a shared machine whose absolute speed drifts.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { TenantPool } from '../src/pool.js';
import type { KdfMethod } from '../src/protocol.js';
import { Scheduler } from '../src/scheduler.js';
import { Wallet } from '../workers/wallet.js';
import { echoWorker, loopDelayMonitor, median, percentile, table } from './measure.js';

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const quick = args.quick === true;

type Figures = Record<string, number | string>;
interface Scenario {
  name: string;
  describe: string;
  run(): Promise<Record<string, Figures>>;
}

async function withPool<T>(options: Parameters<typeof TenantPool.open>[0], fn: (pool: TenantPool) => Promise<T>): Promise<T> {
  const dataDir = join(tmpdir(), `tp-bench-${process.pid}-${randomBytes(4).toString('hex')}`);
  const pool = await TenantPool.open({ dataDir, rootKey: randomBytes(32).toString('hex'), ...options });
  try {
    return await fn(pool);
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Samples the process RSS every 5 ms until stopped; returns the peak in MiB. */
function rssSampler(): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
  return {
    stop() {
      clearInterval(timer);
      return round(Math.max(peak, process.memoryUsage.rss()) / 2 ** 20);
    },
  };
}

const W = { wallet: 4, session: 1 };

const scenarios: Scenario[] = [
  {
    name: 'scheduler',
    describe: 'The pure scheduler: acquire+release of a warm tenant, and enqueue+cancel behind a full pool, with the queue empty and 10,000 deep',
    async run() {
      const ops = quick ? 50_000 : 500_000;
      const measure = (depth: number, kind: 'acquire+release' | 'enqueue+cancel'): number => {
        const s = new Scheduler({ capacity: 1_000_000, maxQueue: 1_000_000, tenantLimit: 'queue', walletIdleTtlMs: Infinity });
        if (kind === 'acquire+release') {
          // Waiters parked behind their own tenant's limit are in the queue but block no one.
          const blocker = s.acquire({ tenantId: 'limited', weights: W, maxSessions: 1, deadline: Infinity });
          void blocker;
          for (let i = 0; i < depth; i++) s.acquire({ tenantId: 'limited', weights: W, maxSessions: 1, deadline: 1e12 + i });
        } else {
          const full = new Scheduler({ capacity: 5, maxQueue: 1_000_000, tenantLimit: 'queue', walletIdleTtlMs: Infinity });
          full.acquire({ tenantId: 'holder', weights: W, maxSessions: Infinity, deadline: Infinity });
          for (let i = 0; i < depth; i++) full.acquire({ tenantId: `t${i % 100}`, weights: W, maxSessions: Infinity, deadline: 1e12 + i });
          const started = process.hrtime.bigint();
          for (let i = 0; i < ops; i++) {
            // Deadlines come in arrival order when callers use the same timeout: the newest is the latest.
            const r = full.acquire({ tenantId: 'late', weights: W, maxSessions: Infinity, deadline: 2e12 });
            if (r.kind === 'queued') full.cancel(r.waiter);
            full.drain(0);
          }
          return Number(process.hrtime.bigint() - started) / ops;
        }
        const started = process.hrtime.bigint();
        for (let i = 0; i < ops; i++) {
          const r = s.acquire({ tenantId: 'warm', weights: W, maxSessions: Infinity, deadline: Infinity });
          if (r.kind !== 'granted') throw new Error('expected a grant');
          s.release(r.grant, 0);
          s.drain(0);
        }
        return Number(process.hrtime.bigint() - started) / ops;
      };
      const out: Record<string, Figures> = {};
      for (const kind of ['acquire+release', 'enqueue+cancel'] as const) {
        measure(0, kind); // warm-up
        const nsPerOpDepth0 = round(measure(0, kind));
        const nsPerOpDepth10k = round(measure(10_000, kind));
        out[kind] = { nsPerOpDepth0, nsPerOpDepth10k, ratio: round(nsPerOpDepth10k / nsPerOpDepth0) };
      }
      return out;
    },
  },
  {
    name: 'warm-sessions',
    describe: 'acquire+release of a tenant whose wallet is open, through the pool (main-thread cost), queue empty and 10,000 waiters queued',
    async run() {
      const rounds = quick ? 5_000 : 50_000;
      return withPool({ workers: 2, capacity: 100_000, maxQueue: 100_000, walletIdleTtlMs: Infinity }, async (pool) => {
        const warm = (await pool.tenants.create({ tenantId: 'warm' })).tenantId;
        const limited = (await pool.tenants.create({ tenantId: 'limited', maxSessions: 1 })).tenantId;
        await pool.withSession(warm, () => undefined);
        const measure = async (): Promise<Figures> => {
          const times = await sample(rounds, async () => (await pool.acquire(warm)).release());
          const total = times.reduce((a, b) => a + b, 0);
          return { usPerAcquireRelease: round((total / times.length) * 1000), p99Us: round(percentile(times, 99) * 1000), sessionsPerSec: Math.round(times.length / (total / 1000)) };
        };
        const out: Record<string, Figures> = { 'queue empty': await measure() };
        const holder = await pool.acquire(limited);
        const parked = Array.from({ length: 10_000 }, async () => pool.acquire(limited, { timeoutMs: 600_000 }).then(async (s) => s.release(), () => undefined));
        out['10,000 waiters queued'] = { ...(await measure()), queued: pool.stats().queued };
        const concurrent = performance.now();
        let served = 0;
        await Promise.all(
          Array.from({ length: 64 }, async () => {
            for (let i = 0; i < rounds / 64; i++) {
              await (await pool.acquire(warm)).release();
              served++;
            }
          }),
        );
        out['64 in flight'] = { sessionsPerSec: Math.round(served / ((performance.now() - concurrent) / 1000)) };
        await holder.release();
        await Promise.all(parked);
        return out;
      });
    },
  },
  {
    name: 'single-tenant-10k',
    describe: 'One tenant, 10,000 concurrent sessions, each doing one records.get',
    async run() {
      return withPool({ workers: 2, capacity: 10_004, walletIdleTtlMs: 60_000, acquireTimeoutMs: 60_000 }, async (pool) => {
        const { tenantId } = await pool.tenants.create();
        await pool.withSession(tenantId, async (s) => s.records.save('c', 'r', { hello: 'world' }));
        globalThis.gc?.();
        const heapBefore = process.memoryUsage().heapUsed;
        const rss = rssSampler();
        const started = performance.now();
        const sessions = await Promise.all(Array.from({ length: 10_000 }, async () => pool.acquire(tenantId)));
        const acquiredMs = performance.now() - started;
        const heapHeld = process.memoryUsage().heapUsed - heapBefore;
        await Promise.all(sessions.map(async (s) => s.records.get('c', 'r')));
        await Promise.all(sessions.map(async (s) => s.release()));
        const totalMs = performance.now() - started;
        return {
          '10,000 sessions': { acquireAllMs: round(acquiredMs), totalMs: round(totalMs), peakRssMb: rss.stop(), bytesPerSession: Math.round(heapHeld / 10_000), walletOpens: pool.stats().totals.walletOpens },
        };
      });
    },
  },
  {
    name: 'kdf-open',
    describe: 'Cold wallet open (acquire of a closed wallet) per KDF method, median over several tenants',
    async run() {
      const out: Record<string, Figures> = {};
      const perMethod = quick ? 3 : 7;
      await withPool({ walletIdleTtlMs: 0, acquireTimeoutMs: 60_000 }, async (pool) => {
        for (const kdf of ['raw', 'argon2i-int', 'argon2i-mod', 'argon2id'] as KdfMethod[]) {
          const times: number[] = [];
          for (let i = 0; i < perMethod; i++) {
            const { tenantId } = await pool.tenants.create({ kdf });
            const started = performance.now();
            const session = await pool.acquire(tenantId);
            times.push(performance.now() - started);
            await session.release();
          }
          out[kdf] = { openMsMedian: round(median(times)), openMsMin: round(Math.min(...times)), openMsMax: round(Math.max(...times)), samples: times.length };
        }
      });
      return out;
    },
  },
  {
    name: 'call-latency',
    describe: 'records.get and keys.sign through a warm session, one at a time, against a bare postMessage echo to a worker',
    async run() {
      const rounds = quick ? 2_000 : 20_000;
      const echo = await echoWorker();
      const out: Record<string, Figures> = {};
      try {
        const echoTimes = await sample(rounds, () => echo.roundTrip(1));
        out['bare echo'] = latencyFigures(echoTimes);
        await withPool({ workers: 2 }, async (pool) => {
          const { tenantId } = await pool.tenants.create();
          await pool.withSession(tenantId, async (s) => {
            await s.records.save('bench', 'r', { hello: 'world', n: 42 }, { kind: 'bench' });
            const { kid } = await s.keys.create();
            const data = randomBytes(64);
            out['records.get'] = latencyFigures(await sample(rounds, () => s.records.get('bench', 'r')));
            out['keys.sign'] = latencyFigures(await sample(rounds, () => s.keys.sign(kid, data)));
          });
        });
      } finally {
        await echo.close();
      }
      for (const name of ['records.get', 'keys.sign']) {
        const f = out[name]!;
        f['p50VsEcho'] = round(Number(f['p50Us']) / Number(out['bare echo']['p50Us']));
      }
      return out;
    },
  },
  {
    name: 'find-100k',
    describe: 'records.find on a wallet of 100,000 records (3 tags each), SQL cost on the wallet itself',
    async run() {
      const count = quick ? 20_000 : 100_000;
      const dir = join(tmpdir(), `tp-bench-find-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      const key = randomBytes(32);
      const path = join(dir, 'w.sqlite');
      Wallet.create(path, key);
      const wallet = Wallet.open(path, key);
      try {
        const started = performance.now();
        wallet.batch(() => {
          for (let i = 0; i < count; i++) wallet.save('cred', `id${i}`, JSON.stringify({ i, name: `record ${i}` }), { bucket: String(i % 1000), serial: `s${i}`, type: 'degree' });
        });
        const out: Record<string, Figures> = { [`insert ${count} (one transaction)`]: { totalMs: round(performance.now() - started) } };
        const cases: Record<string, Record<string, string>> = {
          'rare tag (1 match)': { serial: `s${Math.floor(count / 2)}` },
          [`bucket tag (${count / 1000} matches)`]: { bucket: '7' },
          'common + rare tag (1 match)': { type: 'degree', serial: 's5' },
        };
        for (const [name, tags] of Object.entries(cases)) {
          const times = await sample(quick ? 200 : 1000, async () => wallet.find('cred', tags, -1));
          out[name] = { p50Us: round(percentile(times, 50) * 1000), p99Us: round(percentile(times, 99) * 1000), matches: wallet.find('cred', tags, -1).length };
        }
        return out;
      } finally {
        wallet.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: 'loop-delay',
    describe: 'Main event-loop delay while four argon2i-mod wallets open at once (derivation runs on the workers)',
    async run() {
      return withPool({ walletIdleTtlMs: 0, acquireTimeoutMs: 60_000 }, async (pool) => {
        const tenants = [];
        for (let i = 0; i < 4; i++) tenants.push((await pool.tenants.create({ kdf: 'argon2i-mod' })).tenantId);
        const monitor = loopDelayMonitor();
        const started = performance.now();
        const sessions = await Promise.all(tenants.map((id) => pool.acquire(id)));
        const totalMs = performance.now() - started;
        const delay = monitor.stop();
        await Promise.all(sessions.map((s) => s.release()));
        return { 'four argon2i-mod opens': { totalMs: round(totalMs), loopDelayMaxMs: round(delay.maxMs), loopDelayP99Ms: round(delay.p99Ms), ticks: delay.samples } };
      });
    },
  },
];

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

async function sample(rounds: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(1000, rounds / 10); i++) await fn(); // warm-up: JIT and caches
  const times = new Array<number>(rounds);
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await fn();
    times[i] = performance.now() - t;
  }
  return times;
}

function latencyFigures(times: number[]): Figures {
  return { p50Us: round(percentile(times, 50) * 1000), p99Us: round(percentile(times, 99) * 1000), opsPerSec: Math.round(times.length / (times.reduce((a, b) => a + b, 0) / 1000)) };
}

const chosen = args.scenario === undefined ? scenarios : scenarios.filter((s) => args.scenario!.includes(s.name));
if (chosen.length === 0) {
  console.error(`No such scenario. Known: ${scenarios.map((s) => s.name).join(', ')}`);
  process.exit(2);
}
const results: Record<string, Record<string, Figures>> = {};
console.log(`tenant-pool bench — ${availableParallelism()} cores, Node ${process.version}${quick ? ', quick' : ''}\n`);
for (const scenario of chosen) {
  console.log(`## ${scenario.name}: ${scenario.describe}`);
  results[scenario.name] = await scenario.run();
  console.log(table(results[scenario.name]!));
}
const report = { date: new Date().toISOString(), node: process.version, cores: availableParallelism(), quick, scenarios: results };
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(join(import.meta.dirname, 'results', 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
