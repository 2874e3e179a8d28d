/**
 * Versioned formats and their upgrades: data of format 1 (the fixtures of release 0.1.0) is upgraded
 * at open, crash-safely, or refused with `upgrade: 'never'`; data of a later format is always refused;
 * each tenant records its KDF parameters, and a passphrase tenant weaker than the pool's current
 * parameters is re-derived at its next open.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3-multiple-ciphers';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { KDF_PARAMS_V1, type Argon2Method, type KdfParams } from '../common/kdf.js';
import { SCHEMA_FORMAT, STORE_FORMAT } from '../common/formats.js';
import { startChild } from './child.js';
import { filesUnder, pgQuery, rejectsWith, tempDir, walletPathOf } from './helpers.js';
import { legacyRawTenant } from './legacy.js';
import { storeOptionsFor } from './store.js';
import { dropSchema, postgresUrl, restoreFixture, testSchema, testWithPostgres } from './postgres.js';

const ROOT_KEY = '1f'.repeat(32);
const PASSPHRASE = 'fixture passphrase 1';
const PG_ROOT_KEY = '0f'.repeat(32);

/** A copy of the format-1 data folder made by 0.1.0's code (test/fixtures/formats/sqlite-1). */
function formatOneFolder(): string {
  const dir = join(tempDir(), 'data');
  cpSync(new URL('./fixtures/formats/sqlite-1', import.meta.url), dir, { recursive: true });
  chmodSync(dir, 0o700);
  return dir;
}

/** The registry file, opened with its key, for a look inside (or for damage). */
function registryDb(dataDir: string, rootKey = ROOT_KEY): Database.Database {
  const db = new Database(join(dataDir, 'registry.sqlite'), { fileMustExist: true });
  db.pragma(`cipher='chacha20'`);
  db.pragma(`key="x'${rootKey}'"`);
  return db;
}

/** Every data file of a folder and its hash: what "nothing was changed" compares (the lock files are the open's, not data). */
function snapshot(dataDir: string): Record<string, string> {
  return Object.fromEntries(
    filesUnder(dataDir)
      .filter((f) => !/pool\.lock/.test(f))
      .map((f) => [f.slice(dataDir.length), createHash('sha256').update(readFileSync(f)).digest('hex')]),
  );
}

/** Each level's current parameters made stronger: what a later release's defaults would be. */
const STRONGER: Readonly<Record<Argon2Method, KdfParams>> = {
  'argon2i-int': { ...KDF_PARAMS_V1['argon2i-int'], memoryKiB: 65_536 },
  'argon2i-mod': { ...KDF_PARAMS_V1['argon2i-mod'], passes: 7 },
  argon2id: { ...KDF_PARAMS_V1.argon2id, passes: 4 },
};

test('a data folder of format 1 is upgraded at open: the format recorded, every Argon2 tenant given the parameters it was derived with; opened again, nothing is done twice', async () => {
  const dataDir = formatOneFolder();
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }): void => void warnings.push(String(w.code));
  process.on('warning', onWarning);
  try {
    await (await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1 })).close();
    await (await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1 })).close();
  } finally {
    process.off('warning', onWarning);
  }
  assert.equal(warnings.filter((w) => w === 'TENANT_POOL_UPGRADED'), ['TENANT_POOL_UPGRADED'], 'upgraded once, and said so');
  const db = registryDb(dataDir);
  try {
    assert.equal(db.prepare('SELECT version, name FROM format_history ORDER BY version').all(), [{ version: 2, name: 'kdf-params' }]);
    const rows = db.prepare('SELECT tenant_id, kdf, kdf_params FROM tenants ORDER BY tenant_id').all() as { tenant_id: string; kdf: Argon2Method | 'raw'; kdf_params: string | null }[];
    assert.equal(
      rows.map((r) => [r.tenant_id, r.kdf_params === null ? null : (JSON.parse(r.kdf_params) as KdfParams)]),
      [
        ['managed', null],
        ['secret', KDF_PARAMS_V1['argon2i-int']],
        ['strong', KDF_PARAMS_V1.argon2id],
      ],
    );
  } finally {
    db.close();
  }
});

