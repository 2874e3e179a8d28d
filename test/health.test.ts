/**
 * `pool.health()`: ok while the pool can serve, and an answer within its bound — never a hang or a
 * throw — when a part is gone: a dead worker, a removed data folder, a stopped PostgreSQL server, a
 * closed pool; in cluster mode, the member's heartbeat.
 */
import { rmSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool, kWorkers } from '../src/pool.js';
import { rejectsWith, tempDir, until, usePool } from './helpers.js';
import { dropSchema, postgresUrl, startPostgres, stopPostgres, testSchema, testWithRestart } from './postgres.js';

test('a pool that can serve is ok: every worker alive, the store answering with its latency; bad options are refused', async () => {
  await using pool = await usePool({ workers: 2 });
  const health = await pool.health();
  assert.is(health.ok, true);
  assert.equal(health.workers, { ok: true, alive: 2, total: 2 });
  assert.is(health.store.ok, true);
  assert.ok(health.store.latencyMs !== null && health.store.latencyMs >= 0);
  assert.is(health.closed, false);
  for (const timeoutMs of [0, -1, 1.5, 2 ** 31, '100', null]) await rejectsWith(pool.health({ timeoutMs: timeoutMs as never }), 'ERR_INVALID_ARGUMENT', `timeoutMs ${String(timeoutMs)}`);
  await rejectsWith(pool.health({ timoutMs: 1 } as never), 'ERR_INVALID_ARGUMENT');
});

test('a dead worker makes the pool not ok until its replacement serves; a removed data folder is the store not ok, named by its code; a closed pool is not ok', async () => {
  const dataDir = tempDir();
  const pool = await TenantPool.open({ dataDir, rootKey: '3c'.repeat(32), workers: 2 });
  try {
    const slot = pool[kWorkers][0]!;
    await slot.thread!.terminate();
    const during = await pool.health();
    // Until its replacement serves, the pool says so (the replacement may already be up: then it is ok).
    assert.is(during.ok, during.workers.alive === 2);
    await slot.ready();
    await until(() => slot.isAlive, 'the worker is replaced');
    assert.is((await pool.health()).ok, true);
    rmSync(dataDir, { recursive: true, force: true });
    const gone = await pool.health();
    assert.is(gone.ok, false);
    assert.is(gone.store.ok, false);
    assert.ok(typeof gone.store.code === 'string' && gone.store.code.startsWith('ERR_'), String(gone.store.code));
  } finally {
    await pool.close();
  }
  const closed = await pool.health();
  assert.equal([closed.ok, closed.closed, closed.store.code], [false, true, 'ERR_POOL_CLOSED']);
});

testWithRestart('PostgreSQL stopped: health answers within its bound with the store not ok (never hangs, never throws); started again, it is ok again; a cluster member reports its heartbeat', async () => {
  const schema = testSchema();
  const pool = await TenantPool.open({ dataDir: tempDir(), rootKey: '4d'.repeat(32), workers: 1, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'h1', leaseTtlMs: 3000 } });
  try {
    const healthy = await pool.health();
    assert.is(healthy.ok, true);
    assert.is(healthy.cluster?.member, true);
    assert.ok(healthy.cluster!.lastRenewalAgeMs !== null && healthy.cluster!.lastRenewalAgeMs < 3000);
    stopPostgres();
    try {
      const started = performance.now();
      const down = await pool.health({ timeoutMs: 500 });
      const tookMs = performance.now() - started;
      assert.is(down.ok, false);
      assert.is(down.store.ok, false);
      assert.ok(down.store.code === 'TIMEOUT' || down.store.code === 'ERR_STORAGE_UNAVAILABLE', String(down.store.code));
      // Bounded: the timeout and the check's own work, far from the connection timeout (10 s).
      assert.ok(tookMs < 5000, `answered in ${Math.round(tookMs)} ms`);
      // With the server away past its lease TTL, the instance is no longer a live member either.
      for (let i = 0; (await pool.health({ timeoutMs: 200 })).cluster?.member !== false; i++) {
        assert.ok(i < 200, 'the membership lapses with the server away');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      startPostgres();
    }
    for (let i = 0; !(await pool.health()).ok; i++) {
      assert.ok(i < 400, 'ok again once the server is back and the member has joined again');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await pool.close();
    await dropSchema(schema);
  }
});

test.run();
