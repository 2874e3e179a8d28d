/**
 * The cache scenario: which wallets stay open. Traces of sessions replayed one at a time through the
 * real pool (real workers, real SQLite wallets), with room for 5%, 10% and 25% of the tenants; on the
 * same traces, in the same run, the opens of an LRU cache of that many wallets and of Belady's
 * optimum (OPT: evict the wallet used again furthest in the future, which no online policy can beat).
 *
 * Traces over N tenants, popularity by a random ranking:
 * - `zipf-0.8`, `zipf-1.0`, `zipf-1.2`: Zipf-distributed sessions;
 * - `…+sweep`: the same, with one session of every tenant in turn halfway (a scan: an export, a
 *   verify, a migration touching every tenant);
 * - `zipf-1.0+shift`: the ranking is reshuffled halfway (a new hot set).
 *
 * The sweep's own misses cannot be avoided (OPT pays them too), so a sweep's cost is the opens it
 * adds beyond what it adds to OPT's, as a share of the opens without it.
 *
 * OPT knows the future; no policy that does not can reach it. On independent requests (these Zipf
 * traces) the best a policy can do without the future is to hold the most popular tenants (A0, the
 * static optimum): `a0` is that, with the popularity counted over the whole trace in hindsight, plus
 * one first open of each of them. It is printed beside OPT as the bar an online policy can reach.
 *
 * The tenants have raw keys, so opens measure the policy alone; what a reopen costs an Argon2
 * tenant, and how the key tier spares it, is the `key-tier` scenario's.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TenantPool } from '../src/pool.js';
import { round, zipfSampler } from './measure.js';
import { lruMisses } from './scenarios.js';
import type { Figures } from './scenarios.js';

const ROOT_KEY = '5c'.repeat(32);
const WALLET_WEIGHT = 4;

export interface Trace {
  name: string;
  requests: number[];
}

/** A permutation of 0..n-1 from a seed: which tenant holds each popularity rank. */
function ranking(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let state = seed;
  for (let i = n - 1; i > 0; i--) {
    state = (state * 48271) % 2147483647;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

export function traces(tenants: number, length: number): Trace[] {
  const zipf = (s: number, shift: boolean, sweep: boolean, seed: number): number[] => {
    const pick = zipfSampler(tenants, s, seed);
    let rank = ranking(tenants, seed + 1);
    const out: number[] = [];
    for (let i = 0; i < length; i++) {
      if (i === length >> 1) {
        if (sweep) for (let t = 0; t < tenants; t++) out.push(t);
        if (shift) rank = ranking(tenants, seed + 2);
      }
      out.push(rank[pick()]!);
    }
    return out;
  };
  const list: Trace[] = [];
  for (const s of [0.8, 1.0, 1.2]) {
    list.push({ name: `zipf-${s.toFixed(1)}`, requests: zipf(s, false, false, 11) });
    list.push({ name: `zipf-${s.toFixed(1)}+sweep`, requests: zipf(s, false, true, 11) });
  }
  list.push({ name: 'zipf-1.0+shift', requests: zipf(1.0, true, false, 11) });
  return list;
}

/** Misses of Belady's optimal cache of `size` entries on `trace` (evict the entry next used furthest ahead). */
export function optMisses(trace: readonly number[], size: number): number {
  const nextUse = new Int32Array(trace.length);
  const last = new Map<number, number>();
  for (let i = trace.length - 1; i >= 0; i--) {
    nextUse[i] = last.get(trace[i]!) ?? trace.length + i; // never again: furthest, distinct per position
    last.set(trace[i]!, i);
  }
  // A max-heap of [next use, key], lazily cleaned: an entry is live if it matches the key's current next use.
  const heap: Array<[number, number]> = [];
  const current = new Map<number, number>();
  const push = (item: [number, number]): void => {
    heap.push(item);
    for (let i = heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (heap[parent]![0] >= heap[i]![0]) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  };
  const pop = (): [number, number] => {
    const top = heap[0]!;
    const end = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = end;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && heap[l]![0] > heap[m]![0]) m = l;
        if (r < heap.length && heap[r]![0] > heap[m]![0]) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i]!, heap[m]!];
        i = m;
      }
    }
    return top;
  };
  let misses = 0;
  for (let i = 0; i < trace.length; i++) {
    const key = trace[i]!;
    if (!current.has(key)) {
      misses++;
      while (current.size >= size) {
        const [use, victim] = pop();
        if (current.get(victim) === use) current.delete(victim);
      }
    }
    current.set(key, nextUse[i]!);
    push([nextUse[i]!, key]);
  }
  return misses;
}

