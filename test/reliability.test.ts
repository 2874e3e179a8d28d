import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { damageWallet, rejectsWith, rootKey, tempDir, storeOptionsFor, testSqliteFiles, usePool } from './helpers.js';

async function openFails(dataDir: string, key: string, code: string, what: string): Promise<void> {
  try {
    const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
    await pool.close();
  } catch (error) {
    assert.is((error as { code?: string }).code, code, what);
    return;
  }
  assert.unreachable(`${what}: open() should fail with ${code}`);
}

testSqliteFiles('a damaged registry fails open() with a clear error and is left as it was; a wrong root key is told apart', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  await pool.tenants.create({ tenantId: 'kept' });
  await pool.close();
  const registry = join(dataDir, 'registry.sqlite');
  const original = readFileSync(registry);

  await openFails(dataDir, rootKey(), 'ERR_WALLET_KEY_INVALID', 'another root key');
  const garbled = Buffer.from(original);
  garbled.fill(0x5a, 0, Math.min(garbled.length, 4096));
  for (const [what, bytes] of [
    ['garbled', garbled],
    ['truncated to nothing', Buffer.alloc(0)],
    ['truncated', original.subarray(0, 100)],
  ] as const) {
    writeFileSync(registry, bytes);
    await openFails(dataDir, key, 'ERR_WALLET_CORRUPT', what);
    assert.equal(readFileSync(registry), bytes, `${what}: the file is not overwritten`);
  }
  writeFileSync(join(dataDir, 'registry.json'), '{ not json');
  writeFileSync(registry, original);
  await openFails(dataDir, key, 'ERR_WALLET_CORRUPT', 'a damaged registry header');
  rmSync(dataDir, { recursive: true, force: true });
});

test('a missing wallet (file, or row) is ERR_WALLET_CORRUPT for its tenant only', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 0 });
  await pool.tenants.create({ tenantId: 'gone' });
  await pool.tenants.create({ tenantId: 'fine' });
  await damageWallet(pool.options, 'gone', 'remove');
  await rejectsWith(pool.acquire('gone'), 'ERR_WALLET_CORRUPT');
  await pool.withSession('fine', async (s) => s.records.save('c', 'x', 1));
  assert.is(pool.stats().weightInUse, 4, 'only the idle wallet of `fine` (closing)');
});

test('no secret appears in error messages, warnings or stats', async () => {
  const marker = 'S3CR3T-MARKER-e1f2';
  await using pool = await usePool({ leakWarningMs: 0 });
  const seen: string[] = [];
  const collect = async (p: Promise<unknown>): Promise<void> => {
    try {
      await p;
    } catch (error) {
      const e = error as Error;
      seen.push(`${e.message}\n${e.stack ?? ''}`);
    }
  };
  const { tenantId } = await pool.tenants.create({ passphrase: `${marker}-pass`, label: `${marker}-label`, metadata: { m: `${marker}-meta` } });
  await collect(pool.acquire(tenantId, { passphrase: `${marker}-wrong` }));
  await collect(pool.tenants.create({ passphrase: `${marker}`.repeat(1000) }));
  const s = await pool.acquire(tenantId, { passphrase: `${marker}-pass` });
  await collect(s.records.save('c', 'x', { big: `${marker}`.repeat(200_000) }));
  await collect(s.records.save('c', 'x', { f: () => marker } as never));
  await collect(s.records.save('c', 'x', 1, { t: 1 as never }));
  await collect(s.records.save(`${marker}`.repeat(200), 'x', 1));
  await collect(s.keys.sign(`${marker}`.repeat(200), new Uint8Array(1)));
  await collect(s.keys.verify(`${marker}-not-base58-0OIl`, new Uint8Array(1), new Uint8Array(64)));
  await collect(pool.dispatch({ recipientKey: `${marker}-key`, body: marker }));
  await collect(pool.acquire(tenantId, { passphrase: `${marker}-wrong-while-open` }));
  await s.release();
  assert.is(seen.length, 10);
  for (const text of seen) assert.not.ok(text.includes(marker), `no secret in: ${text.split('\n')[0]}`);
  assert.not.ok(JSON.stringify(pool.stats()).includes(marker));
});

test('close() leaves no handle keeping the process alive', () => {
  const script = `
    import { TenantPool } from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'pool.ts'))};
    const pool = await TenantPool.open({ dataDir: process.argv[2], rootKey: ${JSON.stringify(rootKey())}, workers: 2 });
    const { tenantId } = await pool.tenants.create();
    const held = await pool.acquire(tenantId);
    await held.records.save('c', 'x', 1);
    const waiting = pool.acquire(tenantId, { timeoutMs: 60_000 }).then((s) => s.release(), (e) => e.code);
    await pool.close({ timeoutMs: 10 });
    console.log(await waiting);
    console.log('closed');
  `;
  const dataDir = tempDir();
  const file = join(dataDir, 'close.mts');
  writeFileSync(file, script);
  // The process must end by itself once close() resolves: no timer, worker or port left referenced.
  const run = spawnSync(process.execPath, [...process.execArgv, file, join(dataDir, 'data')], { encoding: 'utf8', timeout: 30_000 });
  rmSync(dataDir, { recursive: true, force: true });
  assert.is(run.signal, null, `the process had to be killed: it did not exit by itself (${run.stderr})`);
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stdout, 'ERR_POOL_CLOSED');
  assert.match(run.stdout, 'closed');
});

test.run();
