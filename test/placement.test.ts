import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { placeTenant, rankWorkers } from '../src/engine/placement.js';

test('a tenant ranks workers the same way every time, and rankings differ across tenants', () => {
  assert.equal(rankWorkers('tenant-a', 8), rankWorkers('tenant-a', 8));
  const firsts = new Set(Array.from({ length: 200 }, (_, i) => rankWorkers(`t${i}`, 8)[0]));
  assert.is(firsts.size, 8, 'every worker is some tenant’s first choice');
});

test('with room everywhere a tenant goes to its first-ranked worker', () => {
  const loads = [0, 0, 0, 0];
  for (let i = 0; i < 50; i++) assert.is(placeTenant(`t${i}`, loads), rankWorkers(`t${i}`, 4)[0]);
});

test('placing many tenants keeps every worker within max(ceil(average), floor(1.1 × average))', () => {
  const loads = [0, 0, 0, 0, 0];
  for (let i = 0; i < 1000; i++) {
    const index = placeTenant(`tenant-${i}`, loads);
    loads[index]! += 1;
    const total = loads.reduce((a, b) => a + b, 0);
    const bound = Math.max(Math.ceil(total / loads.length), Math.floor((1.1 * total) / loads.length));
    assert.ok(Math.max(...loads) <= bound, `max ${Math.max(...loads)} within ${bound} at ${total}`);
  }
});

test('a few busy tenants spread evenly: 8 on 2 workers are 4 and 4, 6 on 4 are at most 2 each', () => {
  for (const [count, workers, most] of [
    [8, 2, 4],
    [6, 4, 2],
  ] as const) {
    for (let seed = 0; seed < 50; seed++) {
      const loads = Array.from({ length: workers }, () => 0);
      for (let i = 0; i < count; i++) loads[placeTenant(`s${seed}-t${i}`, loads)]! += 1;
      assert.ok(Math.max(...loads) <= most, `${count} on ${workers}: ${loads.join('/')}`);
    }
  }
});

test('a worker at its bound is skipped for the next in the ranking; unavailable workers are skipped', () => {
  const ranking = rankWorkers('x', 3);
  const loads = [0, 0, 0];
  loads[ranking[0]!] = 5;
  assert.is(placeTenant('x', loads), ranking[1]);
  assert.is(placeTenant('x', [0, 0, 0], (i) => i !== ranking[0]), ranking[1]);
});

test.run();
