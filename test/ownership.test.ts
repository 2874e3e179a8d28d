/**
 * Owning a data folder: one pool at a time, in this process or another, released by close or by
 * death; create/delete races; kills during initialisation, create and delete; the sweep; a delete
 * that cannot remove its file; a missing root key or registry.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { startChild } from './child.js';
import { filesUnder, pgQuery, rejectsWith, rootKey, storeOptionsFor, storeUnderTest, tempDir, testIf, testSqliteFiles, walletNames, walletPathOf } from './helpers.js';

/** Names, sizes and modification times of every file below `dir`: a folder nothing touched compares equal. */
function snapshot(dir: string): string[] {
  return filesUnder(dir)
    .map((f) => {
      const st = statSync(f);
      return `${f} ${st.size} ${st.mtimeMs}`;
    })
    .sort();
}

/** Wallet-folder files that no tenant of the (open) pool owns. */
async function strayWalletFiles(pool: TenantPool): Promise<string[]> {
  const pg = pool.options.postgres;
  if (pg !== undefined) return (await pgQuery<{ name: string }>(`SELECT w.name FROM ${pg.schema}.wallets w WHERE NOT EXISTS (SELECT 1 FROM ${pg.schema}.tenants t WHERE t.wallet_name = w.name)`)).map((r) => r.name);
  const owned = new Set<string>();
  for (const { tenantId } of await pool.tenants.list()) owned.add(walletPathOf(pool.options.dataDir, tenantId).split('/').pop()!);
  return readdirSync(join(pool.options.dataDir, 'wallets')).filter((name) => !owned.has(name.replace(/-(wal|shm)$/, '')));
}

