/**
 * The day-two scenario: what an operator waits for. Upgrading 10,000 tenants of format 1 (and the
 * same upgrade resumed after a SIGKILL in its middle), `verify` throughput (tenants/s and MiB/s),
 * and `pool.health()` latency — on SQLite files, and on PostgreSQL when a server is given.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3-multiple-ciphers';
import pg from 'pg';
import { TenantPool } from '../src/pool.js';
import { PostgresRegistry } from '../src/store/postgres-registry.js';
import { SqliteTenantStore } from '../src/store/sqlite-store.js';
import { percentile, round } from './measure.js';
import type { Figures } from './scenarios.js';
import { benchPostgresUrl } from './systems/types.js';

const ROOT_KEY = '1f'.repeat(32);
const PG_ROOT_KEY = '0f'.repeat(32);
const fixtures = join(import.meta.dirname, '..', 'test', 'fixtures');

/** A format-1 data folder (the 0.1.0 fixture) with `count` more tenants in its registry. */
function formatOneFolder(count: number): string {
  const dir = join(tmpdir(), `tp-bench-upgrade-${process.pid}-${randomBytes(3).toString('hex')}`);
  cpSync(join(fixtures, 'formats', 'sqlite-1'), dir, { recursive: true });
  chmodSync(dir, 0o700);
  const db = new Database(join(dir, 'registry.sqlite'));
  db.pragma(`cipher='chacha20'`);
  db.pragma(`key="x'${ROOT_KEY}'"`);
  const insert = db.prepare("INSERT INTO tenants (tenant_id, label, kdf, salt, secret, verifier, max_sessions, weights, metadata, created_at, wallet_file) VALUES (?, NULL, 'argon2id', ?, NULL, ?, NULL, NULL, '{}', '2026-01-01T00:00:00.000Z', ?)");
  db.transaction(() => {
    for (let i = 0; i < count; i++) insert.run(`bulk${i}`, randomBytes(16), randomBytes(32), `bulk${i}.0000000000000000.sqlite`);
  })();
  db.close();
  return dir;
}

async function formatOneSchema(url: string, count: number): Promise<string> {
  const schema = `tp_bench_up_${process.pid}_${randomBytes(3).toString('hex')}`;
  const sql = readFileSync(join(fixtures, 'formats', 'postgres-1-latest.sql'), 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('\\'))
    .join('\n')
    .replaceAll('tp_fixture_010', schema);
  const client = new pg.Client(url);
  await client.connect();
  try {
    await client.query(sql);
    await client.query(
      `INSERT INTO ${schema}.tenants (tenant_id, label, kdf, sealed, settings, max_sessions, weights, metadata, created_at, wallet_name)
       SELECT 'bulk' || i, NULL, 'argon2id', '\\x00'::bytea, '\\x00'::bytea, NULL, NULL, '{}'::jsonb, '2026-01-01', 'bulk' || i FROM generate_series(1, ${count}) AS i`,
    );
  } finally {
    await client.end();
  }
  return schema;
}

/** Starts the upgrade in a child process and kills it after its first batch. */
async function killMidway(args: string[]): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(fixtures, 'upgrade-store.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...(benchPostgresUrl === undefined ? {} : { TENANT_POOL_TEST_POSTGRES_URL: benchPostgresUrl }) } });
  await new Promise<void>((resolve) => {
    let seen = 0;
    child.stdout.on('data', (d: Buffer) => {
      seen += (d.toString().match(/^progress/gm) ?? []).length;
      if (seen >= 2 || d.toString().includes('done')) child.kill('SIGKILL');
    });
    // Resolved once the process is gone (its locks with it).
    child.on('exit', () => resolve());
  });
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return round(performance.now() - started);
}

export async function dayTwo(quick: boolean): Promise<Figures> {
  const tenants = quick ? 2000 : 10_000;
  const figures: Figures = { tenants };
  const upgradeSqlite = async (dir: string): Promise<void> => (await SqliteTenantStore.open({ dataDir: dir, rootKey: ROOT_KEY, warn: () => {}, onSwept: () => {}, upgrade: 'auto' })).close();
  let dir = formatOneFolder(tenants);
  figures['sqliteUpgradeMs'] = await timed(async () => upgradeSqlite(dir));
  rmSync(dir, { recursive: true, force: true });
  dir = formatOneFolder(tenants);
  await killMidway(['sqlite', dir, ROOT_KEY]);
  figures['sqliteResumedUpgradeMs'] = await timed(async () => upgradeSqlite(dir));
  rmSync(dir, { recursive: true, force: true });

  // verify: managed tenants with records, every wallet checked whole.
  const dataDir = join(tmpdir(), `tp-bench-verify-${process.pid}`);
  const count = quick ? 20 : 100;
  const pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 2, walletIdleTtlMs: 0, leakWarningMs: 0 });
  try {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const { tenantId } = await pool.tenants.create({ tenantId: `v${i}` });
      ids.push(tenantId);
      await pool.withSession(tenantId, async (s) => {
        for (let r = 0; r < 100; r++) await s.records.save('c', `r${r}`, { text: 'x'.repeat(500), r }, { kind: 'bench', n: String(r % 10) });
      });
    }
    let bytes = 0;
    let next = 0;
    const started = performance.now();
    await Promise.all(
      [0, 1].map(async () => {
        while (next < ids.length) bytes += (await pool.tenants.verify(ids[next++]!)).bytes;
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    figures['verifyTenantsPerSec'] = round(count / seconds);
    figures['verifyMiBPerSec'] = round(bytes / 1048576 / seconds);
    const samples: number[] = [];
    for (let i = 0; i < (quick ? 200 : 2000); i++) samples.push((await pool.health()).tookMs);
    figures['sqliteHealthP50Ms'] = round(percentile(samples, 50));
    figures['sqliteHealthP99Ms'] = round(percentile(samples, 99));
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }

  const url = benchPostgresUrl;
  if (url !== undefined) {
    const upgradePg = async (schema: string): Promise<void> =>
      (await PostgresRegistry.open({ connectionString: url, schema, rootKey: PG_ROOT_KEY, cacheSize: 16, maxConnections: 2, connectionsPerWorker: 1, exclusive: false, upgrade: 'auto' })).close();
    const drop = async (schema: string): Promise<void> => {
      const client = new pg.Client(url);
      await client.connect();
      await client.query(`DROP SCHEMA ${schema} CASCADE`);
      await client.end();
    };
    let schema = await formatOneSchema(url, tenants);
    figures['postgresUpgradeMs'] = await timed(async () => upgradePg(schema));
    await drop(schema);
    schema = await formatOneSchema(url, tenants);
    await killMidway(['postgres', schema, PG_ROOT_KEY]);
    figures['postgresResumedUpgradeMs'] = await timed(async () => upgradePg(schema));
    const pgPool = await TenantPool.open({ dataDir: tmpdir(), rootKey: PG_ROOT_KEY, workers: 1, postgres: { connectionString: url, schema } });
    try {
      const samples: number[] = [];
      for (let i = 0; i < (quick ? 200 : 2000); i++) samples.push((await pgPool.health()).tookMs);
      figures['postgresHealthP50Ms'] = round(percentile(samples, 50));
      figures['postgresHealthP99Ms'] = round(percentile(samples, 99));
    } finally {
      await pgPool.close();
      await drop(schema);
    }
  }
  return figures;
}
