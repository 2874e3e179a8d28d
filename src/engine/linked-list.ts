/**
 * A doubly linked list of nodes the caller keeps: O(1) push and remove, iteration in push order.
 *
 * The pool keeps its live sessions in such lists rather than in a `Map` or `Set`. Under a steady
 * stream of acquires and releases a `Map` rehashes its table over and over, and each table it drops
 * is old-generation garbage still pointing at young sessions, so the scavenger keeps copying and
 * promoting them (and all they hold) until the next full collection. A removed node here is
 * unlinked and cleared: nothing dead points at anything.
 */
export class ListNode {
  /** Links, for the list alone. */
  prev: ListNode | null = null;
  next: ListNode | null = null;
  list: LinkedList<ListNode> | null = null;
}

/** A node carrying a value. */
export class ValueNode<T> extends ListNode {
  readonly value: T;
  constructor(value: T) {
    super();
    this.value = value;
  }
}

export class LinkedList<N extends ListNode> implements Iterable<N> {
  #head: ListNode | null = null;
  #tail: ListNode | null = null;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Appends the node (one not in a list) and gives it back. */
  push(node: N): N {
    if (node.list !== null) throw new Error('the node is in a list already');
    node.list = this;
    node.prev = this.#tail;
    if (this.#tail === null) this.#head = node;
    else this.#tail.next = node;
    this.#tail = node;
    this.#size++;
    return node;
  }

  /** Removes the node; false if it is not in this list (removed already). */
  remove(node: ListNode): boolean {
    if (node.list !== this) return false;
    if (node.prev === null) this.#head = node.next;
    else node.prev.next = node.next;
    if (node.next === null) this.#tail = node.prev;
    else node.next.prev = node.prev;
    node.prev = null;
    node.next = null;
    node.list = null;
    this.#size--;
    return true;
  }

  /** The node pushed first of those still in the list. */
  first(): N | undefined {
    return (this.#head ?? undefined) as N | undefined;
  }

  /** Nodes oldest first. Removing the node just given is safe; to remove others meanwhile, iterate a copy (`[...list]`). */
  *[Symbol.iterator](): IterableIterator<N> {
    for (let node = this.#head; node !== null; ) {
      const next = node.next;
      yield node as N;
      node = next;
    }
  }
}
