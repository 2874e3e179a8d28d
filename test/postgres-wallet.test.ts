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
import { verifySignature } from '../workers/ed25519.js';
import { PostgresWalletStore } from '../workers/store/postgres-wallet.js';
import { checkRecordQuery, type TagQuery } from '../common/query.js';
import { postgresUrl, testSchema, testWithPostgres } from './postgres.js';
import { matches, type Tags } from './wql-reference.js';
import { rejectsWith } from './helpers.js';

async function withStore(fn: (store: PostgresWalletStore, schema: string) => Promise<void>): Promise<void> {
  const schema = testSchema();
  const store = await PostgresWalletStore.connect(postgresUrl!, schema, 2, { createTables: true });
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
    (await store.create('alice', 'alice', key)).close();
    await rejectsWith(store.create('alice', 'alice', key), 'ERR_TENANT_EXISTS');
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
    (await store.create('t', 't', key)).close();
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
    (await store.create('a', 'a', a)).close();
    (await store.create('b', 'b', b)).close();
    await rejectsWith(store.open('a', b), 'ERR_WALLET_CORRUPT', "b's key on a's wallet");
    const wa = await store.open('a', a);
    await wa.save('c', 'one', '1', {});
    await wa.save('c', 'two', '2', {});
    // Flip a byte of one stored value.
    await store.query('damaging a row', `UPDATE ${schema}.items SET value = set_byte(value, 20, get_byte(value, 20) # 1) WHERE id = (SELECT min(id) FROM ${schema}.items)`, []);
    // The wallet that wrote them holds them decrypted; opened again, it reads the damage.
    assert.is((await wa.get('c', 'one'))?.value, '1', 'the writer\'s cached copy');
    wa.close();
    const again = await store.open('a', a);
    await rejectsWith(again.get('c', 'one'), 'ERR_WALLET_CORRUPT');
    assert.is((await again.get('c', 'two'))?.value, '2');
    again.close();
    const wb = await store.open('b', b);
    assert.is(await wb.get('c', 'two'), null, "b's wallet holds none of a's records");
    wb.close();
  });
});

