/**
 * tenants.rekey: a new passphrase, a move from raw to Argon2, a rotated managed secret; sessions
 * revoked; SIGKILL at any moment leaves a tenant that opens with the old key or the new one.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type TenantPoolError } from '../common/errors.js';
import { TenantPool } from '../src/pool.js';
import { startChild } from './child.js';
import { filesContaining, rejectsWith, rootKey, storeOptionsFor, tempDir, testSqliteFiles, until, walletNames, usePool } from './helpers.js';
import { legacyRawTenant } from './legacy.js';

test('rekey: a new passphrase opens and the old does not; records, tags and keys survive (a key still signs for its public key); sessions are revoked', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 60_000 });
  await pool.tenants.create({ tenantId: 'p', passphrase: 'old pass', kdf: 'argon2i-int' });
  const { kid, publicKey } = await pool.withSession(
    'p',
    async (s) => {
      for (let i = 0; i < 50; i++) await s.records.save('c', `r${i}`, { i }, { parity: i % 2 === 0 ? 'even' : 'odd' });
      return s.keys.create({ routing: true });
    },
    { passphrase: 'old pass' },
  );
  const live = await pool.acquire('p', { passphrase: 'old pass' });
  await rejectsWith(pool.tenants.rekey('p', { passphrase: 'wrong', newPassphrase: 'new pass' }), 'ERR_WALLET_KEY_INVALID', 'a wrong current passphrase');
  await rejectsWith(pool.tenants.rekey('p', { newPassphrase: 'new pass' }), 'ERR_WALLET_KEY_INVALID', 'no current passphrase');
  await rejectsWith(pool.tenants.rekey('p', { passphrase: 'old pass', kdf: 'raw' }), 'ERR_INVALID_ARGUMENT', 'raw with a passphrase');
  const info = await pool.tenants.rekey('p', { passphrase: 'old pass', newPassphrase: 'new pass', kdf: 'argon2id' });
  assert.is(info.kdf, 'argon2id');
  const revoked = (await rejectsWith(live.records.get('c', 'r1'), 'ERR_SESSION_REVOKED')) as TenantPoolError<'ERR_SESSION_REVOKED'>;
  assert.is(revoked.reason, 'rekey');
  await rejectsWith(pool.acquire('p', { passphrase: 'old pass' }), 'ERR_WALLET_KEY_INVALID', 'the old passphrase');
  await pool.withSession(
    'p',
    async (s) => {
      assert.is(await s.records.count('c'), 50);
      assert.equal((await s.records.find('c', { parity: 'odd' })).length, 25);
      const data = new TextEncoder().encode('signed after a rekey');
      assert.ok(await s.keys.verify(publicKey, data, await s.keys.sign(kid, data)));
    },
    { passphrase: 'new pass' },
  );
  assert.is(await pool.tenants.byRoutingKey(publicKey), 'p', 'routes stay');
  assert.is((await walletNames(pool.options)).filter((n) => n.startsWith('p.') && !/-wal$|-shm$/.test(n)).length, 1, 'one wallet (the old file is gone)');
  assert.is(pool.stats().weightInUse, 4, 'one idle wallet, nothing leaked');
});

testSqliteFiles('rekey moves a passphrase tenant made with raw to argon2i-mod, and rotates a managed tenant\'s secret', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  await legacyRawTenant(dataDir, key, 'legacy pass');
  const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  try {
    await pool.withSession('legacy', async (s) => s.records.save('c', 'kept', 'yes'), { passphrase: 'legacy pass' });
    assert.is((await pool.tenants.rekey('legacy', { passphrase: 'legacy pass' })).kdf, 'argon2i-mod');
    assert.is((await pool.withSession('legacy', async (s) => s.records.get('c', 'kept'), { passphrase: 'legacy pass' }))?.value, 'yes');

    await pool.tenants.create({ tenantId: 'managed' });
    await pool.withSession('managed', async (s) => s.records.save('c', 'r', 'managed data'));
    const before = readdirSync(join(dataDir, 'wallets')).filter((n) => n.startsWith('managed.'));
    const rotated = await pool.tenants.rekey('managed');
    assert.is(rotated.managed, true);
    assert.not.equal(readdirSync(join(dataDir, 'wallets')).filter((n) => n.startsWith('managed.')), before, 'a new file under a new key');
    assert.is((await pool.withSession('managed', async (s) => s.records.get('c', 'r')))?.value, 'managed data');
    await rejectsWith(pool.tenants.rekey('managed', { passphrase: 'x' }), 'ERR_INVALID_ARGUMENT', 'a managed tenant has no passphrase');
    // A managed tenant given a passphrase becomes a passphrase tenant.
    const converted = await pool.tenants.rekey('managed', { newPassphrase: 'now a person holds it' });
    assert.equal([converted.managed, converted.kdf], [false, 'argon2i-mod']);
    await rejectsWith(pool.acquire('managed'), 'ERR_WALLET_KEY_INVALID');
    assert.is((await pool.withSession('managed', async (s) => s.records.get('c', 'r'), { passphrase: 'now a person holds it' }))?.value, 'managed data');
  } finally {
    await pool.close();
  }
  assert.equal(filesContaining(dataDir, 'legacy pass'), [], 'no passphrase in any file');
  rmSync(dataDir, { recursive: true, force: true });
});

test('an update made while a rekey runs is kept: label and limits stay, the new key opens', async () => {
  await using pool = await usePool();
  await pool.tenants.create({ tenantId: 'p', passphrase: 'one', kdf: 'argon2i-int', label: 'before' });
  const rekeying = pool.tenants.rekey('p', { passphrase: 'one', newPassphrase: 'two' });
  // The rekey has closed the wallet and is deriving keys and writing the new file on a worker.
  await until(() => pool.stats().totals.walletCloses === 1, 'the rekey closed the wallet');
  const updated = await pool.tenants.update('p', { label: 'during', maxSessions: 7 });
  assert.is(updated.label, 'during');
  const rekeyed = await rekeying;
  assert.equal([rekeyed.label, rekeyed.maxSessions], ['during', 7]);
  assert.equal([(await pool.tenants.get('p')).label, (await pool.tenants.get('p')).maxSessions], ['during', 7]);
  await pool.withSession('p', async () => {}, { passphrase: 'two' });
});

/** Rekeys in a child killed at random moments, eight times; after each, the tenant opens with the old key or the new one. */
async function killRekeys(mode: 'rewrap' | 'rotate'): Promise<void> {
  const dataDir = tempDir();
  const key = rootKey();
  const setup = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  await setup.tenants.create({ tenantId: 'pp', passphrase: 'pw-0', kdf: 'argon2i-int' });
  await setup.tenants.create({ tenantId: 'mg' });
  await setup.close();
  let current = 0;
  const savedPp: number[] = [];
  const savedMg: number[] = [];
  let seed = 7;
  const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
  const opensWith = async (pool: TenantPool, n: number): Promise<boolean> => {
    try {
      await pool.withSession('pp', async () => {}, { passphrase: `pw-${n}` });
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_WALLET_KEY_INVALID') return false;
      throw error;
    }
  };
  for (let trial = 0; trial < 8; trial++) {
    const child = startChild('rekey-loop.ts', [dataDir, key, String(current), mode]);
    const after = 1 + random(9);
    await child.waitFor((lines) => lines.length > after).catch(() => {});
    child.kill('SIGKILL');
    await child.exited;
    let acked = current;
    for (const line of child.lines) {
      const [kind, what, n] = line.split(' ');
      if (kind === 'rekeyed') acked = Number(what);
      if (kind === 'saved' && what === 'pp') savedPp.push(Number(n));
      if (kind === 'saved' && what === 'mg') savedMg.push(Number(n));
    }
    await using pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
    // The acknowledged passphrase, or the next one if a rekey to it had committed when the kill came.
    if (await opensWith(pool, acked)) current = acked;
    else {
      assert.ok(await opensWith(pool, acked + 1), `trial ${trial}: pw-${acked} and pw-${acked + 1} both fail`);
      current = acked + 1;
    }
    await pool.withSession('mg', async () => {});
  }
  const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  try {
    await pool.withSession(
      'pp',
      async (s) => {
        for (const n of savedPp) assert.is((await s.records.get('c', `r${n}`))?.value, n, `pp r${n}`);
      },
      { passphrase: `pw-${current}` },
    );
    await pool.withSession('mg', async (s) => {
      for (const n of savedMg) assert.is((await s.records.get('c', `r${n}`))?.value, n, `mg r${n}`);
    });
    assert.ok(current > 0, 'some rekeys went through');
    // The sweep left exactly one file per tenant.
    assert.equal((await walletNames({ dataDir, ...storeOptionsFor(dataDir) } as Parameters<typeof walletNames>[0])).filter((n) => !/-wal$|-shm$/.test(n)).length, 2);
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

test('SIGKILL at random moments of rekeys: the tenant opens with the old key or the new one, never neither; every acknowledged save is there', async () => {
  await killRekeys('rewrap');
});

test('the same for rekeys that rotate the data key (the wallet written anew, every row encrypted again): old key or new, never neither, nothing lost, one wallet per tenant left', async () => {
  await killRekeys('rotate');
});

test.run();
