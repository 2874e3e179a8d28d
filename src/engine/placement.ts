/**
 * Tenant → worker placement: rendezvous (highest-random-weight) hashing with bounded loads.
 *
 * Each tenant ranks the workers by a hash of (tenant, worker); a new wallet goes to the first worker
 * in that ranking whose load stays within (1 + ε) × the average. So the same tenant lands on the
 * same worker again whenever load allows, and no worker takes more than its bounded share.
 * Pure: no I/O, no clock.
 */

/** Slack over the average load a cluster member may carry (HAProxy's and Envoy's hash balance factor, 1.25). */
export const LOAD_EPSILON = 0.25;
/**
 * Slack over the average a worker thread may carry: tighter than a member's, as workers share one
 * machine's cores and a tenant's calls cannot move off its worker while its wallet is open. At 8
 * busy tenants on 2 workers, 1.25 allows 5 and 3: the busier worker caps the pool at 0.8 of what the
 * cores give; 1.1 keeps 4 and 4.
 */
export const WORKER_LOAD_EPSILON = 0.1;

/** cyrb53: a fast 53-bit string hash with good avalanche, enough to rank a handful of workers. */
function hash53(text: string, seed: number): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The tenant's ranking of worker indexes, best first. Stable for a given tenant and worker count. */
export function rankWorkers(tenantId: string, workerCount: number): number[] {
  const scored = Array.from({ length: workerCount }, (_, index) => ({ index, score: hash53(tenantId, index + 1) }));
  scored.sort((a, b) => b.score - a.score || a.index - b.index);
  return scored.map((s) => s.index);
}

/**
 * Picks the worker for a new wallet: the first in the tenant's ranking whose load, with this wallet
 * added, stays within the bound: (1 + ε) × the average with it, rounded down, and never below the
 * average rounded up (ε = `WORKER_LOAD_EPSILON`). `loads[i]` is worker i's current wallet count;
 * `isAvailable(i)` can rule out a worker (one being replaced, say).
 */
export function placeTenant(tenantId: string, loads: readonly number[], isAvailable: (index: number) => boolean = () => true): number {
  const total = loads.reduce((sum, load) => sum + load, 0);
  const average = (total + 1) / loads.length;
  const bound = Math.max(Math.ceil(average), Math.floor((1 + WORKER_LOAD_EPSILON) * average));
  const ranking = rankWorkers(tenantId, loads.length);
  for (const index of ranking) {
    if (isAvailable(index) && (loads[index] ?? 0) + 1 <= bound) return index;
  }
  // Every worker is at its bound (only possible when some are unavailable): take the least loaded available one.
  let best = ranking[0] ?? 0;
  for (const index of ranking) if (isAvailable(index) && (loads[index] ?? 0) < (loads[best] ?? 0)) best = index;
  return best;
}

/**
 * The same rule over named candidates (the members of a cluster): each ranked by a hash of (tenant,
 * name), the first whose load with this tenant added stays within ceil((1 + ε) × (total + 1) / count).
 * Returns the chosen name, or undefined when there is no candidate.
 */
export function placeAmong(tenantId: string, candidates: ReadonlyArray<{ name: string; load: number }>): string | undefined {
  if (candidates.length === 0) return undefined;
  const total = candidates.reduce((sum, c) => sum + c.load, 0);
  const bound = Math.ceil(((1 + LOAD_EPSILON) * (total + 1)) / candidates.length);
  const ranked = candidates
    .map((c) => ({ ...c, score: hash53(`${tenantId}\u0000${c.name}`, 1) }))
    .sort((a, b) => b.score - a.score || (a.name < b.name ? -1 : 1));
  return (ranked.find((c) => c.load + 1 <= bound) ?? ranked[0]!).name;
}
