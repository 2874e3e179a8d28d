import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { damageWallet, rejectsWith, walletNames, usePool } from './helpers.js';

const BAD_IDS: unknown[] = ['../x', '../../etc/passwd', 'a/b', 'a\\b', '..', '.', '', 'x'.repeat(65), 'é', 'tenant.sqlite', 'a b', '/abs', null, 42, {}, undefined];

test('path-like and malformed tenant ids are ERR_INVALID_ARGUMENT everywhere, and no file is made', async () => {
  await using pool = await usePool();
  const { dataDir } = pool.options;
  const before = await walletNames(pool.options);
  for (const id of BAD_IDS) {
    const what = JSON.stringify(id) ?? String(id);
    if (id !== undefined) await rejectsWith(pool.tenants.create({ tenantId: id as string }), 'ERR_INVALID_ARGUMENT', `create ${what}`);
    await rejectsWith(pool.tenants.get(id as string), 'ERR_INVALID_ARGUMENT', `get ${what}`);
    await rejectsWith(pool.acquire(id as string), 'ERR_INVALID_ARGUMENT', `acquire ${what}`);
    await rejectsWith(pool.tenants.delete(id as string), 'ERR_INVALID_ARGUMENT', `delete ${what}`);
  }
  assert.equal(await walletNames(pool.options), before);
  assert.not.ok(existsSync(join(dataDir, '..', 'x.sqlite')));
  const ok = await pool.tenants.create({ tenantId: 'Ok_id-9'.padEnd(64, 'z') });
  assert.is(ok.tenantId.length, 64);
});

test('unknown tenants, duplicate ids and bad create options get their codes', async () => {
  await using pool = await usePool();
  await rejectsWith(pool.acquire('missing'), 'ERR_TENANT_NOT_FOUND');
  await rejectsWith(pool.tenants.get('missing'), 'ERR_TENANT_NOT_FOUND');
  await rejectsWith(pool.tenants.delete('missing'), 'ERR_TENANT_NOT_FOUND');
  await rejectsWith(pool.tenants.update('missing', { label: 'x' }), 'ERR_TENANT_NOT_FOUND');
  await pool.tenants.create({ tenantId: 'dup' });
  await rejectsWith(pool.tenants.create({ tenantId: 'dup' }), 'ERR_TENANT_EXISTS');
  const [first, second] = await Promise.allSettled([pool.tenants.create({ tenantId: 'race' }), pool.tenants.create({ tenantId: 'race' })]);
  assert.is(first.status, 'fulfilled');
  assert.is(second.status === 'rejected' && (second.reason as { code?: string }).code, 'ERR_TENANT_EXISTS');
  await rejectsWith(pool.tenants.create({ kdf: 'scrypt' as never }), 'ERR_INVALID_ARGUMENT', 'kdf');
  await rejectsWith(pool.tenants.create({ passphrase: '' }), 'ERR_INVALID_ARGUMENT', 'empty passphrase');
  await rejectsWith(pool.tenants.create({ maxSessions: 0 }), 'ERR_INVALID_ARGUMENT', 'maxSessions');
  await rejectsWith(pool.tenants.create({ weights: { wallet: -1 } }), 'ERR_INVALID_ARGUMENT', 'weights');
  await rejectsWith(pool.tenants.create({ metadata: { a: 1 as never } }), 'ERR_INVALID_ARGUMENT', 'metadata');
  await rejectsWith(pool.tenants.create({ nope: 1 } as never), 'ERR_INVALID_ARGUMENT', 'unknown option');
  await rejectsWith(pool.tenants.update('dup', { weights: { heavy: 1 } as never }), 'ERR_INVALID_ARGUMENT', 'update weights');
  const updated = await pool.tenants.update('dup', { label: 'L', maxSessions: 3, weights: { wallet: 8 }, metadata: { k: 'v' } });
  assert.equal(updated, { ...updated, label: 'L', maxSessions: 3, weights: { wallet: 8 }, metadata: { k: 'v' } });
  assert.is((await pool.tenants.update('dup', { label: null })).label, undefined);
});

