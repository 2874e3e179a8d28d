/**
 * The calls a worker has not answered yet, by call id.
 *
 * Ids are handed out in order, so a call's slot in a power-of-two ring is its id's low bits, and a
 * lookup is one array read. A `Map` would do the same job, but under a steady stream of calls it
 * rehashes its table over and over; each table it drops is old-generation garbage that still points
 * at young objects (the calls' promises and replies), so the scavenger copies and promotes those too
 * until the next full collection. On the warm path that made every scavenge of the main thread a
 * few milliseconds. Here a settled call's slot is cleared, so nothing dead points anywhere.
 *
 * A call still pending when a later id needs its slot (a long task) moves to a side `Map`, which
 * such calls alone use: the ring grows with the calls in flight, not with how long one of them runs.
 */
export class PendingCalls<T> {
  #ids: number[];
  #values: Array<T | undefined>;
  #mask: number;
  /** Calls that outlived their ring slot. */
  readonly #overflow = new Map<number, T>();
  #inRing = 0;

  constructor(initialSize = 64) {
    const size = 2 ** Math.ceil(Math.log2(Math.max(2, initialSize)));
    this.#ids = new Array<number>(size).fill(-1);
    this.#values = new Array<T | undefined>(size).fill(undefined);
    this.#mask = size - 1;
  }

  get size(): number {
    return this.#inRing + this.#overflow.size;
  }

  /** The ring's slots (for tests: it stays within a small multiple of the calls in flight). */
  get capacity(): number {
    return this.#ids.length;
  }

  /** Adds a call; `id` must not be pending already (ids come from a counter). */
  set(id: number, value: T): void {
    if (this.#inRing >= this.#ids.length / 2) this.#grow();
    const slot = id & this.#mask;
    if (this.#values[slot] !== undefined) {
      // An older call still holds the slot: it has been pending a whole turn of the ring.
      this.#overflow.set(this.#ids[slot]!, this.#values[slot]!);
      this.#inRing--;
    }
    this.#ids[slot] = id;
    this.#values[slot] = value;
    this.#inRing++;
  }

  /** Removes the call and gives it back, or undefined if it is not pending. */
  take(id: number): T | undefined {
    const slot = id & this.#mask;
    if (this.#ids[slot] === id && this.#values[slot] !== undefined) {
      const value = this.#values[slot];
      this.#values[slot] = undefined;
      this.#ids[slot] = -1;
      this.#inRing--;
      return value;
    }
    const value = this.#overflow.get(id);
    if (value !== undefined) this.#overflow.delete(id);
    return value;
  }

  /** Removes every call and gives them back, oldest first. */
  takeAll(): T[] {
    const entries: Array<[number, T]> = [...this.#overflow];
    for (let slot = 0; slot < this.#ids.length; slot++) {
      const value = this.#values[slot];
      if (value !== undefined) entries.push([this.#ids[slot]!, value]);
    }
    this.#overflow.clear();
    this.#values.fill(undefined);
    this.#ids.fill(-1);
    this.#inRing = 0;
    return entries.sort((a, b) => a[0] - b[0]).map(([, value]) => value);
  }

  /** Doubles the ring. Ids in distinct slots of a ring differ in its low bits, so they stay apart in the larger one. */
  #grow(): void {
    const ids = this.#ids;
    const values = this.#values;
    const size = ids.length * 2;
    this.#ids = new Array<number>(size).fill(-1);
    this.#values = new Array<T | undefined>(size).fill(undefined);
    this.#mask = size - 1;
    for (let slot = 0; slot < ids.length; slot++) {
      const value = values[slot];
      if (value === undefined) continue;
      const id = ids[slot]!;
      this.#ids[id & this.#mask] = id;
      this.#values[id & this.#mask] = value;
    }
    values.fill(undefined);
  }
}
