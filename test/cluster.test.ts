/**
 * Cluster mode on a real PostgreSQL: several pools on one schema, each tenant open on one of them at
 * a time (a lease with an epoch), writes fenced in the database, owners and routes for a router.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import { kEvents, TenantPool } from '../src/pool.js';
import { Registry } from 'prom-client';
import { collectMetrics } from '../src/observability/metrics.js';
import { createRouter } from '../src/router.js';
import type { Session } from '../src/session.js';
import { startChild, type Child } from './child.js';
import { eventually, pgQuery, rejectsWith, tempDir } from './helpers.js';
import { dropSchema, postgresUrl, restartPostgres, testSchema, testWithPostgres, testWithRestart } from './postgres.js';

/** The root key the instances of a test share. */
const sharedKey = randomBytes(32).toString('hex');

async function instances(count: number, options: { leaseTtlMs?: number; walletIdleTtlMs?: number } = {}): Promise<{ pools: TenantPool[]; schema: string; close: () => Promise<void> } & AsyncDisposable> {
  const schema = testSchema();
  const rootKey = sharedKey;
  const pools: TenantPool[] = [];
  for (let i = 0; i < count; i++) {
    pools.push(
      await TenantPool.open({
        dataDir: tempDir(),
        rootKey,
        workers: 1,
        walletIdleTtlMs: options.walletIdleTtlMs ?? 0,
        postgres: { connectionString: postgresUrl!, schema },
        cluster: { instanceId: `i${i}`, address: `http://127.0.0.1:${3000 + i}`, ...(options.leaseTtlMs === undefined ? {} : { leaseTtlMs: options.leaseTtlMs }) },
      }),
    );
  }
  const close = async (): Promise<void> => {
    await Promise.allSettled(pools.map(async (p) => p.close()));
    await dropSchema(schema);
  };
  return { pools, schema, close, [Symbol.asyncDispose]: close };
}