/** Opens of the static optimum on independent requests: the `size` most requested tenants held (each opened once), every other request an open. */
export function a0Misses(trace: readonly number[], size: number): number {
  const counts = new Map<number, number>();
  for (const key of trace) counts.set(key, (counts.get(key) ?? 0) + 1);
  const held = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, size);
  const hits = held.reduce((sum, [, n]) => sum + n - 1, 0);
  return trace.length - hits;
}

interface Row {
  trace: string;
  share: number;
  opens: number;
  lru: number;
  opt: number;
  a0: number;
}

async function replay(dataDir: string, ids: string[], trace: Trace, room: number): Promise<Omit<Row, 'lru' | 'opt' | 'a0'>> {
  const pool = await TenantPool.open({
    dataDir,
    rootKey: ROOT_KEY,
    workers: 2,
    capacity: room * WALLET_WEIGHT + 1,
    weights: { wallet: WALLET_WEIGHT, session: 1 },
    walletIdleTtlMs: Number.POSITIVE_INFINITY,
    acquireTimeoutMs: 60_000,
    leakWarningMs: 0,
  });
  try {
    const before = pool.stats().totals;
    for (const t of trace.requests) await pool.withSession(ids[t]!, async (s) => s.records.get('c', 'none'));
    const after = pool.stats().totals;
    return { trace: trace.name, share: 0, opens: after.walletOpens - before.walletOpens };
  } finally {
    await pool.close();
  }
}

export async function cache(quick: boolean): Promise<Figures> {
  const tenants = quick ? 200 : 1000;
  const length = quick ? 3_000 : 20 * tenants;
  const dataDir = join(tmpdir(), `tp-bench-cache-${process.pid}`);
  rmSync(dataDir, { recursive: true, force: true });
  const ids: string[] = [];
  {
    const pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 2, walletIdleTtlMs: 0, leakWarningMs: 0 });
    for (let i = 0; i < tenants; i++) ids.push((await pool.tenants.create({ tenantId: `c${i}`, kdf: 'raw' })).tenantId);
    await pool.close();
  }
  const figures: Figures = { tenants, traceLength: length };
  const rows: Row[] = [];
  try {
    for (const share of [0.05, 0.1, 0.25]) {
      const room = Math.round(tenants * share);
      for (const trace of traces(tenants, length)) {
        const row = await replay(dataDir, ids, trace, room);
        rows.push({ ...row, share, lru: lruMisses(trace.requests, room), opt: optMisses(trace.requests, room), a0: a0Misses(trace.requests, room) });
      }
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  let worst = 0;
  let worstLru = 0;
  let worstA0 = 0;
  let worstSweep = Number.NEGATIVE_INFINITY;
  for (const row of rows) {
    const key = `${row.trace} @ ${Math.round(row.share * 100)}%`;
    figures[`${key}/opens`] = row.opens;
    figures[`${key}/LRU opens`] = row.lru;
    figures[`${key}/A0 opens`] = row.a0;
    figures[`${key}/OPT opens`] = row.opt;
    figures[`${key}/x OPT`] = round(row.opens / row.opt, 3);
    figures[`${key}/LRU x OPT`] = round(row.lru / row.opt, 3);
    figures[`${key}/x A0`] = round(row.opens / row.a0, 3);
    worst = Math.max(worst, row.opens / row.opt);
    worstLru = Math.max(worstLru, row.lru / row.opt);
    // The shifted trace is not independent requests: A0 is no bar there.
    if (!row.trace.endsWith('+shift')) worstA0 = Math.max(worstA0, row.opens / row.a0);
    if (row.trace.endsWith('+sweep')) {
      const plain = rows.find((r) => r.share === row.share && r.trace === row.trace.replace('+sweep', ''))!;
      const excessPct = (100 * (row.opens - plain.opens - (row.opt - plain.opt))) / plain.opens;
      figures[`${key}/sweep excess %`] = round(excessPct, 1);
      worstSweep = Math.max(worstSweep, excessPct);
    }
  }
  figures['worstVsOpt'] = round(worst, 3);
  figures['worstLruVsOpt'] = round(worstLru, 3);
  figures['worstVsA0'] = round(worstA0, 3);
  figures['worstSweepExcessPct'] = round(worstSweep, 1);
  return figures;
}
