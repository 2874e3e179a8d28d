import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { disposePool, openPool, rejectsWith, until, usePool } from './helpers.js';

test('concurrent first sessions share one open: one key derivation, one wallet', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 0, keyCache: { maxEntries: 0 } });
  const { tenantId } = await pool.tenants.create({ kdf: 'argon2i-int' });
  const before = pool.stats().totals;
  const sessions = await Promise.all(Array.from({ length: 12 }, () => pool.acquire(tenantId)));
  const after = pool.stats();
  assert.is(after.totals.keyDerivations - before.keyDerivations, 1);
  assert.is(after.totals.walletOpens - before.walletOpens, 1);
  assert.is(after.sessions, 12);
  assert.is(after.wallets.open, 1);
  assert.is(after.weightInUse, 4 + 12);
  // Every session runs on the same worker.
  assert.equal(after.workers.map((w) => w.sessions).sort(), [0, 12]);
  await Promise.all(sessions.map((s) => s.records.save('c', 'x', 1)));
  for (const s of sessions) await s.release();
});

test('the last release closes the wallet (walletIdleTtlMs 0); release is idempotent; calls after it reject', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 0 });
  const { tenantId } = await pool.tenants.create();
  const a = await pool.acquire(tenantId);
  const b = await pool.acquire(tenantId);
  await a.release();
  await a.release();
  assert.is(pool.stats().sessions, 1);
  assert.is(pool.stats().wallets.open, 1);
  await b.release();
  // The close runs on the tenant's own queue; a new acquire waits behind it and must open the wallet again.
  await pool.withSession(tenantId, () => undefined);
  assert.ok(pool.stats().totals.walletCloses >= 1);
  assert.is(pool.stats().totals.walletOpens, 2);
  await rejectsWith(a.records.get('c', 'x'), 'ERR_SESSION_RELEASED');
  await rejectsWith(b.keys.create(), 'ERR_SESSION_RELEASED');
  await rejectsWith(a.run('anything'), 'ERR_SESSION_RELEASED');
  const st = pool.stats();
  assert.is(st.sessions, 0);
  assert.is(st.totals.acquired, 3);
  assert.is(st.totals.released, 3);
});

test('withSession releases when fn throws; await using releases at scope end', async () => {
  await using pool = await usePool();
  const { tenantId } = await pool.tenants.create();
  const boom = new Error('boom');
  try {
    await pool.withSession(tenantId, async () => {
      throw boom;
    });
    assert.unreachable('withSession should rethrow');
  } catch (error) {
    assert.is(error, boom);
  }
  assert.is(pool.stats().sessions, 0);
  {
    await using session = await pool.acquire(tenantId);
    await session.records.save('c', 'id', true);
    assert.is(pool.stats().sessions, 1);
  }
  assert.is(pool.stats().sessions, 0);
});

test('a key derivation does not stall the worker: a warm tenant on the same worker is served while it runs', async () => {
  await using pool = await usePool({ workers: 1, walletIdleTtlMs: 60_000, keyCache: { maxEntries: 0 } });
  const warm = await pool.tenants.create();
  const cold = await pool.tenants.create({ kdf: 'argon2i-mod' });
  const session = await pool.acquire(warm.tenantId);
  await pool.closeIdleWallets();
  await session.records.save('c', 'r', 'v');
  const opening = pool.acquire(cold.tenantId, { timeoutMs: 60_000 });
  await until(() => pool.stats().wallets.opening === 1, 'the open was sent');
  for (let i = 0; i < 20; i++) assert.is((await session.records.get('c', 'r'))?.value, 'v');
  assert.is(pool.stats().wallets.opening, 1, 'twenty calls answered while the Argon2 derivation still runs');
  await (await opening).release();
  await session.release();
});

test('an idle wallet stays open within its TTL: the next session derives no key', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 60_000 });
  const { tenantId } = await pool.tenants.create({ kdf: 'argon2i-int' });
  await pool.withSession(tenantId, (s) => s.records.save('c', 'a', 1));
  const derivations = pool.stats().totals.keyDerivations;
  assert.is(pool.stats().wallets.idle, 1);
  assert.is(pool.stats().weightInUse, 4, 'an idle wallet keeps its wallet weight');
  await pool.withSession(tenantId, (s) => s.records.get('c', 'a'));
  assert.is(pool.stats().totals.keyDerivations, derivations);
  assert.is(pool.stats().totals.walletOpens, 1);
});