test("upgrade: 'never' refuses a folder of format 1 with ERR_UPGRADE_REQUIRED naming both formats and the command; no byte changes, and 'auto' upgrades it afterwards", async () => {
  const dataDir = formatOneFolder();
  const before = snapshot(dataDir);
  const error = await rejectsWith(TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, upgrade: 'never' }), 'ERR_UPGRADE_REQUIRED');
  assert.equal([(error as { found?: number }).found, (error as { current?: number }).current], [1, STORE_FORMAT]);
  assert.match(error.message, `tenant-pool upgrade --data-dir ${dataDir}`);
  assert.match(error.message, 'format 1');
  assert.equal(snapshot(dataDir), before, 'nothing was changed');
  await using pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, upgrade: 'auto' });
  assert.is((await pool.tenants.get('secret')).kdfParams?.memoryKiB, KDF_PARAMS_V1['argon2i-int'].memoryKiB);
});

test('data of a later format is refused in every mode with ERR_FORMAT_TOO_NEW naming both formats, and nothing is changed: a registry, a registry header, a wallet file, an export file', async () => {
  // A registry a later release upgraded.
  const dataDir = formatOneFolder();
  await (await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1 })).close();
  const db = registryDb(dataDir);
  db.prepare("INSERT INTO format_history (version, name, applied_at, release) VALUES (3, 'later', '2030-01-01', '9.0.0')").run();
  db.close();
  const before = snapshot(dataDir);
  for (const upgrade of ['auto', 'never'] as const) {
    const error = await rejectsWith(TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, upgrade }), 'ERR_FORMAT_TOO_NEW');
    assert.equal([(error as { found?: number }).found, (error as { current?: number }).current], [3, STORE_FORMAT]);
  }
  assert.equal(snapshot(dataDir), before, 'nothing was changed');

  // A registry header of a later layout.
  const headerDir = formatOneFolder();
  const header = JSON.parse(readFileSync(join(headerDir, 'registry.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(headerDir, 'registry.json'), JSON.stringify({ ...header, version: 2 }));
  await rejectsWith(TenantPool.open({ dataDir: headerDir, rootKey: ROOT_KEY, workers: 1 }), 'ERR_FORMAT_TOO_NEW', 'a later header');

  // A wallet file of a later format: that tenant is refused as such (not as damage), the others open.
  const walletDir = formatOneFolder();
  await using pool = await TenantPool.open({ dataDir: walletDir, rootKey: ROOT_KEY, workers: 1, walletIdleTtlMs: 0 });
  await setWalletVersion(pool, walletDir, 'secret', 2);
  const tooNew = await rejectsWith(pool.acquire('secret', { passphrase: PASSPHRASE }), 'ERR_FORMAT_TOO_NEW', 'a later wallet file');
  assert.equal([(tooNew as { found?: number }).found, (tooNew as { current?: number }).current], [2, 1]);
  assert.is(await pool.withSession('managed', async (s) => (await s.records.get('note', 'n2'))?.value !== undefined), true, 'the other tenants open');

  // An export file of a later format.
  const file = join(tempDir(), 'later.tpx');
  const bytes = readFileSync(new URL('./fixtures/formats/export-1-key.tpx', import.meta.url));
  writeFileSync(file, Buffer.concat([Buffer.from('tenant-pool export 3\n'), bytes.subarray(bytes.indexOf(0x0a) + 1)]));
  const exportError = await rejectsWith(pool.tenants.import(file, { exportKey: Buffer.from('2e'.repeat(32), 'hex'), tenantId: 'later' }), 'ERR_FORMAT_TOO_NEW', 'a later export');
  assert.equal([(exportError as { found?: number }).found, (exportError as { current?: number }).current], [3, 2]);
  await rejectsWith(pool.tenants.get('later'), 'ERR_TENANT_NOT_FOUND', 'nothing imported');
});

/** Sets a wallet file's `user_version` as a later release would (the wallet key from the tenant's passphrase, derived as the pool does). */
async function setWalletVersion(pool: TenantPool, dataDir: string, tenantId: string, version: number): Promise<void> {
  const { deriveKey } = await import('../common/kdf.js');
  const db = registryDb(dataDir);
  const row = db.prepare('SELECT kdf, kdf_params, salt FROM tenants WHERE tenant_id = ?').get(tenantId) as { kdf: Argon2Method; kdf_params: string; salt: Buffer };
  db.close();
  await pool.closeIdleWallets();
  const key = await deriveKey(row.kdf, PASSPHRASE, row.salt, JSON.parse(row.kdf_params) as KdfParams);
  const wallet = new Database(walletPathOf(dataDir, tenantId), { fileMustExist: true });
  try {
    wallet.pragma(`cipher='chacha20'`);
    wallet.pragma(`key="x'${key.toString('hex')}'"`);
    wallet.pragma(`user_version = ${version}`);
  } finally {
    wallet.close();
  }
}

test("a tenant records the KDF parameters it was created with; when the pool's are stronger, a passphrase tenant is re-derived at its next open (with its passphrase), a managed one is not, and a pool with the old defaults still opens both", async () => {
  const dataDir = join(tempDir(), 'data');
  {
    await using pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, walletIdleTtlMs: 0 });
    await pool.tenants.create({ tenantId: 'alice', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
    await pool.tenants.create({ tenantId: 'bob', kdf: 'argon2id' });
    await pool.withSession('alice', async (s) => s.records.save('c', 'r', 'kept'), { passphrase: PASSPHRASE });
    assert.equal((await pool.tenants.get('alice')).kdfParams, KDF_PARAMS_V1['argon2i-int']);
  }
  {
    // A later release's defaults: stronger.
    await using pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, walletIdleTtlMs: 0 }, { kdfParams: STRONGER });
    await rejectsWith(pool.acquire('alice', { passphrase: 'wrong' }), 'ERR_WALLET_KEY_INVALID');
    assert.equal((await pool.tenants.get('alice')).kdfParams, KDF_PARAMS_V1['argon2i-int'], 'a wrong passphrase changes nothing');
    assert.is(await pool.withSession('alice', async (s) => (await s.records.get('c', 'r'))?.value, { passphrase: PASSPHRASE }), 'kept');
    assert.equal((await pool.tenants.get('alice')).kdfParams, STRONGER['argon2i-int'], 're-derived to the current parameters');
    await pool.withSession('bob', async () => {});
    assert.equal((await pool.tenants.get('bob')).kdfParams, KDF_PARAMS_V1.argon2id, 'a managed tenant (32 random bytes) is not re-derived');
    await pool.tenants.create({ tenantId: 'carol', passphrase: PASSPHRASE, kdf: 'argon2id' });
    assert.equal((await pool.tenants.get('carol')).kdfParams, STRONGER.argon2id, 'a new tenant gets the current parameters');
  }
  // Back on the old defaults: each tenant opens with what it recorded.
  await using pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, walletIdleTtlMs: 0 });
  assert.is(await pool.withSession('alice', async (s) => (await s.records.get('c', 'r'))?.value, { passphrase: PASSPHRASE }), 'kept');
  assert.equal((await pool.tenants.get('alice')).kdfParams, STRONGER['argon2i-int'], 'never weakened');
  await pool.withSession('bob', async () => {});
  await pool.withSession('carol', async () => {}, { passphrase: PASSPHRASE });
});

