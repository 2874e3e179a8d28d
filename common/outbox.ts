/**
 * Batches messages to a port: everything sent in one turn of the event loop goes as one
 * postMessage (an array), flushed in a microtask. Under load this saves most of the per-message
 * cost on both sides; a lone message still leaves at once and alone.
 */
export class Outbox<T> {
  readonly #post: (message: T | T[]) => void;
  readonly #onUnsendable: (item: T, error: Error) => void;
  #items: T[] = [];
  #isScheduled = false;

  /** `onUnsendable` gets each item structured clone could not carry; the others are still sent. */
  constructor(post: (message: T | T[]) => void, onUnsendable: (item: T, error: Error) => void) {
    this.#post = post;
    this.#onUnsendable = onUnsendable;
  }

  push(item: T): void {
    this.#items.push(item);
    if (this.#isScheduled) return;
    this.#isScheduled = true;
    queueMicrotask(() => this.flush());
  }

  flush(): void {
    this.#isScheduled = false;
    const items = this.#items;
    if (items.length === 0) return;
    this.#items = [];
    try {
      this.#post(items.length === 1 ? items[0]! : items);
    } catch {
      // A failed clone sends nothing: send one by one, and report only those that cannot go.
      for (const item of items) {
        try {
          this.#post(item);
        } catch (error) {
          this.#onUnsendable(item, error as Error);
        }
      }
    }
  }
}

/** Calls `handle` on a message or on each message of a batch. */
export function unbatch<T>(message: T | T[], handle: (item: T) => void): void {
  if (Array.isArray(message)) for (const item of message) handle(item);
  else handle(message);
}
