/**
 * Secrets: passphrases always go through Argon2; no secret is reachable from the pool, its options
 * or its stats; a config file's syntax error never quotes the file.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { kWorkers, TenantPool } from '../src/pool.js';
import { rejectsWith, rootKey, storeOptionsFor, tempDir, testSqliteFiles, usePool } from './helpers.js';
import { legacyRawTenant } from './legacy.js';

test('a passphrase tenant gets argon2i-mod by default; raw with a passphrase is refused; managed tenants keep the pool\'s kdf', async () => {
  await using pool = await usePool({ kdf: 'raw' });
  const alice = await pool.tenants.create({ tenantId: 'alice', passphrase: 'correct horse battery staple' });
  assert.is(alice.kdf, 'argon2i-mod');
  assert.is(alice.managed, false);
  await rejectsWith(pool.tenants.create({ tenantId: 'bob', passphrase: 'pw', kdf: 'raw' }), 'ERR_INVALID_ARGUMENT', 'raw with a passphrase');
  await rejectsWith(pool.tenants.get('bob'), 'ERR_TENANT_NOT_FOUND', 'nothing made for the refused create');
  assert.is((await pool.tenants.create({ tenantId: 'carol', passphrase: 'pw', kdf: 'argon2id' })).kdf, 'argon2id');
  assert.is((await pool.tenants.create({ tenantId: 'managed' })).kdf, 'raw');
  await pool.withSession('alice', async (s) => s.records.save('c', 'r', 1), { passphrase: 'correct horse battery staple' });
  await rejectsWith(pool.acquire('alice', { passphrase: 'wrong' }), 'ERR_WALLET_KEY_INVALID');
});

testSqliteFiles('a passphrase tenant made with raw before Argon2 was enforced still opens with its passphrase, and only with it', async () => {
  const dataDir = tempDir();
  const key = rootKey();
  await legacyRawTenant(dataDir, key, 'old passphrase');
  const pool = await TenantPool.open({ dataDir, rootKey: key, workers: 1 });
  try {
    assert.is((await pool.tenants.get('legacy')).kdf, 'raw');
    await pool.withSession('legacy', async (s) => s.records.save('c', 'r', 'kept'), { passphrase: 'old passphrase' });
    await rejectsWith(pool.acquire('legacy', { passphrase: 'not it' }), 'ERR_WALLET_KEY_INVALID');
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('no secret is reachable from the pool, its options or its stats: not the root key, nor the database password, from an option or a config file', async () => {
  for (const source of ['option', 'config file'] as const) {
    const key = rootKey();
    const dataDir = tempDir();
    const configFile = join(dataDir, 'pool.json');
    // On PostgreSQL, a password in the connection string (the test server trusts its clients, so any will do).
    const password = `PW${randomBytes(8).toString('hex')}`;
    const pg = storeOptionsFor(dataDir).postgres;
    const postgres = pg === undefined ? {} : { postgres: { ...pg, connectionString: pg.connectionString!.replace('postgres://postgres@', `postgres://postgres:${password}@`) } };
    writeFileSync(configFile, JSON.stringify({ rootKey: key, workers: 1, ...postgres }));
    const pool = source === 'option' ? await TenantPool.open({ dataDir, rootKey: key, workers: 1, ...postgres }) : await TenantPool.open({ dataDir, configFile });
    try {
      await pool.tenants.create({ tenantId: 'managed' });
      await pool.withSession('managed', async (s) => s.records.save('c', 'r', 1));
      const views = [
        inspect(pool, { depth: Infinity, showHidden: true, getters: true }),
        inspect(pool.options, { depth: Infinity, showHidden: true, getters: true }),
        JSON.stringify(pool.options),
        JSON.stringify(pool.stats()),
        inspect(pool.tenants, { depth: Infinity, showHidden: true }),
        JSON.stringify(await pool.tenants.list()),
      ];
      for (const view of views) {
        assert.not.ok(view.includes(key), `${source}: the root key is in ${view.slice(0, 60)}…`);
        assert.not.ok(view.includes(key.slice(0, 16)), `${source}: part of the root key is in ${view.slice(0, 60)}…`);
        assert.not.ok(view.includes(password), `${source}: the database password is in ${view.slice(0, 60)}…`);
      }
      assert.not.ok('rootKey' in pool.options, 'the options hold no rootKey');
    } finally {
      await pool.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
});

test('a config file with a syntax error is named with its line and column, never quoted', async () => {
  const dataDir = tempDir();
  const configFile = join(dataDir, 'pool.json');
  const secret = 'deadbeefcafe0123456789abcdef0123456789abcdef0123456789abcdef0123';
  for (const [text, line, column] of [
    [`{\n  "workers": 1,\n  "rootKey": ${secret}\n}`, 3, 14],
    [`{ "rootKey": "${secret}" "workers": 1 }`, 1, 81],
    [`{ "rootKey": "${secret}`, 1, 79],
  ] as const) {
    writeFileSync(configFile, text);
    const error = await rejectsWith(TenantPool.open({ dataDir, configFile }), 'ERR_INVALID_CONFIG');
    assert.match(error.message, configFile);
    assert.match(error.message, `line ${line}, column ${column}`);
    for (let i = 0; i + 6 <= secret.length; i++) assert.not.ok(error.message.includes(secret.slice(i, i + 6)), `no piece of the file's content: ${error.message}`);
    assert.not.ok(inspect(error, { depth: Infinity, showHidden: true }).includes(secret.slice(0, 10)), 'not in its cause either');
  }
  rmSync(dataDir, { recursive: true, force: true });
});

test('bytes sent to a worker carry only themselves: a small Buffer from Node\'s pool (next to other data of the process) or a view of shared memory is copied first', async () => {
  await using pool = await usePool({ workers: 1 });
  await pool.tenants.create({ tenantId: 't' });
  const slot = pool[kWorkers][0]!;
  const sent: unknown[][] = [];
  const call = slot.call.bind(slot);
  slot.call = (async (method: string, ...args: unknown[]) => {
    sent.push(args);
    return (call as (m: string, ...a: unknown[]) => Promise<unknown>)(method, ...args);
  }) as typeof slot.call;
  const neighbour = Buffer.from('a secret the process keeps next door');
  const data = Buffer.from('hello');
  assert.ok(data.buffer === neighbour.buffer && data.buffer.byteLength > data.byteLength, 'both live in the same pool slab');
  const shared = new Uint8Array(new SharedArrayBuffer(5));
  shared.set(data);
  await pool.withSession('t', async (s) => {
    const { kid, publicKey } = await s.keys.create();
    const signature = await s.keys.sign(kid, data);
    assert.ok(await s.keys.verify(publicKey, data, signature));
    assert.ok(await s.keys.verify(publicKey, shared, Buffer.from(signature)));
  });
  // An export key made from hex is 32 bytes of the pool too.
  const exportKey = Buffer.from(randomBytes(32).toString('hex'), 'hex');
  assert.ok(exportKey.buffer.byteLength > 32, 'pooled');
  const dir = tempDir();
  try {
    await pool.tenants.export('t', { file: join(dir, 't.tpx'), exportKey });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const bytes = sent.flat().filter((a): a is Uint8Array => a instanceof Uint8Array);
  assert.ok(bytes.length >= 6, 'the data, the signatures and the export key were sent');
  for (const b of bytes) {
    assert.is(b.byteLength, b.buffer.byteLength, 'a whole buffer of its own');
    assert.not.ok(b.buffer instanceof SharedArrayBuffer, 'not shared memory');
    assert.not.ok(Buffer.from(b.buffer).includes('secret'), 'nothing of the neighbour');
  }
});

test.run();
