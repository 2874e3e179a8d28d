/**
 * The tenant registry in PostgreSQL, against a real server: a bounded cache (nothing loaded at
 * open), secrets sealed and bound to their tenant, the root key checked, routes and paging in SQL.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import { PostgresRegistry } from '../src/store/postgres-registry.js';
import type { TenantRecord } from '../src/store/tenant-store.js';
import { rejectsWith, rootKey } from './helpers.js';
import { postgresUrl, testSchema, testWithPostgres } from './postgres.js';

function tenant(tenantId: string, overrides: Partial<TenantRecord> = {}): TenantRecord {
  return { tenantId, kdf: 'raw', salt: randomBytes(16), secret: randomBytes(32), verifier: randomBytes(32), walletFile: `${tenantId}.w`, metadata: {}, createdAt: new Date().toISOString(), ...overrides };
}

async function withRegistry(fn: (open: (key?: string, cacheSize?: number) => Promise<PostgresRegistry>, schema: string) => Promise<void>): Promise<void> {
  const schema = testSchema();
  const key = rootKey();
  const opened: PostgresRegistry[] = [];
  // One pool owns a schema at a time: each open closes the registries opened before it.
  const open = async (k = key, cacheSize = 1000): Promise<PostgresRegistry> => {
    for (const r of opened.splice(0)) await r.close();
    const registry = await PostgresRegistry.open({ connectionString: postgresUrl!, schema, rootKey: k, cacheSize, maxConnections: 2, connectionsPerWorker: 1 });
    opened.push(registry);
    return registry;
  };
  try {
    await fn(open, schema);
  } finally {
    for (const r of opened) await r.close().catch(() => {});
    const client = new pg.Client(postgresUrl);
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
}

testWithPostgres('tenants, routes and paging round trip; a duplicate is ERR_TENANT_EXISTS; a rekey changes only the key', async () => {
  await withRegistry(async (open) => {
    const registry = await open();
    const alice = tenant('alice', { label: 'gold', metadata: { region: 'eu', __proto__: 'x' }, maxSessions: 3, weights: { wallet: 2 } });
    await registry.insert(alice);
    await rejectsWith(registry.insert(tenant('alice')), 'ERR_TENANT_EXISTS');
    for (let i = 0; i < 30; i++) await registry.insert(tenant(`t${String(i).padStart(2, '0')}`, { label: i % 3 === 0 ? 'gold' : 'plain', metadata: { region: i % 2 === 0 ? 'eu' : 'us' } }));
    const fresh = await open();
    const read = await fresh.get('alice');
    assert.equal({ ...read, salt: read!.salt.toString('hex'), secret: read!.secret!.toString('hex'), verifier: read!.verifier.toString('hex') }, { ...alice, salt: alice.salt.toString('hex'), secret: alice.secret!.toString('hex'), verifier: alice.verifier.toString('hex') });
    assert.is(await fresh.get('nobody'), undefined);
    await fresh.update({ ...read!, label: 'platinum' });
    await fresh.replaceKey('alice', { kdf: 'argon2i-mod', salt: Buffer.alloc(16, 1), secret: null, verifier: Buffer.alloc(32, 2), walletFile: alice.walletFile });
    const fresh2 = await open();
    const after = (await fresh2.get('alice'))!;
    assert.equal([after.label, after.kdf, after.secret, after.salt.toString('hex'), after.maxSessions], ['platinum', 'argon2i-mod', null, '01'.repeat(16), 3]);
    assert.equal((await fresh2.page({ after: '', limit: 100, label: 'gold', metadata: { region: 'eu' } })).map((t) => t.tenantId), ['t00', 't06', 't12', 't18', 't24']);
    assert.equal((await fresh2.page({ after: 't05', limit: 3 })).map((t) => t.tenantId), ['t06', 't07', 't08']);
    await fresh2.addRoute('key-1', 'alice');
    await fresh2.addRoute('key-2', 'alice');
    assert.is(await fresh2.routeOf('key-1'), 'alice');
    assert.is(await fresh2.routeOf('key-2'), 'alice');
    assert.is(await fresh2.routeOf('key-3'), undefined);
    assert.is(await fresh2.removeRoute('key-1'), true);
    await fresh2.delete('alice');
    assert.is(await fresh2.get('alice'), undefined);
    assert.is(await fresh2.routeOf('key-2'), undefined, 'routes go with their tenant');
    assert.is(await fresh2.count(), 30);
  });
});

testWithPostgres('a registry over many tenants loads none at open and keeps at most cacheSize in memory', async () => {
  await withRegistry(async (open) => {
    const writer = await open();
    for (let i = 0; i < 200; i++) await writer.insert(tenant(`m${i}`));
    await writer.close();
    const reader = await open(undefined, 10);
    assert.is(reader.cached, 0, 'nothing loaded at open');
    for (let i = 0; i < 200; i++) assert.is((await reader.get(`m${i}`))?.tenantId, `m${i}`);
    assert.is(reader.cached, 10);
    assert.is(await reader.count(), 200);
  });
});

testWithPostgres('the root key is checked; a passphrase root key works; rows swapped between tenants fail their integrity check; no secret in plain', async () => {
  await withRegistry(async (open, schema) => {
    const first = await open('a registry passphrase');
    const a = tenant('a');
    const b = tenant('b');
    await first.insert(a);
    await first.insert(b);
    await first.close();
    await rejectsWith(open('another passphrase'), 'ERR_WALLET_KEY_INVALID');
    await rejectsWith(open(rootKey()), 'ERR_WALLET_KEY_INVALID');
    const again = await open('a registry passphrase', 1);
    assert.is((await again.get('a'))?.secret?.toString('hex'), a.secret!.toString('hex'));
    await again.close();
    const client = new pg.Client(postgresUrl);
    await client.connect();
    try {
      const dump = JSON.stringify((await client.query(`SELECT * FROM ${schema}.tenants`)).rows, (_k, v: unknown) => (v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v));
      for (const secret of [a.secret!, b.secret!, a.verifier, a.salt]) assert.not.ok(dump.includes(secret.toString('hex')), 'a secret in plain');
      await client.query(`UPDATE ${schema}.tenants SET sealed = (SELECT sealed FROM ${schema}.tenants WHERE tenant_id = 'b') WHERE tenant_id = 'a'`);
    } finally {
      await client.end();
    }
    const reader = await open('a registry passphrase');
    await rejectsWith(reader.get('a'), 'ERR_WALLET_CORRUPT', "b's sealed secrets on a's row");
    assert.is((await reader.get('b'))?.tenantId, 'b');
  });
});

testWithPostgres('one registry owns a schema: pools opening it at once get one owner, the others ERR_DATA_DIR_LOCKED naming it; after close the next one opens with the same root key', async () => {
  const schema = testSchema();
  const key = rootKey();
  const options = { connectionString: postgresUrl!, schema, rootKey: key, cacheSize: 10, maxConnections: 1, connectionsPerWorker: 1 };
  const results = await Promise.allSettled([1, 2, 3].map(async () => PostgresRegistry.open(options)));
  const owners = results.filter((r): r is PromiseFulfilledResult<PostgresRegistry> => r.status === 'fulfilled').map((r) => r.value);
  try {
    assert.is(owners.length, 1, 'one owner');
    for (const r of results) if (r.status === 'rejected') assert.is((r.reason as { code?: string }).code, 'ERR_DATA_DIR_LOCKED');
    await owners[0]!.opened();
    await owners[0]!.insert(tenant('shared'));
    const refused = await rejectsWith(PostgresRegistry.open(options), 'ERR_DATA_DIR_LOCKED');
    assert.is((refused as { holder?: { pid: number } }).holder?.pid, process.pid, 'the holder is named');
    await owners[0]!.close();
    const next = await PostgresRegistry.open(options);
    assert.is((await next.get('shared'))?.tenantId, 'shared');
    await next.close();
  } finally {
    for (const r of owners) await r.close().catch(() => {});
    const client = new pg.Client(postgresUrl);
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await client.end();
  }
});

test.run();
