import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rankWorkers } from '../src/engine/placement.js';
import { kWorkers, TenantPool } from '../src/pool.js';
import { disposePool, eventually, rejectsWith, rootKey, tempDir, until, storeOptionsFor, usePool } from './helpers.js';

/** The first tenant id of the form `prefix-N` whose first-choice worker (of 2) is `index`. */
function idOnWorker(prefix: string, index: number): string {
  for (let n = 0; ; n++) if (rankWorkers(`${prefix}-${n}`, 2)[0] === index) return `${prefix}-${n}`;
}

test('a worker killed mid-call: its pending calls reject ERR_WORKER_CRASHED, other workers are untouched, its tenants reopen on a fresh worker', async () => {
  await using pool = await usePool({ workers: 2, walletIdleTtlMs: 60_000, keyCache: { maxEntries: 0 } });
  const warm = await pool.tenants.create({ tenantId: idOnWorker('warm', 0) });
  const cold = await pool.tenants.create({ tenantId: idOnWorker('cold', 0), kdf: 'argon2i-mod' });
  const cool = await pool.tenants.create({ tenantId: idOnWorker('cool', 0), kdf: 'argon2i-int' });
  const other = await pool.tenants.create({ tenantId: idOnWorker('other', 1) });
  await pool.closeIdleWallets();
  const held = await pool.acquire(warm.tenantId);
  await held.records.save('c', 'kept', { durable: true });
  const bystander = await pool.acquire(other.tenantId);
  assert.equal(pool.stats().workers.map((w) => w.tenants), [1, 1]);

  // Two wallet opens are in flight on worker 0 (Argon2 takes hundreds of ms) when it dies.
  const opening = [pool.acquire(cold.tenantId, { timeoutMs: 60_000 }), pool.acquire(cool.tenantId, { timeoutMs: 60_000 })];
  await until(() => pool.stats().wallets.opening === 2, 'both opens sent to worker 0');
  // The death may be noticed before terminate() resolves: the rejections are looked at below.
  for (const p of opening) p.catch(() => {});
  await pool[kWorkers][0]!.thread!.terminate();
  for (const p of opening) await rejectsWith(p, 'ERR_WORKER_CRASHED');
  await rejectsWith(held.records.get('c', 'kept'), 'ERR_WORKER_CRASHED', 'a session on the dead worker');
  await held.release();

  // The other worker's tenant saw nothing.
  await bystander.records.save('c', 'fine', 1);
  assert.is((await bystander.records.get('c', 'fine'))?.value, 1);
  await bystander.release();

  const st = pool.stats();
  assert.is(st.totals.workerCrashes, 1);
  assert.is(st.sessions, 0);
  assert.is(st.wallets.opening, 0);
  assert.equal(st.workers.map((w) => w.tenants), [0, 1], 'the dead worker’s wallets are gone, the idle one on worker 1 stays');

  // The tenants of the dead worker open again on its replacement, with their data.
  await pool[kWorkers][0]!.ready();
  assert.ok(pool.stats().workers[0]!.alive);
  assert.equal(await pool.withSession(warm.tenantId, async (s) => (await s.records.get('c', 'kept'))?.value), { durable: true });
  await pool.withSession(cool.tenantId, (s) => s.records.save('c', 'x', 1));
  assert.is(pool.stats().weightInUse, 4 * pool.stats().workers.reduce((n, w) => n + w.tenants, 0));
});

