import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import bs58 from 'bs58';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { disposePool, filesUnder, modeOf, openPool, placesHolding, rejectsWith, rootKey as newRootKey, storeOptionsFor, usePool } from './helpers.js';

test('records: save, get, replace, find by tags (AND), limit, delete', async () => {
  await using pool = await usePool();
  const { tenantId } = await pool.tenants.create();
  await pool.withSession(tenantId, async (s) => {
    await s.records.save('cred', 'a', { n: 1, nested: [true, null, 'x'] }, { type: 'degree', issuer: 'uni' });
    await s.records.save('cred', 'b', { n: 2 }, { type: 'degree', issuer: 'gov' });
    await s.records.save('cred', 'c', 'plain string', { type: 'license', issuer: 'gov' });
    await s.records.save('other', 'a', 42, { type: 'degree' });
    assert.equal(await s.records.get('cred', 'a'), { category: 'cred', id: 'a', value: { n: 1, nested: [true, null, 'x'] }, tags: { type: 'degree', issuer: 'uni' } });
    assert.is(await s.records.get('cred', 'zzz'), null);
    const degrees = await s.records.find('cred', { type: 'degree' });
    assert.equal(degrees.map((r) => r.id), ['a', 'b']);
    assert.equal((await s.records.find('cred', { type: 'degree', issuer: 'gov' })).map((r) => r.id), ['b']);
    assert.equal((await s.records.find('cred', { issuer: 'gov' }, { limit: 1 })).map((r) => r.id), ['b']);
    assert.equal((await s.records.find('cred')).map((r) => r.id), ['a', 'b', 'c']);
    assert.equal(await s.records.find('cred', { type: 'nope' }), []);
    // Replace: value and tags both change; the old tag no longer matches.
    await s.records.save('cred', 'a', { n: 10 }, { type: 'expired' });
    assert.equal((await s.records.get('cred', 'a'))?.value, { n: 10 });
    assert.equal((await s.records.find('cred', { type: 'degree' })).map((r) => r.id), ['b']);
    assert.equal((await s.records.find('cred', { type: 'expired' })).map((r) => r.id), ['a']);
    assert.is(await s.records.delete('cred', 'a'), true);
    assert.is(await s.records.delete('cred', 'a'), false);
    assert.is(await s.records.get('cred', 'a'), null);
    assert.equal(await s.records.find('cred', { type: 'expired' }), []);
  });
});

test('keys: Ed25519 signatures verify with node:crypto and with keys.verify; private keys stay in the worker', async () => {
  await using pool = await usePool();
  const { tenantId } = await pool.tenants.create();
  await pool.withSession(tenantId, async (s) => {
    const key = await s.keys.create();
    const data = new TextEncoder().encode('hello');
    const signature = await s.keys.sign(key.kid, data);
    assert.is(signature.length, 64);
    const raw = bs58.decode(key.publicKey);
    assert.is(raw.length, 32);
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
    assert.ok(cryptoVerify(null, data, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature));
    assert.is(await s.keys.verify(key.publicKey, data, signature), true);
    assert.is(await s.keys.verify(key.publicKey, new TextEncoder().encode('hellp'), signature), false);
    assert.equal(Object.keys(key).sort(), ['kid', 'publicKey']);
    await rejectsWith(s.keys.sign('no-such-kid', data), 'ERR_KEY_NOT_FOUND');
    await rejectsWith(s.keys.verify('not base58 0OIl', data, signature), 'ERR_INVALID_ARGUMENT');
  });
});

test('tenant isolation: a session sees only its own tenant’s records and keys', async () => {
  await using pool = await usePool({ workers: 1 });
  const a = await pool.tenants.create({ tenantId: 'tenant-a' });
  const b = await pool.tenants.create({ tenantId: 'tenant-b' });
  const sa = await pool.acquire(a.tenantId);
  const sb = await pool.acquire(b.tenantId);
  // One worker: both wallets are open side by side in the same thread.
  assert.is(pool.stats().workers[0]?.tenants, 2);
  await sa.records.save('c', 'shared-id', { owner: 'a' }, { k: 'v' });
  const kid = (await sa.keys.create()).kid;
  assert.is(await sb.records.get('c', 'shared-id'), null);
  assert.equal(await sb.records.find('c', { k: 'v' }), []);
  await rejectsWith(sb.keys.sign(kid, new Uint8Array([1])), 'ERR_KEY_NOT_FOUND');
  await sb.records.save('c', 'shared-id', { owner: 'b' });
  assert.equal((await sa.records.get('c', 'shared-id'))?.value, { owner: 'a' });
  await sa.release();
  await sb.release();
});

test('data survives a pool restart; no secret appears in any file (or any row of the database); files are 0600', async () => {
  const marker = `MARKER${Date.now()}x`;
  const rootKey = newRootKey();
  const first = await openPool({ walletIdleTtlMs: 0, rootKey });
  const { dataDir } = first.options;
  const managed = await first.tenants.create({ tenantId: 'managed', label: `${marker}-label`, metadata: { note: `${marker}-meta` } });
  const locked = await first.tenants.create({ tenantId: 'locked', passphrase: `${marker}-pass`, kdf: 'argon2i-int' });
  await first.withSession(managed.tenantId, (s) => s.records.save('c', 'r1', { secret: `${marker}-value` }, { tag: `${marker}-tag` }));
  await first.withSession(locked.tenantId, (s) => s.records.save('c', 'r1', `${marker}-locked`), { passphrase: `${marker}-pass` });
  // While the pool is open (WAL files present) nothing is in plaintext either.
  const s = await first.acquire(managed.tenantId);
  await s.records.save('c', 'r2', `${marker}-in-wal`);
  assert.equal(await placesHolding(first.options, marker), []);
  await s.release();
  await first.close();

  assert.equal(await placesHolding(first.options, marker), []);
  assert.equal(await placesHolding(first.options, rootKey), [], 'the root key is stored nowhere');
  if (first.options.postgres === undefined) {
    for (const file of filesUnder(dataDir)) assert.is(modeOf(file), 0o600, `${file} is 0600`);
    assert.is(modeOf(dataDir), 0o700);
    assert.is(modeOf(join(dataDir, 'wallets')), 0o700);
    assert.equal(readdirSync(join(dataDir, 'wallets')).sort().map((n) => n.replace(/\.[0-9a-f]{16}\./, '.*.')), ['locked.*.sqlite', 'managed.*.sqlite']);
  }

  const second = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey, workers: 2 });
  try {
    const info = await second.tenants.get('managed');
    assert.is(info.label, `${marker}-label`);
    assert.equal(info.metadata, { note: `${marker}-meta` });
    assert.is(info.managed, true);
    assert.is((await second.tenants.get('locked')).managed, false);
    await second.withSession('managed', async (s2) => {
      assert.equal((await s2.records.get('c', 'r1'))?.tags, { tag: `${marker}-tag` });
      assert.is((await s2.records.get('c', 'r2'))?.value, `${marker}-in-wal`);
    });
    const value = await second.withSession('locked', async (s2) => (await s2.records.get('c', 'r1'))?.value, { passphrase: `${marker}-pass` });
    assert.is(value, `${marker}-locked`);
  } finally {
    await disposePool(second);
  }
});

test.run();