test("a passphrase tenant an earlier release derived with raw (HKDF alone) moves to argon2i-mod at its first open with its passphrase", async () => {
  const dataDir = join(tempDir(), 'data');
  const key = randomBytes(32).toString('hex');
  await legacyRawTenant(dataDir, key, 'legacy pass');
  await using pool = await TenantPool.open({ dataDir, rootKey: key, workers: 1 });
  assert.is((await pool.tenants.get('legacy')).kdf, 'raw');
  await pool.withSession('legacy', async (s) => s.records.save('c', 'kept', 'yes'), { passphrase: 'legacy pass' });
  const info = await pool.tenants.get('legacy');
  assert.equal([info.kdf, info.kdfParams], ['argon2i-mod', KDF_PARAMS_V1['argon2i-mod']]);
  await pool.closeIdleWallets();
  assert.is((await pool.withSession('legacy', async (s) => s.records.get('c', 'kept'), { passphrase: 'legacy pass' }))?.value, 'yes');
});

test('a re-derivation at open killed at random moments: the tenant still opens with its passphrase (its old parameters or its new, never neither), with its data, and nothing is left behind', async () => {
  const dataDir = join(tempDir(), 'data');
  const key = randomBytes(32).toString('hex');
  const trials = 5;
  {
    await using pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
    for (let i = 0; i < trials; i++) {
      await pool.tenants.create({ tenantId: `alice${i}`, passphrase: PASSPHRASE, kdf: 'argon2i-int' });
      await pool.withSession(`alice${i}`, async (s) => s.records.save('c', 'r', `kept ${i}`), { passphrase: PASSPHRASE });
    }
  }
  for (let i = 0; i < trials; i++) {
    const child = startChild('rehash-open.ts', [dataDir, key, `alice${i}`, PASSPHRASE]);
    await child.waitFor((l) => l.includes('opening'));
    await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 400)));
    child.kill('SIGKILL');
    await child.exited;
    await using pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
    assert.is(await pool.withSession(`alice${i}`, async (s) => (await s.records.get('c', 'r'))?.value, { passphrase: PASSPHRASE }), `kept ${i}`);
    const memory = (await pool.tenants.get(`alice${i}`)).kdfParams?.memoryKiB;
    assert.ok(memory === 32_768 || memory === 65_536, `alice${i}: ${String(memory)} KiB`);
  }
  if (storeOptionsFor(dataDir).postgres === undefined) {
    // Every wallet file left is a tenant's (a rewrite killed before its commit was swept at the next open).
    await using _sweeper = await TenantPool.open({ dataDir, rootKey: key, workers: 1 });
    const files = readdirSync(join(dataDir, 'wallets')).filter((f) => f.endsWith('.sqlite'));
    assert.is(files.length, trials, files.join(', '));
  }
});

