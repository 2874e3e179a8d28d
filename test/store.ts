/**
 * The store the behaviour suites run against: SQLite files (the first pass of `npm test`), or
 * PostgreSQL (the second pass, `TENANT_POOL_TEST_STORE=postgres`). A pool on a data folder gets,
 * on PostgreSQL, a schema named after that folder, so a test and the child processes it starts on
 * the same folder share one schema. No uvu here: child processes import this file.
 */
import { createHash } from 'node:crypto';
import type { PoolOptions } from '../src/config/config.js';

export const postgresUrl: string | undefined = process.env['TENANT_POOL_TEST_POSTGRES_URL'] || undefined;

export const storeUnderTest: 'sqlite' | 'postgres' = process.env['TENANT_POOL_TEST_STORE'] === 'postgres' ? 'postgres' : 'sqlite';

/** Schemas of the PostgreSQL pass start so; the pass drops them all when it ends. */
export const TEST_SCHEMA_PREFIX = 'tp_test_';

/** The options that put a pool on `dataDir` on the store under test: nothing more for SQLite, the folder's own schema for PostgreSQL. */
export function storeOptionsFor(dataDir: string): PoolOptions {
  if (storeUnderTest === 'sqlite') return {};
  if (postgresUrl === undefined) throw new Error('TENANT_POOL_TEST_STORE=postgres needs TENANT_POOL_TEST_POSTGRES_URL');
  return { postgres: { connectionString: postgresUrl, schema: `${TEST_SCHEMA_PREFIX}${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}` } };
}

/** Runs one query on the test server. */
export async function pgQuery<R>(sql: string, params: unknown[] = []): Promise<R[]> {
  const pg = (await import('pg')).default;
  const client = new pg.Client(postgresUrl);
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as R[];
  } finally {
    await client.end();
  }
}

/**
 * The wallets a pool's store holds, by name (`<tenantId>.<incarnation>`): the files in
 * `<dataDir>/wallets` (SQLite, journals and all), or the rows of the schema's `wallets` table.
 */
export async function walletNames(options: { dataDir: string; postgres?: { schema: string } | undefined }): Promise<string[]> {
  if (options.postgres !== undefined) return (await pgQuery<{ name: string }>(`SELECT name FROM ${options.postgres.schema}.wallets ORDER BY name`)).map((r) => r.name);
  const { readdirSync } = await import('node:fs');
  return readdirSync(`${options.dataDir}/wallets`).sort();
}

/**
 * Damages a tenant's wallet where the store keeps it: the file garbled, emptied or removed
 * (SQLite), or the wallet's row given a garbled or empty profile key, or removed (PostgreSQL).
 */
export async function damageWallet(options: { dataDir: string; postgres?: { schema: string } | undefined }, tenantId: string, how: 'garble' | 'empty' | 'remove'): Promise<void> {
  if (options.postgres !== undefined) {
    const s = options.postgres.schema;
    if (how === 'remove') await pgQuery(`DELETE FROM ${s}.wallets WHERE tenant_id = $1`, [tenantId]);
    else await pgQuery(`UPDATE ${s}.wallets SET profile_key = $2 WHERE tenant_id = $1`, [tenantId, how === 'garble' ? Buffer.alloc(92, 0x5a) : Buffer.alloc(0)]);
    return;
  }
  const { readdirSync, rmSync, writeFileSync } = await import('node:fs');
  const name = readdirSync(`${options.dataDir}/wallets`).find((n) => n.startsWith(`${tenantId}.`) && n.endsWith('.sqlite'));
  if (name === undefined) throw new Error(`no wallet file of ${tenantId}`);
  const path = `${options.dataDir}/wallets/${name}`;
  if (how === 'remove') rmSync(path);
  else writeFileSync(path, how === 'garble' ? Buffer.alloc(8192, 0x5a) : Buffer.alloc(0));
}

/**
 * Leaves what a create killed before its registry row leaves behind, for the next open's sweep: a
 * half-written wallet file (SQLite), or a wallet row no tenant names (PostgreSQL, made by a pool
 * opened and closed on the folder's schema). Returns the name the sweep reports.
 */
export async function leaveHalfCreatedWallet(dataDir: string, rootKey: string): Promise<string> {
  const options = storeOptionsFor(dataDir);
  if (options.postgres === undefined) {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync(`${dataDir}/wallets`, { recursive: true });
    writeFileSync(`${dataDir}/wallets/ghost.0123456789abcdef.sqlite.creating`, 'half a wallet');
    return 'ghost.0123456789abcdef.sqlite.creating';
  }
  const { TenantPool } = await import('../src/pool.js');
  const pool = await TenantPool.open({ dataDir, rootKey, workers: 1, ...options });
  await pool.close();
  await pgQuery(`INSERT INTO ${options.postgres.schema}.wallets (name, tenant_id, profile_key) VALUES ('ghost.0123456789abcdef', 'ghost', '\\x00')`);
  return 'ghost.0123456789abcdef';
}

/** pg_dump of one schema's rows, as text: what an operator (or a thief of a backup) sees. */
export async function dumpSchema(schema: string): Promise<string> {
  const { readdirSync } = await import('node:fs');
  const { spawnSync } = await import('node:child_process');
  const version = readdirSync('/usr/lib/postgresql').sort().at(-1);
  const run = spawnSync(`/usr/lib/postgresql/${version}/bin/pg_dump`, ['--dbname', postgresUrl!, '--schema', schema, '--data-only', '--inserts'], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`pg_dump failed: ${run.stderr}`);
  return run.stdout;
}

/**
 * Where the store under test keeps `marker` in plaintext (or, in the database, as the hex of a
 * bytea): the files below `dataDir` that hold it, or `['the database']`.
 */
export async function placesHolding(options: { dataDir: string; postgres?: { schema: string } | undefined }, marker: string): Promise<string[]> {
  if (options.postgres !== undefined) {
    const dump = await dumpSchema(options.postgres.schema);
    if (!dump.includes('INSERT INTO')) throw new Error('the dump holds no rows');
    return dump.includes(marker) || dump.includes(Buffer.from(marker, 'utf8').toString('hex')) ? ['the database'] : [];
  }
  const { filesContaining } = await import('./helpers.js');
  return filesContaining(options.dataDir, marker);
}

/** Removes a schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  await pgQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
}
