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

test('a tenant that is not sticky (a raw key) goes to the least loaded worker, its ranking breaking ties', () => {
  const loads = [3, 1, 2, 1];
  const ranking = rankWorkers('r', 4);
  const least = ranking.find((i) => loads[i] === 1);
  assert.is(placeTenant('r', loads, () => true, false), least);
  assert.is(placeTenant('r', [0, 0, 0, 0], () => true, false), ranking[0], 'with equal loads, its first choice');
  assert.is(placeTenant('r', [0, 5, 5, 5], (i) => i !== 0, false), ranking.find((i) => i !== 0), 'an unavailable worker is skipped');
});

test('eight busy tenants of raw keys on two workers split four and four; sticky ones may split five and three (the slack the key tier needs)', () => {
  const place = (sticky: boolean): number[] => {
    const loads = [0, 0];
    for (let i = 0; i < 8; i++) loads[placeTenant(`w${i}`, loads, () => true, sticky)]! += 1;
    return loads;
  };
  assert.equal(place(false), [4, 4]);
  assert.equal(place(true).sort(), [3, 5], 'these ids split unevenly within the bound (the case the rule above fixes)');
});

test.run();
