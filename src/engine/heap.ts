/**
 * A binary min-heap whose items know their own position, so any item can be removed in O(log n):
 * the scheduler takes waiters out of the middle on abort, timeout and grant. An item can sit in
 * two heaps at once if each uses its own index field.
 */
export class IndexedHeap<K extends string, T extends Record<K, number>> {
  readonly #items: T[] = [];
  readonly #less: (a: T, b: T) => boolean;
  readonly #key: K;

  /** `key` names the field of each item that holds its position in this heap (-1 when out). */
  constructor(key: K, less: (a: T, b: T) => boolean) {
    this.#key = key;
    this.#less = less;
  }

  get size(): number {
    return this.#items.length;
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  push(item: T): void {
    this.#place(item, this.#items.length);
    this.#items.push(item);
    this.#up(this.#items.length - 1);
  }

  pop(): T | undefined {
    const top = this.#items[0];
    if (top !== undefined) this.remove(top);
    return top;
  }

  /** Removes `item` if it is in this heap; returns whether it was. */
  remove(item: T): boolean {
    const index = item[this.#key];
    if (index < 0 || this.#items[index] !== item) return false;
    const last = this.#items.pop()!;
    this.#place(item, -1);
    if (last !== item) {
      this.#items[index] = last;
      this.#place(last, index);
      this.#up(index);
      this.#down(last[this.#key]);
    }
    return true;
  }

  #place(item: T, index: number): void {
    (item as Record<K, number>)[this.#key] = index;
  }

  #swap(i: number, j: number): void {
    const a = this.#items[i]!;
    const b = this.#items[j]!;
    this.#items[i] = b;
    this.#items[j] = a;
    this.#place(a, j);
    this.#place(b, i);
  }

  #up(index: number): void {
    let i = index;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(this.#items[i]!, this.#items[parent]!)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(index: number): void {
    let i = index;
    const n = this.#items.length;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < n && this.#less(this.#items[left]!, this.#items[smallest]!)) smallest = left;
      if (right < n && this.#less(this.#items[right]!, this.#items[smallest]!)) smallest = right;
      if (smallest === i) return;
      this.#swap(i, smallest);
      i = smallest;
    }
  }
}
