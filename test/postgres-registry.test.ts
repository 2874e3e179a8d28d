/**
 * The tenant registry in PostgreSQL, against a real server: a bounded cache (nothing loaded at
 * open), secrets sealed and bound to their tenant, the root key checked, routes and paging in SQL.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import { PostgresRegistry } from '../src/store/postgres-registry.js';
import type { TenantRecord } from '../src/store/registry.js';
import { rejectsWith, rootKey } from './helpers.js';
import { postgresUrl, testSchema, testWithPostgres } from './postgres.js';

function tenant(tenantId: string, overrides: Partial<TenantRecord> = {}): TenantRecord {
  return { tenantId, kdf: 'raw', salt: randomBytes(16), secret: randomBytes(32), verifier: randomBytes(32), walletFile: '', metadata: {}, createdAt: new Date().toISOString(), ...overrides };
}

async function withRegistry(fn: (open: (key?: string, cacheSize?: number) => Promise<PostgresRegistry>, schema: string) => Promise<void>): Promise<void> {
  const schema = testSchema();
  const key = rootKey();
  const opened: PostgresRegistry[] = [];
  const open = async (k = key, cacheSize = 1000): Promise<PostgresRegistry> => {
    const registry = await PostgresRegistry.open({ connectionString: postgresUrl!, schema, rootKey: k, cacheSize, maxConnections: 2 });
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
    await fresh.replaceKey('alice', { kdf: 'argon2i-mod', salt: Buffer.alloc(16, 1), secret: null, verifier: Buffer.alloc(32, 2) });
    const after = (await (await open()).get('alice'))!;
    assert.equal([after.label, after.kdf, after.secret, after.salt.toString('hex'), after.maxSessions], ['platinum', 'argon2i-mod', null, '01'.repeat(16), 3]);
    assert.equal((await fresh.page({ after: '', limit: 100, label: 'gold', metadata: { region: 'eu' } })).map((t) => t.tenantId), ['t00', 't06', 't12', 't18', 't24']);
    assert.equal((await fresh.page({ after: 't05', limit: 3 })).map((t) => t.tenantId), ['t06', 't07', 't08']);
    await fresh.addRoute('key-1', 'alice');
    await fresh.addRoute('key-2', 'alice');
    assert.is(await fresh.routeOf('key-1'), 'alice');
    assert.equal(await fresh.routesOf('alice'), ['key-1', 'key-2']);
    assert.is(await fresh.removeRoute('key-1'), true);
    assert.is(await fresh.delete('alice'), true);
    assert.is(await fresh.get('alice'), undefined);
    assert.is(await fresh.routeOf('key-2'), undefined, 'routes go with their tenant');
    assert.is(await fresh.count(), 30);
  });
});

testWithPostgres('a registry over many tenants loads none at open and keeps at most cacheSize in memory', async () => {
  await withRegistry(async (open) => {
    const writer = await open();
    for (let i = 0; i < 200; i++) await writer.insert(tenant(`m${i}`));
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
    await rejectsWith(open('another passphrase'), 'ERR_WALLET_KEY_INVALID');
    await rejectsWith(open(rootKey()), 'ERR_WALLET_KEY_INVALID');
    const again = await open('a registry passphrase', 1);
    assert.is((await again.get('a'))?.secret?.toString('hex'), a.secret!.toString('hex'));
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

testWithPostgres('registries opening the same fresh schema at once agree on one root key header', async () => {
  await withRegistry(async (open) => {
    const [x, y, z] = await Promise.all([open(), open(), open()]);
    await x.insert(tenant('shared'));
    assert.is((await y.get('shared'))?.tenantId, 'shared');
    assert.is((await z.get('shared'))?.tenantId, 'shared');
  });
});

test.run();
