/**
 * Leases bound to the membership (schema format 3): a renewal writes the member row alone, a lease
 * holds while its owner's life is live, and a member of the release before (which takes a lease by
 * its expiry alone) never takes one that is held — while it is live, leases are renewed by their
 * expiry as it expects, and after, not.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from 'pg';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import { TenantPool } from '../src/pool.js';
import { pgQuery, rejectsWith, tempDir } from './helpers.js';
import { dropSchema, postgresUrl, testSchema, testWithPostgres } from './postgres.js';

const rootKey = randomBytes(32).toString('hex');

async function instance(schema: string, instanceId: string, leaseTtlMs: number): Promise<TenantPool & AsyncDisposable> {
  const pool = await TenantPool.open({
    dataDir: tempDir(),
    rootKey,
    workers: 1,
    walletIdleTtlMs: 600_000,
    postgres: { connectionString: postgresUrl!, schema },
    cluster: { instanceId, leaseTtlMs },
  });
  return Object.assign(pool, { [Symbol.asyncDispose]: async () => pool.close() });
}

/** Waits until the member's heartbeat has been written `count` more times (its renewals). */
async function renewals(schema: string, instanceId: string, count: number): Promise<void> {
  const beat = async (): Promise<string> => (await pgQuery<{ t: string }>(`SELECT heartbeat_at::text AS t FROM ${schema}.members WHERE instance_id = $1`, [instanceId]))[0]!.t;
  let last = await beat();
  for (let seen = 0, polls = 0; seen < count; polls++) {
    assert.ok(polls < 500, `${instanceId} renews`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = await beat();
    if (now !== last) {
      seen++;
      last = now;
    }
  }
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let polls = 0; !(await condition()); polls++) {
    assert.ok(polls < 500, what);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs `fn` on a fresh schema with a connection of its own (`locker`) to hold row locks with; both are dropped after. */
async function withLocker(fn: (schema: string, locker: Client) => Promise<void>): Promise<void> {
  const schema = testSchema();
  const pg = (await import('pg')).default;
  const locker = new pg.Client(postgresUrl);
  await locker.connect();
  try {
    await fn(schema, locker);
  } finally {
    await locker.end();
    await dropSchema(schema);
  }
}

/** Waits until a statement starting with `prefix` waits for a lock. */
async function waitsForLock(prefix: string, what: string): Promise<void> {
  await until(async () => (await pgQuery(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [`${prefix}%`])).length === 1, what);
}

/** What release 0.2.0 runs to take a lease: free, its own, or past its expiry — nothing else. Returns whether it took it. */
async function olderReleaseTakes(schema: string, tenantId: string, owner = 'old'): Promise<boolean> {
  const rows = await pgQuery(
    `INSERT INTO ${schema}.leases (tenant_id, owner, epoch, expires_at)
     SELECT $1, $2, nextval('${schema}.lease_epochs'), now() + 1500 * interval '1 millisecond'
     WHERE EXISTS (SELECT 1 FROM ${schema}.ownership WHERE mode = 'cluster' FOR SHARE)
     ON CONFLICT (tenant_id) DO UPDATE SET owner = EXCLUDED.owner, epoch = EXCLUDED.epoch, expires_at = EXCLUDED.expires_at
     WHERE leases.owner = EXCLUDED.owner OR leases.expires_at < now() RETURNING epoch`,
    [tenantId, owner],
  );
  return rows.length === 1;
}

async function leaseRows(schema: string): Promise<Array<{ tenant_id: string; owner: string; xmin: string; infinite: boolean }>> {
  return pgQuery(`SELECT tenant_id, owner, xmin::text AS xmin, expires_at = 'infinity' AS infinite FROM ${schema}.leases ORDER BY tenant_id`);
}

testWithPostgres('a renewal writes the member row alone, however many leases the instance holds: their rows are not touched', async () => {
  const schema = testSchema();
  try {
    await using a = await instance(schema, 'a', 1000);
    for (let i = 0; i < 40; i++) await a.tenants.create({ tenantId: `t${i}` });
    for (let i = 0; i < 40; i++) await a.withSession(`t${i}`, () => undefined);
    const before = await leaseRows(schema);
    assert.is(before.length, 40, 'every idle wallet keeps its lease');
    assert.ok(before.every((r) => r.infinite && r.owner === 'a'), 'bound to the membership: no expiry to renew');
    const [member] = await pgQuery<{ xmin: string }>(`SELECT xmin::text AS xmin FROM ${schema}.members WHERE instance_id = 'a'`);
    await renewals(schema, 'a', 3);
    assert.equal(await leaseRows(schema), before, 'no lease row was written by three renewals');
    const [after] = await pgQuery<{ xmin: string }>(`SELECT xmin::text AS xmin FROM ${schema}.members WHERE instance_id = 'a'`);
    assert.is.not(after!.xmin, member!.xmin, 'the member row was');
    // The leases still hold: another instance cannot take them.
    await using b = await instance(schema, 'b', 1000);
    await rejectsWith(b.acquire('t7'), 'ERR_TENANT_ELSEWHERE');
    assert.equal((await b.cluster!.ownerOf('t7'))?.instanceId, 'a');
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres("a lease holds while its owner's life is live: once the owner's heartbeat has lapsed another instance takes it (a new epoch), and the old owner's writes fail", async () => {
  const schema = testSchema();
  try {
    await using a = await instance(schema, 'a', 1000);
    await using b = await instance(schema, 'b', 1000);
    await a.tenants.create({ tenantId: 't' });
    const s = await a.acquire('t');
    await s.records.save('c', 'r', 1);
    await rejectsWith(b.acquire('t'), 'ERR_TENANT_ELSEWHERE', 'held while a is live');
    const [{ epoch }] = (await pgQuery<{ epoch: string }>(`SELECT epoch::text FROM ${schema}.leases WHERE tenant_id = 't'`)) as [{ epoch: string }];
    // a is not heard from (as if paused): its heartbeat is older than its TTL on the server.
    await pgQuery(`UPDATE ${schema}.members SET heartbeat_at = now() - interval '1 hour' WHERE instance_id = 'a'`);
    assert.equal(await b.cluster!.ownerOf('t'), null, 'the lease no longer holds: its owner is not live');
    await b.withSession('t', async (session) => {
      assert.is((await session.records.get('c', 'r'))?.value, 1);
      await session.records.save('c', 'r', 2);
    });
    const [row] = await pgQuery<{ owner: string; epoch: string }>(`SELECT owner, epoch::text FROM ${schema}.leases WHERE tenant_id = 't'`);
    assert.is(row!.owner, 'b');
    assert.ok(BigInt(row!.epoch) > BigInt(epoch), 'a new epoch');
    await rejectsWith(s.records.save('c', 'r', 3), 'ERR_LEASE_LOST', "the old owner's write is fenced");
    await s.release();
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres('a rolling upgrade: while a member of release 0.2.0 is live, leases are renewed by their expiry and its take never gets a held one; a lease it took over holds by its expiry; once it is gone, leases are bound to the membership again', async () => {
  const schema = testSchema();
  try {
    await using a = await instance(schema, 'a', 1500);
    for (const t of ['t1', 't2', 't3', 't4']) await a.tenants.create({ tenantId: t });
    // Sessions keep t1 and t2 here (an idle wallet may be handed off to another member, the older one included).
    const s1 = await a.acquire('t1');
    assert.ok((await leaseRows(schema)).find((r) => r.tenant_id === 't1')!.infinite);
    // A member of 0.2.0 (schema format 2) is live.
    await pgQuery(`INSERT INTO ${schema}.members (instance_id, address, heartbeat_at, lease_ttl_ms, life, format) VALUES ('old', NULL, now() + interval '1 hour', 1500, 'o', 2)`);
    assert.is(await olderReleaseTakes(schema, 't1'), false, "an 'infinity' lease is never the older release's to take");
    await until(async () => !(await leaseRows(schema)).find((r) => r.tenant_id === 't1')!.infinite, 'the instance renews t1 by its expiry once it knows');
    assert.equal(a.health !== undefined && (await a.health()).cluster?.olderMembers, ['old']);
    const s2 = await a.acquire('t2');
    assert.is((await leaseRows(schema)).find((r) => r.tenant_id === 't2')!.infinite, false, 'taken with an expiry while the older member is live');
    // Over two TTLs of renewals, the older release's take never gets them.
    const started = performance.now();
    while (performance.now() - started < 3200) {
      assert.is(await olderReleaseTakes(schema, 't1'), false);
      assert.is(await olderReleaseTakes(schema, 't2'), false);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The older release takes a free tenant: its lease holds by its expiry.
    assert.is(await olderReleaseTakes(schema, 't3'), true);
    const elsewhere = await rejectsWith(a.acquire('t3'), 'ERR_TENANT_ELSEWHERE');
    assert.match(elsewhere.message, 'old');
    // It takes over a lease of this release that ran out (the owner gone): its upsert leaves the life it found; it still holds, by its expiry.
    await pgQuery(`INSERT INTO ${schema}.leases (tenant_id, owner, epoch, expires_at, life) VALUES ('t4', 'gone', nextval('${schema}.lease_epochs'), now() - interval '1 second', 'g')`);
    assert.is(await olderReleaseTakes(schema, 't4'), true);
    await rejectsWith(a.acquire('t4'), 'ERR_TENANT_ELSEWHERE', "held by the older release's member until its expiry");
    // The older member leaves (its heartbeat lapses): the instance binds its leases to the membership again.
    await pgQuery(`UPDATE ${schema}.members SET heartbeat_at = now() - interval '2 hours' WHERE instance_id = 'old'`);
    await until(async () => (await leaseRows(schema)).filter((r) => r.owner === 'a').every((r) => r.infinite), "a's leases are 'infinity' again");
    assert.equal((await a.health()).cluster?.olderMembers, []);
    await s1.records.save('c', 'r', 'still served');
    await s2.release();
    await s1.release();
    // Its lapsed leases run out by their expiry; then a takes them.
    await until(async () => (await pgQuery(`SELECT 1 FROM ${schema}.leases WHERE owner = 'old' AND expires_at > now()`)).length === 0, "the older member's leases run out");
    await a.withSession('t3', () => undefined);
    await a.withSession('t4', () => undefined);
    assert.equal((await leaseRows(schema)).map((r) => [r.tenant_id, r.owner, r.infinite]), [
      ['t1', 'a', true],
      ['t2', 'a', true],
      ['t3', 'a', true],
      ['t4', 'a', true],
    ]);
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres('a lease whose delete failed (the database refused it) is deleted at the next renewal: bound to the membership it would not run out while its owner lives', async () => {
  const schema = testSchema();
  try {
    await using a = await instance(schema, 'a', 1000);
    await a.tenants.create({ tenantId: 't' });
    await a.withSession('t', () => undefined);
    // Deletes of lease rows fail for now.
    await pgQuery(`CREATE FUNCTION ${schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$`);
    await pgQuery(`CREATE TRIGGER refuse BEFORE DELETE ON ${schema}.leases FOR EACH ROW EXECUTE FUNCTION ${schema}.refuse()`);
    await a.closeIdleWallets();
    await renewals(schema, 'a', 2);
    assert.is((await leaseRows(schema)).length, 1, 'the delete failed: the row is still there');
    await pgQuery(`DROP TRIGGER refuse ON ${schema}.leases`);
    await until(async () => (await leaseRows(schema)).length === 0, 'deleted at a later renewal');
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres('a cold open takes the lease and reads the tenant and its wallet in one statement: a tenant rekeyed or deleted elsewhere since this instance read it, or held elsewhere, leaves no wallet of the old read open here', async () => {
  const schema = testSchema();
  try {
    await using a = await instance(schema, 'a', 10_000);
    await using b = await instance(schema, 'b', 10_000);
    await a.tenants.create({ tenantId: 't' });
    await a.withSession('t', async (s) => s.records.save('c', 'r', 1));
    await a.closeIdleWallets();
    // Rekeyed elsewhere: a still has the old record (its cache), whose key no longer opens the wallet.
    await b.tenants.rekey('t');
    await b.closeIdleWallets();
    await until(async () => (await b.cluster!.ownerOf('t')) === null, "b's lease is given up");
    const opens = a.stats().totals.walletOpens;
    assert.is(await a.withSession('t', async (s) => {
      await s.records.save('c', 'r', 2);
      return (await s.records.get('c', 'r'))?.value;
    }), 2, 'opened with the new key, and its writes pass the fence');
    assert.is(a.stats().totals.walletOpens - opens, 1, 'one open counted');
    await a.closeIdleWallets();
    // Held elsewhere: the open made while the lease was asked for is closed again.
    const held = await b.acquire('t');
    await rejectsWith(a.acquire('t'), 'ERR_TENANT_ELSEWHERE');
    assert.equal([a.stats().wallets.open, a.stats().wallets.opening, a.stats().weightInUse], [0, 0, 0], 'nothing left open or held here');
    await held.release();
    await b.closeIdleWallets();
    await until(async () => (await b.cluster!.ownerOf('t')) === null, "b's lease is given up");
    // Deleted elsewhere: not found, and nothing open.
    await b.tenants.delete('t');
    await rejectsWith(a.acquire('t'), 'ERR_TENANT_NOT_FOUND');
    assert.equal([a.stats().wallets.open, a.stats().weightInUse], [0, 0]);
    assert.equal(await pgQuery(`SELECT tenant_id FROM ${schema}.leases`), [], 'no lease taken for a tenant that is gone');
  } finally {
    await dropSchema(schema);
  }
});

testWithPostgres('closeIdleWallets resolves once the leases of the wallets it closed are given up: another instance takes the tenant at once', async () => {
  await withLocker(async (schema, locker) => {
    await using a = await instance(schema, 'a', 10_000);
    await using b = await instance(schema, 'b', 10_000);
    await a.tenants.create({ tenantId: 't' });
    await a.withSession('t', async (s) => s.records.save('c', 'r', 1));
    // The lease's row is locked elsewhere: its delete waits for the lock.
    await locker.query('BEGIN');
    let closing: Promise<number>;
    let closed = false;
    try {
      await locker.query(`SELECT 1 FROM ${schema}.leases WHERE tenant_id = 't' FOR UPDATE`);
      closing = a.closeIdleWallets().then((n) => {
        closed = true;
        return n;
      });
      await waitsForLock(`DELETE FROM ${schema}.leases`, 'the delete waits for the lock');
      assert.is(a.stats().wallets.open, 0, 'the wallet is closed');
      assert.not.ok(closed, 'not resolved while the lease is still held');
    } finally {
      await locker.query('COMMIT');
    }
    assert.is(await closing, 1);
    assert.equal(await pgQuery(`SELECT owner FROM ${schema}.leases`), [], 'the lease is gone');
    assert.is(await b.withSession('t', async (s) => (await s.records.get('c', 'r'))?.value), 1, 'b takes it without waiting');
  });
});

testWithPostgres('close does not hang on a lease row locked elsewhere: the leave gives up after the lock timeout, and the lease passes on once the life is gone', async () => {
  await withLocker(async (schema, locker) => {
    await using b = await instance(schema, 'b', 1500);
    const a = await instance(schema, 'a', 1500);
    await a.tenants.create({ tenantId: 't' });
    await a.withSession('t', async (s) => s.records.save('c', 'r', 1));
    await locker.query('BEGIN');
    try {
      await locker.query(`SELECT 1 FROM ${schema}.leases WHERE tenant_id = 't' FOR UPDATE`);
      // A guard, not a measure: a close that hangs fails here instead of holding the run up.
      const outcome = await Promise.race([a.close().then(() => 'closed'), new Promise((resolve) => setTimeout(resolve, 60_000, 'hung').unref())]);
      assert.is(outcome, 'closed');
    } finally {
      await locker.query('COMMIT');
    }
    await rejectsWith(a.acquire('t'), 'ERR_POOL_CLOSED');
    // Its lease outlived the close; b takes it once a's life is seen gone (no heartbeat for a TTL).
    await until(async () => {
      try {
        return (await b.withSession('t', async (s) => (await s.records.get('c', 'r'))?.value)) === 1;
      } catch (error) {
        if ((error as { code?: string }).code === 'ERR_TENANT_ELSEWHERE') return false;
        throw error;
      }
    }, 'b takes the tenant');
  });
});

testWithPostgres('the take reads the newest tenant row: a change to it under way elsewhere (a rekey writes it) is waited for, not read around', async () => {
  await withLocker(async (schema, locker) => {
    await using a = await instance(schema, 'a', 10_000);
    await using b = await instance(schema, 'b', 10_000);
    await b.tenants.create({ tenantId: 't', maxSessions: 5 });
    await b.withSession('t', async (s) => s.records.save('c', 'r', 1));
    await b.closeIdleWallets();
    // Another transaction is changing the tenant's row, not committed yet.
    await locker.query('BEGIN');
    let acquiring: Promise<unknown> | undefined;
    try {
      await locker.query(`UPDATE ${schema}.tenants SET max_sessions = 7 WHERE tenant_id = 't'`);
      acquiring = a.withSession('t', async (s) => (await s.records.get('c', 'r'))?.value);
      await waitsForLock('WITH tenant AS', 'the take waits for the change');
    } finally {
      await locker.query('COMMIT');
    }
    assert.is(await acquiring, 1, 'served once the change committed');
  });
});

testWithPostgres('a tenant row held past a third of the lease TTL (a root-key rotation holds them all) fails the cold acquire retryably, holding nothing', async () => {
  await withLocker(async (schema, locker) => {
    await using a = await instance(schema, 'a', 1500);
    await a.tenants.create({ tenantId: 't' });
    await a.closeIdleWallets();
    await locker.query('BEGIN');
    try {
      await locker.query(`SELECT 1 FROM ${schema}.tenants FOR UPDATE`);
      const error = await rejectsWith(a.acquire('t'), 'ERR_STORAGE_UNAVAILABLE');
      assert.ok((error as { retryable?: boolean }).retryable, 'retryable');
      assert.equal([a.stats().weightInUse, a.stats().wallets.open, a.stats().wallets.opening], [0, 0, 0], 'nothing held');
    } finally {
      await locker.query('COMMIT');
    }
    assert.is(await a.withSession('t', async () => 'served'), 'served', 'served once the rows are free');
  });
});

testWithPostgres('a join waits for the ownership row however long it is held (instances starting at once): the lease statements\' lock timeout is not the join\'s', async () => {
  await withLocker(async (schema, locker) => {
    await using b = await instance(schema, 'b', 1500);
    await locker.query('BEGIN');
    let joining: Promise<TenantPool & AsyncDisposable> | undefined;
    try {
      await locker.query(`SELECT mode FROM ${schema}.ownership FOR UPDATE`);
      joining = instance(schema, 'a', 1500);
      joining.catch(() => {});
      await waitsForLock('SELECT mode FROM', 'the join waits for the row');
      // Held past the lock timeout of the member's connections (a third of the TTL: 500 ms).
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      await locker.query('COMMIT');
    }
    await using a = await joining;
    assert.equal((await b.cluster!.members()).map((m) => m.instanceId).sort(), ['a', 'b']);
    assert.ok(a.cluster !== undefined);
  });
});

test.run();
