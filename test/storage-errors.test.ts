/**
 * Storage failures keep their meaning: a full disk, a read-only folder, a damaged page and a worker
 * lost at commit each get their own code, as a `TenantPoolError`, and nothing else breaks.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPoolError } from '../common/errors.js';
import { kWorkers, TenantPool } from '../src/pool.js';
import { rankWorkers } from '../src/engine/placement.js';
import { disposePool, openPool, rejectsWith, rootKey, tempDir, testIf, walletPathOf, usePool } from './helpers.js';

function mount(...args: string[]): boolean {
  return spawnSync('mount', args, { stdio: 'ignore' }).status === 0;
}

/** Whether this process may mount a small tmpfs (root on Linux): the full-disk and read-only tests need one. */
const canMount = ((): boolean => {
  if (process.getuid?.() !== 0) return false;
  const dir = tempDir('tp-mount-probe-');
  const ok = mount('-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir);
  if (ok) spawnSync('umount', [dir]);
  rmSync(dir, { recursive: true, force: true });
  return ok;
})();

testIf(canMount, 'a full disk is ERR_STORAGE_FULL, never ERR_WALLET_CORRUPT; what was saved stays readable; a read-only folder is ERR_STORAGE_READONLY', async () => {
  const mountPoint = tempDir('tp-full-');
  assert.ok(mount('-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint));
  const dataDir = join(mountPoint, 'data');
  const key = rootKey();
  // Ballast, removed once the disk is full to make room again.
  const ballast = join(mountPoint, 'ballast');
  writeFileSync(ballast, Buffer.alloc(2 * 1024 * 1024, 1));
  const pool = await TenantPool.open({ dataDir, rootKey: key, workers: 1, walletIdleTtlMs: 0 });
  try {
    await pool.tenants.create({ tenantId: 'filler' });
    await pool.tenants.create({ tenantId: 'other' });
    let saved = 0;
    let failure: unknown;
    await pool.withSession('filler', async (s) => {
      for (let i = 0; i < 100 && failure === undefined; i++) {
        try {
          await s.records.save('c', `r${i}`, 'x'.repeat(200_000));
          saved++;
        } catch (error) {
          failure = error;
        }
      }
      assert.instance(failure, TenantPoolError, 'a TenantPoolError');
      assert.is((failure as TenantPoolError).code, 'ERR_STORAGE_FULL', (failure as Error).message);
      assert.ok(saved > 0);
      assert.is((await s.records.get('c', 'r0'))?.value, 'x'.repeat(200_000), 'what was saved before is still there');
    });
    await rejectsWith(pool.tenants.create({ tenantId: 'more' }), 'ERR_STORAGE_FULL', 'a create on a full disk');
    await rejectsWith(pool.tenants.get('more'), 'ERR_TENANT_NOT_FOUND', 'nothing half-made');
    // Room again: everything works, nothing was damaged.
    rmSync(ballast);
    // One delete a session: each close checkpoints the wallet's log, so it never needs more than one record's room.
    for (let i = 0; i < saved; i++) await pool.withSession('filler', async (s) => s.records.delete('c', `r${i}`));
    await pool.withSession('other', async (s) => s.records.save('c', 'r', 'fine'));
    await pool.tenants.create({ tenantId: 'more' });

    // The wallet folder made read-only under the running pool: opening a closed wallet or making one says so.
    const wallets = join(dataDir, 'wallets');
    assert.ok(mount('--bind', wallets, wallets));
    try {
      assert.ok(mount('-o', 'remount,bind,ro', wallets));
      await rejectsWith(pool.acquire('other'), 'ERR_STORAGE_READONLY', 'opening a wallet on a read-only folder');
      await rejectsWith(pool.tenants.create({ tenantId: 'ro' }), 'ERR_STORAGE_READONLY', 'creating a wallet on a read-only folder');
    } finally {
      spawnSync('umount', [wallets]);
    }
    assert.is((await pool.withSession('other', async (s) => s.records.get('c', 'r')))?.value, 'fine');
    await pool.close();

    // The whole mount read-only: the pool cannot even take its lock, and says why.
    assert.ok(mount('-o', 'remount,ro', mountPoint));
    await rejectsWith(TenantPool.open({ dataDir, rootKey: key, workers: 1 }), 'ERR_STORAGE_READONLY', 'a read-only data folder');
  } finally {
    await pool.close();
    spawnSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  }
});

test('a damaged page in the middle of a wallet is ERR_WALLET_CORRUPT for that tenant only, as a TenantPoolError', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const setup = await TenantPool.open({ dataDir, rootKey: key, workers: 1 });
  await setup.tenants.create({ tenantId: 'damaged' });
  await setup.tenants.create({ tenantId: 'fine' });
  await setup.withSession('damaged', async (s) => {
    for (let i = 0; i < 200; i++) await s.records.save('c', `r${i}`, { i, text: 'y'.repeat(500) }, { n: String(i % 7) });
  });
  await setup.withSession('fine', async (s) => s.records.save('c', 'r', 'ok'));
  await setup.close();
  const fd = openSync(walletPathOf(dataDir, 'damaged'), 'r+');
  // Eight pages in the middle of the file (a single page may be a free one that nothing reads).
  writeSync(fd, Buffer.alloc(4096 * 8, 0xa5), 0, 4096 * 8, 4096 * 4);
  closeSync(fd);
  const pool = await TenantPool.open({ dataDir, rootKey: key, workers: 1 });
  try {
    let failure: unknown;
    try {
      await pool.withSession('damaged', async (s) => {
        for (let i = 0; i < 200; i++) await s.records.get('c', `r${i}`);
        await s.records.find('c', { n: '3' });
      });
    } catch (error) {
      failure = error;
    }
    assert.instance(failure, TenantPoolError);
    assert.is((failure as TenantPoolError).code, 'ERR_WALLET_CORRUPT', (failure as Error).message);
    assert.is((await pool.withSession('fine', async (s) => s.records.get('c', 'r')))?.value, 'ok');
    assert.is(pool.stats().weightInUse, pool.stats().wallets.idle * 4, 'no leaked weight');
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a write whose worker dies before answering is ERR_WORKER_CRASHED with outcome "unknown"; a read has no outcome to report', async () => {
  await using pool = await usePool({ workers: 2 });
  let tenantId = '';
  for (let n = 0; rankWorkers(tenantId, 2)[0] !== 0 || tenantId === ''; n++) tenantId = `w-${n}`;
  await pool.tenants.create({ tenantId });
  const s = await pool.acquire(tenantId);
  await s.records.save('c', 'seed', 0);
  const writes = Array.from({ length: 40 }, async (_, i) => s.records.save('c', `r${i}`, { i }));
  const reads = Array.from({ length: 40 }, async () => s.records.get('c', 'seed'));
  void pool[kWorkers][0]!.thread!.terminate();
  const settled = await Promise.allSettled([...writes, ...reads]);
  const writeErrors = settled.slice(0, 40).filter((r) => r.status === 'rejected').map((r) => (r).reason as TenantPoolError<'ERR_WORKER_CRASHED'>);
  const readErrors = settled.slice(40).filter((r) => r.status === 'rejected').map((r) => (r).reason as TenantPoolError<'ERR_WORKER_CRASHED'>);
  assert.ok(writeErrors.length > 0, 'some writes were cut off');
  for (const e of writeErrors) {
    assert.is(e.code, 'ERR_WORKER_CRASHED');
    assert.is(e.outcome, 'unknown');
    assert.match(e.message, 'outcome is unknown');
  }
  for (const e of readErrors) {
    assert.is(e.code, 'ERR_WORKER_CRASHED');
    assert.is(e.outcome, undefined);
  }
  await s.release();
});

test('a wallet folder removed under a running pool, and a worker that cannot start, are TenantPoolErrors with their codes', async () => {
  const pool = await openPool();
  try {
    await pool.tenants.create({ tenantId: 'before' });
    await pool.closeIdleWallets();
    rmSync(join(pool.options.dataDir, 'wallets'), { recursive: true });
    await rejectsWith(pool.tenants.create({ tenantId: 'after' }), 'ERR_STORAGE_IO', 'a create into a missing folder');
    await rejectsWith(pool.acquire('before'), 'ERR_WALLET_CORRUPT', 'a wallet whose file is gone');
    assert.is(pool.stats().weightInUse, 0, 'no leaked weight');
  } finally {
    await disposePool(pool);
  }
  // A heap limit too small for a worker to start: the pool's own code, not the thread's.
  await rejectsWith(openPool({ workerResourceLimits: { maxOldGenerationSizeMb: 1 } }), 'ERR_WORKER_CRASHED', 'a worker that dies at start');
});

test.run();
