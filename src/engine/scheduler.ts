/**
 * Weighted admission: the pure core of the pool. No timers, no I/O; the caller passes `now` and
 * carries out the effects `drain()` returns. So it is tested synchronously, and its invariants with
 * property tests.
 *
 * The weight model: a wallet held open (opening, open, idle or closing) holds its wallet weight; each
 * session holds its session weight; `weightInUse <= capacity` always. Waiters that do not fit wait
 * in arrival order (a waiter that does not fit blocks those behind it, so none starves); when the
 * head does not fit, idle wallets are closed, chosen by the cache policy (`CachePolicy`, W-TinyLFU:
 * frequent tenants stay open, a scan goes through). A waiter held back only by its own tenant's
 * session limit is parked with its tenant and delays no one else.
 *
 * Every operation is O(log n) in the number of waiters, or O(1), but eviction: O(wallets closed).
 */
import { CachePolicy, type CacheEntry, type Segment } from './cache-policy.js';
import { IndexedHeap } from './heap.js';

export interface Weights {
  readonly wallet: number;
  readonly session: number;
}

export interface SchedulerOptions {
  capacity: number;
  maxQueue: number;
  tenantLimit: 'queue' | 'reject';
  /** Idle wallets close this long after their last session; Infinity never, 0 at once. */
  walletIdleTtlMs: number;
  /** Wallets the capacity holds at the default weight (sizes the cache policy's sketch; it grows). */
  expectedWallets?: number;
  /** Random numbers in [0, 1) for the cache policy (seeded in tests). */
  random?: () => number;
}

export interface AcquireRequest {
  tenantId: string;
  /** The tenant's weights now; a wallet keeps the weights it was opened with. */
  weights: Weights;
  /** The tenant's session limit now (Infinity for none). */
  maxSessions: number;
  /** Absolute time by which the waiter must be admitted; Infinity for never. */
  deadline: number;
}

/** A session's hold on capacity. Hand it back with `release()` exactly once. */
export interface Grant {
  readonly tenantId: string;
  readonly sessionWeight: number;
}

export type WaiterState = 'parked' | 'eligible' | 'granted' | 'expired' | 'cancelled';

export interface Waiter {
  readonly seq: number;
  readonly tenantId: string;
  readonly deadline: number;
  readonly weights: Weights;
  state: WaiterState;
  /** Set when granted. */
  grant: Grant | undefined;
  /** Position in the eligible queue or its tenant's parked queue. */
  queueIndex: number;
  /** Position in the deadline heap. */
  deadlineIndex: number;
}

export type AcquireResult =
  | { kind: 'granted'; grant: Grant }
  | { kind: 'queued'; waiter: Waiter }
  | { kind: 'rejected'; code: 'ERR_QUEUE_FULL' | 'ERR_TENANT_LIMIT' | 'ERR_INVALID_ARGUMENT'; message: string };

/** What the caller must do after a change: settle these waiters, close these wallets. */
export interface Effects {
  granted: Waiter[];
  expired: Waiter[];
  /** Idle wallets to close: past their TTL, or evicted to make room for the waiter of `forTenantId`. */
  close: Array<{ tenantId: string; reason: 'idle'; idleSince: number } | { tenantId: string; reason: 'capacity'; idleSince: number; forTenantId: string }>;
}

interface Slot extends CacheEntry {
  readonly tenantId: string;
  sessions: number;
  /** The tenant's wallet is held (opening, open or idle), whatever its weight: a wallet of weight 0 still closes. */
  isWalletHeld: boolean;
  /** Weight held for the tenant's current wallet. */
  walletWeight: number;
  /** Weight held by the tenant's sessions. */
  sessionsWeight: number;
  /** A wallet of this tenant is being closed, until `closeDone()`. */
  isClosing: boolean;
  /** Weight held for a wallet of this tenant that is being closed, until `closeDone()`. */
  closingWeight: number;
  /** The current wallet is gone (crash, failed open) while sessions still hold it: free its weight when they end. */
  isWalletGone: boolean;
  /** Time the wallet went idle; meaningful while it is in the idle list. */
  idleSince: number;
  /** Waiters of this tenant in the eligible queue. */
  eligible: number;
  /** Waiters of this tenant held back by its session limit, in arrival order. */
  readonly parked: IndexedHeap<'queueIndex', Waiter>;
  limit: number;
}