test('an open still waiting for a key-derivation slot when its worker dies is placed afresh, not opened behind the pool’s back', async () => {
  // One worker, one derivation at a time: b's open waits behind a's Argon2 when the worker dies (no key tier: every open derives).
  await using pool = await usePool({ workers: 1, kdfConcurrency: 1, acquireTimeoutMs: 60_000, walletIdleTtlMs: 60_000, keyCache: { maxEntries: 0 } });
  await pool.tenants.create({ tenantId: 'a', kdf: 'argon2i-mod' });
  await pool.tenants.create({ tenantId: 'b', kdf: 'argon2i-int' });
  await pool.closeIdleWallets();
  const a = pool.acquire('a');
  const b = pool.acquire('b');
  await until(() => pool.stats().wallets.opening === 2, "b waits for a's derivation");
  a.catch(() => {});
  await pool[kWorkers][0]!.thread!.terminate();
  await rejectsWith(a, 'ERR_WORKER_CRASHED', 'the open in flight on the dead worker');
  // b had sent nothing: it opens on the replacement worker, and the pool knows its wallet is there.
  const session = await b;
  await session.records.save('c', 'x', 1);
  await session.release();
  assert.equal(pool.stats().wallets, { open: 0, idle: 1, opening: 0 });
  assert.equal(await pool.withSession('b', async (s) => s.records.get('c', 'x')), { category: 'c', id: 'x', value: 1, tags: {} });
  // a opens there too. (Before, b's open went on to the replacement thread behind the pool's back, and
  // failed: the wallet stayed open there, and every later open of b on that worker hit it, ERR_INTERNAL.)
  await pool.withSession('a', () => undefined);
  assert.is(pool.stats().weightInUse, 8, 'two idle wallets, no session');
});

test('a call pending while hundreds of others come and go on its worker still settles: rejected ERR_WORKER_CRASHED when the worker dies, none hangs', async () => {
  await using pool = await usePool({ workers: 1, walletIdleTtlMs: 60_000, modules: [join(import.meta.dirname, 'fixtures', 'counter-module.ts')] });
  await pool.tenants.create({ tenantId: 'long' });
  const s = await pool.acquire('long');
  await s.records.save('c', 'r', 1);
  // A task that runs until aborted (it is not), then 500 calls one after another: the pending calls'
  // ring goes round several times past the long call's slot.
  const long = s.run('untilAborted', undefined, { signal: new AbortController().signal });
  long.catch(() => {});
  for (let i = 0; i < 500; i++) assert.is((await s.records.get('c', 'r'))?.value, 1);
  let settled = false;
  void long.finally(() => (settled = true)).catch(() => {});
  await new Promise((resolve) => setImmediate(resolve));
  assert.not.ok(settled, 'the task is still running');
  await pool[kWorkers][0]!.thread!.terminate();
  // A call lost from the pending set would never settle: the guard fails the test instead of hanging it.
  let guard: NodeJS.Timeout | undefined;
  const lost = new Promise<never>((_, reject) => (guard = setTimeout(() => reject(new Error('the long call never settled')), 10_000)));
  try {
    await rejectsWith(Promise.race([long, lost]), 'ERR_WORKER_CRASHED', 'the long call on the dead worker');
  } finally {
    clearTimeout(guard);
  }
  await s.release();
  assert.is(pool.stats().weightInUse, 0);
});

test('a module task that exits its worker, or outgrows its heap limit: the calls on it reject ERR_WORKER_CRASHED, the other worker is untouched, nothing leaks', async () => {
  await using pool = await usePool({ workers: 2, walletIdleTtlMs: 60_000, modules: [join(import.meta.dirname, 'fixtures', 'counter-module.ts')], workerResourceLimits: { maxOldGenerationSizeMb: 48 } });
  const doomed = await pool.tenants.create({ tenantId: idOnWorker('doomed', 0) });
  // An Argon2 tenant stays on its first-ranked worker (its key is kept there); a raw one would go to the less loaded.
  const neighbour = await pool.tenants.create({ tenantId: idOnWorker('neighbour', 0), kdf: 'argon2i-int' });
  const safe = await pool.tenants.create({ tenantId: idOnWorker('safe', 1) });
  for (const [task, crashes] of [['exit', 1], ['hog', 2]] as const) {
    const victim = await pool.acquire(doomed.tenantId);
    const bystander = await pool.acquire(neighbour.tenantId);
    const other = await pool.acquire(safe.tenantId);
    assert.equal(pool.stats().workers.map((w) => w.tenants), [2, 1]);
    const slow = bystander.run('slow'); // pending on the same worker when it dies
    await rejectsWith(victim.run(task), 'ERR_WORKER_CRASHED', task);
    await rejectsWith(slow, 'ERR_WORKER_CRASHED', `${task}: another tenant's call on the dead worker`);
    assert.is(await other.run('whoami'), safe.tenantId, `${task}: the other worker answers`);
    for (const s of [victim, bystander, other]) await s.release();
    const st = pool.stats();
    assert.is(st.totals.workerCrashes, crashes);
    assert.is(st.sessions, 0);
    assert.is(st.weightInUse, 4, `${task}: only the other worker's cached wallet holds weight`);
    await pool[kWorkers][0]!.ready();
    assert.is(await pool.withSession(doomed.tenantId, async (s) => s.run('whoami')), doomed.tenantId, `${task}: the tenant opens on the fresh worker`);
  }
});

