/**
 * The live sessions of a pool, in acquire order: leak warnings for sessions held past
 * `leakWarningMs`, revocation past `maxSessionMs`, and the wait for the last release at close.
 * One timer serves every session: sessions are kept oldest first, so the next one due is always
 * near the front.
 */
import type { EventHub } from '../observability/diagnostics.js';
import type { Session } from '../session.js';
import { LinkedList, ListNode } from './linked-list.js';
import { cappedDelay, setLongTimeout } from './timers.js';

/** A live session in the ledger's list (the session keeps it as its `ledgerNode`). */
class LiveSession extends ListNode {
  readonly session: Session;
  isWarned = false;
  /** Captured at acquire when leak warnings are on; V8 formats it only if read. */
  readonly origin: Error | undefined;

  constructor(session: Session, origin: Error | undefined) {
    super();
    this.session = session;
    this.origin = origin;
  }
}

export interface SessionLedgerOptions {
  leakWarningMs: number;
  maxSessionMs: number;
  now: () => number;
  events: EventHub;
  /** With a logger, a leak is logged from its event; without, it is also a process warning. */
  hasLogger: boolean;
  /** Ends a session held past `maxSessionMs`. */
  revokeOverAge: (session: Session) => void;
}

export class SessionLedger {
  readonly #options: SessionLedgerOptions;
  readonly #live = new LinkedList<LiveSession>();
  #timer: NodeJS.Timeout | undefined;
  #isStopped = false;
  #onDrained: (() => void) | undefined;

  constructor(options: SessionLedgerOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#live.size;
  }

  /** The live sessions, oldest first (a copy: revoking while iterating is safe). */
  sessions(): Session[] {
    return Array.from(this.#live, (live) => live.session);
  }

  track(session: Session, origin: Error | undefined): void {
    session.ledgerNode = this.#live.push(new LiveSession(session, origin));
    // A timer already set is for an older session, so it is due no later than this one's.
    if (this.#timer === undefined) this.#arm(this.#options.now());
  }

  /** The session ended; returns whether it was live. */
  forget(session: Session): boolean {
    const wasLive = session.ledgerNode !== undefined && this.#live.remove(session.ledgerNode);
    session.ledgerNode = undefined;
    if (this.#live.size === 0) this.#onDrained?.();
    return wasLive;
  }

  /** No more warnings or revocations (the pool is closing). */
  stop(): void {
    this.#isStopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Resolves when every live session has ended, or after `timeoutMs` (`Infinity`: no limit). */
  async drained(timeoutMs: number): Promise<void> {
    if (this.#live.size === 0) return;
    let timer: ReturnType<typeof setLongTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#onDrained = resolve;
      // Referenced: the process waits for the sessions (or the timeout) as it waits for close().
      timer = setLongTimeout(resolve, timeoutMs, true);
    });
    timer?.cancel();
    this.#onDrained = undefined;
  }

  /** Sets the one timer for the earliest pending leak warning or revocation. */
  #arm(now: number): void {
    const { leakWarningMs, maxSessionMs } = this.#options;
    if (this.#timer !== undefined || this.#live.size === 0 || this.#isStopped || (leakWarningMs === 0 && maxSessionMs === 0)) return;
    let next = Number.POSITIVE_INFINITY;
    if (maxSessionMs > 0) next = this.#live.first()!.session.acquiredAt + maxSessionMs;
    if (leakWarningMs > 0) {
      for (const live of this.#live) {
        if (live.isWarned) continue;
        next = Math.min(next, live.session.acquiredAt + leakWarningMs);
        break;
      }
    }
    if (!Number.isFinite(next)) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#sweep();
    }, cappedDelay(next - now));
    this.#timer.unref();
  }

  /** Warns about and revokes sessions held too long, oldest first, stopping at the first one too young for either. */
  #sweep(): void {
    const now = this.#options.now();
    const { leakWarningMs, maxSessionMs } = this.#options;
    const youngest = Math.min(leakWarningMs > 0 ? leakWarningMs : Infinity, maxSessionMs > 0 ? maxSessionMs : Infinity);
    for (const live of [...this.#live]) {
      const { session } = live;
      const age = now - session.acquiredAt;
      if (age < youngest) break;
      if (maxSessionMs > 0 && age >= maxSessionMs) {
        this.#options.revokeOverAge(session);
      } else if (leakWarningMs > 0 && !live.isWarned && age >= leakWarningMs) {
        live.isWarned = true;
        this.#warnLeak(session, live);
      }
    }
    this.#arm(now);
  }

  #warnLeak(session: Session, live: LiveSession): void {
    const heldMs = Math.round(this.#options.now() - session.acquiredAt);
    const stack = live.origin?.stack ?? '(acquire stack not captured)';
    if (!this.#options.hasLogger) {
      process.emitWarning(
        `tenant-pool: a session of tenant ${session.tenantId} has been held for ${heldMs} ms without release (leakWarningMs ${this.#options.leakWarningMs}). Release sessions with withSession(), \`await using\` or try/finally.`,
        { code: 'TENANT_POOL_SESSION_LEAK', detail: stack },
      );
    }
    this.#options.events.emit('tenant-pool:session:leak', () => ({ tenantId: session.tenantId, heldMs, stack }));
  }
}
