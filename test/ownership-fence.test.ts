/**
 * One owner per PostgreSQL schema in every interleaving of a single pool (no cluster option) and
 * cluster instances, with real processes: SIGSTOP past the heartbeat, a server restart. Ownership
 * carries an epoch that every write checks in its own transaction, so whoever lost the schema
 * writes nothing, and says so (`ERR_OWNERSHIP_LOST`, a warning, `tenant-pool:schema:lost`).
 *
 * "Two writers" is checked through the data: every write is an increment of one counter read in the
 * same session, so a second writer shows as an acknowledged increment of the loser after the
 * takeover, or as a counter that does not match the winner's own count.
 */
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import type { TenantSession } from '../src/session.js';
import { startChild, type Child } from './child.js';
import { pgQuery, rejectsWith, tempDir } from './helpers.js';
import { dropSchema, postgresUrl, restartPostgres, testSchema, testWithPostgres, testWithRestart } from './postgres.js';

const TTL = 2000;

async function counterSchema(): Promise<{ schema: string; rootKey: string }> {
  const schema = testSchema();
  const rootKey = randomBytes(32).toString('hex');
  const setup = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
  await setup.tenants.create({ tenantId: 'counter' });
  await setup.close();
  return { schema, rootKey };
}

const increments = (child: Child, from = 0): number[] => child.lines.slice(from).filter((l) => l.startsWith('inc ')).map((l) => Number(l.slice(4)));
const pause = async (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Increments the counter `n` times in one session; returns the last value. */
async function incrementBy(session: TenantSession, n: number): Promise<number> {
  let value = ((await session.records.get('c', 'counter'))?.value as number | undefined) ?? 0;
  for (let i = 0; i < n; i++) await session.records.save('c', 'counter', ++value);
  return value;
}

/** Ownership events seen in this process while `fn` runs. */
async function withOwnershipEvents<T>(fn: (events: unknown[]) => Promise<T>): Promise<T> {
  const events: unknown[] = [];
  const listener = (payload: unknown): void => void events.push(payload);
  subscribe('tenant-pool:schema:lost', listener);
  try {
    return await fn(events);
  } finally {
    unsubscribe('tenant-pool:schema:lost', listener);
  }
}

testWithPostgres('a cluster instance paused past its heartbeat, a single pool takes the schema: on SIGCONT the instance cannot come back by renewing, writes nothing, and stops serving (ERR_OWNERSHIP_LOST)', async () => {
  const { schema, rootKey } = await counterSchema();
  const sleeper = startChild('cluster-instance.ts', [schema, rootKey, 'sleeper', 'hold', String(TTL)]);
  let single: TenantPool | undefined;
  try {
    await sleeper.waitFor(() => increments(sleeper).length >= 20);
    sleeper.kill('SIGSTOP');
    const acknowledged = Math.max(...increments(sleeper));
    // While the sleeper's heartbeat is live, the schema is the cluster's; once it lapsed, a single pool may open it.
    for (let i = 0; single === undefined; i++) {
      try {
        single = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, walletIdleTtlMs: 600_000, postgres: { connectionString: postgresUrl!, schema } });
      } catch (error) {
        assert.is((error as { code?: string }).code, 'ERR_DATA_DIR_LOCKED', 'refused while the instance counts as live');
        assert.ok(i < 200, 'the single pool opens once the heartbeat lapsed');
        await pause(50);
      }
    }
    const [owned] = await pgQuery<{ mode: string }>(`SELECT mode FROM ${schema}.ownership`);
    assert.is(owned?.mode, 'single');
    assert.equal(await pgQuery(`SELECT * FROM ${schema}.leases`), [], 'the lapsed instance\'s leases are gone');
    const session = await single.acquire('counter');
    const atTakeover = ((await session.records.get('c', 'counter'))?.value as number | undefined) ?? 0;
    assert.ok(atTakeover >= acknowledged, `nothing acknowledged is lost: ${atTakeover} >= ${acknowledged}`);
    let value = await incrementBy(session, 20);
    const wokeAt = sleeper.lines.length;
    sleeper.kill('SIGCONT');
    // It notices that it lapsed, tries to join again, finds the schema owned, and stops serving for good.
    await sleeper.waitFor((lines) => lines.slice(wokeAt).includes('ownership-lost'));
    await sleeper.waitFor((lines) => lines.slice(wokeAt).filter((l) => l === 'retry ERR_OWNERSHIP_LOST').length >= 5);
    assert.equal(increments(sleeper, wokeAt), [], 'no increment of the sleeper was acknowledged after it woke');
    // The single pool went on alone all along: its own count is what the database holds.
    value = await incrementBy(session, 20);
    assert.is(value, atTakeover + 40);
    await session.release();
    assert.is(await single.withSession('counter', async (s) => (await s.records.get('c', 'counter'))?.value), atTakeover + 40, 'not one write of the sleeper landed');
    const [member] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.leases`);
    assert.is(member?.n, 0, 'the sleeper took no lease after it woke');
  } finally {
    sleeper.kill('SIGCONT');
    sleeper.kill('SIGKILL');
    await single?.close();
    await dropSchema(schema);
  }
});

testWithRestart('a single pool loses its lock in a PostgreSQL restart and a cluster instance joins meanwhile: the pool\'s writes are refused in the database, it sees the schema taken on reconnect and stops serving; the instance alone writes', async () => {
  const { schema, rootKey } = await counterSchema();
  const single = startChild('cluster-instance.ts', [schema, rootKey, 'single', 'hold', String(TTL)]);
  let instance: TenantPool | undefined;
  try {
    await single.waitFor(() => increments(single).length >= 20);
    // Paused, so that it cannot take its lock back before the instance joins: the interleaving under test.
    single.kill('SIGSTOP');
    const acknowledged = Math.max(...increments(single));
    restartPostgres();
    await withOwnershipEvents(async (events) => {
      instance = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, walletIdleTtlMs: 600_000, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'joiner', leaseTtlMs: TTL } });
      assert.equal(events, [], 'the joiner lost nothing');
    });
    const [owned] = await pgQuery<{ mode: string }>(`SELECT mode FROM ${schema}.ownership`);
    assert.is(owned?.mode, 'cluster');
    const session = await instance!.acquire('counter');
    const atTakeover = ((await session.records.get('c', 'counter'))?.value as number | undefined) ?? 0;
    assert.ok(atTakeover >= acknowledged, `nothing acknowledged is lost: ${atTakeover} >= ${acknowledged}`);
    await incrementBy(session, 20);
    const wokeAt = single.lines.length;
    single.kill('SIGCONT');
    await single.waitFor((lines) => lines.slice(wokeAt).includes('ownership-lost'));
    await single.waitFor((lines) => lines.slice(wokeAt).filter((l) => l === 'retry ERR_OWNERSHIP_LOST').length >= 5);
    assert.equal(increments(single, wokeAt), [], 'no increment of the single pool was acknowledged after it woke');
    assert.is(await incrementBy(session, 20), atTakeover + 40, 'the instance went on alone');
    await session.release();
    // The deposed pool holds no lock: a second single pool is still refused, because the cluster's instance is live.
    await rejectsWith(TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, postgres: { connectionString: postgresUrl!, schema } }), 'ERR_DATA_DIR_LOCKED');
  } finally {
    single.kill('SIGCONT');
    single.kill('SIGKILL');
    await instance?.close();
    await dropSchema(schema);
  }
});

testWithPostgres('a takeover waits for the write under way of the pool that owned the schema: an instance joining blocks on the ownership fence until that write commits, and the next write of that pool is refused', async () => {
  const { schema, rootKey } = await counterSchema();
  const pg = (await import('pg')).default;
  // The owner's writes as its wallet makes them: the fence first (a shared lock and the epoch), then the rows.
  const pool = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, postgres: { connectionString: postgresUrl!, schema } });
  const [{ epoch }] = (await pgQuery<{ epoch: string }>(`SELECT epoch FROM ${schema}.ownership`)) as [{ epoch: string }];
  await pool.close();
  const writer = new pg.Client(postgresUrl);
  await writer.connect();
  let instance: TenantPool | undefined;
  try {
    await writer.query('BEGIN');
    await writer.query(`SELECT pg_advisory_xact_lock_shared(hashtext('tenant-pool ownership ${schema}'))`);
    const owned = (await writer.query<{ one: number }>(`SELECT 1 AS one FROM ${schema}.ownership WHERE mode = 'single' AND epoch = $1`, [epoch])).rows[0];
    assert.ok(owned !== undefined, 'the write found the schema owned');
    let hasJoined = false;
    const joining = TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'joiner', leaseTtlMs: TTL } }).then((p) => {
      hasJoined = true;
      return p;
    });
    // The joiner waits on the fence (the server says so), not on anything else.
    for (let i = 0; ; i++) {
      const [waiting] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
      if (waiting!.n > 0) break;
      assert.ok(i < 2000, 'the joiner waits for the advisory fence');
      await pause(5);
    }
    assert.not.ok(hasJoined, 'not joined while the write is under way');
    await writer.query(`INSERT INTO ${schema}.registry_config (name, value) VALUES ('written under the old epoch', 'x')`);
    await writer.query('COMMIT');
    instance = await joining;
    // A write of the old owner that starts now finds the schema the cluster's.
    await writer.query('BEGIN');
    await writer.query(`SELECT pg_advisory_xact_lock_shared(hashtext('tenant-pool ownership ${schema}'))`);
    assert.equal((await writer.query(`SELECT 1 FROM ${schema}.ownership WHERE mode = 'single' AND epoch = $1`, [epoch])).rows, [], 'the old epoch is gone');
    await writer.query('ROLLBACK');
  } finally {
    await writer.end();
    await instance?.close();
    await dropSchema(schema);
  }
});

testWithPostgres('in one process: a write that finds the schema taken revokes every session, fails waiting and later acquires ERR_OWNERSHIP_LOST, warns once and publishes tenant-pool:schema:lost', async () => {
  const { schema, rootKey } = await counterSchema();
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }): void => void warnings.push(String(w.code));
  process.on('warning', onWarning);
  const pool = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, walletIdleTtlMs: 600_000, postgres: { connectionString: postgresUrl!, schema } });
  try {
    await withOwnershipEvents(async (events) => {
      const a = await pool.acquire('counter');
      const b = await pool.acquire('counter');
      await a.records.save('c', 'counter', 1);
      // What a takeover does to this pool's epoch (a cluster instance joining while its lock was gone).
      await pgQuery(`UPDATE ${schema}.ownership SET mode = 'cluster', epoch = nextval('${schema}.lease_epochs')`);
      const refused = await rejectsWith(a.records.save('c', 'counter', 2), 'ERR_OWNERSHIP_LOST');
      assert.is((refused as { outcome?: string }).outcome, undefined, 'nothing was written, and the error says so by giving no unknown outcome');
      await rejectsWith(b.records.get('c', 'counter'), 'ERR_SESSION_REVOKED', 'the other session is revoked');
      await rejectsWith(pool.acquire('counter'), 'ERR_OWNERSHIP_LOST');
      await rejectsWith(pool.tenants.create({ tenantId: 'x' }), 'ERR_OWNERSHIP_LOST');
      assert.is(events.length, 1, 'one event');
      assert.equal(Object.keys(events[0] as object).sort(), ['instanceId', 'message', 'schema']);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(warnings.filter((w) => w === 'TENANT_POOL_OWNERSHIP_LOST'), ['TENANT_POOL_OWNERSHIP_LOST'], 'warned once');
    });
    const [row] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.items`);
    assert.is(row?.n, 1, 'the refused save wrote nothing');
  } finally {
    process.off('warning', onWarning);
    await pool.close();
    await dropSchema(schema);
  }
});

test.run();