testWithPostgres('the query language on encrypted tags: random $and/$or/$not/$neq/$in queries agree with the reference; $like and ranges are filtered on the worker and agree too; count and paging agree', async () => {
  await withStore(async (store) => {
    const key = randomBytes(32);
    (await store.create('q', 'q', key)).close();
    const wallet = await store.open('q', key);
    try {
      let seed = 5;
      const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
      const pick = <T>(items: readonly T[]): T => items[random(items.length)]!;
      const colors = ['red', 'green', 'blue'];
      const records: Array<{ id: string; tags: Tags }> = [];
      for (let i = 0; i < 40; i++) {
        const tags: Tags = {};
        if (random(4) > 0) tags['color'] = pick(colors);
        if (random(3) > 0) tags['size'] = pick(['s', 'm', 'l']);
        records.push({ id: `r${i}`, tags });
        await wallet.save('item', `r${i}`, String(i), tags);
      }
      const leaf = (): TagQuery => pick<() => TagQuery>([() => ({ color: pick(colors) }), () => ({ color: { $neq: pick(colors) } }), () => ({ size: { $in: ['s', pick(['m', 'l'])] } }), () => ({ color: pick(colors), size: 'm' }), () => ({})])();
      const query = (depth: number): TagQuery => (depth >= 2 || random(3) === 0 ? leaf() : pick<() => TagQuery>([() => ({ $and: [query(depth + 1), query(depth + 1)] }), () => ({ $or: [query(depth + 1), query(depth + 1)] }), () => ({ $not: query(depth + 1) })])());
      for (let i = 0; i < 120; i++) {
        const q = query(0);
        const node = checkRecordQuery(q);
        const expected = records.filter((r) => matches(node, r.tags)).map((r) => r.id);
        assert.equal((await wallet.query('item', node, 0, -1, -1)).rows.map((r) => r.id), expected, JSON.stringify(q));
        assert.is(await wallet.count('item', node), expected.length);
      }
      // $like and ranges cannot run on ciphertext: SQL selects a superset and the worker filters it, with the same answers as SQLite.
      for (const q of [{ color: { $like: 'R%' } }, { size: { $gt: 'm' } }, { $not: { size: { $lte: 'l' } } }, { $or: [{ color: 'red' }, { size: { $gte: 's' } }] }, { $and: [{ color: { $neq: 'blue' } }, { $not: { color: { $like: '%e%' } } }] }]) {
        const node = checkRecordQuery(q);
        const expected = records.filter((r) => matches(node, r.tags)).map((r) => r.id);
        assert.equal((await wallet.query('item', node, 0, -1, -1)).rows.map((r) => r.id), expected, JSON.stringify(q));
        assert.is(await wallet.count('item', node), expected.length, JSON.stringify(q));
        // Paged three at a time: the same records, in order, each once.
        const paged: string[] = [];
        for (let page = await wallet.query('item', node, 0, -1, 3); ; page = await wallet.query('item', node, page.lastRid, page.upTo, 3)) {
          paged.push(...page.rows.map((r) => r.id));
          if (!page.hasMore) break;
        }
        assert.equal(paged, expected, `paged ${JSON.stringify(q)}`);
      }
      // Paging: every record that existed when paging began, once, while records come and go.
      const seen: string[] = [];
      let after = 0;
      let upTo = -1;
      for (let page = 0; ; page++) {
        const result = await wallet.query('item', null, after, upTo, 7);
        seen.push(...result.rows.map((r) => r.id));
        await wallet.save('item', `new${page}`, '0', {});
        await wallet.delete('item', `r${page * 5 + 39 - page}`);
        if (!result.hasMore) break;
        after = result.lastRid;
        upTo = result.upTo;
      }
      assert.is(new Set(seen).size, seen.length, 'no record twice');
      assert.not.ok(seen.some((id) => id.startsWith('new')));
    } finally {
      wallet.close();
    }
  });
});

testWithPostgres('the record cache stays true under concurrent saves, deletes and gets of the same records: every get after them equals a fresh read', async () => {
  await withStore(async (store) => {
    const key = randomBytes(32);
    const wallet = await store.create('cache', 'cache', key);
    try {
      let seed = 7;
      const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
      for (let round = 0; round < 60; round++) {
        await Promise.all(
          Array.from({ length: 24 }, async (_, i) => {
            const id = `k${random(4)}`;
            const op = random(10);
            if (op < 5) await wallet.save('c', id, JSON.stringify({ round, i }), { n: String(i) });
            else if (op < 7) await wallet.delete('c', id);
            else await wallet.get('c', id);
          }),
        );
        const fresh = await store.open('cache', key);
        for (let k = 0; k < 4; k++) assert.equal(await wallet.get('c', `k${k}`), await fresh.get('c', `k${k}`), `round ${round}: k${k}`);
        fresh.close();
      }
    } finally {
      wallet.close();
    }
  });
});

