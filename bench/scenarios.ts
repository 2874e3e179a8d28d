/**
 * The bench scenarios. Each runs against one system (tenant-pool or a baseline) behind the same
 * interface, in a process of its own, and returns its figures.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { hashRaw } from '@node-rs/argon2';
import { ARGON2_PARAMS } from '../common/kdf.js';
import { Wallet } from '../workers/store/sqlite-wallet.js';
import { availableParallelism } from 'node:os';
import type { TenantPool } from '../src/pool.js';
import { Scheduler } from '../src/engine/scheduler.js';
import { hopOpsPerSec } from './hop-bounds.js';
import { cpuPerOp, loopDelayMonitor, percentile, threadCpuSeconds, rssSampler, round, zipfSampler } from './measure.js';
import type { System, SystemName, SystemOptions } from './systems/types.js';

export type Figures = Record<string, number>;

export interface ScenarioContext {
  quick: boolean;
  system: System;
  /** The pool itself, when the system is tenant-pool (for figures only it has). */
  pool?: TenantPool;
  /** The store the pool runs on (tenant-pool on SQLite files, or on PostgreSQL). */
  store: 'sqlite' | 'postgres';
}

export interface Scenario {
  name: string;
  describe: string;
  /** Systems it runs on; the pure scheduler has no baseline. */
  systems: readonly SystemName[];
  /** Too long for a default run: only when named with --scenario. */
  onlyWhenNamed?: boolean;
  /** false: no PostgreSQL row (the scenario involves no store, or measures both stores itself). */
  onPostgres?: boolean;
  options(quick: boolean): SystemOptions;
  run(ctx: ScenarioContext): Promise<Figures>;
}

const cores = availableParallelism();
const ALL: readonly SystemName[] = ['tenant-pool', 'credo-model', 'no-affinity'];
const base = (overrides: Partial<SystemOptions> = {}): SystemOptions => ({
  capacity: 1000,
  sessionLimit: 1000,
  timeoutMs: 60_000,
  walletIdleTtlMs: 30_000,
  workers: cores,
  ...overrides,
});

