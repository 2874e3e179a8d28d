/**
 * Limits and hangs: a worker module that never loads, timeouts past setTimeout's range, the record
 * size limit over tags, hostile names, weights, wallets of weight 0, updates during acquires, the
 * pool's state after close.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { startChild } from './child.js';
import { disposePool, eventually, openPool, rejectsWith, rootKey, tempDir, until, usePool } from './helpers.js';

const counterModule = join(import.meta.dirname, 'fixtures', 'counter-module.ts');

/** Lets timers of a few milliseconds run: to show that a timeout written as 2^31 ms or more has not fired at once. */
async function pastShortTimers(): Promise<void> {
  await new Promise<void>((resolve) => setTimeout(resolve, 100));
}

test('a worker module whose import never finishes: open() fails ERR_WORKER_START_TIMEOUT naming the module, and no thread is left', async () => {
  const dataDir = tempDir();
  const module = join(import.meta.dirname, 'fixtures', 'hang-module.mjs');
  const key = rootKey();
  const child = startChild('start-timeout.ts', [dataDir, key, module]);
  // The child has nothing left to do after reporting: it exits by itself unless a thread is left.
  const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const { code, signal, stderr } = await child.exited;
  clearTimeout(guard);
  assert.is(signal, null, `the process exited by itself (no thread kept it alive): ${stderr}`);
  assert.is(code, 0, stderr);
  const report = JSON.parse(child.lines[0]!) as { code: string; name: string; message: string };
  assert.is(report.name, 'TenantPoolError');
  assert.is(report.code, 'ERR_WORKER_START_TIMEOUT');
  assert.match(report.message, module);
  // The folder is free again.
  await (await TenantPool.open({ dataDir, rootKey: key, workers: 1 })).close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('timeouts of 2^31 ms and more wait as written; Infinity and null mean no limit; close() validates its timeout', async () => {
  for (const timeoutMs of [2 ** 31, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER, Infinity, null]) {
    await using pool = await usePool({ capacity: 5, leakWarningMs: 2 ** 31, maxSessionMs: 2 ** 31 + 1 });
    await pool.tenants.create({ tenantId: 'a' });
    await pool.tenants.create({ tenantId: 'b' });
    const a = await pool.acquire('a');
    const b = pool.acquire('b', { timeoutMs });
    await pastShortTimers();
    assert.is(pool.stats().queued, 1, `timeoutMs ${String(timeoutMs)}: still waiting`);
    assert.is(pool.stats().totals.revoked, 0, 'maxSessionMs 2^31 + 1 has not fired');
    await a.release();
    await (await b).release();
  }
  await using pool = await usePool({ capacity: 5, acquireTimeoutMs: 2 ** 31 + 7 });
  await pool.tenants.create({ tenantId: 'a' });
  await pool.tenants.create({ tenantId: 'b' });
  const a = await pool.acquire('a');
  const b = pool.acquire('b');
  await pastShortTimers();
  assert.is(pool.stats().queued, 1, 'acquireTimeoutMs 2^31 + 7: still waiting');
  await a.release();
  const held = await b;
  for (const bad of [-1, Number.NaN, '10', {}]) await rejectsWith(pool.close({ timeoutMs: bad as never }), 'ERR_INVALID_ARGUMENT', `close timeoutMs ${JSON.stringify(bad)}`);
  // Infinity: close waits for the live session however long it takes.
  const closing = pool.close({ timeoutMs: Infinity });
  let isClosed = false;
  void closing.then(() => (isClosed = true));
  await pastShortTimers();
  assert.not.ok(isClosed, 'close waits for the session');
  await held.records.save('c', 'r', 'during close');
  await held.release();
  await closing;
});

test('the record size limit covers tags, id and category; tags per record and per query are bounded, with clear errors', async () => {
  await using pool = await usePool({ maxValueBytes: 1024, modules: [counterModule] });
  await pool.tenants.create({ tenantId: 't' });
  await pool.withSession('t', async (s) => {
    await rejectsWith(s.records.save('c', 'r', 1, { a: 'x'.repeat(600), b: 'y'.repeat(600) }), 'ERR_INVALID_ARGUMENT', 'tags over the limit');
    await rejectsWith(s.records.save('c', 'i'.repeat(1000), 'v'.repeat(100)), 'ERR_INVALID_ARGUMENT', 'id and value over the limit');
    await s.records.save('c', 'r', 1, { a: 'x'.repeat(500), b: 'y'.repeat(500) });
    const many = Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`t${i}`, '']));
    await rejectsWith(s.records.save('d', 'r', 1, many), 'ERR_INVALID_ARGUMENT', '257 tags');
    const query = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`t${i}`, 'x']));
    await rejectsWith(s.records.find('c', query(65)), 'ERR_INVALID_ARGUMENT', '65 tags in a query');
    await rejectsWith(s.records.find('c', query(1001)), 'ERR_INVALID_ARGUMENT', '1,001 tags in a query');
    assert.equal(await s.records.find('c', query(64)), []);
    await rejectsWith(
      s.records.save('c', 'deep', JSON.parse(`${'['.repeat(20_000)}${']'.repeat(20_000)}`) as never),
      'ERR_INVALID_ARGUMENT',
      'a value nested 20,000 deep',
    );
    // A task saving through the worker's wallet is held to the same limit.
    await rejectsWith(s.run('saveAndFind', { id: 'x', tag: 'z'.repeat(1020) }), 'ERR_INVALID_ARGUMENT', 'from a task');
  });
});