test('passphrase tenants: right passphrase opens; wrong one is ERR_WALLET_KEY_INVALID, also while open, without a second derivation', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 0 });
  const { tenantId } = await pool.tenants.create({ passphrase: 'correct horse', kdf: 'argon2i-int' });
  await rejectsWith(pool.acquire(tenantId, { passphrase: 'wrong' }), 'ERR_WALLET_KEY_INVALID', 'wrong passphrase, closed wallet');
  await rejectsWith(pool.acquire(tenantId), 'ERR_WALLET_KEY_INVALID', 'no passphrase');
  const held = await pool.acquire(tenantId, { passphrase: 'correct horse' });
  const derivations = pool.stats().totals.keyDerivations;
  await rejectsWith(pool.acquire(tenantId, { passphrase: 'wrong' }), 'ERR_WALLET_KEY_INVALID', 'wrong passphrase, open wallet');
  const second = await pool.acquire(tenantId, { passphrase: 'correct horse' });
  assert.is(pool.stats().totals.keyDerivations, derivations, 'neither check ran Argon2 again');
  await second.release();
  await held.release();
  const st = pool.stats();
  assert.is(st.sessions, 0);
  assert.is(st.weightInUse, 4 * (st.wallets.open + st.wallets.idle + st.wallets.opening), 'only wallet weight is left');
  const managed = await pool.tenants.create();
  await rejectsWith(pool.acquire(managed.tenantId, { passphrase: 'x' }), 'ERR_INVALID_ARGUMENT', 'passphrase for a managed tenant');
});

test('an acquire times out while a slow wallet opens, holds nothing, and the open still serves the next acquire', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 60_000, keyCache: { maxEntries: 0 } });
  const { tenantId } = await pool.tenants.create({ kdf: 'argon2i-mod' });
  await pool.closeIdleWallets();
  const late = pool.acquire(tenantId, { timeoutMs: 0 });
  const patient = pool.acquire(tenantId, { timeoutMs: 30_000 });
  await rejectsWith(late, 'ERR_ACQUIRE_TIMEOUT');
  const session = await patient;
  const st = pool.stats();
  assert.is(st.sessions, 1);
  assert.is(st.totals.timedOut, 1);
  assert.is(st.totals.keyDerivations, 2, 'one at create, one shared open');
  await session.release();
});

test('an aborted acquire rejects with the signal’s reason and holds nothing', async () => {
  await using pool = await usePool();
  const { tenantId } = await pool.tenants.create({ kdf: 'argon2i-int' });
  const controller = new AbortController();
  const reason = new Error('client went away');
  const pending = pool.acquire(tenantId, { signal: controller.signal });
  controller.abort(reason);
  try {
    await pending;
    assert.unreachable('should reject');
  } catch (error) {
    assert.is(error, reason);
  }
  try {
    await pool.acquire(tenantId, { signal: AbortSignal.abort(reason) });
    assert.unreachable('should reject');
  } catch (error) {
    assert.is(error, reason);
  }
  // The open the aborted acquire started completes and its session is handed back.
  await pool.withSession(tenantId, () => undefined);
  assert.is(pool.stats().sessions, 0);
});

test('close: acquires reject ERR_POOL_CLOSED; live sessions are revoked after the timeout; close is idempotent', async () => {
  const pool = await openPool();
  const { tenantId } = await pool.tenants.create();
  const held = await pool.acquire(tenantId);
  const closing = pool.close({ timeoutMs: 0 });
  await rejectsWith(pool.acquire(tenantId), 'ERR_POOL_CLOSED');
  await closing;
  await pool.close();
  const revoked = await rejectsWith(held.records.get('c', 'x'), 'ERR_SESSION_REVOKED');
  assert.is((revoked as { reason?: string }).reason, 'close');
  await held.release();
  await rejectsWith(pool.tenants.list(), 'ERR_POOL_CLOSED');
  assert.is(pool.stats().totals.revoked, 1);
  await disposePool(pool);
});

test.run();