testWithPostgres('a lost connection fails its call with a retryable ERR_STORAGE_UNAVAILABLE, and the store reconnects; a server refusing connections is refused at once, never a hang', async () => {
  await withStore(async (store) => {
    const key = randomBytes(32);
    (await store.create('c', 'c', key)).close();
    const wallet = await store.open('c', key);
    await wallet.save('c', 'r', '1', {});
    // A query in flight whose backend is terminated (pg_terminate_backend, as an operator or a failover would).
    const admin = await PostgresWalletStore.connect(postgresUrl!, 'tp_test_admin', 1);
    try {
      const slow = store.query('waiting', 'SELECT pg_sleep(30)', []).catch((error: unknown) => error);
      for (let i = 0; i < 500; i++) {
        const rows = await admin.query('looking', "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'", []);
        if (rows.length > 0) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await admin.query('terminating', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'", []);
      const lost = (await slow) as { code?: string; retryable?: boolean };
      assert.equal([lost.code, lost.retryable], ['ERR_STORAGE_UNAVAILABLE', true]);
      // The next call gets a fresh connection.
      assert.is((await wallet.get('c', 'r'))?.value, '1');
    } finally {
      wallet.close();
      await admin.close();
    }
  });
  // A role the server lets open one connection; the store wants two at once.
  const admin = await PostgresWalletStore.connect(postgresUrl!, 'tp_test_admin', 1);
  const role = `tp_limited_${randomBytes(4).toString('hex')}`;
  const schema = testSchema();
  await admin.query('creating a role', `CREATE ROLE ${role} LOGIN CONNECTION LIMIT 1`, []);
  await admin.query('granting', `GRANT CREATE ON DATABASE ${new URL(postgresUrl!).pathname.slice(1) || 'postgres'} TO ${role}`, []);
  const url = new URL(postgresUrl!);
  url.username = role;
  const store = await PostgresWalletStore.connect(url.href, schema, 2, { createTables: true });
  try {
    const holding = store.query('holding', 'SELECT pg_sleep(30)', []).catch((error: unknown) => error);
    for (let i = 0; i < 500; i++) {
      if ((await admin.query('looking', `SELECT 1 FROM pg_stat_activity WHERE usename = '${role}' AND state = 'active'`, [])).length > 0) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const refused = await rejectsWith(store.query('a second connection', 'SELECT 1', []), 'ERR_STORAGE_UNAVAILABLE');
    assert.is((refused as { retryable?: boolean }).retryable, true);
    await admin.query('terminating', `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${role}'`, []);
    await holding;
  } finally {
    await store.close();
    await admin.query('cleaning up', `DROP SCHEMA IF EXISTS ${schema} CASCADE`, []);
    await admin.query('cleaning up', `DROP OWNED BY ${role}`, []);
    await admin.query('cleaning up', `DROP ROLE ${role}`, []);
    await admin.close();
  }
});

testWithPostgres('an open given the wallet row read with the lease: used as is when it opens with the key, read again when a rekey wrote it anew since, ignored for another wallet', async () => {
  await withStore(async (store, schema) => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const wallet = await store.create('w', 'w', oldKey);
    await wallet.save('c', 'r', '1', {});
    wallet.close();
    const row = async (): Promise<{ name: string; id: string; sealedProfileKey: Uint8Array }> => {
      const [r] = (await store.query('reading the row', `SELECT id, profile_key FROM ${schema}.wallets WHERE name = 'w'`, [])) as Array<{ id: string; profile_key: Buffer }>;
      return { name: 'w', id: r!.id, sealedProfileKey: r!.profile_key };
    };
    const before = await row();
    // Used as given: with the row gone from the table, the open still works (it read nothing).
    await store.query('hiding the row', `UPDATE ${schema}.wallets SET name = 'hidden' WHERE name = 'w'`, []);
    const given = await store.open('w', oldKey, undefined, before);
    assert.equal(await given.get('c', 'r'), { category: 'c', id: 'r', value: '1', tags: '{}' });
    given.close();
    await rejectsWith(store.open('w', oldKey), 'ERR_WALLET_CORRUPT', 'without the row given, the open reads it: missing');
    await store.query('restoring the row', `UPDATE ${schema}.wallets SET name = 'w' WHERE name = 'hidden'`, []);
    // Rekeyed since the row was read: the old row does not open with the new key, so it is read again.
    const sealed = await store.rewrap('w', oldKey, newKey);
    await store.query('writing the rekey', `UPDATE ${schema}.wallets SET profile_key = $1 WHERE name = 'w'`, [sealed]);
    const reread = await store.open('w', newKey, undefined, before);
    assert.equal(await reread.get('c', 'r'), { category: 'c', id: 'r', value: '1', tags: '{}' });
    reread.close();
    // A row of another wallet's name is not used.
    await rejectsWith(store.open('w', oldKey, undefined, { ...before, name: 'other' }), 'ERR_WALLET_CORRUPT', 'the old key opens the rekeyed row no more');
  });
});

test.run();
