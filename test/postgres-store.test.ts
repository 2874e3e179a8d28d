/**
 * The pool on PostgreSQL, against a real server: what only this store has. The connection budget
 * holds under load; connections terminated under load (pg_terminate_backend) fail their calls with
 * a retryable code and the pool serves again, losing no acknowledged write; a server refusing
 * connections is a clear error, never a hang; one tenant's damaged rows fail only that tenant; a
 * dump of the database holds none of what was saved. (The behaviour suites run on this store too:
 * see `BOTH_STORES` in `run.ts`.)
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import type { TenantPool } from '../src/pool.js';
import { disposePool, dumpSchema, openPool, pgQuery, rejectsWith, tempDir } from './helpers.js';
import { postgresUrl, testSchema, testWithPostgres } from './postgres.js';

async function openPgPool(options: Parameters<typeof openPool>[0] = {}): Promise<TenantPool> {
  return openPool({ postgres: { connectionString: postgresUrl!, schema: testSchema() }, dataDir: tempDir(), ...options });
}

/** The connections the server has open for the pool's schema. */
async function connectionsOf(pool: TenantPool): Promise<number> {
  const [row] = await pgQuery<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [`tenant-pool:${pool.options.postgres!.schema}`]);
  return row!.n;
}

testWithPostgres('the connection budget: stats() names it, and under 400 concurrent sessions the server never sees more connections from the pool', async () => {
  const pool = await openPgPool({ workers: 3, postgres: { connectionString: postgresUrl!, schema: testSchema(), connectionsPerWorker: 2, registryConnections: 1 }, maxSessionsPerTenant: Infinity });
  try {
    assert.equal(pool.stats().store, { kind: 'postgres', connectionBudget: 3 * 2 + 1 + 1, chosenBy: 'options' });
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await pool.tenants.create({ tenantId: `b${i}` })).tenantId);
    let most = 0;
    let isDone = false;
    const sampling = (async () => {
      while (!isDone) {
        most = Math.max(most, await connectionsOf(pool));
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    await Promise.all(
      Array.from({ length: 400 }, async (_, i) =>
        pool.withSession(ids[i % ids.length]!, async (s) => {
          await s.records.save('c', `r${i}`, { i }, { even: String(i % 2 === 0) });
          await s.records.find('c', { even: 'true' }, { limit: 5 });
        }, { timeoutMs: 60_000 }),
      ),
    );
    isDone = true;
    await sampling;
    assert.ok(most >= 2, `the pool used its connections (${most})`);
    assert.ok(most <= 8, `at most the budget of 8: saw ${most}`);
  } finally {
    await disposePool(pool);
  }
});

testWithPostgres('connections terminated under load: calls in flight fail ERR_STORAGE_UNAVAILABLE (retryable; a write\'s outcome unknown), none hangs, the pool serves again, no acknowledged save is lost', async () => {
  const pool = await openPgPool({ workers: 2 });
  const schema = pool.options.postgres!.schema;
  const admin = new pg.Client(postgresUrl);
  await admin.connect();
  try {
    await pool.tenants.create({ tenantId: 'a' });
    await pool.tenants.create({ tenantId: 'b' });
    const sessions = [await pool.acquire('a'), await pool.acquire('b')];
    await sessions[0]!.records.save('c', 'before', 1);
    // Hold the items table so that the saves below wait inside the server, then end their connections.
    await admin.query('BEGIN');
    await admin.query(`LOCK TABLE ${schema}.items IN EXCLUSIVE MODE`);
    const saves = Array.from({ length: 8 }, async (_, i) => sessions[i % 2]!.records.save('c', `w${i}`, i).then(() => 'ok' as const, (error: unknown) => error as { code?: string; retryable?: boolean; outcome?: string }));
    for (let i = 0; ; i++) {
      const [row] = (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [`tenant-pool:${schema}`])).rows;
      if (row!.n >= 2) break;
      assert.ok(i < 5000, 'the saves reached the server');
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`tenant-pool:${schema}`]);
    await admin.query('ROLLBACK');
    const results = await Promise.all(saves);
    const failures = results.filter((r) => r !== 'ok');
    assert.ok(failures.length >= 2, `the waiting saves failed (${failures.length})`);
    for (const f of failures) assert.equal([f.code, f.retryable, f.outcome], ['ERR_STORAGE_UNAVAILABLE', true, 'unknown'], JSON.stringify(f));
    // The pool reconnects: the sessions go on, and every acknowledged save is there.
    for (const [i, r] of results.entries()) {
      if (r === 'ok') assert.is((await sessions[i % 2]!.records.get('c', `w${i}`))?.value, i, `acknowledged w${i}`);
    }
    await sessions[1]!.records.save('c', 'after', 2);
    assert.is((await sessions[0]!.records.get('c', 'before'))?.value, 1);
    for (const s of sessions) await s.release();
    // The registry reconnects too, and the pool takes its hold on the schema again.
    await pool.tenants.create({ tenantId: 'c' });
    for (let i = 0; ; i++) {
      const rows = (await admin.query('SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = $1 AND a.application_name = $2', ['advisory', `tenant-pool:${schema}`])).rows;
      if (rows.length > 0) break;
      assert.ok(i < 100, 'the ownership lock is taken again within seconds');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.is(pool.stats().weightInUse, 12, 'three idle wallets (c is kept open from its creation), nothing leaked');
  } finally {
    await admin.query('ROLLBACK').catch(() => {});
    await admin.end();
    await disposePool(pool);
  }
});