test('non-JSON values, non-string tags and bad arguments are ERR_INVALID_ARGUMENT; the session stays usable', async () => {
  await using pool = await usePool({ maxValueBytes: 1024 });
  const { tenantId } = await pool.tenants.create();
  await pool.withSession(tenantId, async (s) => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    const badValues: unknown[] = [undefined, () => 1, 10n, Symbol('s'), NaN, Infinity, cyclic, { nested: { f: () => 1 } }, [undefined], new Date(), new Map(), 'x'.repeat(2000)];
    for (const value of badValues) await rejectsWith(s.records.save('c', 'id', value as never), 'ERR_INVALID_ARGUMENT', `value ${typeof value}`);
    const badTags: unknown[] = [{ a: 1 }, { a: null }, { a: ['x'] }, 'tag', ['a'], { '': 'x' }];
    for (const tags of badTags) await rejectsWith(s.records.save('c', 'id', 1, tags as never), 'ERR_INVALID_ARGUMENT', `tags ${JSON.stringify(tags)}`);
    await rejectsWith(s.records.find('c', { a: 2 as never }), 'ERR_INVALID_ARGUMENT', 'find tags');
    await rejectsWith(s.records.find('c', {}, { limit: 0 }), 'ERR_INVALID_ARGUMENT', 'limit');
    await rejectsWith(s.records.save('', 'id', 1), 'ERR_INVALID_ARGUMENT', 'empty category');
    await rejectsWith(s.records.get('c', 5 as never), 'ERR_INVALID_ARGUMENT', 'numeric id');
    await rejectsWith(s.keys.sign('kid', 'text' as never), 'ERR_INVALID_ARGUMENT', 'sign data');
    await rejectsWith(s.keys.verify('abc', new Uint8Array(1), [1, 2] as never), 'ERR_INVALID_ARGUMENT', 'verify signature');
    await rejectsWith(s.run('no-such-task'), 'ERR_TASK_NOT_FOUND');
    // Nothing was written by the refused calls, and the session still works.
    assert.equal(await s.records.find('c'), []);
    await s.records.save('c', 'id', { fine: [1, 'two', null] }, { t: 'v' });
    assert.equal((await s.records.get('c', 'id'))?.value, { fine: [1, 'two', null] });
  });
  assert.is(pool.stats().sessions, 0);
  assert.is(pool.stats().totals.workerCrashes, 0);
});

test('a damaged wallet (file, or profile key row) is ERR_WALLET_CORRUPT for that tenant only; a wrong key is still told apart', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 0 });
  const bad = await pool.tenants.create({ tenantId: 'bad', passphrase: 'pw', kdf: 'argon2i-int' });
  const good = await pool.tenants.create({ tenantId: 'good' });
  await damageWallet(pool.options, 'bad', 'garble');
  await rejectsWith(pool.acquire(bad.tenantId, { passphrase: 'pw' }), 'ERR_WALLET_CORRUPT', 'garbled file');
  await rejectsWith(pool.acquire(bad.tenantId, { passphrase: 'not pw' }), 'ERR_WALLET_KEY_INVALID', 'wrong key on a garbled file');
  await damageWallet(pool.options, 'bad', 'empty');
  await rejectsWith(pool.acquire(bad.tenantId, { passphrase: 'pw' }), 'ERR_WALLET_CORRUPT', 'empty file');
  await pool.withSession(good.tenantId, (s) => s.records.save('c', 'still', 'works'));
  const st = pool.stats();
  assert.is(st.sessions, 0);
  assert.is(st.totals.workerCrashes, 0);
});

test('tenants.delete revokes live sessions (ERR_TENANT_DELETED), closes the wallet and removes its files', async () => {
  await using pool = await usePool();
  const { tenantId } = await pool.tenants.create({ tenantId: 'doomed' });
  const session = await pool.acquire(tenantId);
  await session.records.save('c', 'r', 1);
  await pool.tenants.delete(tenantId);
  await rejectsWith(session.records.get('c', 'r'), 'ERR_TENANT_DELETED');
  await session.release();
  await rejectsWith(pool.acquire(tenantId), 'ERR_TENANT_NOT_FOUND');
  assert.equal((await walletNames(pool.options)).filter((f) => f.startsWith('doomed')), []);
  const st = pool.stats();
  assert.is(st.sessions, 0);
  assert.is(st.weightInUse, 0);
  assert.is(st.totals.revoked, 1);
  // The id can be used again, for a fresh, empty wallet.
  await pool.tenants.create({ tenantId });
  assert.is(await pool.withSession(tenantId, (s) => s.records.get('c', 'r')), null);
});

test.run();
