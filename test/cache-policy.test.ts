import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CachePolicy, type CacheEntry } from '../src/engine/cache-policy.js';
import { FrequencySketch } from '../src/engine/frequency-sketch.js';

function seeded(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 48271) % 2147483647) / 2147483647;
}

function entry(policy: CachePolicy, tenantId: string, walletWeight = 4): CacheEntry {
  return { tenantId, walletWeight, segment: 'none', isListed: false, isCandidate: false, prev: undefined, next: undefined, hash: policy.hash(tenantId) };
}

test('sketch: a first sighting sets only the doorkeeper; counts saturate at 15 + 1; hostile names hash like any other', () => {
  const sketch = new FrequencySketch(64, seeded(1));
  for (const key of ['__proto__', 'constructor', '\uD800', 'x'.repeat(100_000)]) {
    const h = sketch.hash(key);
    assert.is(sketch.frequency(h), 0);
    sketch.increment(h);
    assert.is(sketch.frequency(h), 1, 'the doorkeeper holds the first sighting');
    sketch.increment(h);
    assert.is(sketch.frequency(h), 2);
  }
  const hot = sketch.hash('hot');
  for (let i = 0; i < 100; i++) sketch.increment(hot);
  assert.is(sketch.frequency(hot), 16, '4-bit counters saturate');
});

test('sketch: every sample the counts halve and the doorkeeper clears', () => {
  const sketch = new FrequencySketch(64, seeded(2));
  const hot = sketch.hash('hot');
  for (let i = 0; i < 9; i++) sketch.increment(hot); // door + 8
  assert.is(sketch.frequency(hot), 9);
  const filler = sketch.hash('filler');
  // Fill the sample with one other key (one distinct key: the sketch does not grow).
  for (let i = 9; i < sketch.sampleSize; i++) sketch.increment(filler);
  assert.is(sketch.frequency(hot), 4, '8 halves to 4, and the doorkeeper bit is gone');
});

test('sketch: it grows to the tenants in use, forgetting its counts, and no further', () => {
  const sketch = new FrequencySketch(64, seeded(3));
  assert.is(sketch.capacity, 64);
  const distinct = 5000;
  for (let round = 0; round < 30; round++) for (let i = 0; i < distinct; i++) sketch.increment(sketch.hash(`t${i}`));
  assert.is(sketch.capacity, 8192, `sized for ${sketch.capacity} keys with ${distinct} in use`);
  const bytes = sketch.bytes;
  assert.is(bytes, 5 * 8192, '5 bytes per key it is sized for: 4 counters and a byte of doorkeeper');
  for (let round = 0; round < 30; round++) for (let i = 0; i < distinct; i++) sketch.increment(sketch.hash(`t${i}`));
  assert.is(sketch.bytes, bytes, 'the same tenants do not grow it further');
});

test('sketch: the hash is seeded: tenant IDs that collide under one seed do not under another', () => {
  const a = new FrequencySketch(64, seeded(4));
  const b = new FrequencySketch(64, seeded(5));
  let same = 0;
  for (let i = 0; i < 1000; i++) if (a.hash(`t${i}`) === b.hash(`t${i}`)) same++;
  assert.is(same, 0);
});

test('policy: a candidate enters the main space only if more frequent than the victim; the loser is the one closed', () => {
  const policy = new CachePolicy({ capacity: 100, expectedWallets: 25, random: seeded(6) });
  const hold = (e: CacheEntry, uses: number): void => {
    for (let i = 0; i < uses; i++) policy.recordAccess(e.hash, i > 0);
    policy.add(e);
    policy.pin(e);
    policy.unpin(e);
  };
  const old = entry(policy, 'old');
  hold(old, 3);
  assert.equal(policy.evict(0, undefined), [], 'nothing missing, nothing closed');
  const rare = entry(policy, 'rare');
  hold(rare, 1);
  // Window overflow: old moves to probation first, then rare. The newest candidate (rare) duels the victim (old).
  assert.equal(policy.evict(4, undefined).map((e) => e.tenantId), ['rare'], 'the rare newcomer loses to the frequent incumbent');
  const hot = entry(policy, 'hot');
  hold(hot, 8);
  assert.equal(policy.evict(4, undefined).map((e) => e.tenantId), ['old'], 'the hot newcomer pushes out the less frequent incumbent');
  assert.equal(policy.evict(4, hot), [], 'the waiter’s own wallet is never offered');
});

test('policy: a pinned wallet is out of reach; used again in probation it is protected', () => {
  const policy = new CachePolicy({ capacity: 100, expectedWallets: 25, random: seeded(7) });
  const a = entry(policy, 'a');
  const b = entry(policy, 'b');
  for (const e of [a, b]) {
    policy.recordAccess(e.hash, false);
    policy.add(e);
    policy.pin(e);
  }
  assert.equal(policy.evict(100, undefined), [], 'pinned wallets are never chosen');
  policy.unpin(a);
  policy.unpin(b);
  assert.is(policy.evict(4, undefined).length, 1);
  const left = a.segment === 'none' ? b : a;
  assert.is(left.segment, 'probation');
  policy.pin(left);
  assert.is(left.segment, 'protected', 'a hit in probation promotes');
  policy.unpin(left);
  assert.equal(policy.shape(), { held: 1, window: 0, probation: 0, protected: 4, windowMax: 1 });
});

test.run();