test('a replacement worker killed while it starts is replaced again; calls meanwhile fail fast instead of hanging', async () => {
  await using pool = await usePool({ workers: 2 });
  const { tenantId } = await pool.tenants.create({ tenantId: idOnWorker('phoenix', 0) });
  const slot = pool[kWorkers][0]!;
  const first = slot.thread!;
  await first.terminate();
  await until(() => slot.thread !== undefined && slot.thread !== first, 'piscina starts a replacement');
  const second = slot.thread!;
  assert.not.ok(slot.isAlive, 'the replacement is not serving yet');
  await second.terminate();
  await eventually(() => slot.isAlive, 'a third worker serves the slot');
  assert.is(pool.stats().totals.workerCrashes, 2);
  await pool.withSession(tenantId, async (s) => s.records.save('c', 'x', 'back'));
});

test('a slot whose replacements keep dying before they serve gives up after three: calls fail fast with ERR_WORKER_CRASHED, the other worker serves on', async () => {
  await using pool = await usePool({ workers: 2 });
  const lost = await pool.tenants.create({ tenantId: idOnWorker('lost', 0) });
  const kept = await pool.tenants.create({ tenantId: idOnWorker('kept', 1) });
  const slot = pool[kWorkers][0]!;
  await pool.withSession(lost.tenantId, () => undefined);
  for (let kill = 0; kill < 4; kill++) {
    const thread = slot.thread!;
    const crashes = pool.stats().totals.workerCrashes;
    await thread.terminate();
    await until(() => pool.stats().totals.workerCrashes === crashes + 1, `death ${kill + 1} noticed`);
    if (kill < 3) await until(() => slot.thread !== undefined && slot.thread !== thread, `replacement ${kill + 1} started`);
  }
  assert.not.ok(slot.isAlive);
  assert.is(pool.stats().totals.workerCrashes, 4);
  // The tenant is placed on the live worker now; a call straight to the dead slot fails fast.
  await rejectsWith(slot.call('echo', 1), 'ERR_WORKER_CRASHED', 'a call to the slot that gave up');
  await pool.withSession(lost.tenantId, async (s) => s.records.save('c', 'x', 'moved'));
  await pool.withSession(kept.tenantId, async (s) => s.records.save('c', 'x', 'fine'));
  assert.equal(pool.stats().workers.map((w) => w.alive), [false, true]);
});

test('a save or delete whose promise resolved survives SIGKILL of the process', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const setup = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  await setup.tenants.create({ tenantId: 'durable' });
  await setup.close();

  const child = spawnSync(process.execPath, [...process.execArgv, join(import.meta.dirname, 'fixtures', 'save-then-kill.ts'), dataDir, key, 'durable', '25'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.is(child.signal, 'SIGKILL', `child ended by SIGKILL (stderr: ${child.stderr})`);
  const saved = child.stdout.split('\n').filter((l) => l.startsWith('saved ')).map((l) => l.slice(6));
  assert.is(saved.length, 25);
  assert.ok(child.stdout.includes('deleted'));

  const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  try {
    await pool.withSession('durable', async (s) => {
      for (const id of saved) {
        const i = Number(id.slice(1));
        assert.equal(await s.records.get('c', id), { category: 'c', id, value: { i, text: `value ${i}` }, tags: { parity: i % 2 === 0 ? 'even' : 'odd' } });
      }
      assert.is(await s.records.get('c', 'to-delete'), null);
      assert.is((await s.records.find('c', { parity: 'even' })).length, 13);
    });
  } finally {
    await disposePool(pool);
  }
});

test.run();