test('__proto__ and constructor as tag names or metadata keys are stored and matched like any other name', async () => {
  await using pool = await usePool();
  const metadata = JSON.parse('{"__proto__": "meta", "constructor": "c"}') as Record<string, string>;
  await pool.tenants.create({ tenantId: 't', metadata });
  const info = await pool.tenants.get('t');
  assert.equal(Object.entries(info.metadata).sort(), [['__proto__', 'meta'], ['constructor', 'c']]);
  await pool.withSession('t', async (s) => {
    await s.records.save('c', 'proto', 1, JSON.parse('{"__proto__": "x", "kind": "a"}') as Record<string, string>);
    await s.records.save('c', 'plain', 2, { kind: 'a' });
    const got = await s.records.get('c', 'proto');
    assert.equal(Object.entries(got!.tags).sort(), [['__proto__', 'x'], ['kind', 'a']]);
    assert.equal((await s.records.find('c', JSON.parse('{"__proto__": "x"}') as Record<string, string>)).map((r) => r.id), ['proto']);
    assert.equal(await s.records.find('c', JSON.parse('{"__proto__": "y"}') as Record<string, string>), [], 'the filter is not dropped');
    assert.equal(await s.records.find('c', JSON.parse('{"__proto__": "y", "kind": "a"}') as Record<string, string>), []);
    assert.equal((await s.records.find('c', { constructor: 'nope', kind: 'a' })).length, 0);
  });
});

test('ill-formed Unicode (a lone surrogate) is refused in every name; in a value it round-trips exactly', async () => {
  await using pool = await usePool({ modules: [counterModule] });
  const lone = 'x\uD800';
  await rejectsWith(pool.tenants.create({ label: lone }), 'ERR_INVALID_ARGUMENT', 'label');
  await rejectsWith(pool.tenants.create({ metadata: { [lone]: 'v' } }), 'ERR_INVALID_ARGUMENT', 'metadata key');
  await rejectsWith(pool.tenants.create({ metadata: { k: lone } }), 'ERR_INVALID_ARGUMENT', 'metadata value');
  await rejectsWith(pool.tenants.create({ passphrase: `pw${lone}`, kdf: 'argon2i-int' }), 'ERR_INVALID_ARGUMENT', 'passphrase');
  await pool.tenants.create({ tenantId: 't' });
  await pool.withSession('t', async (s) => {
    await rejectsWith(s.records.save('c', lone, 1), 'ERR_INVALID_ARGUMENT', 'id');
    await rejectsWith(s.records.save(lone, 'r', 1), 'ERR_INVALID_ARGUMENT', 'category');
    await rejectsWith(s.records.save('c', 'r', 1, { [lone]: 'v' }), 'ERR_INVALID_ARGUMENT', 'tag name');
    await rejectsWith(s.records.save('c', 'r', 1, { k: lone }), 'ERR_INVALID_ARGUMENT', 'tag value');
    await rejectsWith(s.records.get('c', lone), 'ERR_INVALID_ARGUMENT', 'get');
    await rejectsWith(s.records.delete('c', lone), 'ERR_INVALID_ARGUMENT', 'delete');
    await rejectsWith(s.records.find('c', { k: lone }), 'ERR_INVALID_ARGUMENT', 'find');
    await rejectsWith(s.keys.sign(lone, new Uint8Array(1)), 'ERR_INVALID_ARGUMENT', 'kid');
    await rejectsWith(s.run(lone), 'ERR_INVALID_ARGUMENT', 'task');
    const value = { text: `a\uD800b\uDFFFc`, list: ['\uDC00', 'ok \u{1F600}'] };
    await s.records.save('c', 'v', value);
    assert.equal((await s.records.get('c', 'v'))?.value, value);
  });
});