testWithPostgres('one instance at a time: a held tenant is ERR_TENANT_ELSEWHERE elsewhere, naming the owner; released at the wallet\'s close, it opens on another; ownerOf and route agree', async () => {
  await using group = await instances(2);
  const { pools } = group;
  const [a, b] = pools as [TenantPool, TenantPool];
  await a.tenants.create({ tenantId: 't' });
  assert.is(await a.cluster!.ownerOf('t'), null, 'a new tenant is not held: its wallet closed after the create');
  const s = await a.acquire('t');
  await s.records.save('c', 'r', 1);
  assert.equal(await b.cluster!.ownerOf('t'), { instanceId: 'i0', address: 'http://127.0.0.1:3000' });
  assert.equal(await b.cluster!.route('t'), { instanceId: 'i0', address: 'http://127.0.0.1:3000' });
  const elsewhere = await rejectsWith(b.acquire('t'), 'ERR_TENANT_ELSEWHERE');
  assert.equal((elsewhere as { owner?: unknown }).owner, { instanceId: 'i0', address: 'http://127.0.0.1:3000' });
  assert.is((elsewhere as { retryable?: boolean }).retryable, true);
  assert.is(b.stats().weightInUse, 0, 'the refused acquire holds nothing');
  await s.release();
  // walletIdleTtlMs 0: the wallet closes at the last release, and its lease goes with it.
  for (let i = 0; (await b.cluster!.ownerOf('t')) !== null; i++) {
    assert.ok(i < 500, 'the lease is given up');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.is(await b.withSession('t', async (s2) => (await s2.records.get('c', 'r'))?.value), 1);
  const members = await a.cluster!.members();
  assert.equal(members.map((m) => m.instanceId), ['i0', 'i1']);
});

testWithPostgres('one schema, one mode: a pool without the cluster option refuses a schema with live cluster members, and a cluster instance refuses a schema a single pool owns (ERR_DATA_DIR_LOCKED); once the others are gone, each opens', async () => {
  await using group = await instances(2);
  const { pools, schema } = group;
  const single = { dataDir: tempDir(), rootKey: sharedKey, workers: 1, postgres: { connectionString: postgresUrl!, schema } };
  let owner: TenantPool | undefined;
  try {
    await pools[0]!.tenants.create({ tenantId: 't' });
    // A single pool (a migration, an admin script) would open wallets with no lease: it is refused, naming the live instances.
    const refused = await rejectsWith(TenantPool.open(single), 'ERR_DATA_DIR_LOCKED');
    assert.match(refused.message, /cluster instances \(i0, i1\)/);
    assert.equal((refused as { instances?: string[] }).instances, ['i0', 'i1']);
    for (const pool of pools) await pool.close();
    // The instances left: the single pool opens and owns the schema; a cluster instance is refused while it does.
    owner = await TenantPool.open(single);
    await owner.withSession('t', async (s) => s.records.save('c', 'r', 1));
    const joining = await rejectsWith(TenantPool.open({ ...single, dataDir: tempDir(), cluster: { instanceId: 'late' } }), 'ERR_DATA_DIR_LOCKED');
    assert.match(joining.message, /owned by a single pool/);
    const [row] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.members WHERE instance_id = 'late'`);
    assert.is(row!.n, 0, 'the refused instance left no member row');
    await owner.close();
    owner = await TenantPool.open({ ...single, dataDir: tempDir(), cluster: { instanceId: 'late' } });
    assert.is(await owner.withSession('t', async (s) => (await s.records.get('c', 'r'))?.value), 1);
  } finally {
    await owner?.close();
  }
});

testWithPostgres('a member that leaves by close() gives its tenants up at once: another instance takes them with no wait for expiry (a 60 s TTL)', async () => {
  await using group = await instances(2, { leaseTtlMs: 60_000, walletIdleTtlMs: 600_000 });
  const { pools } = group;
  const [a, b] = pools as [TenantPool, TenantPool];
  for (const id of ['t1', 't2', 't3']) {
    await a.tenants.create({ tenantId: id });
    // Released, the wallet stays open (cached) on a, and so does its lease.
    await (await a.acquire(id)).release();
  }
  for (const id of ['t1', 't2', 't3']) await rejectsWith(b.acquire(id), 'ERR_TENANT_ELSEWHERE');
  const started = performance.now();
  await a.close();
  for (const id of ['t1', 't2', 't3']) await b.withSession(id, async () => {});
  assert.ok(performance.now() - started < 5000, 'taken over without waiting for the 60 s leases to expire');
  assert.equal((await b.cluster!.members()).map((m) => m.instanceId), ['i1'], 'the member row went with it');
});

test('tenant-pool/router refuses bad options with ERR_INVALID_CONFIG before connecting, never echoing the URL', async () => {
  const url = 'postgres://user:s3cret@127.0.0.1:1/db';
  for (const options of [
    { connectionString: url, schema: 'x; DROP SCHEMA public' },
    { connectionString: url, leaseTtlMs: 2 ** 31 * 2 },
    { connectionString: url, leaseTtlMs: Number.NaN },
    { connectionString: url, leaseTtlMs: '5000' as unknown as number },
    { connectionString: url, maxConnections: 0 },
    { connectionString: '' },
  ]) {
    const error = await rejectsWith(createRouter(options), 'ERR_INVALID_CONFIG', JSON.stringify(options));
    assert.not.ok(String((error as Error).message).includes('s3cret'));
  }
});

testWithPostgres('members with different lease TTLs agree on who is live: each heartbeat counts for its own member\'s TTL', async () => {
  const schema = testSchema();
  const open = async (instanceId: string, leaseTtlMs: number): Promise<TenantPool> =>
    TenantPool.open({ dataDir: tempDir(), rootKey: sharedKey, workers: 1, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId, leaseTtlMs } });
  const slow = await open('slow', 60_000);
  const fast = await open('fast', 2000);
  try {
    // The slow member's last heartbeat 5 s ago: dead by the fast member's 2 s TTL, live by its own 60 s.
    await pgQuery(`UPDATE ${schema}.members SET heartbeat_at = now() - interval '5 seconds' WHERE instance_id = 'slow'`);
    assert.equal((await fast.cluster!.members()).map((m) => m.instanceId), ['fast', 'slow']);
    assert.equal((await slow.cluster!.members()).map((m) => m.instanceId), ['fast', 'slow']);
    await pgQuery(`UPDATE ${schema}.members SET heartbeat_at = now() - interval '61 seconds' WHERE instance_id = 'slow'`);
    assert.equal((await fast.cluster!.members()).map((m) => m.instanceId), ['fast'], 'past its own TTL, it is not live');
  } finally {
    await fast.close();
    await slow.close();
    await dropSchema(schema);
  }
});

testWithPostgres('an instance id is one life at a time: refused while its holder is live; a new life (the old one seen as dead) clears the old leases, and the old life\'s writes are fenced even under the same id', async () => {
  const schema = testSchema();
  const open = async (): Promise<TenantPool> =>
    TenantPool.open({ dataDir: tempDir(), rootKey: sharedKey, workers: 1, walletIdleTtlMs: 600_000, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'x', leaseTtlMs: 60_000 } });
  const first = await open();
  let second: TenantPool | undefined;
  try {
    await first.tenants.create({ tenantId: 't' });
    const s = await first.acquire('t');
    await s.records.save('c', 'r', 1);
    const refused = await rejectsWith(open(), 'ERR_INVALID_CONFIG', 'a live instance id');
    assert.match(refused.message, /instanceId x/);
    await s.records.save('c', 'r', 2);
    // As if the first had died (a heartbeat older than its TTL) while its process in fact still runs.
    await pgQuery(`UPDATE ${schema}.members SET heartbeat_at = now() - interval '2 minutes' WHERE instance_id = 'x'`);
    second = await open();
    assert.is(await second.withSession('t', async (s2) => (await s2.records.get('c', 'r'))?.value), 2, 'the new life took the tenant at once: the old life\'s lease was cleared');
    await rejectsWith(s.records.save('c', 'r', 3), 'ERR_LEASE_LOST', 'the old life is fenced by its epoch, though its owner id is the same');
    await s.release();
    // The old life closes: it gives up only what it held, not the new life's leases or member row.
    const held = await second.acquire('t');
    await first.close();
    await held.records.save('c', 'r', 4);
    await held.release();
    assert.is((await second.cluster!.ownerOf('t'))?.instanceId, 'x');
    assert.equal((await second.cluster!.members()).map((m) => m.instanceId), ['x']);
  } finally {
    await first.close();
    await second?.close();
    await dropSchema(schema);
  }
});

testWithPostgres('tenant-pool/router routes like the pools: the lease holder, or for a free tenant a live member by the bounded-load rule', async () => {
  await using group = await instances(2, { walletIdleTtlMs: 600_000 });
  const { pools, schema } = group;
  const [a, b] = pools as [TenantPool, TenantPool];
  const router = await createRouter({ connectionString: postgresUrl!, schema });
  try {
    await a.tenants.create({ tenantId: 'free' });
    const chosen = await router.route('free');
    assert.equal(chosen, await a.cluster!.route('free'), 'the same choice as the pools make');
    assert.ok(['i0', 'i1'].includes(chosen!.instanceId));
    const holder = chosen!.instanceId === 'i0' ? b : a;
    await (await holder.acquire('free')).release();
    assert.equal(await router.route('free'), { instanceId: holder.cluster!.instanceId, address: holder.cluster!.address }, 'the holder, once it holds the lease');
    await rejectsWith(router.route('../x'), 'ERR_INVALID_ARGUMENT');
  } finally {
    await router.close();
  }
});

testWithPostgres('the database connections of every instance terminated (pg_terminate_backend): the owner reconnects and keeps its lease, calls fail retryably at most, and no second instance ever holds the tenant', async () => {
  await using group = await instances(2, { leaseTtlMs: 1500, walletIdleTtlMs: 600_000 });
  const { pools, schema } = group;
  const [a, b] = pools as [TenantPool, TenantPool];
  await a.tenants.create({ tenantId: 't' });
  const s = await a.acquire('t');
  await s.records.save('c', 'r', 0);
  await pgQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`tenant-pool:${schema}`]);
  const started = performance.now();
  let saved = 0;
  // For twice the TTL: the owner's writes go on (a retryable failure at most), and the other instance is refused throughout.
  while (performance.now() - started < 3000) {
    await s.records.save('c', 'r', ++saved).catch((error: { code?: string; retryable?: boolean }) => assert.equal([error.code, error.retryable], ['ERR_STORAGE_UNAVAILABLE', true]));
    await rejectsWith(b.acquire('t', { timeoutMs: 5000 }), 'ERR_TENANT_ELSEWHERE', 'the lease is still a\'s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(!(s as Session).isEnded, 'the owner kept serving the tenant');
  assert.is((await s.records.get('c', 'r'))?.value, saved);
  await s.release();
});

testWithPostgres('membership under load: a third instance joins while sessions run; idle tenants whose route moved are handed off (no session revoked) and spread within 1.25 × the average; it leaves by close() and its tenants are served at once elsewhere; every increment counted once', async () => {
  await using group = await instances(2, { walletIdleTtlMs: 600_000, leaseTtlMs: 60_000 });
  const { pools, schema } = group;
  const ids = Array.from({ length: 30 }, (_, i) => `m${i}`);
  const byId = new Map<string, TenantPool>();
  const [a, b] = pools as [TenantPool, TenantPool];
  byId.set('i0', a).set('i1', b);
  const acknowledged = new Map<string, number>(ids.map((id) => [id, 0]));
  const failures: string[] = [];
  // Sessions of one tenant on one instance run side by side: the test makes each tenant's read-then-write of its counter one at a time, so only a second instance could lose an update.
  const queues = new Map<string, Promise<void>>();
  const serve = async (id: string): Promise<void> => {
    const turn = (queues.get(id) ?? Promise.resolve()).then(async () => increment(id));
    queues.set(id, turn);
    return turn;
  };
  /** One request, as a host behind a router serves it: to the route, forwarded on ERR_TENANT_ELSEWHERE; an increment of the tenant's counter. */
  const increment = async (id: string): Promise<void> => {
    let to = (await a.cluster!.route(id)).instanceId;
    for (let attempt = 0; ; attempt++) {
      const pool = byId.get(to);
      try {
        if (pool === undefined) throw Object.assign(new Error('gone'), { code: 'ERR_POOL_CLOSED' });
        await pool.withSession(id, async (s) => {
          const n = ((await s.records.get('c', 'n'))?.value as number | undefined) ?? 0;
          await s.records.save('c', 'n', n + 1);
        });
        acknowledged.set(id, acknowledged.get(id)! + 1);
        return;
      } catch (error) {
        const { code, owner } = error as { code?: string; owner?: { instanceId: string } };
        if (attempt > 50 || (code !== 'ERR_TENANT_ELSEWHERE' && code !== 'ERR_POOL_CLOSED')) {
          failures.push(`${id} on ${to}: ${code ?? (error as Error).message}`);
          return;
        }
        to = owner?.instanceId ?? (await a.cluster!.route(id)).instanceId;
      }
    }
  };
  let running = true;
  const load = async (): Promise<void> => {
    while (running) await serve(ids[Math.floor(Math.random() * ids.length)]!);
  };
  let c: TenantPool | undefined;
  let loaders: Array<Promise<void>> = [];
  try {
    for (const id of ids) await a.tenants.create({ tenantId: id });
    for (const id of ids) await serve(id);
    loaders = [load(), load(), load(), load()];
    // A session held through the join, the hand-offs and the leave is never revoked.
    const held = (await byId.get((await a.cluster!.ownerOf('m0'))!.instanceId)!.acquire('m0')) as Session;
    c = await TenantPool.open({ dataDir: tempDir(), rootKey: sharedKey, workers: 1, walletIdleTtlMs: 600_000, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'i2', leaseTtlMs: 60_000 } });
    byId.set('i2', c);
    let moved = 0;
    for (let round = 0; round < 12; round++) moved += (await a.cluster!.rebalance()) + (await b.cluster!.rebalance());
    assert.ok(moved > 0, 'some tenants were handed off to the new member');
    for (const id of ids) await serve(id);
    const leases = (await a.cluster!.members()).map((m) => m.leases);
    const bound = Math.ceil((1.25 * 30) / 3);
    assert.ok(leases.every((n) => n <= bound + 1) && leases[2]! > 0, `leases per member ${leases.join(', ')} within ${bound} (one more while a hand-off is under way)`);
    assert.ok(!held.isEnded, 'the held session was not revoked');
    await held.release();
    running = false;
    await Promise.all(loaders);
    // Settled, every tenant held once, each member within the bound.
    for (const id of ids) await serve(id);
    const settled = (await a.cluster!.members()).map((m) => m.leases);
    assert.ok(settled.every((n) => n <= bound), `leases per member ${settled.join(', ')} within ${bound}`);
    assert.is(settled.reduce((x, y) => x + y, 0), 30, 'every tenant held once');
    // The new member leaves (leases of 60 s): its tenants are served at once elsewhere, under load.
    const itsTenants = [];
    for (const id of ids) if ((await a.cluster!.ownerOf(id))?.instanceId === 'i2') itsTenants.push(id);
    running = true;
    loaders = [load(), load()];
    const leaving = performance.now();
    await c.close();
    byId.delete('i2');
    for (const id of itsTenants) await serve(id);
    assert.ok(performance.now() - leaving < 5000, 'served elsewhere without waiting for the 60 s leases to expire');
    running = false;
    await Promise.all(loaders);
    for (const id of itsTenants) assert.ok(['i0', 'i1'].includes((await a.cluster!.ownerOf(id))!.instanceId), `${id} moved`);
    assert.equal(failures, [], 'every request was served');
    // Exactly as many increments in each wallet as were acknowledged: none lost, none doubled across the moves.
    for (const id of ids) {
      const n = await byId.get((await a.cluster!.route(id)).instanceId)!.withSession(id, async (s) => (await s.records.get('c', 'n'))?.value);
      assert.is(n, acknowledged.get(id), `${id}: every acknowledged increment once`);
    }
  } finally {
    running = false;
    await Promise.allSettled(loaders);
    await c?.close();
  }
});

testWithPostgres('delete and rekey take the lease first: while another instance holds the tenant they fail ERR_TENANT_ELSEWHERE and change nothing; once it is free they go through', async () => {
  await using group = await instances(2, { walletIdleTtlMs: 600_000 });
  const { pools } = group;
  const [a, b] = pools as [TenantPool, TenantPool];
  await a.tenants.create({ tenantId: 't' });
  const s = await a.acquire('t');
  await s.records.save('c', 'r', 1);
  await rejectsWith(b.tenants.delete('t'), 'ERR_TENANT_ELSEWHERE', 'delete');
  await rejectsWith(b.tenants.rekey('t'), 'ERR_TENANT_ELSEWHERE', 'rekey');
  assert.is((await s.records.get('c', 'r'))?.value, 1, 'the holder goes on');
  await s.records.save('c', 'r', 2);
  await s.release();
  await a.closeIdleWallets();
  await b.tenants.rekey('t');
  assert.is(await b.withSession('t', async (s2) => (await s2.records.get('c', 'r'))?.value), 2, 'rekeyed, the records stay');
  await b.closeIdleWallets();
  await a.tenants.delete('t');
  await rejectsWith(b.acquire('t'), 'ERR_TENANT_NOT_FOUND');
  assert.is(await b.cluster!.ownerOf('t'), null, 'the lease went with the tenant');
});

testWithRestart('PostgreSQL restarted under a held tenant: the owner fences itself or keeps its lease, the tenant is served again after, and never by two instances', async () => {
  await using group = await instances(2, { leaseTtlMs: 2000, walletIdleTtlMs: 600_000 });
  const { pools, schema } = group;
  const [a, b] = pools as [TenantPool, TenantPool];
  await a.tenants.create({ tenantId: 't' });
  const s = (await a.acquire('t')) as Session;
  await s.records.save('c', 'r', 1);
  restartPostgres();
  // After the restart: whoever serves the tenant, only one instance does, and the write made before is there.
  let served: TenantPool | undefined;
  for (let i = 0; served === undefined; i++) {
    assert.ok(i < 400, 'the tenant is served again');
    for (const pool of [a, b]) {
      try {
        assert.is(await pool.withSession('t', async (s2) => (await s2.records.get('c', 'r'))?.value, { timeoutMs: 5000 }), 1);
        served = pool;
        break;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code !== 'ERR_TENANT_ELSEWHERE' && code !== 'ERR_STORAGE_UNAVAILABLE' && code !== 'ERR_LEASE_LOST') throw error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const other = served === a ? b : a;
  await rejectsWith(other.acquire('t', { timeoutMs: 5000 }), 'ERR_TENANT_ELSEWHERE', 'never two owners');
  const [row] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.leases WHERE tenant_id = 't' AND expires_at > now()`);
  assert.is(row!.n, 1);
  if (s.isEnded) await rejectsWith(s.records.get('c', 'r'), 'ERR_LEASE_LOST', 'a fenced session stays ended');
  await s.release();
});

testWithPostgres('the connection budget in cluster mode: under cold sessions, writes and pool.cluster calls at once, the server never sees more connections from an instance than stats() names', async () => {
  await using group = await instances(1);
  const { pools, schema } = group;
  const [a] = pools as [TenantPool];
  const connections = async (): Promise<number> =>
    (await pgQuery<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [`tenant-pool:${schema}`]))[0]!.n;
  const budget = (a.stats().store as { connectionBudget: number }).connectionBudget;
  assert.is(budget, 1 * 2 + 2 + 2, 'workers × connectionsPerWorker + registryConnections + 2 for the leases, and no owner\'s connection');
  const ids = Array.from({ length: 24 }, (_, i) => `b${i}`);
  for (const id of ids) await a.tenants.create({ tenantId: id });
  let most = 0;
  let isDone = false;
  const sampling = (async () => {
    while (!isDone) {
      most = Math.max(most, await connections());
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  // walletIdleTtlMs 0: every session takes a lease, reads the tenant, opens the wallet and gives both up.
  await Promise.all([
    ...Array.from({ length: 200 }, async (_, i) => a.withSession(ids[i % ids.length]!, async (s) => s.records.save('c', `r${i}`, i), { timeoutMs: 60_000 })),
    ...Array.from({ length: 50 }, async (_, i) => Promise.all([a.cluster!.route(ids[i % ids.length]!), a.cluster!.members()])),
  ]);
  isDone = true;
  await sampling;
  assert.ok(most >= 4, `the instance used its connections (${most})`);
  assert.ok(most <= budget, `at most the budget of ${budget}: saw ${most}`);
});

testWithPostgres('fencing tokens only rise: a lease given up (its row deleted) and taken again, by the same instance or another, gets a higher epoch than any before; each take, release and loss is an event', async () => {
  await using group = await instances(2);
  const { pools, schema } = group;
  const [a, b] = pools as [TenantPool, TenantPool];
  const seen: Array<[string, string, Record<string, unknown>]> = [];
  const registry = new Registry();
  const metrics = collectMetrics(a, registry);
  for (const [name, pool] of [['a', a], ['b', b]] as const) {
    pool[kEvents].on((event, payload) => {
      if (event.startsWith('tenant-pool:lease:')) seen.push([name, event.slice('tenant-pool:lease:'.length), payload]);
    });
  }
  try {
    await a.tenants.create({ tenantId: 't' });
    // walletIdleTtlMs 0: each session's end closes the wallet and gives the lease up.
    for (const pool of [a, a, b, a, b]) {
      await pool.withSession('t', async (s) => s.records.save('c', 'r', 1));
      const count = (kind: string): number => seen.filter(([, k]) => k === kind).length;
      await eventually(() => count('release') === count('take'), 'the lease is given up after the wallet closed');
      // The release event comes as the delete is sent; the next take waits for the row to go.
      for (let i = 0; (await a.cluster!.ownerOf('t')) !== null; i++) assert.ok(i < 500, 'the lease row went');
    }
    const takes = seen.filter(([, kind]) => kind === 'take');
    assert.equal(takes.map(([who]) => who), ['a', 'a', 'b', 'a', 'b']);
    const epochs = takes.map(([, , p]) => p.epoch as number);
    assert.ok(epochs.every((e, i) => i === 0 || e > epochs[i - 1]!), `epochs rise: ${epochs.join(', ')}`);
    assert.equal(seen.filter(([, kind]) => kind === 'release').map(([who, , p]) => [who, p.epoch]), takes.map(([who, , p]) => [who, p.epoch]), 'each lease given up, under its own epoch');
    assert.equal(Object.keys(takes[0]![2]).sort(), ['epoch', 'takeMs', 'tenantId']);
    // A lease found taken at a write: lost, reason `fenced`.
    const s = await a.acquire('t');
    await pgQuery(`UPDATE ${schema}.leases SET owner = 'elsewhere', epoch = nextval('${schema}.lease_epochs') WHERE tenant_id = 't'`);
    await rejectsWith(s.records.save('c', 'r', 2), 'ERR_LEASE_LOST');
    await s.release();
    const lost = seen.filter(([, kind]) => kind === 'lost');
    assert.is(lost.length, 1);
    assert.equal([lost[0]![0], lost[0]![2].reason, Object.keys(lost[0]![2]).sort()], ['a', 'fenced', ['epoch', 'heldMs', 'reason', 'tenantId']]);
    const text = await registry.metrics();
    assert.match(text, new RegExp(`^tenant_pool_lease_takes_total ${takes.filter(([who]) => who === 'a').length + 1}$`, 'm'));
    assert.match(text, /^tenant_pool_lease_losses_total\{reason="fenced"\} 1$/m);
  } finally {
    metrics.close();
  }
});

testWithPostgres('fencing is in the database: after another instance took the lease (a higher epoch), the old owner\'s writes change nothing and fail ERR_LEASE_LOST, and its sessions are revoked', async () => {
  await using group = await instances(1, { leaseTtlMs: 60_000 });
  const { pools, schema } = group;
  const [a] = pools as [TenantPool];
  await a.tenants.create({ tenantId: 't' });
  const s = await a.acquire('t');
  await s.records.save('c', 'before', 1);
  // What a takeover by another live instance writes (as if this one had stalled past its lease).
  await pgQuery(`INSERT INTO ${schema}.members (instance_id, address, heartbeat_at, lease_ttl_ms, life, format) VALUES ('elsewhere', NULL, now(), 60000, 'e', 3)`);
  await pgQuery(`UPDATE ${schema}.leases SET owner = 'elsewhere', life = 'e', epoch = epoch + 1 WHERE tenant_id = 't'`);
  const lost = await rejectsWith(s.records.save('c', 'after', 2), 'ERR_LEASE_LOST');
  assert.is((lost as { tenantId?: string }).tenantId, 't');
  await rejectsWith(s.records.delete('c', 'before'), 'ERR_LEASE_LOST', 'the session is revoked');
  await rejectsWith(s.keys.create(), 'ERR_LEASE_LOST');
  const [row] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.items`);
  assert.is(row!.n, 1, 'nothing the stale owner sent was written');
  await s.release();
  for (let i = 0; a.stats().wallets.open + a.stats().wallets.idle > 0; i++) {
    assert.ok(i < 500, 'the wallet is closed');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.is(a.stats().weightInUse, 0, 'nothing leaked');
  await rejectsWith(a.acquire('t'), 'ERR_TENANT_ELSEWHERE', 'the lease is the other instance\'s now');
});

/** One instance holding t with a session (after `setup`); `lose` takes its lease's ground away: the session must be revoked within the TTL. */
async function revokedWithinTtl(setup: (schema: string) => Promise<void>, lose: (schema: string) => Promise<void>): Promise<void> {
  await using group = await instances(1, { leaseTtlMs: 1500 });
  const { pools, schema } = group;
  const [a] = pools as [TenantPool];
  await setup(schema);
  await a.tenants.create({ tenantId: 't' });
  const s = await a.acquire('t');
  await s.records.save('c', 'r', 1);
  await lose(schema);
  const started = performance.now();
  for (let i = 0; !(s as Session).isEnded; i++) {
    assert.ok(performance.now() - started < 1500, 'revoked within the lease TTL');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await rejectsWith(s.records.get('c', 'r'), 'ERR_LEASE_LOST');
  await s.release();
}

testWithPostgres('self-fencing: an instance whose membership cannot be renewed (its member row lost) stops serving its tenants before their leases could be taken', async () => {
  await revokedWithinTtl(
    async () => {},
    // Its renewals now find no member row of its life (as if the database had lost it): every lease is lost at the next renewal.
    async (schema) => void (await pgQuery(`UPDATE ${schema}.members SET life = 'lost' WHERE instance_id = 'i0'`)),
  );
});

testWithPostgres('self-fencing while an older release is live (leases renewed one by one): a lease its renewal no longer finds is lost at that renewal', async () => {
  await revokedWithinTtl(
    // A live member of release 0.2.0 (schema format 2): it takes a lease by its expiry alone.
    async (schema) => void (await pgQuery(`INSERT INTO ${schema}.members (instance_id, address, heartbeat_at, lease_ttl_ms, life, format) VALUES ('old', NULL, now() + interval '1 hour', 1500, 'o', 2)`)),
    // Its renewals now find no row of theirs (as if the database had lost them): the lease is lost at the next renewal.
    async (schema) => void (await pgQuery(`UPDATE ${schema}.leases SET epoch = epoch + 1 WHERE tenant_id = 't'`)),
  );
});

testWithPostgres('an event loop held up past the lease: the session\'s next call, even a read of a cached record, fails ERR_LEASE_LOST before any timer runs, and the session is revoked', async () => {
  await using group = await instances(1, { leaseTtlMs: 1000 });
  const { pools } = group;
  const [a] = pools as [TenantPool];
  await a.tenants.create({ tenantId: 't' });
  const s = (await a.acquire('t')) as Session;
  await s.records.save('c', 'r', 1);
  assert.is((await s.records.get('c', 'r'))?.value, 1);
  // The main thread stalls (a long synchronous task, a VM pause) past the lease's validity: no renewal, no fence timer runs.
  const until = performance.now() + 1000;
  while (performance.now() < until);
  await rejectsWith(s.records.get('c', 'r'), 'ERR_LEASE_LOST', 'a read after the lease ran out');
  assert.ok(s.isEnded, 'the session is revoked');
  await s.release();
});

testWithPostgres('self-fencing on the monotonic clock: renewals that hang (the members table locked) end the instance\'s sessions before its lease could be taken on the server', async () => {
  await using group = await instances(1, { leaseTtlMs: 2000 });
  const { pools, schema } = group;
  const [a] = pools as [TenantPool];
  const pg = (await import('pg')).default;
  const admin = new pg.Client(postgresUrl);
  await admin.connect();
  try {
    await a.tenants.create({ tenantId: 't' });
    const s = (await a.acquire('t')) as Session;
    await s.records.save('c', 'r', 1);
    await admin.query('BEGIN');
    await admin.query(`LOCK TABLE ${schema}.members IN ACCESS EXCLUSIVE MODE`);
    const started = performance.now();
    for (let i = 0; !s.isEnded; i++) {
      assert.ok(performance.now() - started < 2000, 'revoked before the TTL ran out');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // The lease still holds on the server (its owner's heartbeat within the TTL): no other instance could have taken the tenant before this one stopped.
    const [row] = (
      await admin.query<{ live: boolean }>(
        `SELECT l.expires_at > now() AND m.heartbeat_at >= now() - m.lease_ttl_ms * interval '1 millisecond' AS live FROM ${schema}.leases l JOIN ${schema}.members m ON m.instance_id = l.owner AND m.life = l.life WHERE l.tenant_id = 't'`,
      )
    ).rows;
    assert.is(row?.live, true, 'stopped while the lease was still live on the server');
    await admin.query('ROLLBACK');
    await rejectsWith(s.records.get('c', 'r'), 'ERR_LEASE_LOST');
    await s.release();
  } finally {
    await admin.query('ROLLBACK').catch(() => {});
    await admin.end();
  }
});

/** Acknowledged increments a child reported. */
const increments = (child: Child): number[] => child.lines.filter((l) => l.startsWith('inc ')).map((l) => Number(l.slice(4)));

async function counterValue(schema: string, rootKey: string): Promise<number> {
  await using reader = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, walletIdleTtlMs: 0, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: `reader-${randomBytes(3).toString('hex')}` } });
  for (;;) {
    try {
      return await reader.withSession('counter', async (s) => ((await s.records.get('c', 'counter'))?.value as number | undefined) ?? 0);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_TENANT_ELSEWHERE') throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function clusterSchema(): Promise<{ schema: string; rootKey: string }> {
  const schema = testSchema();
  const rootKey = randomBytes(32).toString('hex');
  const setup = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'setup' } });
  await setup.tenants.create({ tenantId: 'counter' });
  await setup.close();
  return { schema, rootKey };
}

/** The leases a child held, as it reported them: from the take to the release (or loss), on the system-wide monotonic clock. */
function leaseSpans(child: Child, instance: string): Array<{ instance: string; epoch: number; from: bigint; to: bigint; end: string }> {
  const spans: Array<{ instance: string; epoch: number; from: bigint; to: bigint; end: string }> = [];
  let open: { epoch: number; from: bigint } | undefined;
  for (const line of child.lines.filter((l) => l.startsWith('lease '))) {
    const [, kind, at, epoch, end] = line.split(' ') as [string, string, string, string, string | undefined];
    if (kind === 'take') {
      assert.is(open, undefined, `${instance} took a lease it held`);
      open = { epoch: Number(epoch), from: BigInt(at) };
    } else {
      assert.is(open?.epoch, Number(epoch), `${instance} gave up the lease it took`);
      spans.push({ instance, epoch: Number(epoch), from: open!.from, to: BigInt(at), end: end! });
      open = undefined;
    }
  }
  assert.is(open, undefined, `${instance} gave its lease up before it exited`);
  return spans;
}

testWithPostgres('exclusivity: one tenant incremented 1,000 times through 3 instances at once (processes), retrying while another holds it: the count is exact, every value was written once, and at no moment did two instances hold the lease', async () => {
  const { schema, rootKey } = await clusterSchema();
  const children = [0, 1, 2].map((i) => startChild('cluster-instance.ts', [schema, rootKey, `x${i}`, i === 0 ? '334' : '333', '5000']));
  // The leases table as the server shows it meanwhile: one row, whose epoch only goes up, each epoch one owner's.
  const seen = new Map<number, string>();
  let lastEpoch = 0;
  let sampling = true;
  const pg = (await import('pg')).default;
  const observer = new pg.Client(postgresUrl);
  await observer.connect();
  const sampler = (async () => {
    while (sampling) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      for (const row of (await observer.query<{ owner: string; epoch: string }>(`SELECT owner, epoch FROM ${schema}.leases WHERE tenant_id = 'counter'`)).rows) {
        const epoch = Number(row.epoch);
        assert.ok(epoch >= lastEpoch, `the epoch never goes down (${lastEpoch} then ${epoch})`);
        assert.is(seen.get(epoch) ?? row.owner, row.owner, `epoch ${epoch} has one owner`);
        seen.set(epoch, row.owner);
        lastEpoch = epoch;
      }
    }
  })();
  try {
    const results = await Promise.all(children.map(async (c) => c.exited));
    sampling = false;
    await sampler;
    for (const r of results) assert.is(r.code, 0, r.stderr);
    const acknowledged = children.flatMap(increments);
    assert.is(acknowledged.length, 1000);
    assert.equal([...acknowledged].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i + 1), 'each value written once');
    assert.ok(children.every((c) => increments(c).length > 0), 'every instance served the tenant');
    assert.is(await counterValue(schema, rootKey), 1000);
    // Every lease each instance held, in the order they began: each one ended before the next began, under a higher epoch.
    const spans = children.flatMap((c, i) => leaseSpans(c, `x${i}`)).sort((a, b) => (a.from < b.from ? -1 : 1));
    assert.ok(spans.length >= 3 && new Set(spans.map((s) => s.instance)).size === 3, `every instance held the lease (${spans.length} leases)`);
    for (let i = 1; i < spans.length; i++) {
      const [before, after] = [spans[i - 1]!, spans[i]!];
      assert.ok(before.to < after.from, `${before.instance} (epoch ${before.epoch}) still held the lease when ${after.instance} took it (epoch ${after.epoch})`);
      assert.ok(after.epoch > before.epoch, `epochs rise with each holder: ${before.epoch} then ${after.epoch}`);
    }
    assert.ok(spans.every((s) => s.end === 'release'), `no lease was lost: ${spans.filter((s) => s.end !== 'release').map((s) => s.end).join(', ')}`);
    assert.ok(seen.size > 1, `the sampler saw the lease change hands (${seen.size} epochs)`);
  } finally {
    sampling = false;
    await sampler.catch(() => {});
    await observer.end();
    for (const c of children) c.kill('SIGKILL');
    await dropSchema(schema);
  }
});

testWithPostgres('SIGKILL of the owner mid-write: another instance serves the tenant within the lease TTL and a margin, and every acknowledged increment is there', async () => {
  const { schema, rootKey } = await clusterSchema();
  const ttl = 2000;
  const owner = startChild('cluster-instance.ts', [schema, rootKey, 'owner', 'hold', String(ttl)]);
  try {
    await owner.waitFor((lines) => lines.filter((l) => l.startsWith('inc ')).length >= 50);
    owner.kill('SIGKILL');
    const killedAt = performance.now();
    await owner.exited;
    const acknowledged = increments(owner);
    await using pool = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'heir', leaseTtlMs: ttl } });
    let value: number | undefined;
    while (value === undefined) {
      try {
        value = await pool.withSession('counter', async (s) => (await s.records.get('c', 'counter'))?.value as number);
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_TENANT_ELSEWHERE') throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    const tookMs = performance.now() - killedAt;
    assert.ok(tookMs <= ttl + 1000, `served elsewhere ${Math.round(tookMs)} ms after the kill (TTL ${ttl} ms)`);
    // A save resolves after its commit: the last acknowledged value is there (one more may have committed unacknowledged).
    assert.ok(value >= Math.max(...acknowledged) && value <= Math.max(...acknowledged) + 1, `counter ${value}, last acknowledged ${Math.max(...acknowledged)}`);
  } finally {
    owner.kill('SIGKILL');
    await dropSchema(schema);
  }
});

testWithPostgres('SIGSTOP of the owner past its lease: another instance takes over; after SIGCONT the old owner\'s writes all fail and none is visible; nothing acknowledged is lost', async () => {
  const { schema, rootKey } = await clusterSchema();
  const ttl = 2000;
  const owner = startChild('cluster-instance.ts', [schema, rootKey, 'sleeper', 'hold', String(ttl)]);
  const pool = await TenantPool.open({ dataDir: tempDir(), rootKey, workers: 1, walletIdleTtlMs: 600_000, postgres: { connectionString: postgresUrl!, schema }, cluster: { instanceId: 'heir', leaseTtlMs: ttl } });
  try {
    await owner.waitFor((lines) => lines.filter((l) => l.startsWith('inc ')).length >= 30);
    owner.kill('SIGSTOP');
    const stoppedAt = performance.now();
    const acknowledgedBefore = Math.max(...increments(owner));
    // The heir takes the tenant once the lease expired (a transaction the sleeper left open is ended by the server).
    let session: Awaited<ReturnType<TenantPool['acquire']>> | undefined;
    while (session === undefined) {
      try {
        session = await pool.acquire('counter', { timeoutMs: 30_000 });
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_TENANT_ELSEWHERE') throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    const tookMs = performance.now() - stoppedAt;
    const atTakeover = (await session.records.get('c', 'counter'))?.value as number;
    assert.ok(atTakeover >= acknowledgedBefore, `nothing acknowledged is lost: ${atTakeover} >= ${acknowledgedBefore}`);
    for (let i = 1; i <= 20; i++) await session.records.save('c', 'counter', atTakeover + i);
    // The sleeper wakes up, holding what it thinks is its lease.
    const linesBefore = owner.lines.length;
    owner.kill('SIGCONT');
    // Twenty attempts of the old owner after it woke, every one refused.
    await owner.waitFor((lines) => lines.slice(linesBefore).filter((l) => l === 'retry ERR_LEASE_LOST' || l === 'retry ERR_TENANT_ELSEWHERE').length >= 20);
    const afterWake = owner.lines.slice(linesBefore).filter((l) => l.startsWith('inc ')).map((l) => Number(l.slice(4)));
    assert.ok(afterWake.every((v) => v <= atTakeover), `no write of the old owner after the takeover was acknowledged: ${afterWake.join(', ')} (takeover at ${atTakeover})`);
    assert.is((await session.records.get('c', 'counter'))?.value, atTakeover + 20, 'none of its writes is visible');
    // Its heartbeat had lapsed: it did not come back by renewing, it joined again (a live member once more, holding nothing it held before).
    for (let i = 0; !(await pool.cluster.members()).some((m) => m.instanceId === 'sleeper'); i++) {
      assert.ok(i < 400, 'the sleeper joins the cluster again');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.equal(await pool.cluster.ownerOf('counter'), { instanceId: 'heir', address: null }, 'the tenant stays with the heir');
    await session.release();
    assert.ok(tookMs < ttl + 5000 + 1000, `taken over ${Math.round(tookMs)} ms after the stop`);
  } finally {
    owner.kill('SIGCONT');
    owner.kill('SIGKILL');
    await pool.close();
    await dropSchema(schema);
  }
});

testWithPostgres('the example: two instances on loopback behind a forwarding proxy count every visit once', async () => {
  const run = spawnSync(process.execPath, [...process.execArgv, join(import.meta.dirname, '..', 'examples', 'cluster.ts')], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, TENANT_POOL_POSTGRES_URL: postgresUrl! },
  });
  assert.is(run.status, 0, run.stderr);
  const answers = run.stdout.trim().split('\n').map((line) => JSON.parse(line.slice(4)) as { tenantId: string; visits: number; servedBy: string });
  assert.is(answers.length, 12);
  assert.ok(run.stdout.split('\n').filter(Boolean).every((line) => line.startsWith('200 ')));
  for (const tenantId of ['acme', 'globex', 'initech', 'umbrella']) assert.equal(answers.filter((a) => a.tenantId === tenantId).map((a) => a.visits), [1, 2, 3], tenantId);
});

test.run();
