/**
 * Root-key rotation: every tenant secret re-sealed under the new key, on both stores; crash-safe
 * (SIGKILL at random moments: the store opens with the old key or the new, never neither, and a
 * second run completes it); cluster instances refuse registry writes under the old key.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import Database from 'better-sqlite3-multiple-ciphers';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { startChild } from './child.js';
import { pgQuery, rejectsWith, tempDir } from './helpers.js';
import { dropSchema, postgresUrl, testSchema, testWithPostgres } from './postgres.js';

const OLD = 'a1'.repeat(32);
const NEW = 'the new root key, a passphrase';
const PASSPHRASE = 'tenant passphrase';

/** A pool with a managed and a passphrase tenant, each with a record and a key. */
async function populate(pool: TenantPool): Promise<string> {
  await pool.tenants.create({ tenantId: 'managed', label: 'Managed', metadata: { plan: 'gold' } });
  await pool.tenants.create({ tenantId: 'secret', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
  await pool.withSession('managed', async (s) => s.records.save('c', 'r', { v: 1 }, { t: 'x' }));
  await pool.withSession('secret', async (s) => s.records.save('c', 'r', { v: 2 }), { passphrase: PASSPHRASE });
  return pool.withSession('managed', async (s) => (await s.keys.create({ routing: true })).publicKey);
}

async function readsBack(pool: TenantPool, publicKey: string): Promise<void> {
  assert.equal((await pool.tenants.get('managed')).metadata, { plan: 'gold' });
  assert.equal(await pool.withSession('managed', async (s) => (await s.records.get('c', 'r'))?.value), { v: 1 });
  assert.equal(await pool.withSession('secret', async (s) => (await s.records.get('c', 'r'))?.value, { passphrase: PASSPHRASE }), { v: 2 });
  assert.is(await pool.tenants.byRoutingKey(publicKey), 'managed');
  assert.equal((await pool.tenants.find({ label: 'Managed' })).map((t) => t.tenantId), ['managed']);
}

/** Which of the two keys opens the store now: exactly one must. */
async function whichKeyOpens(options: Record<string, unknown>, keys: string[]): Promise<string> {
  const opens: string[] = [];
  for (const rootKey of keys) {
    try {
      await (await TenantPool.open({ ...options, rootKey, workers: 1 })).close();
      opens.push(rootKey);
    } catch (error) {
      assert.is((error as { code?: string }).code, 'ERR_WALLET_KEY_INVALID', (error as Error).message);
    }
  }
  assert.is(opens.length, 1, `exactly one key opens the store (${opens.length} did)`);
  return opens[0]!;
}

test('SQLite: rotated under a live session, the folder opens with the new key only, everything reads back, and one registry file is left; a folder keyed by its root.key file is refused', async () => {
  const dataDir = join(tempDir(), 'data');
  let publicKey: string;
  {
    await using pool = await TenantPool.open({ dataDir, rootKey: OLD, workers: 1 });
    publicKey = await populate(pool);
    await using session = await pool.acquire('managed');
    await pool.rotateRootKey(NEW);
    await session.records.save('c', 'during', 'yes');
    await pool.tenants.create({ tenantId: 'after' });
    await rejectsWith(pool.rotateRootKey(''), 'ERR_INVALID_ARGUMENT');
  }
  await rejectsWith(TenantPool.open({ dataDir, rootKey: OLD, workers: 1 }), 'ERR_WALLET_KEY_INVALID');
  await using pool = await TenantPool.open({ dataDir, rootKey: NEW, workers: 1 });
  await readsBack(pool, publicKey);
  assert.is(await pool.withSession('managed', async (s) => (await s.records.get('c', 'during'))?.value), 'yes');
  assert.is((await pool.tenants.get('after')).managed, true);
  assert.equal(readdirSync(dataDir).filter((f) => f.startsWith('registry') && f.endsWith('.sqlite')).length, 1);

  const generated = join(tempDir(), 'generated');
  const saved = process.env['TENANT_POOL_ROOT_KEY'];
  delete process.env['TENANT_POOL_ROOT_KEY'];
  process.on('warning', ignore);
  try {
    await using byFile = await TenantPool.open({ dataDir: generated, workers: 1 });
    await rejectsWith(byFile.rotateRootKey(NEW), 'ERR_INVALID_ARGUMENT');
  } finally {
    process.off('warning', ignore);
    if (saved !== undefined) process.env['TENANT_POOL_ROOT_KEY'] = saved;
  }
});

function ignore(): void {}

test('SQLite: a rotation killed at random moments leaves a folder that opens with the old key or the new, never neither; run again, it completes', async () => {
  const dataDir = join(tempDir(), 'data');
  let publicKey: string;
  {
    await using pool = await TenantPool.open({ dataDir, rootKey: OLD, workers: 1 });
    publicKey = await populate(pool);
  }
  // Bulk rows (their wallets are never opened): enough that a rotation takes a while to copy.
  const db = new Database(join(dataDir, 'registry.sqlite'), { fileMustExist: true });
  db.pragma(`cipher='chacha20'`);
  db.pragma(`key="x'${OLD}'"`);
  const insert = db.prepare("INSERT INTO tenants (tenant_id, kdf, salt, secret, verifier, metadata, created_at, wallet_file) VALUES (?, 'raw', ?, ?, ?, ?, '2026-01-01', ?)");
  db.transaction(() => {
    for (let i = 0; i < 20_000; i++) insert.run(`bulk${i}`, randomBytes(16), randomBytes(32), randomBytes(32), JSON.stringify({ pad: 'x'.repeat(200) }), `bulk${i}.0000000000000000.sqlite`);
  })();
  db.close();
  let current = OLD;
  let midway = 0;
  for (let trial = 0; trial < 6; trial++) {
    const target = `${NEW} ${trial}`;
    const child = startChild('rotate-root-key.ts', ['sqlite', dataDir, current, target]);
    await child.waitFor((l) => l.includes('rotating'));
    // The first kill lands at once (inside the copy); the others wherever they fall.
    if (trial > 0) await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 120)));
    child.kill('SIGKILL');
    await child.exited;
    const opened = await whichKeyOpens({ dataDir }, [current, target]);
    if (opened === current && !child.lines.includes('done')) midway++;
    current = opened;
  }
  // A second run completes whatever was cut short.
  const child = startChild('rotate-root-key.ts', ['sqlite', dataDir, current, NEW]);
  await child.waitFor((l) => l.includes('done'));
  child.kill('SIGKILL');
  await child.exited;
  await using pool = await TenantPool.open({ dataDir, rootKey: NEW, workers: 1 });
  await readsBack(pool, publicKey);
  assert.is((await pool.tenants.list()).length, 20_002);
  assert.equal(readdirSync(dataDir).filter((f) => f.startsWith('registry') && f.endsWith('.sqlite')).length, 1, 'what killed rotations left was swept');
  assert.ok(midway >= 1, 'at least one kill landed before the commit');
});

