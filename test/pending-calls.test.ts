import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { PendingCalls } from '../src/threads/pending-calls.js';

test('pending calls behave as a map of ids handed out in order, and the ring stays within 4 × the calls in flight', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          { arbitrary: fc.constant({ op: 'call' as const }), weight: 60 },
          { arbitrary: fc.record({ op: fc.constant('settle' as const), pick: fc.nat() }), weight: 15 },
          // The newest call settles first: the older ones stay pending while later ids take turns of the ring.
          { arbitrary: fc.constant({ op: 'newest' as const }), weight: 45 },
          { arbitrary: fc.constant({ op: 'all' as const }), weight: 1 },
        ),
        { maxLength: 1000, size: 'max' },
      ),
      fc.integer({ min: 0, max: 2 ** 40 }),
      (ops, firstId) => {
        const calls = new PendingCalls<{ id: number }>(4);
        const model = new Map<number, { id: number }>();
        let next = firstId;
        let peak = 0;
        for (const step of ops) {
          if (step.op === 'call') {
            const value = { id: next };
            calls.set(next, value);
            model.set(next, value);
            next++;
          } else if (step.op === 'settle') {
            // Mostly a pending call; now and then an id that is not (settled already, or never sent).
            const ids = [...model.keys()];
            const id = ids.length > 0 && step.pick % 7 !== 0 ? ids[step.pick % ids.length]! : firstId + (step.pick % (next - firstId + 2)) - 1;
            assert.is(calls.take(id), model.get(id));
            model.delete(id);
          } else if (step.op === 'newest') {
            const id = [...model.keys()].pop();
            if (id === undefined) continue;
            assert.is(calls.take(id), model.get(id));
            model.delete(id);
          } else {
            assert.equal(calls.takeAll(), [...model.values()], 'every call, oldest first');
            model.clear();
          }
          assert.is(calls.size, model.size);
          peak = Math.max(peak, model.size);
          assert.ok(calls.capacity <= Math.max(4, 4 * peak), `${calls.capacity} slots for at most ${peak} calls in flight`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('a call pending for a long time does not grow the ring, and is still found', () => {
  const calls = new PendingCalls<string>(64);
  calls.set(0, 'long task');
  for (let id = 1; id < 100_000; id++) {
    calls.set(id, `call ${id}`);
    if (id > 8) assert.is(calls.take(id - 8), `call ${id - 8}`);
  }
  assert.is(calls.capacity, 64);
  assert.is(calls.size, 9);
  assert.is(calls.take(0), 'long task');
  assert.equal(calls.takeAll(), Array.from({ length: 8 }, (_, i) => `call ${99_992 + i}`));
  assert.is(calls.size, 0);
});

test.run();
