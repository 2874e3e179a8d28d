/**
 * Timeouts of any length. `setTimeout` holds at most 2^31 − 1 ms and fires after 1 ms for anything
 * longer, so a timeout written as 30 days would fire at once. These re-arm in steps instead, and
 * `Infinity` never fires.
 */
import { performance } from 'node:perf_hooks';

/** The clock the pool reads; monotonic, in milliseconds. */
export interface Clock {
  now(): number;
}

/** The longest delay `setTimeout` keeps as written. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A pending call of `fn`; `cancel()` is idempotent. */
export interface LongTimeout {
  cancel(): void;
}

/**
 * Calls `fn` once, `delayMs` from now (by the monotonic clock), however long that is; never for
 * `Infinity`. The timer does not keep the process alive unless `isRef` is true.
 */
export function setLongTimeout(fn: () => void, delayMs: number, isRef = false): LongTimeout {
  let timer: NodeJS.Timeout | undefined;
  if (!Number.isFinite(delayMs)) return { cancel() {} };
  const due = performance.now() + Math.max(0, delayMs);
  const arm = (): void => {
    const left = due - performance.now();
    if (left <= 0) {
      timer = undefined;
      fn();
      return;
    }
    timer = setTimeout(arm, Math.min(Math.ceil(left), MAX_TIMER_MS));
    if (!isRef) timer.unref();
  };
  timer = setTimeout(arm, Math.min(Math.max(0, Math.ceil(delayMs)), MAX_TIMER_MS));
  if (!isRef) timer.unref();
  return {
    cancel() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

/** A delay for `setTimeout` when the caller checks its own clock when it fires (and re-arms if early). */
export function cappedDelay(delayMs: number): number {
  return Math.min(Math.max(0, Math.ceil(delayMs)), MAX_TIMER_MS);
}