testWithPostgres('PostgreSQL: rotated, the schema opens with the new key only and everything reads back (labels, metadata and routes still match); killed at random moments it opens with one key or the other; run again, it completes', async () => {
  const schema = testSchema();
  const options = { dataDir: tempDir(), postgres: { connectionString: postgresUrl!, schema } };
  try {
    let publicKey: string;
    {
      await using pool = await TenantPool.open({ ...options, rootKey: OLD, workers: 1 });
      publicKey = await populate(pool);
      await pool.rotateRootKey(NEW);
      await readsBack(pool, publicKey);
    }
    await rejectsWith(TenantPool.open({ ...options, rootKey: OLD, workers: 1 }), 'ERR_WALLET_KEY_INVALID');
    {
      await using pool = await TenantPool.open({ ...options, rootKey: NEW, workers: 1 });
      await readsBack(pool, publicKey);
      for (let i = 0; i < 300; i++) await pool.tenants.create({ tenantId: `bulk${i}` });
    }
    let current = NEW;
    let midway = 0;
    for (let trial = 0; trial < 4; trial++) {
      const target = `${NEW} ${trial}`;
      const child = startChild('rotate-root-key.ts', ['postgres', schema, current, target]);
      await child.waitFor((l) => l.includes('rotating'));
      if (trial > 0) await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 30)));
      child.kill('SIGKILL');
      await child.exited;
      // The server ends the killed backend's transaction; wait until its locks are gone.
      for (let i = 0; (await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [`tenant-pool:${schema}`]))[0]!.n > 0; i++) {
        assert.ok(i < 2000, 'the killed backend ends');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const opened = await whichKeyOpens(options, [current, target]);
      if (opened === current && !child.lines.includes('done')) midway++;
      current = opened;
    }
    assert.ok(midway >= 1, 'at least one kill landed before the commit');
    const child = startChild('rotate-root-key.ts', ['postgres', schema, current, OLD]);
    await child.waitFor((l) => l.includes('done'));
    child.kill('SIGKILL');
    await child.exited;
    await using pool = await TenantPool.open({ ...options, rootKey: OLD, workers: 1 });
    await readsBack(pool, publicKey);
    assert.is((await pool.tenants.list()).length, 302);
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres('PostgreSQL cluster: after one instance rotates the root key, another refuses registry writes under the old key (saying it was rotated) while its sessions go on; restarted with the new key, it serves', async () => {
  const schema = testSchema();
  const base = { workers: 1, walletIdleTtlMs: 60_000, postgres: { connectionString: postgresUrl!, schema } };
  try {
    await using a = await TenantPool.open({ ...base, dataDir: tempDir(), rootKey: OLD, cluster: { instanceId: 'a' } });
    const b = await TenantPool.open({ ...base, dataDir: tempDir(), rootKey: OLD, cluster: { instanceId: 'b' } });
    try {
      await b.tenants.create({ tenantId: 'held-by-b' });
      await using session = await b.acquire('held-by-b');
      await a.rotateRootKey(NEW);
      const refused = await rejectsWith(b.tenants.create({ tenantId: `x${randomBytes(2).toString('hex')}` }), 'ERR_WALLET_KEY_INVALID');
      assert.match(refused.message, 'rotated');
      await session.records.save('c', 'r', 'still serving');
      await a.tenants.create({ tenantId: 'by-a' });
    } finally {
      await b.close();
    }
    await using b2 = await TenantPool.open({ ...base, dataDir: tempDir(), rootKey: NEW, cluster: { instanceId: 'b' } });
    assert.is(await b2.withSession('held-by-b', async (s) => (await s.records.get('c', 'r'))?.value), 'still serving');
    assert.is((await b2.tenants.get('by-a')).managed, true);
    await b2.tenants.create({ tenantId: 'by-b2' });
  } finally {
    await dropSchema(schema);
  }
});

test.run();
