import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { LinkedList, ValueNode } from '../src/engine/linked-list.js';

test('a linked list keeps push order through any pushes and removes, and a removed node holds no link', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof({ arbitrary: fc.constant(-1), weight: 3 }, { arbitrary: fc.nat(), weight: 2 }), { maxLength: 300, size: 'max' }), (ops) => {
      const list = new LinkedList<ValueNode<number>>();
      const model: Array<ValueNode<number>> = [];
      const removed: Array<ValueNode<number>> = [];
      let next = 0;
      for (const op of ops) {
        if (op === -1) {
          model.push(list.push(new ValueNode(next++)));
        } else if (op % 5 === 0 && removed.length > 0) {
          // Removing a node twice, or from a list it is not in, changes nothing.
          assert.not.ok(list.remove(removed[op % removed.length]!));
        } else if (model.length > 0) {
          const [node] = model.splice(op % model.length, 1);
          assert.ok(list.remove(node!));
          removed.push(node!);
          assert.equal([node!.prev, node!.next, node!.list], [null, null, null]);
        }
        assert.is(list.size, model.length);
        assert.equal([...list].map((n) => n.value), model.map((n) => n.value));
        assert.is(list.first(), model[0]);
      }
    }),
    { numRuns: 300 },
  );
});

test('removing the node just given while iterating goes on with the rest', () => {
  const list = new LinkedList<ValueNode<string>>();
  for (const v of ['a', 'b', 'c', 'd']) list.push(new ValueNode(v));
  const seen: string[] = [];
  for (const node of list) {
    seen.push(node.value);
    if (node.value !== 'c') list.remove(node);
  }
  assert.equal(seen, ['a', 'b', 'c', 'd']);
  assert.equal([...list].map((n) => n.value), ['c']);
});

test('a node is in one list at a time', () => {
  const a = new LinkedList<ValueNode<number>>();
  const b = new LinkedList<ValueNode<number>>();
  const node = a.push(new ValueNode(1));
  assert.throws(() => b.push(node), /in a list already/);
  assert.not.ok(b.remove(node));
  assert.is(a.size, 1);
  assert.ok(a.remove(node));
  assert.is(b.push(node), node);
  assert.is(b.size, 1);
});

test.run();
