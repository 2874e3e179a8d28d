/**
 * The key tier: a closed wallet reopens without a key derivation when its worker kept its key, and
 * only under its rules — the same passphrase, the same key (a rekey or a delete drops it), the
 * bounds, and `passphrases: false` for operators who want Argon2 on every open. Unit tests of the
 * tier itself check sealing, zeroing and expiry.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KeyTier } from '../workers/key-tier.js';
import { rejectsWith, usePool } from './helpers.js';

const PASSPHRASE = 'a passphrase';

test('a passphrase tenant evicted and acquired again with its passphrase reopens from the key tier (no derivation); a wrong passphrase still derives and fails, and leaves the entry for the right one', async () => {
  await using pool = await usePool({ workers: 1, walletIdleTtlMs: 0 });
  await pool.tenants.create({ tenantId: 'alice', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
  await pool.withSession('alice', async (s) => s.records.save('c', 'r', 'kept'), { passphrase: PASSPHRASE });
  const before = pool.stats().totals;
  assert.is(await pool.withSession('alice', async (s) => (await s.records.get('c', 'r'))?.value, { passphrase: PASSPHRASE }), 'kept');
  let after = pool.stats().totals;
  assert.is(after.keyDerivations, before.keyDerivations, 'no derivation');
  assert.is(after.keyTierOpens, before.keyTierOpens + 1);
  assert.is(after.walletOpens, before.walletOpens + 1, 'the wallet did close and open again');
  await rejectsWith(pool.acquire('alice', { passphrase: 'wrong' }), 'ERR_WALLET_KEY_INVALID');
  after = pool.stats().totals;
  assert.is(after.keyDerivations, before.keyDerivations + 1, 'a wrong passphrase is derived (and fails)');
  await pool.withSession('alice', async () => {}, { passphrase: PASSPHRASE });
  assert.is(pool.stats().totals.keyTierOpens, before.keyTierOpens + 2, 'the entry still serves the right passphrase');
});

test('a rekey and a delete drop the kept key: the next open derives with the new key, and a tenant created again under the same id never opens with the old one', async () => {
  await using pool = await usePool({ workers: 2, walletIdleTtlMs: 0 });
  await pool.tenants.create({ tenantId: 'bob', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
  await pool.withSession('bob', async () => {}, { passphrase: PASSPHRASE });
  await pool.tenants.rekey('bob', { passphrase: PASSPHRASE, newPassphrase: 'another one' });
  const before = pool.stats().totals;
  await rejectsWith(pool.acquire('bob', { passphrase: PASSPHRASE }), 'ERR_WALLET_KEY_INVALID', 'the old passphrase');
  await pool.withSession('bob', async () => {}, { passphrase: 'another one' });
  assert.is(pool.stats().totals.keyTierOpens, before.keyTierOpens, 'nothing served from an entry of the old key');
  await pool.withSession('bob', async () => {}, { passphrase: 'another one' });
  assert.is(pool.stats().totals.keyTierOpens, before.keyTierOpens + 1, 'the new key is kept');
  await pool.tenants.delete('bob');
  await pool.tenants.create({ tenantId: 'bob', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
  const again = pool.stats().totals;
  await rejectsWith(pool.acquire('bob', { passphrase: 'another one' }), 'ERR_WALLET_KEY_INVALID', 'the deleted tenant’s passphrase');
  assert.is(pool.stats().totals.keyTierOpens, again.keyTierOpens);
});

test('keyCache.passphrases false: every open of a passphrase tenant derives; managed Argon2 tenants still reopen from the tier; maxEntries 0 turns it off', async () => {
  {
    await using pool = await usePool({ workers: 1, walletIdleTtlMs: 0, keyCache: { passphrases: false } });
    await pool.tenants.create({ tenantId: 'p', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
    await pool.tenants.create({ tenantId: 'm', kdf: 'argon2i-int' });
    await pool.withSession('p', async () => {}, { passphrase: PASSPHRASE });
    await pool.withSession('m', async () => {});
    const before = pool.stats().totals;
    await pool.withSession('p', async () => {}, { passphrase: PASSPHRASE });
    await pool.withSession('m', async () => {});
    const after = pool.stats().totals;
    assert.equal([after.keyDerivations - before.keyDerivations, after.keyTierOpens - before.keyTierOpens], [1, 1]);
  }
  await using off = await usePool({ workers: 1, walletIdleTtlMs: 0, keyCache: { maxEntries: 0 } });
  await off.tenants.create({ tenantId: 'm', kdf: 'argon2i-int' });
  await off.withSession('m', async () => {});
  await off.withSession('m', async () => {});
  assert.is(off.stats().totals.keyTierOpens, 0);
});

test("a kept key leaves no passphrase behind: after a passphrase tenant opened and closed twice (served by the tier), the worker's heap, collected in full, holds no string of it", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-heap-'));
  try {
    await using pool = await usePool({ workers: 1, walletIdleTtlMs: 0, modules: [fileURLToPath(new URL('./fixtures/heap-module.ts', import.meta.url))] });
    const passphrase = `marker-${randomBytes(12).toString('hex')}`;
    await pool.tenants.create({ tenantId: 'carol', passphrase, kdf: 'argon2i-int' });
    await pool.withSession('carol', async (s) => s.records.save('c', 'r', 1), { passphrase });
    await pool.withSession('carol', async () => {}, { passphrase });
    assert.is(pool.stats().totals.keyTierOpens, 2, 'the entry (made at the create) is there and served both opens');
    await pool.tenants.create({ tenantId: 'probe' });
    const path = await pool.withSession('probe', async (s) => s.run('snapshot', { path: join(dir, 'worker.heapsnapshot') }));
    const text = readFileSync(path as string, 'utf8');
    assert.ok(text.length > 100_000, 'a heap snapshot');
    assert.ok(text.includes('probe'), 'it holds the strings of the worker (the open tenant\'s id)');
    assert.not.ok(text.includes(passphrase), 'the passphrase is not in the worker heap');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the tier itself: keys bound to the key check value, zeroed when they go, bounded in entries (least recent first) and in age', () => {
  let now = 0;
  const tier = new KeyTier({ maxEntries: 2, ttlMs: 1000, passphrases: true }, () => now);
  const key = randomBytes(32);
  const verifier = randomBytes(32);
  tier.put('a', key, verifier, null);
  assert.ok(tier.bytes > 0);
  assert.equal(tier.take('a', verifier, randomBytes(32)), key);
  assert.is(tier.take('a', randomBytes(32), randomBytes(32)), undefined, 'another key check value: a rekeyed or new tenant');
  assert.is(tier.size, 0, 'and the stale entry is gone');
  tier.put('p', key, verifier, 'right');
  assert.is(tier.take('p', verifier, 'wrong'), undefined);
  assert.is(tier.take('p', verifier, randomBytes(32)), undefined, 'a secret that is not a passphrase');
  assert.equal(tier.take('p', verifier, 'right'), key);
  tier.put('b', key, verifier, null);
  tier.put('c', key, verifier, null);
  assert.is(tier.size, 2);
  assert.is(tier.take('p', verifier, 'right'), undefined, 'the least recently used went first');
  now = 2000;
  assert.is(tier.take('b', verifier, randomBytes(32)), undefined, 'expired');
  tier.clear();
  assert.is(tier.size, 0);
  const off = new KeyTier({ maxEntries: 10, ttlMs: 1000, passphrases: false });
  off.put('p', key, verifier, 'x');
  assert.is(off.size, 0, 'passphrase tenants kept only when allowed');
});

test.run();