test('a second pool on the same data folder (or PostgreSQL schema), in this process, is refused ERR_DATA_DIR_LOCKED naming the holder; close() releases it', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const first = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  await first.tenants.create({ tenantId: 'alpha' });
  const error = await rejectsWith(TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 }), 'ERR_DATA_DIR_LOCKED');
  const holder = (error as { holder?: { pid: number; host: string } }).holder;
  assert.equal({ pid: holder?.pid, host: holder?.host }, { pid: process.pid, host: hostname() });
  assert.match(error.message, `pid ${process.pid}`);
  assert.match(error.message, hostname());
  // The refused open touched nothing: the first pool goes on as before.
  await first.withSession('alpha', async (s) => s.records.save('c', 'r', 1));
  await first.close();
  const second = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  try {
    assert.equal((await second.tenants.list()).map((t) => t.tenantId), ['alpha']);
  } finally {
    await second.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a pool in another process holds the folder until it dies by SIGKILL; then the folder opens with no stale lock', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const child = startChild('hold-pool.ts', [dataDir, key]);
  try {
    await child.waitFor((lines) => lines.includes('ready'));
    const error = await rejectsWith(TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 }), 'ERR_DATA_DIR_LOCKED');
    assert.is((error as { holder?: { pid: number } }).holder?.pid, child.process.pid);
    child.kill('SIGKILL');
    await child.exited;
    const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
    await pool.close();
  } finally {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('delete(x) racing create(x): they run one after the other, and the delete never touches the new tenant\'s wallet', async () => {
  const dataDir = tempDir();
  const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: rootKey(), workers: 2, walletIdleTtlMs: 0 });
  try {
    for (let round = 0; round < 3; round++) {
      // The old tenant opens slowly (Argon2i-mod), the new one is made fast (raw): a delete that did not
      // wait for the create would remove the new wallet's file after it was made.
      await pool.tenants.create({ tenantId: 'x', kdf: round === 0 ? 'raw' : 'argon2i-mod' });
      await pool.withSession('x', async (s) => s.records.save('c', 'old', round));
      // The old wallet is closing (round 0), or still opening (rounds 1 and 2) when the delete starts.
      const opening = round === 0 ? Promise.resolve() : pool.withSession('x', async () => {}).catch(() => {});
      const deleting = pool.tenants.delete('x');
      const creating = pool.tenants.create({ tenantId: 'x', kdf: 'raw' });
      await Promise.all([deleting, creating, opening]);
      // The tenant that exists now is the new one: empty, and its wallet file is there and opens.
      assert.is(await pool.withSession('x', async (s) => s.records.get('c', 'old')), null, `round ${round}: a fresh wallet`);
      await pool.withSession('x', async (s) => s.records.save('c', 'new', round));
      assert.ok((await walletNames(pool.options)).some((n) => n.startsWith('x.')), `round ${round}: the new wallet is there`);
      await pool.tenants.delete('x');
      assert.equal(await walletNames(pool.options), [], `round ${round}: nothing left of either`);
    }
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

testSqliteFiles('SIGKILL at any moment of the very first open of a folder leaves a folder that opens (with the key it generated, if any)', async () => {
  // Kill points: after the child has written 1, 2, 3... files into the folder (as an inotify-free
  // poll sees them), and at fixed delays; then the folder must open and take a tenant.
  for (let trial = 0; trial < 10; trial++) {
    const dataDir = join(tempDir(), 'data');
    const { TENANT_POOL_ROOT_KEY: _unused, ...env } = process.env;
    const child = startChild('first-open.ts', [dataDir], { env });
    const target = trial % 5;
    const started = performance.now();
    for (;;) {
      let count = -1;
      try {
        count = filesUnder(dataDir).length;
      } catch {
        // Not there yet, or a file renamed while listed: look again.
      }
      if (count >= target || child.process.exitCode !== null || performance.now() - started > 20_000) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (trial >= 5) await new Promise<void>((resolve) => setTimeout(resolve, trial * 3));
    child.kill('SIGKILL');
    await child.exited;
    const saved = process.env['TENANT_POOL_ROOT_KEY'];
    delete process.env['TENANT_POOL_ROOT_KEY'];
    const onWarning = (): void => {};
    process.on('warning', onWarning);
    try {
      const pool = await TenantPool.open({ dataDir, workers: 1 });
      const tenants = (await pool.tenants.list()).map((t) => t.tenantId);
      if (!tenants.includes('first')) await pool.tenants.create({ tenantId: 'first' });
      await pool.withSession('first', async (s) => s.records.save('c', 'r', trial));
      await pool.close();
      const again = await TenantPool.open({ dataDir, workers: 1 });
      assert.is((await again.withSession('first', async (s) => s.records.get('c', 'r')))?.value, trial, `trial ${trial}: the key on disk opens what was written`);
      await again.close();
    } finally {
      process.off('warning', onWarning);
      if (saved !== undefined) process.env['TENANT_POOL_ROOT_KEY'] = saved;
      rmSync(join(dataDir, '..'), { recursive: true, force: true });
    }
  }
});

test('SIGKILL during creates and deletes: every acknowledged create survives, every acknowledged delete stays done, and the next open sweeps what no tenant owns', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  let seed = 4242;
  const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
  const created = new Set<string>();
  const deleted = new Set<string>();
  const deleting = new Set<string>();
  for (let trial = 0; trial < 8; trial++) {
    const child = startChild('churn.ts', [dataDir, key, String(trial)]);
    const after = 2 + random(14);
    await child.waitFor((lines) => lines.length > after).catch(() => {});
    child.kill('SIGKILL');
    await child.exited;
    for (const line of child.lines) {
      const [kind, id] = line.split(' ');
      if (kind === 'created') created.add(id!);
      if (kind === 'deleted') deleted.add(id!);
      if (kind === 'deleting') deleting.add(id!);
    }
  }
  const swept: string[][] = [];
  const onWarning = (w: Error & { code?: string }): void => {
    if (w.code === 'TENANT_POOL_SWEPT') swept.push([w.message]);
  };
  process.on('warning', onWarning);
  const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 2 });
  try {
    const tenants = new Set((await pool.tenants.list()).map((t) => t.tenantId));
    for (const id of created) if (!deleting.has(id)) assert.ok(tenants.has(id), `created ${id} survived`);
    for (const id of deleted) assert.not.ok(tenants.has(id), `deleted ${id} stayed deleted`);
    // Every tenant opens; no file lies about that no tenant owns; nothing half-made is left.
    for (const id of tenants) await pool.withSession(id, async (s) => s.records.get('c', 'r'));
    assert.equal(await strayWalletFiles(pool), []);
  } finally {
    process.off('warning', onWarning);
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

testSqliteFiles('open() sweeps wallet files no tenant owns (a deleted tenant\'s, one being created, journals), reports them, and leaves owned and foreign files alone', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const setup = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  await setup.tenants.create({ tenantId: 'kept' });
  await setup.withSession('kept', async (s) => s.records.save('c', 'r', 'value'));
  await setup.close();
  const wallets = join(dataDir, 'wallets');
  const orphans = ['gone.00112233445566aa.sqlite', 'gone.00112233445566aa.sqlite-wal', 'new.ffeeddccbbaa9988.sqlite.creating', 'new.ffeeddccbbaa9988.sqlite.creating-journal', 'old.sqlite'];
  for (const name of orphans) writeFileSync(join(wallets, name), 'leftover');
  writeFileSync(join(wallets, 'README.txt'), 'an operator note');
  const warnings: Array<{ code?: string; message: string }> = [];
  const onWarning = (w: Error & { code?: string }): void => void warnings.push({ code: w.code, message: w.message });
  process.on('warning', onWarning);
  try {
    const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.is((await pool.withSession('kept', async (s) => s.records.get('c', 'r')))?.value, 'value');
    await pool.close();
  } finally {
    process.off('warning', onWarning);
  }
  const left = readdirSync(wallets).sort();
  assert.equal(left, ['README.txt', walletPathOf(dataDir, 'kept').split('/').pop()!].sort());
  const sweep = warnings.find((w) => w.code === 'TENANT_POOL_SWEPT');
  assert.ok(sweep !== undefined, 'a warning says what was swept');
  for (const name of orphans) assert.match(sweep.message, name);
  rmSync(dataDir, { recursive: true, force: true });
});

const isRoot = process.getuid?.() === 0;
/** Whether an unprivileged user can run this checkout (CI may clone it where only root can read). */
const nobodyCanRun =
  isRoot && spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(join(import.meta.dirname, 'fixtures', 'delete-unwritable.ts'))}, 4)`], { uid: 65534, gid: 65534 }).status === 0;

testIf(nobodyCanRun && storeUnderTest === 'sqlite', 'a delete whose wallet file cannot be removed (folder not writable) completes, warns, and the next open sweeps the file', async () => {
  const parent = tempDir();
  chmodSync(parent, 0o755);
  const dataDir = join(parent, 'data');
  mkdirSync(dataDir, { mode: 0o700 });
  chownSync(dataDir, 65534, 65534);
  const key = rootKey();
  const child = startChild('delete-unwritable.ts', [dataDir, key], { uid: 65534, gid: 65534 });
  const { code, stderr } = await child.exited;
  assert.is(code, 0, stderr);
  const report = JSON.parse(child.lines.at(-1)!) as { deleted: boolean; tenants: string[]; warnings: string[] };
  assert.equal(report, { deleted: true, tenants: ['kept'], warnings: ['TENANT_POOL_WALLET_FILE_LEFT'] });
  assert.ok(readdirSync(join(dataDir, 'wallets')).some((n) => /^doomed\.[0-9a-f]{16}\.sqlite$/.test(n)), 'the file could not be removed');
  chmodSync(join(dataDir, 'wallets'), 0o700);
  const onWarning = (): void => {};
  process.on('warning', onWarning);
  try {
    const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
    assert.equal((await pool.tenants.list()).map((t) => t.tenantId), ['kept']);
    assert.is((await pool.withSession('kept', async (s) => s.records.get('c', 'r')))?.value, 'still here');
    await pool.close();
  } finally {
    process.off('warning', onWarning);
  }
  assert.equal(readdirSync(join(dataDir, 'wallets')).filter((n) => n.startsWith('doomed.')), [], 'swept at the next open');
  rmSync(parent, { recursive: true, force: true });
});

testSqliteFiles('a folder with a registry but no root key fails ERR_ROOT_KEY_MISSING and changes no file; with wallets but no registry it is refused, not emptied', async () => {
  const env = process.env['TENANT_POOL_ROOT_KEY'];
  delete process.env['TENANT_POOL_ROOT_KEY'];
  const dataDir = tempDir();
  const onWarning = (): void => {};
  process.on('warning', onWarning);
  try {
    const pool = await TenantPool.open({ dataDir, workers: 1 });
    await pool.tenants.create({ tenantId: 'alpha' });
    await pool.close();
    const key = readFileSync(join(dataDir, 'root.key'), 'utf8').trim();
    rmSync(join(dataDir, 'root.key'));
    const before = snapshot(dataDir);
    await rejectsWith(TenantPool.open({ dataDir, workers: 1 }), 'ERR_ROOT_KEY_MISSING');
    assert.equal(snapshot(dataDir), before, 'no file written, changed or removed');
    assert.not.ok(existsSync(join(dataDir, 'root.key')), 'no stray key generated');

    // Both registry files gone next to a wallet: refused, and the wallet is left as it was.
    rmSync(join(dataDir, 'registry.json'));
    rmSync(join(dataDir, 'registry.sqlite'));
    const orphaned = snapshot(join(dataDir, 'wallets'));
    const error = await rejectsWith(TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 }), 'ERR_WALLET_CORRUPT');
    assert.match(error.message, 'no registry');
    assert.equal(snapshot(join(dataDir, 'wallets')), orphaned);
    assert.not.ok(existsSync(join(dataDir, 'registry.json')), 'no empty registry started');
  } finally {
    process.off('warning', onWarning);
    if (env !== undefined) process.env['TENANT_POOL_ROOT_KEY'] = env;
    rmSync(dataDir, { recursive: true, force: true });
  }
});

testSqliteFiles('a damaged key check value or salt in the registry header is ERR_WALLET_CORRUPT, not a wrong key; a wrong key is still ERR_WALLET_KEY_INVALID', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  await pool.close();
  const headerPath = join(dataDir, 'registry.json');
  const original = readFileSync(headerPath, 'utf8');
  await rejectsWith(TenantPool.open({ dataDir, rootKey: rootKey(), workers: 1 }), 'ERR_WALLET_KEY_INVALID', 'another key');
  const header = JSON.parse(original) as { keyCheck: string; salt: string };
  const flip = (hex: string): string => (hex[0] === '0' ? '1' : '0') + hex.slice(1);
  for (const [what, damaged] of [
    ['key check value', { ...header, keyCheck: flip(header.keyCheck) }],
    ['salt', { ...header, salt: flip(header.salt) }],
    ['short salt', { ...header, salt: 'ab' }],
  ] as const) {
    writeFileSync(headerPath, JSON.stringify(damaged));
    await rejectsWith(TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 }), 'ERR_WALLET_CORRUPT', what);
    await rejectsWith(TenantPool.open({ dataDir, rootKey: 'a passphrase root key', workers: 1 }), 'ERR_WALLET_CORRUPT', `${what}, passphrase root key`);
  }
  writeFileSync(headerPath, original);
  await (await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 })).close();
  rmSync(dataDir, { recursive: true, force: true });
});

test.run();
