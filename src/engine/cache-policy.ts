/**
 * Which idle wallets stay open when room is needed: W-TinyLFU (Einziger, Friedman and Manes,
 * "TinyLFU: A Highly Efficient Cache Admission Policy", 2017), weight-aware, with the adaptive
 * window of Caffeine's design. Pure: no timers, no I/O; the scheduler drives it.
 *
 * - A wallet enters the **window**, a small LRU. When room is needed, the window's overflow moves to
 *   the **probation** segment as candidates, and each candidate duels the probation segment's least
 *   recently used wallet (the victim): the candidate stays only if its tenant asked for sessions
 *   more often lately than the victim's (`FrequencySketch`), else it is the one closed. A wallet
 *   used again in probation moves to the **protected** segment (80% of the main space); protected
 *   overflow falls back to probation. So a scan of one-off tenants goes through the window and out,
 *   and leaves the frequent tenants open.
 * - Frequencies outlive the wallet: a tenant evicted and back soon comes back with its count.
 * - A wallet with sessions is **pinned**: it is out of the segments' lists while pinned, so it is
 *   never a victim, and it goes back (most recently used) when its last session ends.
 * - The window's share adapts by hill climbing on the hit rate, sample by sample, between 1% and 80%
 *   of the capacity: a trace that favours recency grows it, one that favours frequency shrinks it.
 * - Ties go to the incumbent; a candidate of count 6 or more that loses still gets in one time in
 *   128, so tenants crafted to look hot cannot pin a victim forever.
 *
 * Every operation is O(1) but eviction, which is O(wallets closed).
 */
import { FrequencySketch } from './frequency-sketch.js';

export type Segment = 'none' | 'window' | 'probation' | 'protected';

/** What the policy keeps on each held wallet (the scheduler's slot carries it). */
export interface CacheEntry {
  readonly tenantId: string;
  /** The wallet's weight. */
  walletWeight: number;
  segment: Segment;
  /** In its segment's list (idle), rather than pinned or gone. */
  isListed: boolean;
  /** Moved from the window to probation since the last duel: a candidate for admission. */
  isCandidate: boolean;
  prev: CacheEntry | undefined;
  next: CacheEntry | undefined;
  /** The tenant's hash in the policy's sketch. */
  hash: number;
}

export interface CachePolicyOptions {
  /** Total weight units of the pool. */
  capacity: number;
  /** Wallets the capacity holds at the default weight: the sketch's first size. */
  expectedWallets: number;
  /** Random numbers in [0, 1): the sketch's seed and the admission's jitter. */
  random?: () => number;
}

const MIN_WINDOW_SHARE = 0.01;
const MAX_WINDOW_SHARE = 0.8;
const PROTECTED_SHARE = 0.8;
/** Hill climbing: first step, decay, and the hit-rate change that restarts it (Caffeine's figures). */
const STEP_SHARE = 0.0625;
const STEP_DECAY = 0.98;
const RESTART_THRESHOLD = 0.05;
/** A losing candidate this frequent gets in at random (1 in 128): no victim is safe by collision. */
const WARM_CANDIDATE = 6;

class LruList {
  head: CacheEntry | undefined;
  tail: CacheEntry | undefined;
  weight = 0;

  push(entry: CacheEntry): void {
    entry.prev = this.tail;
    entry.next = undefined;
    if (this.tail === undefined) this.head = entry;
    else this.tail.next = entry;
    this.tail = entry;
    entry.isListed = true;
    this.weight += entry.walletWeight;
  }

  remove(entry: CacheEntry): void {
    if (entry.prev === undefined) this.head = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === undefined) this.tail = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = undefined;
    entry.next = undefined;
    entry.isListed = false;
    this.weight -= entry.walletWeight;
  }
}

export class CachePolicy {
  readonly #capacity: number;
  readonly #sketch: FrequencySketch;
  readonly #random: () => number;
  readonly #lists: Record<Exclude<Segment, 'none'>, LruList> = { window: new LruList(), probation: new LruList(), protected: new LruList() };
  #held = 0;
  #windowShare = MIN_WINDOW_SHARE;
  #step = -STEP_SHARE;
  #hits = 0;
  #misses = 0;
  #lastHitRate = 0;

  constructor(options: CachePolicyOptions) {
    this.#capacity = options.capacity;
    this.#random = options.random ?? Math.random;
    this.#sketch = new FrequencySketch(options.expectedWallets, this.#random);
  }

  hash(tenantId: string): number {
    return this.#sketch.hash(tenantId);
  }