const bySeq = (a: Waiter, b: Waiter): boolean => a.seq < b.seq;
const byDeadline = (a: Waiter, b: Waiter): boolean => a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);

export class Scheduler {
  readonly capacity: number;
  readonly #maxQueue: number;
  readonly #rejectOverLimit: boolean;
  readonly #idleTtlMs: number;
  readonly #slots = new Map<string, Slot>();
  /** Tenants whose wallet is open with no session, in the order they went idle (Map keeps insertion order): the TTL's order. */
  readonly #idle = new Map<string, Slot>();
  readonly #policy: CachePolicy;
  readonly #eligible = new IndexedHeap<'queueIndex', Waiter>('queueIndex', bySeq);
  readonly #deadlines = new IndexedHeap<'deadlineIndex', Waiter>('deadlineIndex', byDeadline);
  #seq = 0;
  #weightInUse = 0;
  #closingWeight = 0;
  #sessions = 0;
  #queued = 0;

  constructor(options: SchedulerOptions) {
    this.capacity = options.capacity;
    this.#maxQueue = options.maxQueue;
    this.#rejectOverLimit = options.tenantLimit === 'reject';
    this.#idleTtlMs = options.walletIdleTtlMs;
    this.#policy = new CachePolicy({
      capacity: options.capacity,
      // Sized for what the capacity holds, up to 65,536 wallets at first; it grows with the wallets held.
      expectedWallets: Math.min(options.expectedWallets ?? options.capacity, 1 << 16),
      ...(options.random === undefined ? {} : { random: options.random }),
    });
  }

  /** The cache policy's books against the scheduler's, for tests: wallets held, and idle weight listed against idle weight held. */
  cacheShape(): { heldWallets: number; policyHeld: number; listedWeight: number; idleWeight: number } {
    const shape = this.#policy.shape();
    let heldWallets = 0;
    for (const slot of this.#slots.values()) if (slot.isWalletHeld) heldWallets++;
    let idleWeight = 0;
    for (const slot of this.#idle.values()) idleWeight += slot.walletWeight;
    return { heldWallets, policyHeld: shape.held, listedWeight: shape.window + shape.probation + shape.protected, idleWeight };
  }

  get weightInUse(): number {
    return this.#weightInUse;
  }

  /** Waiters waiting, eligible and parked. */
  get queued(): number {
    return this.#queued;
  }

  get sessions(): number {
    return this.#sessions;
  }

  /** Wallets held open with no session (cached), not counting those being closed. */
  get idleWallets(): number {
    return this.#idle.size;
  }

  /** Tenants known to the scheduler (holding weight or waiting). */
  get tenantCount(): number {
    return this.#slots.size;
  }

  /** The weight a new session of the tenant would need now. */
  need(tenantId: string, weights: Weights): number {
    const slot = this.#slots.get(tenantId);
    return (slot !== undefined && slot.isWalletHeld ? 0 : weights.wallet) + weights.session;
  }

  /**
   * Asks for a session. Granted at once only if nothing is queued ahead and it fits; otherwise queued
   * (call `drain()` next: it may evict for it), or rejected.
   */
  acquire(request: AcquireRequest): AcquireResult {
    const { weights } = request;
    if (weights.wallet + weights.session > this.capacity) {
      return { kind: 'rejected', code: 'ERR_INVALID_ARGUMENT', message: `tenant ${request.tenantId} weighs ${weights.wallet + weights.session}, more than the pool's capacity ${this.capacity}` };
    }
    const slot = this.#slot(request.tenantId);
    this.#policy.recordAccess(slot.hash, slot.isWalletHeld);
    // A limit raised since the last acquire first lets the waiters it held back go, in arrival order.
    slot.limit = request.maxSessions;
    this.#unpark(slot);
    const isOverLimit = slot.sessions + slot.eligible >= slot.limit;
    if (isOverLimit && this.#rejectOverLimit) {
      this.#dropIfUnused(slot);
      return { kind: 'rejected', code: 'ERR_TENANT_LIMIT', message: `tenant ${request.tenantId} already has ${slot.sessions} of its ${slot.limit} sessions` };
    }
    if (!isOverLimit && this.#eligible.size === 0 && this.#weightInUse + this.need(request.tenantId, weights) <= this.capacity) {
      return { kind: 'granted', grant: this.#grantTo(slot, weights) };
    }
    if (this.#queued >= this.#maxQueue) {
      this.#dropIfUnused(slot);
      return { kind: 'rejected', code: 'ERR_QUEUE_FULL', message: `${this.#queued} acquires are already waiting (maxQueue ${this.#maxQueue})` };
    }
    const waiter: Waiter = { seq: this.#seq++, tenantId: request.tenantId, deadline: request.deadline, weights, state: 'parked', grant: undefined, queueIndex: -1, deadlineIndex: -1 };
    this.#queued++;
    if (Number.isFinite(waiter.deadline)) this.#deadlines.push(waiter);
    if (isOverLimit) {
      slot.parked.push(waiter);
    } else {
      waiter.state = 'eligible';
      slot.eligible++;
      this.#eligible.push(waiter);
    }
    return { kind: 'queued', waiter };
  }

  /** Takes a waiting waiter out (its signal aborted). Returns false if it was no longer waiting. */
  cancel(waiter: Waiter): boolean {
    if (waiter.state !== 'eligible' && waiter.state !== 'parked') return false;
    this.#unqueue(waiter, 'cancelled');
    return true;
  }

  /** The weight a tenant holds now: its wallet's and its sessions'. */
  weightOf(tenantId: string): number {
    const slot = this.#slots.get(tenantId);
    return slot === undefined ? 0 : slot.walletWeight + slot.sessionsWeight;
  }

  /** A session ended: its weight returns; the wallet goes idle with its last session. */
  release(grant: Grant, now: number): void {
    const slot = this.#slots.get(grant.tenantId);
    if (slot === undefined || slot.sessions === 0) throw new Error(`release of a grant the scheduler does not hold (${grant.tenantId})`);
    slot.sessions--;
    slot.sessionsWeight -= grant.sessionWeight;
    this.#sessions--;
    this.#weightInUse -= grant.sessionWeight;
    if (slot.sessions === 0 && slot.isWalletHeld) {
      if (slot.isWalletGone) this.#freeWallet(slot);
      else {
        slot.idleSince = now;
        this.#idle.set(slot.tenantId, slot);
        this.#policy.unpin(slot);
      }
    }
    this.#unpark(slot);
    this.#dropIfUnused(slot);
  }

  /** A wallet close that `drain()` asked for has finished (or failed: the wallet is gone either way). */
  closeDone(tenantId: string): void {
    const slot = this.#slots.get(tenantId);
    if (slot === undefined || !slot.isClosing) return;
    this.#weightInUse -= slot.closingWeight;
    this.#closingWeight -= slot.closingWeight;
    slot.closingWeight = 0;
    slot.isClosing = false;
    this.#dropIfUnused(slot);
  }

  /** The tenant's current wallet is gone without a close asked for here (worker crash, failed open, tenant deleted). */
  walletLost(tenantId: string): void {
    const slot = this.#slots.get(tenantId);
    if (slot === undefined || !slot.isWalletHeld) return;
    if (slot.sessions === 0) this.#freeWallet(slot);
    else slot.isWalletGone = true;
    this.#dropIfUnused(slot);
  }

  /** The tenant's wallet opened (again) for the sessions holding it. */
  walletOpened(tenantId: string): void {
    const slot = this.#slots.get(tenantId);
    if (slot !== undefined) slot.isWalletGone = false;
  }

  /**
   * The tenant's session limit changed: later grants use it, and waiters the old limit held back
   * are let go at once, in arrival order (call `drain()` next).
   */
  setLimit(tenantId: string, maxSessions: number): void {
    const slot = this.#slots.get(tenantId);
    if (slot === undefined) return;
    slot.limit = maxSessions;
    this.#unpark(slot);
  }

  /**
   * A wallet just created and left open: held as an idle (cached) wallet if that takes no room a
   * waiter needs and evicts nothing. Returns whether it is held; if not, the caller closes it.
   */
  adoptIdle(tenantId: string, weights: Weights, now: number): boolean {
    if (this.#idleTtlMs === 0 || this.#eligible.size > 0 || this.#weightInUse + weights.wallet > this.capacity) return false;
    const slot = this.#slot(tenantId);
    if (slot.isWalletHeld || slot.sessions > 0) return false;
    slot.isWalletHeld = true;
    slot.walletWeight = weights.wallet;
    slot.isWalletGone = false;
    this.#weightInUse += weights.wallet;
    slot.idleSince = now;
    this.#idle.set(tenantId, slot);
    this.#policy.add(slot);
    this.#policy.unpin(slot);
    return true;
  }

  /** Closes the tenant's wallet if it is idle (open with no session); returns whether it does. */
  closeIdle(tenantId: string): boolean {
    const slot = this.#idle.get(tenantId);
    if (slot === undefined) return false;
    this.#startClose(slot);
    return true;
  }

  /** Tenants whose wallet is open with no session, in the order they went idle. */
  idleTenants(): string[] {
    return [...this.#idle.keys()];
  }

  /** Starts closing every idle wallet now, as if its TTL had passed; returns the tenants whose wallet to close. */
  closeAllIdle(): string[] {
    const closing = [...this.#idle.values()];
    for (const slot of closing) this.#startClose(slot);
    return closing.map((slot) => slot.tenantId);
  }

  /** The pool closed: every session, wallet and waiter is gone, and so is the weight they held. */
  reset(): void {
    for (let w = this.#deadlines.pop(); w !== undefined; w = this.#deadlines.pop()) w.state = 'cancelled';
    for (let w = this.#eligible.pop(); w !== undefined; w = this.#eligible.pop()) w.state = 'cancelled';
    this.#slots.clear();
    this.#idle.clear();
    this.#policy.clear();
    this.#weightInUse = 0;
    this.#closingWeight = 0;
    this.#sessions = 0;
    this.#queued = 0;
  }

  /**
   * Expires waiters past their deadline, closes wallets idle past their TTL, grants waiters in
   * arrival order while they fit, and when the head does not fit, closes the idle wallets the cache
   * policy gives up to make room for it.
   */
  drain(now: number): Effects {
    const effects: Effects = { granted: [], expired: [], close: [] };
    for (let top = this.#deadlines.peek(); top !== undefined && top.deadline <= now; top = this.#deadlines.peek()) {
      this.#unqueue(top, 'expired');
      effects.expired.push(top);
    }
    for (const slot of this.#idle.values()) {
      if (slot.idleSince + this.#idleTtlMs > now) break;
      this.#startClose(slot);
      effects.close.push({ tenantId: slot.tenantId, reason: 'idle', idleSince: slot.idleSince });
    }
    for (let head = this.#eligible.peek(); head !== undefined; head = this.#eligible.peek()) {
      const slot = this.#slots.get(head.tenantId)!;
      const need = this.need(head.tenantId, head.weights);
      if (this.#weightInUse + need <= this.capacity) {
        this.#unqueue(head, 'granted');
        head.grant = this.#grantTo(slot, head.weights);
        effects.granted.push(head);
        continue;
      }
      // Room already coming from wallets being closed counts; evict only what is still missing.
      const missing = this.#weightInUse + need - this.capacity - this.#closingWeight;
      if (missing > 0) {
        for (const entry of this.#policy.evict(missing, slot)) {
          const idle = entry as Slot;
          this.#startClose(idle);
          effects.close.push({ tenantId: idle.tenantId, reason: 'capacity', idleSince: idle.idleSince, forTenantId: head.tenantId });
        }
      }
      break;
    }
    return effects;
  }

  /** When `drain()` next has something to do by time alone (a deadline or an idle TTL); Infinity if never. */
  nextDeadline(): number {
    const waiter = this.#deadlines.peek()?.deadline ?? Number.POSITIVE_INFINITY;
    const oldestIdle = this.#idle.values().next().value;
    const idle = oldestIdle === undefined ? Number.POSITIVE_INFINITY : oldestIdle.idleSince + this.#idleTtlMs;
    return Math.min(waiter, idle);
  }

  #slot(tenantId: string): Slot {
    let slot = this.#slots.get(tenantId);
    if (slot === undefined) {
      slot = {
        tenantId,
        sessions: 0,
        isWalletHeld: false,
        walletWeight: 0,
        sessionsWeight: 0,
        isClosing: false,
        closingWeight: 0,
        isWalletGone: false,
        idleSince: 0,
        eligible: 0,
        parked: new IndexedHeap<'queueIndex', Waiter>('queueIndex', bySeq),
        limit: Number.POSITIVE_INFINITY,
        segment: 'none' as Segment,
        isListed: false,
        isCandidate: false,
        prev: undefined,
        next: undefined,
        hash: this.#policy.hash(tenantId),
      };
      this.#slots.set(tenantId, slot);
    }
    return slot;
  }

  #grantTo(slot: Slot, weights: Weights): Grant {
    if (!slot.isWalletHeld) {
      slot.isWalletHeld = true;
      slot.walletWeight = weights.wallet;
      slot.isWalletGone = false;
      this.#weightInUse += weights.wallet;
      this.#policy.add(slot);
    }
    this.#idle.delete(slot.tenantId);
    this.#policy.pin(slot);
    slot.sessions++;
    slot.sessionsWeight += weights.session;
    this.#sessions++;
    this.#weightInUse += weights.session;
    return { tenantId: slot.tenantId, sessionWeight: weights.session };
  }

  #unqueue(waiter: Waiter, state: 'granted' | 'expired' | 'cancelled'): void {
    const slot = this.#slots.get(waiter.tenantId)!;
    if (waiter.state === 'eligible') {
      this.#eligible.remove(waiter);
      slot.eligible--;
    } else {
      slot.parked.remove(waiter);
    }
    this.#deadlines.remove(waiter);
    this.#queued--;
    waiter.state = state;
    if (state !== 'granted') {
      this.#unpark(slot);
      this.#dropIfUnused(slot);
    }
  }

  /** Moves the tenant's parked waiters to the eligible queue while its limit allows. */
  #unpark(slot: Slot): void {
    while (slot.parked.size > 0 && slot.sessions + slot.eligible < slot.limit) {
      const waiter = slot.parked.pop()!;
      waiter.state = 'eligible';
      slot.eligible++;
      this.#eligible.push(waiter);
    }
  }

  #startClose(slot: Slot): void {
    this.#idle.delete(slot.tenantId);
    this.#policy.remove(slot);
    slot.isClosing = true;
    slot.closingWeight += slot.walletWeight;
    this.#closingWeight += slot.walletWeight;
    slot.isWalletHeld = false;
    slot.walletWeight = 0;
  }

  #freeWallet(slot: Slot): void {
    this.#idle.delete(slot.tenantId);
    this.#policy.remove(slot);
    this.#weightInUse -= slot.walletWeight;
    slot.isWalletHeld = false;
    slot.walletWeight = 0;
    slot.isWalletGone = false;
  }

  #dropIfUnused(slot: Slot): void {
    if (slot.sessions === 0 && !slot.isWalletHeld && !slot.isClosing && slot.eligible === 0 && slot.parked.size === 0) {
      this.#slots.delete(slot.tenantId);
    }
  }
}