/** A format-1 data folder with `count` more tenants in its registry (rows only: their wallets are never opened). */
function bigFormatOneFolder(count: number): string {
  const dataDir = formatOneFolder();
  const db = registryDb(dataDir);
  try {
    const insert = db.prepare("INSERT INTO tenants (tenant_id, label, kdf, salt, secret, verifier, max_sessions, weights, metadata, created_at, wallet_file) VALUES (?, NULL, 'argon2id', ?, NULL, ?, NULL, NULL, '{}', '2026-01-01T00:00:00.000Z', ?)");
    db.transaction(() => {
      for (let i = 0; i < count; i++) insert.run(`bulk${i}`, randomBytes(16), randomBytes(32), `bulk${i}.0000000000000000.sqlite`);
    })();
  } finally {
    db.close();
  }
  return dataDir;
}

test('an upgrade killed at random moments (SIGKILL between and inside its batches) leaves a folder that opens, in the old format or the new, never neither; the next open resumes it, and every tenant ends up with its parameters', async () => {
  const dataDir = bigFormatOneFolder(5000);
  let midway = 0;
  for (let trial = 0; trial < 4; trial++) {
    const child = startChild('upgrade-store.ts', ['sqlite', dataDir, ROOT_KEY]);
    // The first kill lands with batches still to do; the later ones wherever they fall.
    const at = trial === 0 ? 1 + Math.floor(Math.random() * 2) : Math.floor(Math.random() * 6);
    const lines = await child.waitFor((l) => l.includes('done') || l.filter((x) => x.startsWith('progress')).length > at).catch(() => child.lines);
    child.kill('SIGKILL');
    await child.exited;
    if (lines.includes('done')) break;
    // Killed in the middle: the folder opens, in the old format (a pool that may not upgrade says so) or the new.
    try {
      await (await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, upgrade: 'never' })).close();
    } catch (error) {
      assert.is((error as { code?: string }).code, 'ERR_UPGRADE_REQUIRED', `trial ${trial}: ${(error as Error).message}`);
      midway++;
    }
  }
  assert.ok(midway >= 1, 'at least one kill landed in the middle of the upgrade');
  await using pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1 });
  await pool.withSession('secret', async (s) => assert.equal((await s.records.get('vault', 'v1'))?.value, { pin: '1234' }), { passphrase: PASSPHRASE });
  const db = registryDb(dataDir);
  try {
    assert.is(db.prepare("SELECT count(*) FROM tenants WHERE kdf <> 'raw' AND kdf_params IS NULL").pluck().get(), 0, 'every Argon2 tenant has its parameters');
    assert.is(db.prepare('SELECT max(version) FROM format_history').pluck().get(), STORE_FORMAT);
  } finally {
    db.close();
  }
});


