/**
 * Data written by earlier releases opens with this code, with nothing lost: fixtures made by the
 * code of each release (with the script beside each, under test/fixtures/formats/).
 */
import { chmodSync, cpSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import { TenantPool } from '../src/pool.js';
import { RELEASE } from '../common/formats.js';
import { startChild } from './child.js';
import { pgQuery, rejectsWith, tempDir, usePool } from './helpers.js';
import { dropSchema, postgresUrl, restoreFixture, testSchema, testWithPostgres } from './postgres.js';

/** What make-postgres-0.1.0.ts wrote the fixture with. */
const FIXTURE_ROOT_KEY = '0f'.repeat(32);
const FIXTURE_PASSPHRASE = 'fixture passphrase 0.1.0';


interface Facts {
  managed: { routed: { kid: string; publicKey: string }; plain: { kid: string; publicKey: string }; signature: string };
}

function factsOf(name: string): Facts & { exports?: { key: string; passphrase: string } } {
  return JSON.parse(readFileSync(new URL(`./fixtures/formats/${name}.json`, import.meta.url), 'utf8')) as Facts & { exports?: { key: string; passphrase: string } };
}

/** What every fixture holds, read back through the pool: records with tags, keys that sign, the old signature, the route, the passphrase tenant. */
async function readsBackEverything(pool: TenantPool, facts: Facts, passphrase: string): Promise<void> {
  assert.is(await pool.tenants.byRoutingKey(facts.managed.routed.publicKey), 'managed');
  const managed = await pool.tenants.get('managed');
  assert.is(managed.label, 'Managed tenant');
  assert.equal(managed.metadata, { plan: 'gold' });
  assert.is((await pool.tenants.get('secret')).managed, false);
  await pool.withSession('managed', async (s) => {
    assert.equal(await s.records.get('note', 'n1'), { category: 'note', id: 'n1', value: { text: 'héllo ✓', n: 1 }, tags: { topic: 'greeting', lang: 'fr' } });
    assert.equal((await s.records.find('note', { topic: 'list' })).map((r) => r.value), [[1, 2, 3]]);
    assert.equal(await s.records.get('conn', 'c1'), { category: 'conn', id: 'c1', value: { did: 'did:example:1' }, tags: {} });
    const keys = await s.keys.list();
    assert.equal(
      keys.map((k) => [k.kid, k.publicKey, k.routing]),
      [
        [facts.managed.routed.kid, facts.managed.routed.publicKey, true],
        [facts.managed.plain.kid, facts.managed.plain.publicKey, false],
      ],
    );
    const data = Buffer.from('fixture');
    assert.ok(await s.keys.verify(facts.managed.routed.publicKey, data, Buffer.from(facts.managed.signature, 'base64')), 'the old signature verifies');
    assert.ok(await s.keys.verify(facts.managed.routed.publicKey, data, await s.keys.sign(facts.managed.routed.kid, data)), 'the old key signs');
  });
  await rejectsWith(pool.acquire('secret', { passphrase: 'wrong' }), 'ERR_WALLET_KEY_INVALID');
  assert.equal(await pool.withSession('secret', async (s) => (await s.records.get('vault', 'v1'))?.value, { passphrase }), { pin: '1234' });
}

testWithPostgres('a schema written by 0.1.0 opens with this code: every record, tag, key, signature, route and passphrase reads back', async () => {
  const facts = factsOf('postgres-0.1.0');
  const schema = testSchema();
  await restoreFixture('postgres-0.1.0.sql', schema);
  const pool = await TenantPool.open({ dataDir: tempDir(), rootKey: FIXTURE_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
  try {
    // Routes of 0.1.0 held the public key itself: the open replaced each with its keyed hash.
    const routes = await pgQuery<{ recipient_key: string }>(`SELECT recipient_key FROM ${schema}.routes`);
    assert.is(routes.length, 1);
    assert.ok(routes[0]!.recipient_key.startsWith('h1:') && !routes[0]!.recipient_key.includes(facts.managed.routed.publicKey), 'the route is hashed');
    await readsBackEverything(pool, facts, FIXTURE_PASSPHRASE);
  } finally {
    await pool.close();
  }
  // Opened again: nothing is hashed twice.
  const again = await TenantPool.open({ dataDir: tempDir(), rootKey: FIXTURE_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
  try {
    assert.is(await again.tenants.byRoutingKey(facts.managed.routed.publicKey), 'managed');
  } finally {
    await again.close();
    await dropSchema(schema);
  }
});

testWithPostgres('a schema written by the last code of format 1 (hashed routes, an ownership row, no format recorded) opens with this code: everything reads back', async () => {
  const schema = testSchema();
  await restoreFixture('postgres-1-latest.sql', schema);
  try {
    await using pool = await TenantPool.open({ dataDir: tempDir(), rootKey: FIXTURE_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
    await readsBackEverything(pool, factsOf('postgres-1-latest'), FIXTURE_PASSPHRASE);
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres('a schema of format 2 (written by 0.2.0) opens with this code: it is upgraded to format 3 (leases record their member\'s life) and everything reads back', async () => {
  const schema = testSchema();
  await restoreFixture('postgres-2.sql', schema);
  try {
    {
      await using pool = await TenantPool.open({ dataDir: tempDir(), rootKey: FIXTURE_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
      await readsBackEverything(pool, factsOf('postgres-2'), FIXTURE_PASSPHRASE);
    }
    assert.equal(await pgQuery(`SELECT version, name, release FROM ${schema}.format_history ORDER BY version`), [
      { version: 2, name: 'created', release: '0.2.0' },
      { version: 3, name: 'member-leases', release: RELEASE },
    ]);
    assert.equal(await pgQuery(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'leases' AND column_name = 'life'`, [schema]), [{ column_name: 'life' }]);
    // And as a cluster: the same schema serves instances of this release.
    await using member = await TenantPool.open({ dataDir: tempDir(), rootKey: FIXTURE_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'after-2' } });
    await readsBackEverything(member, factsOf('postgres-2'), FIXTURE_PASSPHRASE);
  } finally {
    await dropSchema(schema);
  }
});

/** What make-sqlite-1.ts wrote its fixtures with. */
const SQLITE_ROOT_KEY = '1f'.repeat(32);
const SQLITE_PASSPHRASE = 'fixture passphrase 1';
const SQLITE_EXPORT_KEY = Buffer.from('2e'.repeat(32), 'hex');
const SQLITE_EXPORT_PASSPHRASE = 'fixture export passphrase 1';

/** A copy of the format-1 data folder (a fixture is never opened in place: an open may upgrade it). */
function sqliteFixture(): string {
  const dir = join(tempDir(), 'data');
  cpSync(new URL('./fixtures/formats/sqlite-1', import.meta.url), dir, { recursive: true });
  // Git keeps no file modes: the folder as the pool made it is private.
  chmodSync(dir, 0o700);
  return dir;
}

test('a data folder written by format 1 (0.1.0) opens with this code: every record, tag, key, signature, route, passphrase and setting reads back', async () => {
  const dataDir = sqliteFixture();
  {
    await using pool = await TenantPool.open({ dataDir, rootKey: SQLITE_ROOT_KEY, workers: 1 });
    await readsBackEverything(pool, factsOf('sqlite-1'), SQLITE_PASSPHRASE);
    const strong = await pool.tenants.get('strong');
    assert.equal([strong.kdf, strong.label, strong.metadata, strong.maxSessions, strong.weights], ['argon2id', 'Strong', { tier: '2' }, 3, { wallet: 6 }]);
    assert.equal(await pool.withSession('strong', async (s) => (await s.records.get('vault', 'v2'))?.value, { passphrase: SQLITE_PASSPHRASE }), { pin: '5678' });
  }
  // And again: what the first open did (an upgrade) is not done twice, and loses nothing.
  await using again = await TenantPool.open({ dataDir, rootKey: SQLITE_ROOT_KEY, workers: 1 });
  await readsBackEverything(again, factsOf('sqlite-1'), SQLITE_PASSPHRASE);
});

test('export files written by format 1 import with this code, under a key or a passphrase, with the content they were written with', async () => {
  const facts = factsOf('sqlite-1');
  await using pool = await usePool({ workers: 1 });
  const byKey = join(tempDir(), 'k.tpx');
  const byPassphrase = join(tempDir(), 'p.tpx');
  cpSync(new URL('./fixtures/formats/export-1-key.tpx', import.meta.url), byKey);
  cpSync(new URL('./fixtures/formats/export-1-passphrase.tpx', import.meta.url), byPassphrase);
  await pool.tenants.import(byKey, { exportKey: SQLITE_EXPORT_KEY });
  await pool.tenants.import(byPassphrase, { exportKey: SQLITE_EXPORT_PASSPHRASE, passphrase: SQLITE_PASSPHRASE });
  assert.is((await pool.tenants.digest('managed')).digest, facts.exports!.key);
  assert.is((await pool.tenants.digest('secret', { passphrase: SQLITE_PASSPHRASE })).digest, facts.exports!.passphrase);
  assert.is(await pool.tenants.byRoutingKey(facts.managed.routed.publicKey), 'managed');
  await rejectsWith(pool.tenants.import(byKey, { exportKey: randomBytes(32), tenantId: 'other' }), 'ERR_WALLET_KEY_INVALID');
});

testWithPostgres('an upgrade killed in the middle (SIGKILL while its open waits on the routes table) leaves the 0.1.0 data as it was; the next open upgrades it whole', async () => {
  const facts = factsOf('postgres-0.1.0');
  const schema = testSchema();
  await restoreFixture('postgres-0.1.0.sql', schema);
  const pg = (await import('pg')).default;
  const blocker = new pg.Client(postgresUrl);
  await blocker.connect();
  try {
    // Hold the routes table so the upgrade's rewrite of it waits, then kill the opening process there.
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE ${schema}.routes IN SHARE MODE`);
    const child = startChild('open-schema.ts', [schema, FIXTURE_ROOT_KEY]);
    for (let i = 0; ; i++) {
      const [waiting] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'routes' AND NOT l.granted`);
      if (waiting!.n > 0) break;
      assert.ok(i < 4000, 'the upgrade reaches the routes table');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    child.kill('SIGKILL');
    await child.exited;
    await blocker.query('ROLLBACK');
  } finally {
    await blocker.end();
  }
  // Nothing of the upgrade stayed: the route is the public key itself still, and no marker is set.
  await eventuallyUnlocked(schema);
  assert.equal((await pgQuery<{ recipient_key: string }>(`SELECT recipient_key FROM ${schema}.routes`)).map((r) => r.recipient_key), [facts.managed.routed.publicKey]);
  assert.equal(await pgQuery(`SELECT * FROM ${schema}.registry_config WHERE name = 'routes'`), []);
  const pool = await TenantPool.open({ dataDir: tempDir(), rootKey: FIXTURE_ROOT_KEY, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
  try {
    assert.is(await pool.tenants.byRoutingKey(facts.managed.routed.publicKey), 'managed');
    assert.ok((await pgQuery<{ recipient_key: string }>(`SELECT recipient_key FROM ${schema}.routes`))[0]!.recipient_key.startsWith('h1:'));
    assert.equal(await pool.withSession('managed', async (s) => (await s.records.get('note', 'n2'))?.value), [1, 2, 3]);
  } finally {
    await pool.close();
    await dropSchema(schema);
  }
});

/** Waits until the killed process's backend is gone (the server notices its closed socket). */
async function eventuallyUnlocked(schema: string): Promise<void> {
  for (let i = 0; ; i++) {
    const [left] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [`tenant-pool:${schema}`]);
    if (left!.n === 0) return;
    assert.ok(i < 4000, 'the killed backend ends');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test.run();
