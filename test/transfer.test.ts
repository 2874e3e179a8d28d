/**
 * tenants.export and tenants.import: a round trip into a fresh pool, a consistent snapshot while
 * sessions write, and damaged, truncated or wrongly keyed files refused with nothing imported.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readExport, writeExport } from '../common/export-format.js';
import { disposePool, filesContaining, modeOf, openPool, rejectsWith, tempDir, walletNames } from './helpers.js';

const counterModule = join(import.meta.dirname, 'fixtures', 'counter-module.ts');

test('export then import into a fresh pool: every record, tag, route and setting equal; an imported key signs for the original public key', async () => {
  const dir = tempDir('tp-export-');
  const file = join(dir, 'alice.tpx');
  const exportKey = randomBytes(32);
  const source = await openPool({ modules: [counterModule] });
  const target = await openPool({ modules: [counterModule] });
  try {
    await source.tenants.create({ tenantId: 'alice', passphrase: 'alice pass', kdf: 'argon2i-int', label: 'Alice', maxSessions: 3, metadata: JSON.parse('{"plan": "gold", "__proto__": "kept"}') as Record<string, string> });
    const { kid, publicKey } = await source.withSession(
      'alice',
      async (s) => {
        for (let i = 0; i < 120; i++) await s.records.save(i % 2 === 0 ? 'connection' : 'credential', `r${i}`, { i, nested: { list: [i, 'x'] } }, { n: String(i % 5), kind: i % 2 === 0 ? 'c' : 'k' });
        await s.keys.create();
        return s.keys.create({ routing: true });
      },
      { passphrase: 'alice pass' },
    );
    const result = await source.tenants.export('alice', { file, exportKey, passphrase: 'alice pass' });
    assert.is(result.records, 120);
    assert.is(result.keys, 2);
    assert.is(result.bytes, statSync(file).size);
    assert.is(modeOf(file), 0o600);
    assert.equal(filesContaining(dir, 'alice pass'), [], 'no passphrase in the file');
    assert.not.ok(readFileSync(file).includes(Buffer.from('connection')), 'no plaintext record in the file');

    const imported = await target.tenants.import(file, { exportKey });
    assert.equal([imported.tenantId, imported.label, imported.maxSessions, imported.managed, imported.records, imported.keys], ['alice', 'Alice', 3, true, 120, 2]);
    assert.equal(Object.entries(imported.metadata).sort(), [['__proto__', 'kept'], ['plan', 'gold']]);
    assert.is(await target.tenants.byRoutingKey(publicKey), 'alice');
    const read = async (pool: typeof source, passphrase?: string): Promise<unknown> =>
      pool.withSession(
        'alice',
        async (s) => ({
          connections: await s.records.find('connection'),
          credentials: await s.records.find('credential', { n: { $in: ['1', '3'] } }),
          keys: (await s.keys.list()).map((k) => [k.kid, k.publicKey, k.createdAt, k.routing]),
        }),
        passphrase === undefined ? undefined : { passphrase },
      );
    assert.equal(await read(target), await read(source, 'alice pass'));
    const data = new TextEncoder().encode('signed by the imported key');
    const signature = await target.withSession('alice', async (s) => s.keys.sign(kid, data));
    assert.ok(await source.withSession('alice', async (s) => s.keys.verify(publicKey, data, signature), { passphrase: 'alice pass' }), 'the original public key verifies');
    // Into the same pool under another id: its route is alice's, so the import is refused whole; the route stays with alice.
    const before = await walletNames(source.options);
    await rejectsWith(source.tenants.import(file, { exportKey, tenantId: 'alice-copy', passphrase: 'copy pass' }), 'ERR_ROUTE_CONFLICT');
    await rejectsWith(source.tenants.get('alice-copy'), 'ERR_TENANT_NOT_FOUND', 'nothing imported');
    assert.equal(await walletNames(source.options), before, 'no wallet left behind');
    assert.is(await source.tenants.byRoutingKey(publicKey), 'alice');
    await rejectsWith(source.tenants.import(file, { exportKey }), 'ERR_TENANT_EXISTS');
  } finally {
    await disposePool(source);
    await disposePool(target);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an import routes only keys its wallet holds, and never takes a route from another tenant: an export naming the victim\'s key is refused (ERR_INVALID_ARGUMENT), one whose route another tenant holds is refused (ERR_ROUTE_CONFLICT), nothing imported; setRouting never steals a route', async () => {
  const dir = tempDir('tp-export-');
  const exportKey = randomBytes(32);
  const pool = await openPool({ workers: 1 });
  try {
    await pool.tenants.create({ tenantId: 'victim' });
    await pool.tenants.create({ tenantId: 'mallory' });
    const victimKey = await pool.withSession('victim', async (s) => s.keys.create({ routing: true }));
    await pool.withSession('mallory', async (s) => s.records.save('c', 'r', 1));
    // Mallory's own export, rewritten under the key she chose, to name the victim's routing key.
    const file = join(dir, 'mallory.tpx');
    await pool.tenants.export('mallory', { file, exportKey });
    const payload = await readExport(file, exportKey);
    const forged = join(dir, 'forged.tpx');
    await writeExport(forged, exportKey, { ...payload, tenant: { ...payload.tenant, tenantId: 'mallory2', routes: [victimKey.publicKey] } });
    const before = await walletNames(pool.options);
    await rejectsWith(pool.tenants.import(forged, { exportKey }), 'ERR_INVALID_ARGUMENT', 'a route for a key the wallet does not hold');
    await rejectsWith(pool.tenants.get('mallory2'), 'ERR_TENANT_NOT_FOUND');
    assert.equal(await walletNames(pool.options), before, 'no wallet left behind');
    assert.is(await pool.tenants.byRoutingKey(victimKey.publicKey), 'victim', 'the route stays the victim\'s');
    // A copy of the victim (its export holds the key and routes it) under another id: the route is the victim's, so nothing is imported.
    const copyFile = join(dir, 'victim.tpx');
    await pool.tenants.export('victim', { file: copyFile, exportKey });
    await rejectsWith(pool.tenants.import(copyFile, { exportKey, tenantId: 'copy' }), 'ERR_ROUTE_CONFLICT');
    await rejectsWith(pool.tenants.get('copy'), 'ERR_TENANT_NOT_FOUND');
    // Once the victim stops routing the key, the copy may take it; then the victim cannot take it back by setRouting.
    await pool.withSession('victim', async (s) => s.keys.setRouting(victimKey.kid, false));
    await pool.tenants.import(copyFile, { exportKey, tenantId: 'copy' });
    assert.is(await pool.tenants.byRoutingKey(victimKey.publicKey), 'copy');
    await pool.withSession('victim', async (s) => {
      await rejectsWith(s.keys.setRouting(victimKey.kid, true), 'ERR_ROUTE_CONFLICT', 'setRouting does not steal');
      assert.equal((await s.keys.list()).map((k) => k.routing), [false]);
    });
    assert.is(await pool.tenants.byRoutingKey(victimKey.publicKey), 'copy');
    // Its own route again is no change, and no error.
    await pool.withSession('copy', async (s) => s.keys.setRouting(victimKey.kid, true));
  } finally {
    await disposePool(pool);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an export is a consistent snapshot while a session keeps writing; a passphrase export key goes through Argon2', async () => {
  const dir = tempDir('tp-export-');
  const file = join(dir, 'busy.tpx');
  const pool = await openPool({ workers: 1 });
  const target = await openPool({ workers: 1 });
  try {
    await pool.tenants.create({ tenantId: 'busy' });
    const writer = await pool.acquire('busy');
    let isWriting = true;
    let written = 0;
    // Each save writes two records in one transaction: a consistent snapshot never has one without the other.
    const writing = (async () => {
      while (isWriting) {
        await writer.records.save('pair', `a${written}`, written);
        await writer.records.save('pair', `b${written}`, written);
        written++;
      }
    })();
    await new Promise<void>((resolve) => setTimeout(resolve, 30));
    await pool.tenants.export('busy', { file, exportKey: 'an export passphrase' });
    isWriting = false;
    await writing;
    await writer.release();
    const imported = await target.tenants.import(file, { exportKey: 'an export passphrase' });
    assert.ok(imported.records > 0 && imported.records <= 2 * written);
    const ids = await target.withSession('busy', async (s) => (await s.records.find('pair')).map((r) => r.id));
    const count = (prefix: string): number => ids.filter((id) => id.startsWith(prefix)).length;
    assert.ok(count('a') - count('b') <= 1, 'no save lost half-way, beyond the one in flight');
    await rejectsWith(target.tenants.import(file, { exportKey: randomBytes(32), tenantId: 'other' }), 'ERR_WALLET_KEY_INVALID', 'a key where a passphrase sealed it');
  } finally {
    await disposePool(pool);
    await disposePool(target);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a wrong export key, a damaged byte or a truncated file is refused with a clear code, and nothing is imported', async () => {
  const dir = tempDir('tp-export-');
  const file = join(dir, 'x.tpx');
  const exportKey = randomBytes(32);
  const pool = await openPool({ capacity: 100 });
  try {
    await pool.tenants.create({ tenantId: 'x' });
    await pool.withSession('x', async (s) => {
      for (let i = 0; i < 30; i++) await s.records.save('c', `r${i}`, 'v'.repeat(100));
    });
    await pool.tenants.export('x', { file, exportKey });
    const original = readFileSync(file);
    const attempt = async (bytes: Buffer, key: Uint8Array | string, code: string, what: string): Promise<void> => {
      writeFileSync(file, bytes);
      await rejectsWith(pool.tenants.import(file, { exportKey: key, tenantId: 'y' }), code, what);
      await rejectsWith(pool.tenants.get('y'), 'ERR_TENANT_NOT_FOUND', `${what}: no tenant made`);
      assert.equal((await walletNames(pool.options)).filter((n) => n.startsWith('y.')), [], `${what}: no wallet left`);
    };
    await attempt(original, randomBytes(32), 'ERR_WALLET_KEY_INVALID', 'a wrong key');
    await attempt(original, 'a passphrase', 'ERR_WALLET_KEY_INVALID', 'a passphrase for a key-sealed file');
    for (const at of [30, original.indexOf(0x0a, 25) + 5, Math.floor(original.length / 2), original.length - 3]) {
      const damaged = Buffer.from(original);
      damaged[at] = damaged[at]! ^ 0x01;
      await attempt(damaged, exportKey, 'ERR_WALLET_CORRUPT', `one bit changed at ${at}`);
    }
    for (const length of [0, 10, original.indexOf(0x0a, 25), Math.floor(original.length / 2), original.length - 1]) {
      await attempt(original.subarray(0, length), exportKey, 'ERR_WALLET_CORRUPT', `truncated to ${length} bytes`);
    }
    await rejectsWith(pool.tenants.export('x', { file, exportKey: new Uint8Array(16) }), 'ERR_INVALID_ARGUMENT', 'a 16-byte key');
    // Settings this pool cannot take (weights over its capacity) refuse the import, and leave nothing.
    await pool.tenants.update('x', { weights: { wallet: 90 } });
    const heavy = join(dir, 'heavy.tpx');
    await pool.tenants.export('x', { file: heavy, exportKey });
    const small = await openPool({ capacity: 50 });
    try {
      await rejectsWith(small.tenants.import(heavy, { exportKey }), 'ERR_INVALID_ARGUMENT', 'weights over the capacity');
      await rejectsWith(small.tenants.get('x'), 'ERR_TENANT_NOT_FOUND');
      assert.equal(await walletNames(small.options), [], 'no wallet left');
    } finally {
      await disposePool(small);
    }
    await rejectsWith(pool.tenants.import(join(dir, 'missing.tpx'), { exportKey }), 'ERR_STORAGE_IO', 'no such file');
    // The original still imports.
    writeFileSync(file, original);
    assert.is((await pool.tenants.import(file, { exportKey, tenantId: 'y' })).records, 30);
  } finally {
    await disposePool(pool);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