testWithPostgres('a server refusing connections (a role limited to one) is ERR_STORAGE_UNAVAILABLE, retryable, at once: at open, and at a wallet open when the workers cannot connect', async () => {
  const role = `tp_limited_${randomBytes(4).toString('hex')}`;
  await pgQuery(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 1`);
  await pgQuery(`GRANT CREATE ON DATABASE ${new URL(postgresUrl!).pathname.slice(1) || 'postgres'} TO ${role}`);
  const url = new URL(postgresUrl!);
  url.username = role;
  const schema = testSchema();
  try {
    const started = performance.now();
    const refused = await rejectsWith(openPool({ dataDir: tempDir(), postgres: { connectionString: url.href, schema } }), 'ERR_STORAGE_UNAVAILABLE', 'open');
    assert.is((refused as { retryable?: boolean }).retryable, true);
    assert.ok(performance.now() - started < 10_000, 'refused, not left waiting');
    await pgQuery(`ALTER ROLE ${role} CONNECTION LIMIT 2`);
    // The owner's and the registry's connections are all it may have: a worker's first query is refused.
    await using pool = await openPool({ dataDir: tempDir(), workers: 1, postgres: { connectionString: url.href, schema, registryConnections: 1 } });
    await pool.tenants.create({ tenantId: 'x' }).then(
      () => assert.unreachable('the worker had no connection to create the wallet with'),
      (error: { code?: string; retryable?: boolean }) => assert.equal([error.code, error.retryable], ['ERR_STORAGE_UNAVAILABLE', true]),
    );
    assert.is(pool.stats().weightInUse, 0);
    await rejectsWith(pool.tenants.get('x'), 'ERR_TENANT_NOT_FOUND', 'nothing half made');
  } finally {
    await pgQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pgQuery(`DROP OWNED BY ${role}`);
    await pgQuery(`DROP ROLE ${role}`);
  }
});

testWithPostgres('one tenant\'s damaged rows fail only that tenant, and only the damaged record, as ERR_WALLET_CORRUPT', async () => {
  const pool = await openPgPool({ walletIdleTtlMs: 0 });
  const schema = pool.options.postgres!.schema;
  try {
    for (const id of ['a', 'b']) {
      await pool.tenants.create({ tenantId: id });
      await pool.withSession(id, async (s) => {
        await s.records.save('c', 'one', 1, { t: 'x' });
        await s.records.save('c', 'two', 2, { t: 'x' });
      });
    }
    await pgQuery(
      `UPDATE ${schema}.items SET value = set_byte(value, 20, get_byte(value, 20) # 1)
         WHERE id = (SELECT min(i.id) FROM ${schema}.items i JOIN ${schema}.wallets w ON w.id = i.wallet_id WHERE w.tenant_id = 'a')`,
    );
    await pool.withSession('a', async (s) => {
      await rejectsWith(s.records.get('c', 'one'), 'ERR_WALLET_CORRUPT', 'the damaged record');
      await rejectsWith(s.records.find('c', { t: 'x' }), 'ERR_WALLET_CORRUPT', 'a find that reaches it');
      assert.is((await s.records.get('c', 'two'))?.value, 2, 'the other record');
    });
    await pool.withSession('b', async (s) => assert.equal((await s.records.find('c', { t: 'x' })).map((r) => r.value), [1, 2]));
    assert.is(pool.stats().totals.workerCrashes, 0);
  } finally {
    await disposePool(pool);
  }
});

testWithPostgres('a rekey rewraps the profile key only (every row\'s ciphertext unchanged); with rotateDataKey the wallet is written anew under a new profile key (every ciphertext differs, the old wallet row is gone) and everything reads back', async () => {
  const pool = await openPgPool();
  const s = pool.options.postgres!.schema;
  const rows = async (): Promise<{ wallet: string; cells: string[] }> => {
    const [wallet] = await pgQuery<{ id: string }>(`SELECT id FROM ${s}.wallets WHERE tenant_id = 't'`);
    const cells = await pgQuery<{ c: string }>(
      `SELECT encode(i.category, 'hex') || encode(i.name, 'hex') AS c FROM ${s}.items i WHERE i.wallet_id = $1
       UNION ALL SELECT encode(t.name, 'hex') || encode(t.value, 'hex') FROM ${s}.item_tags t JOIN ${s}.items i ON i.id = t.item_id WHERE i.wallet_id = $1
       UNION ALL SELECT encode(kid, 'hex') FROM ${s}.wallet_keys WHERE wallet_id = $1`,
      [wallet!.id],
    );
    return { wallet: wallet!.id, cells: cells.map((r) => r.c).sort() };
  };
  try {
    await pool.tenants.create({ tenantId: 't', passphrase: 'one', kdf: 'argon2i-int' });
    const key = await pool.withSession(
      't',
      async (session) => {
        for (let i = 0; i < 50; i++) await session.records.save('c', `r${i}`, { i }, { n: String(i % 3) });
        return session.keys.create({ routing: true });
      },
      { passphrase: 'one' },
    );
    const before = await rows();
    assert.is(before.cells.length, 50 + 50 + 1);
    await pool.tenants.rekey('t', { passphrase: 'one', newPassphrase: 'two' });
    assert.equal(await rows(), before, 'a plain rekey leaves every row as it was (the old secret and an old backup still open them)');
    await pool.tenants.rekey('t', { passphrase: 'two', newPassphrase: 'three', rotateDataKey: true });
    const after = await rows();
    assert.is.not(after.wallet, before.wallet, 'a new wallet');
    assert.is(after.cells.length, before.cells.length);
    assert.equal(after.cells.filter((c) => before.cells.includes(c)), [], 'no ciphertext of the old profile key is left');
    const [left] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.wallets`);
    assert.is(left!.n, 1, 'the old wallet is gone');
    await pool.withSession(
      't',
      async (session) => {
        assert.equal((await session.records.find('c', { n: '1' })).map((r) => r.id), Array.from({ length: 50 }, (_, i) => `r${i}`).filter((_, i) => i % 3 === 1));
        const data = Buffer.from('x');
        assert.ok(await session.keys.verify(key.publicKey, data, await session.keys.sign(key.kid, data)));
      },
      { passphrase: 'three' },
    );
    assert.is(await pool.tenants.byRoutingKey(key.publicKey), 't', 'the route stays');
    await rejectsWith(pool.acquire('t', { passphrase: 'two' }), 'ERR_WALLET_KEY_INVALID');
    await rejectsWith(pool.tenants.rekey('t', { passphrase: 'three', rotateDataKey: 'yes' as never }), 'ERR_INVALID_ARGUMENT');
  } finally {
    await disposePool(pool);
  }
});