/** What a schema holds, table by table, as text: what "nothing was changed" compares. */
async function schemaSnapshot(schema: string): Promise<string> {
  const tables = (await pgQuery<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [schema])).map((r) => r.table_name);
  const columns = await pgQuery<{ table_name: string; column_name: string }>(`SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, column_name`, [schema]);
  const out: string[] = [JSON.stringify(columns)];
  for (const table of tables) out.push(JSON.stringify(await pgQuery(`SELECT * FROM ${schema}.${table} ORDER BY 1`)));
  return out.join('\n');
}

for (const fixture of ['postgres-0.1.0', 'postgres-1-latest']) {
  testWithPostgres(`a schema of format 1 (${fixture}): 'never' refuses it with ERR_UPGRADE_REQUIRED and changes nothing; 'auto' upgrades it (the format recorded, every Argon2 tenant's parameters written, routes hashed); a later format is refused in both modes`, async () => {
    const schema = testSchema();
    await restoreFixture(`${fixture}.sql`, schema);
    try {
      const before = await schemaSnapshot(schema);
      const options = { dataDir: tempDir(), rootKey: PG_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema } };
      const error = await rejectsWith(TenantPool.open({ ...options, upgrade: 'never' }), 'ERR_UPGRADE_REQUIRED');
      assert.equal([(error as { found?: number }).found, (error as { current?: number }).current], [1, SCHEMA_FORMAT]);
      assert.match(error.message, `--schema ${schema}`);
      assert.is(await schemaSnapshot(schema), before, 'nothing was changed');
      await (await TenantPool.open(options)).close();
      assert.equal(await pgQuery(`SELECT version, name FROM ${schema}.format_history ORDER BY version`), [
        { version: 2, name: 'kdf-params' },
        { version: 3, name: 'member-leases' },
      ]);
      assert.equal(await pgQuery(`SELECT tenant_id, kdf_params FROM ${schema}.tenants ORDER BY tenant_id`), [
        { tenant_id: 'managed', kdf_params: null },
        { tenant_id: 'secret', kdf_params: KDF_PARAMS_V1['argon2i-int'] },
      ]);
      assert.ok((await pgQuery<{ recipient_key: string }>(`SELECT recipient_key FROM ${schema}.routes`)).every((r) => r.recipient_key.startsWith('h1:')));
      await pgQuery(`INSERT INTO ${schema}.format_history (version, name, release) VALUES (4, 'later', '9.0.0')`);
      const later = await schemaSnapshot(schema);
      for (const upgrade of ['auto', 'never'] as const) {
        const tooNew = await rejectsWith(TenantPool.open({ ...options, upgrade }), 'ERR_FORMAT_TOO_NEW');
        assert.equal([(tooNew as { found?: number }).found, (tooNew as { current?: number }).current], [4, SCHEMA_FORMAT]);
      }
      assert.is(await schemaSnapshot(schema), later, 'nothing was changed');
    } finally {
      await dropSchema(schema);
    }
  });
}