const sleep = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const scenarios: Scenario[] = [
  {
    name: 'seed-e2e',
    describe: '20 tenants × 5 concurrent sessions, each saving and reading a record',
    systems: ALL,
    options: () => base({ sessionLimit: 100 }),
    async run({ system }) {
      const ids = await system.createTenants(20, 'raw', 'seed-');
      const started = performance.now();
      await Promise.all(
        ids.flatMap((id) =>
          Array.from({ length: 5 }, async (_, i) => {
            const s = await system.acquire(id);
            await s.save('seed', `r${i}`, { i, text: 'seed' });
            await s.get('seed', `r${i}`);
            await s.release();
          }),
        ),
      );
      return { totalMs: round(performance.now() - started), walletOpens: system.walletOpens() };
    },
  },
  {
    name: 'cold-storm',
    describe: `8 × cores (${8 * cores}) argon2i-mod tenants opened at once`,
    systems: ALL,
    options: (quick) => base({ sessionLimit: 1000, walletIdleTtlMs: 60_000, timeoutMs: quick ? 120_000 : 300_000, keyTier: false }),
    async run({ system, quick }) {
      const count = quick ? 2 * cores : 8 * cores;
      const ids = await system.createTenants(count, 'argon2i-mod', 'cold-');
      // The raw limit again, in this process, right before the storm: Argon2 throughput on a shared
      // machine drifts by 20% and more between the start of the run and this scenario.
      const rawBestPerSec = await rawArgon2BestPerSec(quick);
      const monitor = loopDelayMonitor();
      const started = performance.now();
      // A first call makes every system open the wallet (no-affinity opens lazily, on the worker a call lands on).
      const sessions = await Promise.all(
        ids.map(async (id) => {
          const s = await system.acquire(id);
          await s.get('cold', 'none');
          return s;
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const delay = await monitor.stop();
      await Promise.all(sessions.map(async (s) => s.release()));
      return { opens: count, totalMs: round(seconds * 1000), opensPerSec: round(count / seconds), rawBestPerSec, mainLoopP99Ms: round(delay.p99Ms), mainLoopMaxMs: round(delay.maxMs) };
    },
  },
  {
    name: 'warm-ops',
    describe: 'records.get and keys.sign on sessions of already-open tenants, 64 in flight',
    systems: ALL,
    options: () => base({ walletIdleTtlMs: 600_000 }),
    async run({ system, quick }) {
      const ids = await system.createTenants(8, 'raw', 'warm-');
      const sessions = await Promise.all(ids.flatMap((id) => Array.from({ length: 8 }, async () => system.acquire(id))));
      const kids = await Promise.all(ids.map(async (_, t) => sessions[t * 8]!.createKey()));
      await Promise.all(ids.map(async (_, t) => sessions[t * 8]!.save('warm', 'r', { hello: 'world', n: t })));
      const data = randomBytes(64);
      const perLane = quick ? 200 : 2_000;
      const latencies: number[] = [];
      const lane = async (l: number): Promise<void> => {
        const s = sessions[l]!;
        const kid = kids[Math.floor(l / 8)]!;
        for (let i = 0; i < perLane; i++) {
          const t = performance.now();
          if (i % 2 === 0) await s.get('warm', 'r');
          else await s.sign(kid, data);
          latencies.push(performance.now() - t);
        }
      };
      await Promise.all(sessions.slice(0, 8).map(async (_, l) => lane(l))); // warm-up: JIT, caches, keys
      latencies.length = 0;
      const cpuBefore = threadCpuSeconds();
      const started = performance.now();
      await Promise.all(sessions.map(async (_, l) => lane(l)));
      const seconds = (performance.now() - started) / 1000;
      const cpu = cpuPerOp(cpuBefore, threadCpuSeconds(), latencies.length);
      await Promise.all(sessions.map(async (s) => s.release()));
      return {
        ops: latencies.length,
        opsPerSec: Math.round(latencies.length / seconds),
        p50Ms: round(percentile(latencies, 50), 3),
        p99Ms: round(percentile(latencies, 99), 3),
        machineBoundOpsPerSec: Math.round(cores * bareOpsPerSec(quick ? 2_000 : 20_000)),
        // Where the CPU goes (Linux): per call, on the main thread and on every other thread of the process.
        ...(cpu === null ? {} : { mainCpuUsPerOp: cpu.mainUs, otherCpuUsPerOp: cpu.othersUs }),
        // The same mix through a thread hop alone (no pool): what a MessagePort design, and a shared-memory one, allow here.
        ...(system.name === 'tenant-pool' ? await hopFigures(cores, quick ? 100 : 1_000) : {}),
      };
    },
  },
  {
    name: 'zipf-churn',
    describe: 'raw tenants with Zipf(1.0) popularity, sessions arriving open-loop (Poisson), one records.get each; tenant-pool sized to cache about every wallet',
    systems: ALL,
    // Capacity 8,000: room for almost every tenant's wallet (2,000 × 4), as --recommend sizes it on this machine;
    // the tail still churns, so the LRU comparison has misses beyond the first opens.
    options: () => base({ capacity: 8000, sessionLimit: 1000, timeoutMs: 10_000, walletIdleTtlMs: 600_000 }),
    async run({ system, quick, pool }) {
      const tenantCount = quick ? 300 : 2000;
      const rate = quick ? 300 : 800;
      // Long enough for the cache to matter more than the first open of each tenant (the same for any cache).
      const durationMs = quick ? 1_500 : 45_000;
      const ids = await system.createTenants(tenantCount, 'raw', 'zipf-');
      const pick = zipfSampler(tenantCount, 1.0, 42);
      const trace: number[] = [];
      const acquireMs: number[] = [];
      let failed = 0;
      let peakWallets = 0;
      const opensBefore = system.walletOpens();
      const inflight: Array<Promise<void>> = [];
      const started = performance.now();
      let next = started;
      let seed = 7;
      const random = (): number => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
      while (performance.now() - started < durationMs) {
        const now = performance.now();
        while (next <= now) {
          const tenant = pick();
          trace.push(tenant);
          const t0 = performance.now();
          inflight.push(
            system.acquire(ids[tenant]!).then(
              async (s) => {
                acquireMs.push(performance.now() - t0);
                await s.get('zipf', 'none');
                await s.release();
              },
              () => void failed++,
            ),
          );
          next += -Math.log(1 - random()) * (1000 / rate);
        }
        if (pool !== undefined) {
          const w = pool.stats().wallets;
          peakWallets = Math.max(peakWallets, w.open + w.idle + w.opening);
        }
        await sleep(1);
      }
      await Promise.all(inflight);
      const seconds = (performance.now() - started) / 1000;
      const figures: Figures = {
        sessions: trace.length,
        distinctTenants: new Set(trace).size,
        failed,
        walletOpens: system.walletOpens() - opensBefore,
        sessionsPerSec: Math.round((trace.length - failed) / seconds),
        p50Ms: round(percentile(acquireMs, 50), 3),
        p99Ms: round(percentile(acquireMs, 99), 3),
      };
      if (peakWallets > 0) {
        figures['peakWallets'] = peakWallets;
        figures['lruWalletOpens'] = lruMisses(trace, peakWallets);
      }
      return figures;
    },
  },
  {
    name: 'overload',
    describe: 'offered load 20× what capacity allows (sessions hold 50 ms), 200 ms acquire timeouts',
    systems: ALL,
    // 10 wallets (40) + 20 sessions (20): tenant-pool admits 20 sessions at once, like the baselines' limit of 20.
    options: () => base({ capacity: 60, sessionLimit: 20, timeoutMs: 200, walletIdleTtlMs: 600_000 }),
    async run({ system, quick }) {
      const holdMs = 50;
      const concurrent = 20;
      const allowedPerSec = concurrent * (1000 / holdMs);
      const rate = 20 * allowedPerSec;
      const durationMs = quick ? 1_500 : 10_000;
      const ids = await system.createTenants(10, 'raw', 'over-');
      for (const id of ids) await (await system.acquire(id)).release();
      let offered = 0;
      let completed = 0;
      let settledInTime = 0;
      let settled = 0;
      const inflight: Array<Promise<void>> = [];
      const started = performance.now();
      let next = started;
      while (performance.now() - started < durationMs) {
        const now = performance.now();
        while (next <= now) {
          offered++;
          const t0 = performance.now();
          const settle = (): void => {
            settled++;
            if (performance.now() - t0 <= 200 + 50) settledInTime++;
          };
          const attempt = system.acquire(ids[offered % ids.length]!).then(
            async (s) => {
              settle();
              await s.get('over', 'none');
              await sleep(holdMs);
              await s.release();
              // Goodput counts the sessions completed within the window.
              if (performance.now() - started <= durationMs) completed++;
            },
            () => settle(),
          );
          inflight.push(attempt);
          next += 1000 / rate;
        }
        await sleep(1);
      }
      // A watchdog: an acquire still unsettled 5 s after the last deadline is counted as hung.
      let watchdog: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(inflight), new Promise((resolve) => (watchdog = setTimeout(resolve, 5_200)))]);
      clearTimeout(watchdog);
      const seconds = durationMs / 1000;
      return {
        offered,
        offeredPerSec: Math.round(offered / seconds),
        completed,
        settledByDeadlinePct: round((100 * settledInTime) / offered),
        hung: offered - settled,
        goodputRatio: round(completed / seconds / allowedPerSec),
        leakedWeight: system.heldBySessions(),
      };
    },
  },
  {
    name: 'single-tenant-10k',
    describe: 'one tenant, 10,000 concurrent sessions, each doing one records.get',
    systems: ALL,
    options: () => base({ capacity: 10_004, sessionLimit: 10_000, walletIdleTtlMs: 600_000 }),
    async run({ system }) {
      const [id] = await system.createTenants(1, 'raw', 'single-');
      await (await system.acquire(id!)).release();
      globalThis.gc?.();
      const heapBefore = process.memoryUsage().heapUsed;
      const rss = rssSampler();
      const started = performance.now();
      const sessions = await Promise.all(Array.from({ length: 10_000 }, async () => system.acquire(id!)));
      const heapHeld = process.memoryUsage().heapUsed - heapBefore;
      await Promise.all(sessions.map(async (s) => s.get('single', 'none')));
      await Promise.all(sessions.map(async (s) => s.release()));
      return { totalMs: round(performance.now() - started), peakRssMb: rss.stop(), bytesPerSession: Math.round(heapHeld / 10_000) };
    },
  },
  {
    name: 'spread-1k',
    describe: '100 tenants × 10 concurrent sessions, each doing one records.get',
    systems: ALL,
    options: () => base({ capacity: 1400, sessionLimit: 1000, walletIdleTtlMs: 600_000 }),
    async run({ system }) {
      const ids = await system.createTenants(100, 'raw', 'spread-');
      const rss = rssSampler();
      const started = performance.now();
      const sessions = await Promise.all(ids.flatMap((id) => Array.from({ length: 10 }, async () => system.acquire(id))));
      await Promise.all(sessions.map(async (s) => s.get('spread', 'none')));
      await Promise.all(sessions.map(async (s) => s.release()));
      return { totalMs: round(performance.now() - started), peakRssMb: rss.stop(), walletOpens: system.walletOpens() };
    },
  },
  {
    name: 'create-then-use',
    describe: 'an argon2i-mod tenant created, then its first session: the new wallet kept open vs closed in between',
    systems: ['tenant-pool'],
    options: () => base(),
    async run({ pool, quick }) {
      if (pool === undefined) throw new Error('tenant-pool only');
      const rounds = quick ? 2 : 6;
      const measure = async (isClosedBetween: boolean): Promise<{ ms: number; derivations: number }> => {
        const times: number[] = [];
        const before = pool.stats().totals.keyDerivations;
        for (let i = 0; i < rounds; i++) {
          const started = performance.now();
          const { tenantId } = await pool.tenants.create({ tenantId: `ctu-${String(isClosedBetween)}-${i}`, kdf: 'argon2i-mod' });
          if (isClosedBetween) await pool.closeIdleWallets();
          await pool.withSession(tenantId, async (s) => s.records.save('c', 'first', 1));
          times.push(performance.now() - started);
        }
        return { ms: percentile(times, 50), derivations: (pool.stats().totals.keyDerivations - before) / rounds };
      };
      const kept = await measure(false);
      const closed = await measure(true);
      return { keptOpenP50Ms: round(kept.ms), keptOpenDerivations: kept.derivations, closedBetweenP50Ms: round(closed.ms), closedBetweenDerivations: closed.derivations };
    },
  },
  {
    name: 'scheduler',
    describe: 'acquire+release of a warm tenant on the pure scheduler, with the queue empty and 10,000 deep',
    systems: ['tenant-pool'],
    // The scheduler alone: no store is involved.
    onPostgres: false,
    options: () => base(),
    async run({ quick }) {
      const ops = quick ? 300_000 : 500_000;
      const W = { wallet: 4, session: 1 };
      const measure = (depth: number): number => {
        const s = new Scheduler({ capacity: 1_000_000, maxQueue: 1_000_000, tenantLimit: 'queue', walletIdleTtlMs: Infinity });
        // Waiters parked behind their own tenant's limit are in the queue, but block no one.
        s.acquire({ tenantId: 'limited', weights: W, maxSessions: 1, deadline: Infinity });
        for (let i = 0; i < depth; i++) s.acquire({ tenantId: 'limited', weights: W, maxSessions: 1, deadline: 1e12 + i });
        const started = process.hrtime.bigint();
        for (let i = 0; i < ops; i++) {
          const r = s.acquire({ tenantId: 'warm', weights: W, maxSessions: Infinity, deadline: Infinity });
          if (r.kind !== 'granted') throw new Error('expected a grant');
          s.release(r.grant, 0);
          s.drain(0);
        }
        if (s.queued !== depth) throw new Error('the queue changed under the measurement');
        return Number(process.hrtime.bigint() - started) / ops;
      };
      measure(0);
      measure(10_000);
      return { nsPerOpDepth0: round(measure(0)), nsPerOpDepth10k: round(measure(10_000)) };
    },
  },
];

/** Bare argon2i-mod derivations per second, best over 1 to cores + 1 at once. */
async function rawArgon2BestPerSec(quick: boolean): Promise<number> {
  const salt = Buffer.alloc(16, 3);
  const derive = async (): Promise<Buffer> => hashRaw('cold-storm', { ...ARGON2_PARAMS['argon2i-mod'], salt });
  let best = 0;
  for (let concurrency = quick ? cores : 1; concurrency <= cores + 1; concurrency++) {
    await Promise.all(Array.from({ length: concurrency }, derive));
    const started = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async () => Promise.all([derive(), derive()])));
    best = Math.max(best, (2 * concurrency) / ((performance.now() - started) / 1000));
  }
  return round(best);
}