testWithPostgres('a dump of every table holds none of the saved values, ids, categories, tag names and values, labels, metadata, passphrases or routing public keys', async () => {
  const marker = `M${randomBytes(5).toString('hex')}`;
  const rootKey = randomBytes(32).toString('hex');
  const pool = await openPgPool({ rootKey });
  try {
    await pool.tenants.create({ tenantId: 'managed', label: `${marker}-label`, metadata: { [`${marker}-mk`]: `${marker}-mv` } });
    await pool.tenants.create({ tenantId: 'locked', passphrase: `${marker}-passphrase`, kdf: 'argon2i-int' });
    const routed: string[] = [];
    for (const [id, options] of [['managed', undefined], ['locked', { passphrase: `${marker}-passphrase` }]] as const) {
      await pool.withSession(
        id,
        async (s) => {
          await s.records.save(`${marker}-category`, `${marker}-id`, { secret: `${marker}-value` }, { [`${marker}-tagname`]: `${marker}-tagvalue` });
          routed.push((await s.keys.create({ routing: true })).publicKey);
        },
        options,
      );
    }
    const dump = await dumpSchema(pool.options.postgres!.schema);
    assert.ok(dump.includes('INSERT INTO'), 'the dump has rows');
    for (const needle of [marker, Buffer.from(marker).toString('hex'), rootKey, ...routed]) assert.not.ok(dump.includes(needle), `${needle} appears in the dump`);
    // Dispatch still finds each key's tenant through its hash.
    assert.equal(await Promise.all(routed.map(async (k) => pool.tenants.byRoutingKey(k))), ['managed', 'locked']);
    // Still all there, through the pool.
    assert.is((await pool.tenants.find({ label: `${marker}-label`, metadata: { [`${marker}-mk`]: `${marker}-mv` } })).length, 1);
    assert.is(await pool.withSession('managed', async (s) => (await s.records.get(`${marker}-category`, `${marker}-id`))?.tags[`${marker}-tagname`]), `${marker}-tagvalue`);
  } finally {
    await disposePool(pool);
  }
});

test.run();
