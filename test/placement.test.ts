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

test('placing many tenants keeps every worker within (1 + 0.25) × average + 1', () => {
  const loads = [0, 0, 0, 0, 0];
  for (let i = 0; i < 1000; i++) {
    const index = placeTenant(`tenant-${i}`, loads);
    loads[index]! += 1;
    const total = loads.reduce((a, b) => a + b, 0);
    const bound = Math.ceil((1.25 * total) / loads.length);
    assert.ok(Math.max(...loads) <= bound, `max ${Math.max(...loads)} within ${bound} at ${total}`);
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
