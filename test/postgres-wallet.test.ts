/**
 * The PostgreSQL wallet store against a real server: records, tags and keys round trip; the
 * database holds ciphertext only (a pg_dump of the schema holds no plaintext that was saved); one
 * tenant's rows cannot be read with another tenant's key.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { verifySignature } from '../workers/wallet.js';
import { PostgresWalletStore } from '../workers/store/postgres-wallet.js';
import { postgresUrl, testSchema, testWithPostgres } from './postgres.js';
import { rejectsWith } from './helpers.js';

async function withStore(fn: (store: PostgresWalletStore, schema: string) => Promise<void>): Promise<void> {
  const schema = testSchema();
  const store = await PostgresWalletStore.connect(postgresUrl!, schema, 2);
  try {
    await fn(store, schema);
  } finally {
    await store.query('dropping the test schema', `DROP SCHEMA ${schema} CASCADE`, []);
    await store.close();
  }
}

/** pg_dump of one schema, as text: what an operator (or a thief of a backup) sees. */
function dump(schema: string): string {
  const bin = readdirSync('/usr/lib/postgresql').sort().at(-1);
  const run = spawnSync(`/usr/lib/postgresql/${bin}/bin/pg_dump`, ['--dbname', postgresUrl!, '--schema', schema, '--data-only', '--inserts'], { encoding: 'utf8' });
  assert.is(run.status, 0, run.stderr);
  return run.stdout;
}

testWithPostgres('records, tags and keys round trip through the database; tag equality finds on ciphertext', async () => {
  await withStore(async (store) => {
    const key = randomBytes(32);
    await store.create('alice', key);
    await rejectsWith(store.create('alice', key), 'ERR_TENANT_EXISTS');
    const wallet = await store.open('alice', key);
    try {
      for (let i = 0; i < 20; i++) await wallet.save('connection', `c${i}`, JSON.stringify({ i }), { state: i % 2 === 0 ? 'active' : 'done', theirDid: `did:example:${i}` });
      await wallet.save('connection', 'c0', JSON.stringify({ i: 'updated' }), { state: 'active' });
      assert.equal(await wallet.get('connection', 'c0'), { category: 'connection', id: 'c0', value: '{"i":"updated"}', tags: '{"state":"active"}' });
      assert.is(await wallet.get('connection', 'missing'), null);
      assert.equal((await wallet.find('connection', { state: 'active' }, -1)).map((r) => r.id), ['c0', 'c2', 'c4', 'c6', 'c8', 'c10', 'c12', 'c14', 'c16', 'c18']);
      assert.equal((await wallet.find('connection', { state: 'done', theirDid: 'did:example:3' }, -1)).map((r) => r.id), ['c3']);
      assert.equal((await wallet.find('connection', { theirDid: 'did:example:0' }, -1)).map((r) => r.id), [], 'c0 lost that tag when saved again');
      assert.equal((await wallet.find('connection', {}, 3)).map((r) => r.id), ['c0', 'c1', 'c2']);
      assert.is(await wallet.count('connection'), 20);
      assert.is(await wallet.delete('connection', 'c1'), true);
      assert.is(await wallet.delete('connection', 'c1'), false);
      const { kid, publicKey } = await wallet.createKey();
      const data = new TextEncoder().encode('signed in PostgreSQL');
      assert.ok(verifySignature(publicKey, data, await wallet.sign(kid, data)));
      await rejectsWith(wallet.sign('no-such-kid', data), 'ERR_KEY_NOT_FOUND');
      assert.equal((await wallet.listKeys()).map((k) => [k.kid, k.publicKey]), [[kid, publicKey]]);
    } finally {
      wallet.close();
    }
    // Opened again (no cached signer): the key still signs.
    const again = await store.open('alice', key);
    const [only] = await again.listKeys();
    assert.ok(verifySignature(only!.publicKey, new Uint8Array([1]), await again.sign(only!.kid, new Uint8Array([1]))));
    again.close();
    assert.is(await store.drop('alice'), true);
    await rejectsWith(store.open('alice', key), 'ERR_WALLET_CORRUPT');
  });
});

testWithPostgres('the database sees ciphertext only: a pg_dump holds none of the saved values, ids, tag names or tag values', async () => {
  await withStore(async (store, schema) => {
    const key = randomBytes(32);
    await store.create('t', key);
    const wallet = await store.open('t', key);
    const marker = `M${randomBytes(4).toString('hex')}`;
    await wallet.save(`${marker}-category`, `${marker}-id`, JSON.stringify({ secret: `${marker}-value` }), { [`${marker}-tagname`]: `${marker}-tagvalue` });
    const { kid } = await wallet.createKey();
    wallet.close();
    const text = dump(schema);
    assert.ok(text.includes('INSERT INTO'), 'the dump has the rows');
    for (const needle of [marker, kid, Buffer.from(marker).toString('hex'), Buffer.from(kid).toString('hex')]) assert.not.ok(text.includes(needle), `${needle} appears in the dump`);
  });
});

testWithPostgres('one tenant\'s key opens nothing of another tenant; a damaged row fails that record only, as ERR_WALLET_CORRUPT', async () => {
  await withStore(async (store, schema) => {
    const [a, b] = [randomBytes(32), randomBytes(32)];
    await store.create('a', a);
    await store.create('b', b);
    await rejectsWith(store.open('a', b), 'ERR_WALLET_CORRUPT', "b's key on a's wallet");
    const wa = await store.open('a', a);
    await wa.save('c', 'one', '1', {});
    await wa.save('c', 'two', '2', {});
    // Flip a byte of one stored value.
    await store.query('damaging a row', `UPDATE ${schema}.items SET value = set_byte(value, 20, get_byte(value, 20) # 1) WHERE id = (SELECT min(id) FROM ${schema}.items)`, []);
    await rejectsWith(wa.get('c', 'one'), 'ERR_WALLET_CORRUPT');
    assert.is((await wa.get('c', 'two'))?.value, '2');
    const wb = await store.open('b', b);
    assert.is(await wb.get('c', 'two'), null, "b's wallet holds none of a's records");
    wa.close();
    wb.close();
  });
});

test.run();