test('weights: larger than capacity or past a sane range are refused at open (options and config file) and at create', async () => {
  const dataDir = tempDir();
  try {
    await rejectsWith(TenantPool.open({ dataDir, capacity: 4 }), 'ERR_INVALID_CONFIG', 'default weights 4 + 1 over capacity 4');
    await rejectsWith(TenantPool.open({ dataDir, capacity: 10, weights: { wallet: 10 } }), 'ERR_INVALID_CONFIG', 'wallet 10 + session 1 over 10');
    await rejectsWith(TenantPool.open({ dataDir, weights: { wallet: 2 ** 53 - 2 } }), 'ERR_INVALID_CONFIG', 'wallet near 2^53');
    await rejectsWith(TenantPool.open({ dataDir, capacity: 2 ** 53 }), 'ERR_INVALID_CONFIG', 'capacity 2^53');
    await rejectsWith(TenantPool.open({ dataDir, weights: { session: 1.5 } }), 'ERR_INVALID_CONFIG', 'fractional weight');
    const configFile = join(dataDir, 'pool.json');
    writeFileSync(configFile, JSON.stringify({ capacity: 3 }));
    const error = await rejectsWith(TenantPool.open({ dataDir, configFile }), 'ERR_INVALID_CONFIG', 'config file');
    assert.match(error.message, configFile);
    await using pool = await TenantPool.open({ dataDir, rootKey: rootKey(), workers: 1, capacity: 100 });
    await rejectsWith(pool.tenants.create({ weights: { wallet: 2 ** 53 } }), 'ERR_INVALID_ARGUMENT', 'tenant wallet weight 2^53');
    await rejectsWith(pool.tenants.create({ weights: { wallet: 100 } }), 'ERR_INVALID_ARGUMENT', 'tenant weights over capacity');
    const t = await pool.tenants.create({ weights: { wallet: 99 } });
    await pool.withSession(t.tenantId, async () => {});
    assert.is(pool.stats().weightInUse, 99);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a wallet of weight 0 (pool-wide or per tenant) still closes after its idle TTL, and its modules are disposed', async () => {
  const pool = await openPool({ weights: { wallet: 0, session: 1 }, walletIdleTtlMs: 0, modules: [counterModule] });
  try {
    await pool.tenants.create({ tenantId: 'free' });
    await pool.withSession('free', async (s) => s.run('increment'));
    await eventually(() => pool.stats().totals.walletCloses === 1, 'the weight-0 wallet closed at its last release');
    assert.equal(pool.stats().wallets, { open: 0, idle: 0, opening: 0 });
    assert.equal((await pool.withSession('free', async (s) => s.records.get('lifecycle', 'disposed')))?.value, { count: 1 }, 'dispose() ran');
  } finally {
    await disposePool(pool);
  }
  await using ttl = await usePool({ walletIdleTtlMs: 30 });
  await ttl.tenants.create({ tenantId: 'light', weights: { wallet: 0 } });
  await ttl.withSession('light', async () => {});
  assert.is(ttl.stats().wallets.idle, 1);
  await eventually(() => ttl.stats().wallets.idle === 0 && ttl.stats().totals.walletCloses === 1, 'closed after its TTL');
  assert.is(ttl.stats().weightInUse, 0);
});

test('tenants.update during acquires fails none of them; a raised maxSessions admits the parked waiters at once, in arrival order', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 60_000, keyCache: { maxEntries: 0 } });
  await pool.tenants.create({ tenantId: 'slow', kdf: 'argon2i-int' });
  await pool.closeIdleWallets();
  const acquires = Array.from({ length: 6 }, async () => pool.acquire('slow', { timeoutMs: 30_000 }));
  await until(() => pool.stats().wallets.opening === 1, 'the wallet is opening');
  await pool.tenants.update('slow', { label: 'renamed', metadata: { k: 'v' } });
  const sessions = await Promise.all(acquires);
  for (const s of sessions) await s.release();

  await pool.tenants.create({ tenantId: 'limited', maxSessions: 1 });
  const first = await pool.acquire('limited');
  const order: string[] = [];
  const waiting = ['w1', 'w2', 'w3'].map(async (name) => {
    const s = await pool.acquire('limited', { timeoutMs: 30_000 });
    order.push(name);
    return s;
  });
  await until(() => pool.stats().queued === 3, 'three waiters parked by the limit');
  await pool.tenants.update('limited', { maxSessions: 5 });
  const late = pool.acquire('limited').then((s) => {
    order.push('late');
    return s;
  });
  const granted = await Promise.all([...waiting, late]);
  assert.equal(order, ['w1', 'w2', 'w3', 'late'], 'the parked waiters first, in arrival order; no release was needed');
  for (const s of [first, ...granted]) await s.release();
});