testWithPostgres('a schema upgrade killed at random moments of its backfill resumes at the next open; every tenant ends up with its parameters and the fixture reads back', async () => {
  const schema = testSchema();
  await restoreFixture('postgres-1-latest.sql', schema);
  try {
    await pgQuery(
      `INSERT INTO ${schema}.tenants (tenant_id, label, kdf, sealed, settings, max_sessions, weights, metadata, created_at, wallet_name)
       SELECT 'bulk' || i, NULL, 'argon2id', '\\x00'::bytea, '\\x00'::bytea, NULL, NULL, '{}'::jsonb, '2026-01-01', 'bulk' || i FROM generate_series(1, 5000) AS i`,
    );
    let midway = 0;
    for (let trial = 0; trial < 3; trial++) {
      const child = startChild('upgrade-store.ts', ['postgres', schema, PG_ROOT_KEY]);
      const at = trial === 0 ? 1 + Math.floor(Math.random() * 2) : Math.floor(Math.random() * 6);
      const lines = await child.waitFor((l) => l.includes('done') || l.filter((x) => x.startsWith('progress')).length > at).catch(() => child.lines);
      child.kill('SIGKILL');
      await child.exited;
      if (lines.includes('done')) break;
      const [format] = await pgQuery<{ v: number | null }>(`SELECT max(version) AS v FROM ${schema}.format_history`);
      if ((format?.v ?? 1) < SCHEMA_FORMAT) midway++;
      // Half backfilled, the schema still opens for the release before (rows not written read as format 1 meant them).
      const [rows] = await pgQuery<{ done: number; left: number }>(`SELECT count(kdf_params)::int AS done, (count(*) - count(kdf_params))::int AS left FROM ${schema}.tenants WHERE kdf <> 'raw'`);
      assert.ok(rows!.done + rows!.left === 5001, `trial ${trial}: ${rows!.done} rows written, ${rows!.left} left`);
    }
    assert.ok(midway >= 1, 'at least one kill landed in the middle of the upgrade');
    await using pool = await TenantPool.open({ dataDir: tempDir(), rootKey: PG_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
    assert.equal(await pool.withSession('secret', async (s) => (await s.records.get('vault', 'v1'))?.value, { passphrase: 'fixture passphrase 0.1.0' }), { pin: '1234' });
    assert.equal(await pgQuery(`SELECT count(*)::int AS n FROM ${schema}.tenants WHERE kdf <> 'raw' AND kdf_params IS NULL`), [{ n: 0 }]);
    assert.equal(await pgQuery(`SELECT max(version) AS v FROM ${schema}.format_history`), [{ v: SCHEMA_FORMAT }]);
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres('a rolling upgrade: with a live member of the older release (its member row says format 1), a new instance joins, upgrades the schema additively and serves, but re-derives no tenant and gives new ones the old parameters; once the older member is gone, it does', async () => {
  const schema = testSchema();
  const options = { dataDir: tempDir(), rootKey: PG_ROOT_KEY, workers: 1, walletIdleTtlMs: 0, postgres: { connectionString: postgresUrl!, schema } };
  try {
    // The release before: the schema and a tenant derived with the format-1 parameters.
    await (await TenantPool.open(options)).close();
    {
      await using first = await TenantPool.open({ ...options, cluster: { instanceId: 'new-0', leaseTtlMs: 1000 } });
      await first.tenants.create({ tenantId: 'alice', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
    }
    // An instance of the older release is live: its member row has no format of this release's.
    await pgQuery(`INSERT INTO ${schema}.members (instance_id, address, heartbeat_at, lease_ttl_ms, life, format) VALUES ('old-1', NULL, now(), 60000, 'x', 1)`);
    await using pool = await TenantPool.open({ ...options, dataDir: tempDir(), cluster: { instanceId: 'new-1', leaseTtlMs: 1000 } }, { kdfParams: STRONGER });
    await pool.withSession('alice', async () => {}, { passphrase: PASSPHRASE });
    assert.equal((await pool.tenants.get('alice')).kdfParams, KDF_PARAMS_V1['argon2i-int'], 'not re-derived while the older member is live');
    await pool.tenants.create({ tenantId: 'carol', passphrase: PASSPHRASE, kdf: 'argon2i-int' });
    assert.equal((await pool.tenants.get('carol')).kdfParams, KDF_PARAMS_V1['argon2i-int'], 'created with what the older release derives with');
    // The older member leaves (its heartbeat lapses): at the next renewal the instance knows, and re-derives at the next open.
    await pgQuery(`UPDATE ${schema}.members SET heartbeat_at = now() - interval '1 hour' WHERE instance_id = 'old-1'`);
    for (let i = 0; ; i++) {
      await pool.withSession('alice', async () => {}, { passphrase: PASSPHRASE });
      if ((await pool.tenants.get('alice')).kdfParams?.memoryKiB === STRONGER['argon2i-int'].memoryKiB) break;
      assert.ok(i < 100, 'alice is re-derived once the older member is gone');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(await pgQuery(`SELECT instance_id, format FROM ${schema}.members WHERE instance_id LIKE 'new-%' ORDER BY 1`), [{ instance_id: 'new-1', format: SCHEMA_FORMAT }]);
  } finally {
    await dropSchema(schema);
  }
});

test.run();