/** The warm-ops mix through a bare MessagePort hop and a shared-memory ring, with no pool (see `hop-bounds.ts`). */
async function hopFigures(threads: number, callsPerLane: number): Promise<Figures> {
  const port = await hopOpsPerSec('port', threads, callsPerLane);
  const ring = await hopOpsPerSec('ring', threads, callsPerLane);
  return {
    portHopOpsPerSec: Math.round(port.opsPerSec),
    ...(port.mainCpuUs === undefined ? {} : { portHopMainCpuUsPerOp: port.mainCpuUs, portHopOtherCpuUsPerOp: port.otherCpuUs! }),
    ringHopOpsPerSec: Math.round(ring.opsPerSec),
  };
}

/**
 * The same get/sign mix run straight on a wallet, one thread, no messaging or promises: what one
 * core can do of this work at best. Times the cores, it bounds any pool on this machine. The best
 * of five rounds: a bound must not drop because a neighbour on a shared machine took the core.
 */
function bareOpsPerSec(ops: number): number {
  const dir = mkdtempSync(join(tmpdir(), 'tp-bare-'));
  const key = randomBytes(32);
  const path = join(dir, 'w.sqlite');
  Wallet.create(path, key);
  const wallet = Wallet.open(path, key);
  try {
    wallet.save('warm', 'r', JSON.stringify({ hello: 'world', n: 1 }), {});
    const { kid } = wallet.createKey();
    const data = randomBytes(64);
    const run = (n: number): void => {
      for (let i = 0; i < n; i++) {
        if (i % 2 === 0) wallet.get('warm', 'r');
        else wallet.sign(kid, data);
      }
    };
    run(ops / 10);
    let best = 0;
    for (let round = 0; round < 5; round++) {
      const started = performance.now();
      run(ops);
      best = Math.max(best, ops / ((performance.now() - started) / 1000));
    }
    return best;
  } finally {
    wallet.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Misses of an LRU cache of `size` slots replaying `trace`: the opens an ideal LRU of that size would do. */
export function lruMisses(trace: readonly number[], size: number): number {
  const cache = new Map<number, true>();
  let misses = 0;
  for (const key of trace) {
    if (cache.delete(key)) {
      cache.set(key, true);
      continue;
    }
    misses++;
    cache.set(key, true);
    if (cache.size > size) cache.delete(cache.keys().next().value!);
  }
  return misses;
}