test('after close() the pool holds no weight; acquires waiting for a derivation slot get ERR_POOL_CLOSED', async () => {
  const pool = await openPool({ kdfConcurrency: 1, walletIdleTtlMs: 60_000, keyCache: { maxEntries: 0 } });
  await pool.tenants.create({ tenantId: 'idle' });
  await pool.withSession('idle', async () => {});
  const held = await pool.acquire('idle');
  for (const id of ['k1', 'k2', 'k3']) await pool.tenants.create({ tenantId: id, kdf: 'argon2i-int' });
  await pool.closeIdleWallets();
  const opening = ['k1', 'k2', 'k3'].map(async (id) => pool.acquire(id, { timeoutMs: 30_000 }));
  await until(() => pool.stats().wallets.opening === 3, 'three opens, two of them waiting for the one derivation slot');
  const closed = pool.close({ timeoutMs: 0 });
  for (const p of opening) await rejectsWith(p, 'ERR_POOL_CLOSED');
  await closed;
  const st = pool.stats();
  assert.equal({ weightInUse: st.weightInUse, sessions: st.sessions, queued: st.queued, wallets: st.wallets }, { weightInUse: 0, sessions: 0, queued: 0, wallets: { open: 0, idle: 0, opening: 0 } });
  await rejectsWith(held.records.get('c', 'x'), 'ERR_SESSION_REVOKED');
  rmSync(pool.options.dataDir, { recursive: true, force: true });
});

test('revocation has its own code and reason; a caller\'s own misuse stays ERR_SESSION_RELEASED', async () => {
  await using pool = await usePool();
  const reasons: string[] = [];
  const onRevoke = (m: unknown): void => void reasons.push((m as { reason: string }).reason);
  subscribe('tenant-pool:session:revoke', onRevoke);
  try {
    await pool.tenants.create({ tenantId: 't' });
    const mine = await pool.acquire('t');
    await mine.release();
    const released = await rejectsWith(mine.records.get('c', 'x'), 'ERR_SESSION_RELEASED');
    assert.is((released as { reason?: string }).reason, undefined);
    assert.is((released as { tenantId?: string }).tenantId, 't');
    const live = await pool.acquire('t');
    await pool.close({ timeoutMs: 0 });
    const revoked = await rejectsWith(live.records.get('c', 'x'), 'ERR_SESSION_REVOKED');
    assert.is((revoked as { reason?: string }).reason, 'close');
    assert.equal(reasons, ['close']);
  } finally {
    unsubscribe('tenant-pool:session:revoke', onRevoke);
  }
});

test.run();
