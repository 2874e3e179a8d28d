/**
 * Tenant → worker placement: rendezvous (highest-random-weight) hashing with bounded loads.
 *
 * Each tenant ranks the workers by a hash of (tenant, worker); a new wallet goes to the first worker
 * in that ranking whose load stays within (1 + ε) × the average. So the same tenant lands on the
 * same worker again whenever load allows, and no worker takes more than its bounded share.
 * Pure: no I/O, no clock.
 */

/**
 * Slack over the average load a worker or a cluster member may carry (HAProxy's and Envoy's hash
 * balance factor, 1.25). Tighter would spread a few busy tenants more evenly, but send more of them
 * to a worker other than their first choice, where the key tier has no key of theirs: at 1.1, an
 * Argon2 trace (`key-tier` bench) derived 0.26 keys per tenant instead of 0.04, and served 1,090
 * sessions a second instead of 1,698.
 */
export const LOAD_EPSILON = 0.25;

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
 * Picks the worker for a new wallet. A `sticky` tenant (one whose reopen derives a key, which the
 * worker's key tier may hold) goes to the first in its ranking whose load, with this wallet added,
 * stays within ceil((1 + ε) × (total + 1) / workers). Any other tenant (a raw key: nothing of it
 * outlives its wallet on a worker) goes to the least loaded worker, its ranking breaking ties: a
 * few busy tenants spread evenly, where the slack would allow 5 and 3 of 8 on two workers.
 * `loads[i]` is worker i's current wallet count; `isAvailable(i)` can rule out a worker (one being
 * replaced, say).
 */
export function placeTenant(tenantId: string, loads: readonly number[], isAvailable: (index: number) => boolean = () => true, sticky = true): number {
  const ranking = rankWorkers(tenantId, loads.length);
  if (sticky) {
    const total = loads.reduce((sum, load) => sum + load, 0);
    const bound = Math.ceil(((1 + LOAD_EPSILON) * (total + 1)) / loads.length);
    for (const index of ranking) {
      if (isAvailable(index) && (loads[index] ?? 0) + 1 <= bound) return index;
    }
  }
  // The least loaded available worker (for a sticky tenant: every worker is at its bound, only
  // possible when some are unavailable).
  let best: number | undefined;
  for (const index of ranking) if (isAvailable(index) && (best === undefined || (loads[index] ?? 0) < (loads[best] ?? 0))) best = index;
  return best ?? ranking[0] ?? 0;
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
