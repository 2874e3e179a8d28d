import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { disposePool, eventually, openPool, rejectsWith, rootKey, tempDir, storeOptionsFor, usePool } from './helpers.js';

const fixture = (name: string): string => join(import.meta.dirname, 'fixtures', name);
const modules = [fixture('counter-module.ts')];

test('a task uses a DI-registered service of its own tenant’s container', async () => {
  await using pool = await usePool({ modules, walletIdleTtlMs: 60_000 });
  const a = await pool.tenants.create();
  const b = await pool.tenants.create();
  await pool.withSession(a.tenantId, async (s) => {
    assert.is(await s.run('increment'), 1);
    assert.is(await s.run('increment'), 2);
    assert.is(await s.run('whoami'), a.tenantId);
  });
  assert.is(await pool.withSession(b.tenantId, async (s) => s.run('increment')), 1, 'b has its own container');
  assert.is(await pool.withSession(a.tenantId, async (s) => s.run('increment')), 3, 'a’s container lives while its wallet is open');
  assert.equal(await pool.withSession(a.tenantId, async (s) => s.run('saveAndFind', { id: 'x', tag: 't' })), ['x']);
  assert.is(await pool.withSession(a.tenantId, async (s) => s.run('sign')), true);
  assert.is(await pool.withSession(a.tenantId, async (s) => s.run('slow')), 'done');
});

test('a task’s error reaches the caller with name, message and code; unknown tasks and unclonable results get codes', async () => {
  await using pool = await usePool({ modules });
  const { tenantId } = await pool.tenants.create();
  await pool.withSession(tenantId, async (s) => {
    try {
      await s.run('fail');
      assert.unreachable('should throw');
    } catch (error) {
      const e = error as Error & { code?: string };
      assert.is(e.name, 'DidError');
      assert.is(e.message, 'did:example:123 cannot be resolved');
      assert.is(e.code, 'E_DID_UNRESOLVABLE');
      assert.match(e.stack ?? '', 'counter-module');
    }
    await rejectsWith(s.run('nope'), 'ERR_TASK_NOT_FOUND');
    await rejectsWith(s.run('unclonable'), 'ERR_INVALID_ARGUMENT', 'a function result');
    await rejectsWith(s.run('whoami', () => 1), 'ERR_INVALID_ARGUMENT', 'a function argument');
    assert.is(await s.run('whoami'), tenantId, 'the session still works');
  });
  assert.is(pool.stats().totals.workerCrashes, 0);
});

test('the tenant’s container is disposed when its wallet closes', async () => {
  await using pool = await usePool({ modules, walletIdleTtlMs: 0 });
  const { tenantId } = await pool.tenants.create();
  await pool.withSession(tenantId, async (s) => {
    await s.run('increment');
    await s.run('increment');
  });
  await eventually(() => pool.stats().totals.walletCloses === 1, 'the wallet closes at the last release');
  const proof = await pool.withSession(tenantId, async (s) => s.records.get('lifecycle', 'disposed'));
  assert.equal(proof?.value, { count: 2 }, 'Counter.dispose() ran before the wallet closed');
});

test('a module that fails to load, or is not a defineModule, fails open() naming the module', async () => {
  for (const name of ['broken-module.ts', 'plain-module.ts', 'missing-module.ts']) {
    const dataDir = tempDir();
    try {
      await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: rootKey(), workers: 1, modules: [fixture(name)] });
      assert.unreachable(`${name} should fail open()`);
    } catch (error) {
      const e = error as Error & { code?: string };
      assert.is(e.code, 'ERR_INVALID_CONFIG', name);
      assert.match(e.message, name);
    }
  }
});

test('a worker that dies while starting fails open() at once, without a respawn loop', async () => {
  const dataDir = tempDir();
  try {
    await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: rootKey(), workers: 2, modules: [fixture('exit-module.ts')] });
    assert.unreachable('open() should fail');
  } catch (error) {
    const e = error as Error & { code?: string };
    assert.is(e.code, 'ERR_WORKER_CRASHED');
    assert.match(e.message, 'failed to start');
  }
});

