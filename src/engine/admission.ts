/**
 * Admission: the promises, timers and aborts around the pure scheduler. Acquires wait here, in
 * arrival order, for capacity (`admit`) and then for their wallet to open (`open`), each until the
 * acquire's deadline or its signal; `pump` carries out what the scheduler decided (grants,
 * expiries, wallet closes) and sets the one timer for its next deadline.
 */
import { ms, type EventHub } from '../observability/diagnostics.js';
import { asPoolError, poolError } from '../../common/errors.js';
import type { CloseReason, WalletManager } from './wallet-manager.js';
import type { AcquireRequest, Grant, Scheduler, Waiter } from './scheduler.js';
import type { Session } from '../session.js';
import { cappedDelay, type Clock } from './timers.js';

interface PendingWaiter {
  resolve(grant: Grant): void;
  reject(error: Error): void;
}

export interface AdmissionOptions {
  scheduler: Scheduler;
  wallets: WalletManager;
  clock: Clock;
  events: EventHub;
}

export class Admission {
  readonly #scheduler: Scheduler;
  readonly #wallets: WalletManager;
  readonly #clock: Clock;
  readonly #events: EventHub;
  readonly #pending = new Map<Waiter, PendingWaiter>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #isClosed = false;
  readonly counters = { evictions: 0 };

  constructor(options: AdmissionOptions) {
    this.#scheduler = options.scheduler;
    this.#wallets = options.wallets;
    this.#clock = options.clock;
    this.#events = options.events;
  }

  /** Waits for the scheduler to admit a session of the tenant, until the deadline or the signal. */
  async admit(request: AcquireRequest, signal: AbortSignal | undefined): Promise<Grant> {
    if (this.#isClosed) throw poolError('ERR_POOL_CLOSED', 'the pool is closed');
    const result = this.#scheduler.acquire(request);
    if (result.kind === 'rejected') throw poolError(result.code, result.message, undefined, { tenantId: request.tenantId });
    if (result.kind === 'granted') return result.grant;
    const { waiter } = result;
    return new Promise<Grant>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.#scheduler.cancel(waiter)) return;
        this.#pending.delete(waiter);
        // Node's convention: an aborted operation rejects with the signal's reason, whatever it is.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        reject(signal?.reason);
        this.pump();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(waiter, {
        resolve: (grant) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(grant);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      });
      // The new waiter may be the head: eviction for it, and its deadline on the timer.
      this.pump();
    });
  }

  /**
   * Opens the wallet (or joins the open one) for an admitted session, within what is left of the
   * deadline: `start` begins the open. A session that arrives after the caller gave up is handed
   * back at once.
   */
  async open(tenantId: string, grant: Grant, deadline: number, signal: AbortSignal | undefined, start: () => Promise<Session>): Promise<Session> {
    const opening = start();
    opening.catch(() => {
      // No session was made: the grant comes back here, and a wallet that did not open holds nothing.
      if (this.#wallets.entry(tenantId) === undefined) this.#scheduler.walletLost(tenantId);
      this.#scheduler.release(grant, this.#clock.now());
      this.pump();
    });
    return new Promise<Session>((resolve, reject) => {
      let isSettled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (): boolean => {
        if (isSettled) return false;
        isSettled = true;
        clearTimeout(timer);
        timer = undefined;
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = (): void => {
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        if (finish()) reject(signal?.reason);
      };
      // Re-armed until the deadline by the pool's clock: setTimeout cannot hold more than 2^31 - 1 ms.
      const arm = (): void => {
        const remainingMs = deadline - this.#clock.now();
        if (!Number.isFinite(remainingMs) || isSettled) return;
        if (remainingMs > 0 && timer !== undefined) return;
        timer = setTimeout(() => {
          timer = undefined;
          if (deadline - this.#clock.now() > 0) return arm();
          if (finish()) reject(poolError('ERR_ACQUIRE_TIMEOUT', `the wallet of tenant ${tenantId} did not open in time (${this.#scheduler.queued} acquires queued)`, undefined, { tenantId: tenantId }));
        }, cappedDelay(remainingMs));
      };
      arm();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted === true) onAbort();
      opening.then(
        (session) => {
          if (this.#isClosed) {
            void session.release();
            if (finish()) reject(poolError('ERR_POOL_CLOSED', 'the pool closed while the session was being opened'));
          } else if (finish()) {
            resolve(session);
          } else {
            void session.release();
          }
        },
        (error: Error) => {
          if (!finish()) return;
          reject(this.#isClosed ? poolError('ERR_POOL_CLOSED', 'the pool closed while the session was being opened', error, { tenantId: tenantId }) : asPoolError(error, `opening the wallet of tenant ${tenantId}`, { tenantId: tenantId }));
        },
      );
    });
  }

  /** Carries out what the scheduler decided, and sets the timer for its next deadline. */
  pump(): void {
    const now = this.#clock.now();
    const effects = this.#scheduler.drain(now);
    for (const waiter of effects.granted) this.#pending.get(waiter)?.resolve(waiter.grant!);
    for (const waiter of effects.expired) {
      this.#pending
        .get(waiter)
        ?.reject(
          poolError('ERR_ACQUIRE_TIMEOUT', `tenant ${waiter.tenantId} was not admitted in time (${this.#scheduler.queued} acquires still queued, ${this.#scheduler.weightInUse} of ${this.#scheduler.capacity} weight in use)`, undefined, {
            tenantId: waiter.tenantId,
          }),
        );
    }
    for (const waiter of [...effects.granted, ...effects.expired]) this.#pending.delete(waiter);
    for (const close of effects.close) {
      if (close.reason === 'capacity') {
        this.counters.evictions++;
        this.#events.emit('tenant-pool:wallet:evict', () => ({ tenantId: close.tenantId, idleMs: ms(now - close.idleSince), forTenantId: close.forTenantId }));
      }
      void this.closeWallet(close.tenantId, close.reason);
    }
    this.armTimer(now);
  }

  /** Closes a wallet the scheduler let go of, and gives its weight back when done. */
  async closeWallet(tenantId: string, reason: CloseReason): Promise<void> {
    try {
      await this.#wallets.close(tenantId, reason);
    } catch {
      // A close that failed (its worker died) leaves no wallet either.
    } finally {
      this.#scheduler.closeDone(tenantId);
      this.pump();
    }
  }

  /** Sets the one timer for the scheduler's next deadline or idle expiry. */
  armTimer(now: number): void {
    const next = this.#scheduler.nextDeadline();
    if (next === this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = next;
    if (!Number.isFinite(next) || this.#isClosed) return;
    // A deadline past setTimeout's limit fires early; pump() then finds nothing due and re-arms.
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      this.pump();
    }, cappedDelay(next - now));
    this.#timer.unref();
  }

  /** The pool is closing (or lost its store): waiting acquires get `error` (`ERR_POOL_CLOSED`), and no timer is set again. */
  close(error: () => Error = () => poolError('ERR_POOL_CLOSED', 'the pool closed while this acquire was waiting')): void {
    this.#isClosed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const [waiter, pending] of [...this.#pending]) {
      this.#scheduler.cancel(waiter);
      pending.reject(error());
    }
    this.#pending.clear();
  }
}