  /** A session was asked for: the tenant's frequency grows; `hit` says whether its wallet was held. */
  recordAccess(hash: number, hit: boolean): void {
    this.#sketch.increment(hash);
    if (hit) this.#hits++;
    else this.#misses++;
    if (this.#hits + this.#misses >= this.#sketch.sampleSize) this.#climb();
  }

  /** A wallet is now held for the tenant (opening for a session, pinned). */
  add(entry: CacheEntry): void {
    entry.segment = 'window';
    entry.isListed = false;
    entry.isCandidate = false;
    this.#held++;
    if (this.#held > this.#sketch.capacity) this.#sketch.ensureCapacity(this.#held * 2);
  }

  /** The wallet got a session: out of the lists until its last session ends; used again in probation, it is promoted. */
  pin(entry: CacheEntry): void {
    if (entry.isListed) this.#lists[listOf(entry)].remove(entry);
    if (entry.segment === 'probation') entry.segment = 'protected';
    entry.isCandidate = false;
  }

  /** The wallet's last session ended: back in its segment, most recently used. */
  unpin(entry: CacheEntry): void {
    if (entry.isListed || entry.segment === 'none') return;
    this.#lists[listOf(entry)].push(entry);
    if (entry.segment === 'protected') this.#demoteProtectedOverflow();
  }

  /** The wallet is closing or gone. */
  remove(entry: CacheEntry): void {
    if (entry.segment === 'none') return;
    if (entry.isListed) this.#lists[listOf(entry)].remove(entry);
    entry.segment = 'none';
    entry.isCandidate = false;
    this.#held--;
  }

  /**
   * Chooses idle wallets to close for at least `missing` units, never `exclude` (the waiter's own
   * tenant) nor a wallet of weight 0; fewer if the idle wallets do not add up to that. The chosen are
   * out of the policy already; the caller closes them.
   */
  evict(missing: number, exclude: CacheEntry | undefined): CacheEntry[] {
    const closed: CacheEntry[] = [];
    const close = (entry: CacheEntry): void => {
      missing -= entry.walletWeight;
      closed.push(entry);
      this.remove(entry);
    };
    const usable = (entry: CacheEntry | undefined): CacheEntry | undefined => {
      let e = entry;
      while (e !== undefined && (e === exclude || e.walletWeight === 0)) e = e.next;
      return e;
    };
    this.#moveWindowOverflow();
    while (missing > 0) {
      // The newest candidate moved from the window, else the window's oldest.
      let candidate = this.#newestCandidate(exclude);
      if (candidate === undefined) candidate = usable(this.#lists.window.head);
      const victim = usable(this.#lists.probation.head) ?? usable(this.#lists.protected.head) ?? usable(this.#lists.window.head);
      if (victim === undefined && candidate === undefined) break;
      if (victim === undefined || candidate === undefined || victim === candidate) {
        close((victim ?? candidate)!);
        continue;
      }
      candidate.isCandidate = false;
      close(this.#admit(candidate.hash, victim.hash) ? victim : candidate);
    }
    return closed;
  }

  /** Every wallet is gone (the pool closed); frequencies stay. */
  clear(): void {
    for (const list of Object.values(this.#lists)) {
      for (let e = list.head; e !== undefined; e = list.head) list.remove(e);
    }
    this.#held = 0;
  }

  /** Wallets held and their segments' listed weights, for tests. */
  shape(): { held: number; window: number; probation: number; protected: number; windowMax: number } {
    return { held: this.#held, window: this.#lists.window.weight, probation: this.#lists.probation.weight, protected: this.#lists.protected.weight, windowMax: this.#windowMax() };
  }

  #windowMax(): number {
    return Math.max(1, Math.round(this.#capacity * this.#windowShare));
  }

  #moveWindowOverflow(): void {
    const window = this.#lists.window;
    const max = this.#windowMax();
    while (window.weight > max && window.head !== undefined) {
      const entry = window.head;
      window.remove(entry);
      entry.segment = 'probation';
      entry.isCandidate = true;
      this.#lists.probation.push(entry);
    }
  }

  #newestCandidate(exclude: CacheEntry | undefined): CacheEntry | undefined {
    for (let e = this.#lists.probation.tail; e !== undefined && e.isCandidate; e = e.prev) {
      if (e !== exclude && e.walletWeight > 0) return e;
    }
    return undefined;
  }

  #demoteProtectedOverflow(): void {
    const protectedMax = (this.#capacity - this.#windowMax()) * PROTECTED_SHARE;
    const list = this.#lists.protected;
    while (list.weight > protectedMax && list.head !== undefined) {
      const entry = list.head;
      list.remove(entry);
      entry.segment = 'probation';
      this.#lists.probation.push(entry);
    }
  }

  #admit(candidate: number, victim: number): boolean {
    const c = this.#sketch.frequency(candidate);
    if (c > this.#sketch.frequency(victim)) return true;
    return c >= WARM_CANDIDATE && Math.floor(this.#random() * 128) === 0;
  }

  /** One hill-climbing step at the end of a sample: keep going while the hit rate improves, turn back when it drops. */
  #climb(): void {
    const rate = this.#hits / (this.#hits + this.#misses);
    const change = rate - this.#lastHitRate;
    const amount = change >= 0 ? this.#step : -this.#step;
    this.#step = Math.abs(change) >= RESTART_THRESHOLD ? STEP_SHARE * Math.sign(amount || 1) : STEP_DECAY * amount;
    this.#windowShare = Math.min(MAX_WINDOW_SHARE, Math.max(MIN_WINDOW_SHARE, this.#windowShare + amount));
    this.#lastHitRate = rate;
    this.#hits = 0;
    this.#misses = 0;
  }
}

function listOf(entry: CacheEntry): Exclude<Segment, 'none'> {
  return entry.segment as Exclude<Segment, 'none'>;
}