test('dispatch reaches the tenant that owns the routing key, among several; routes survive a restart and go with the tenant', async () => {
  const key = rootKey();
  const pool = await openPool({ modules, rootKey: key });
  const { dataDir } = pool.options;
  const routes = new Map<string, string>();
  try {
    for (let i = 0; i < 5; i++) {
      const { tenantId } = await pool.tenants.create({ tenantId: `agent-${i}` });
      const { publicKey } = await pool.withSession(tenantId, async (s) => s.keys.create({ routing: true }));
      await pool.withSession(tenantId, async (s) => s.keys.create()); // not a routing key
      routes.set(publicKey, tenantId);
    }
    for (const [recipientKey, tenantId] of routes) {
      assert.equal(await pool.dispatch({ recipientKey, body: { text: `hi ${tenantId}` } }), { tenantId, text: `hi ${tenantId}` });
    }
    assert.is((await pool.withSession('agent-3', async (s) => s.records.find('inbox'))).length, 1);
    await rejectsWith(pool.dispatch({ recipientKey: 'unknownKey111', body: null }), 'ERR_ROUTE_NOT_FOUND');
    await rejectsWith(pool.dispatch({ recipientKey: [...routes.keys()][0]!, body: { f: () => 1 } as never }), 'ERR_INVALID_ARGUMENT');
  } finally {
    await pool.close();
  }
  const again = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 2, modules });
  try {
    const [first] = [...routes.entries()];
    assert.equal(await again.dispatch({ recipientKey: first![0], body: { text: 'after restart' } }), { tenantId: first![1], text: 'after restart' });
    await again.tenants.delete(first![1]);
    await rejectsWith(again.dispatch({ recipientKey: first![0], body: {} }), 'ERR_ROUTE_NOT_FOUND', 'deleted tenant');
  } finally {
    await disposePool(again);
  }
});

test('isolation on one worker: forged tenant ids in task arguments and messages reach only the calling tenant’s wallet', async () => {
  await using pool = await usePool({ modules, workers: 1 });
  const a = await pool.tenants.create({ tenantId: 'tenant-a' });
  const b = await pool.tenants.create({ tenantId: 'tenant-b' });
  await pool.withSession(b.tenantId, async (s) => s.records.save('c', 'secret', { owner: 'b' }));
  const { publicKey } = await pool.withSession(a.tenantId, async (s) => s.keys.create({ routing: true }));
  await pool.withSession(a.tenantId, async (s) => {
    assert.is(pool.stats().workers[0]!.tenants, 2, 'both wallets open on the one worker');
    assert.is(await s.run('read', { id: 'secret', tenantId: b.tenantId }), null);
    assert.is(await s.run('whoami', { tenantId: b.tenantId }), a.tenantId);
  });
  const answer = await pool.dispatch({ recipientKey: publicKey, body: { text: 'to b?', tenantId: b.tenantId } });
  assert.equal(answer, { tenantId: a.tenantId, text: 'to b?' });
  assert.equal(await pool.withSession(b.tenantId, async (s) => s.records.find('inbox')), [], 'nothing landed in b');
  assert.is((await pool.withSession(a.tenantId, async (s) => s.records.find('inbox'))).length, 1);
});

test('a throwing inbound handler: its error reaches the caller and the session is ended', async () => {
  await using pool = await usePool({ modules });
  const { tenantId } = await pool.tenants.create();
  const { publicKey } = await pool.withSession(tenantId, async (s) => s.keys.create({ routing: true }));
  try {
    await pool.dispatch({ recipientKey: publicKey, body: { fail: true } });
    assert.unreachable('should throw');
  } catch (error) {
    assert.is((error as { code?: string }).code, 'E_DID_UNRESOLVABLE');
  }
  const st = pool.stats();
  assert.is(st.sessions, 0);
  assert.is(st.totals.acquired, st.totals.released);
  assert.is(st.weightInUse, 4, 'only the cached wallet');
});

test.run();
