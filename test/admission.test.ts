import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rankWorkers } from '../src/engine/placement.js';
import type { TenantSession } from '../src/session.js';
import { disposePool, eventually, openPool, rejectsWith, until, usePool } from './helpers.js';

async function createTenants(pool: Awaited<ReturnType<typeof openPool>>, count: number, prefix = 't'): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await pool.tenants.create({ tenantId: `${prefix}${i}` })).tenantId);
  return ids;
}

test('20 tenants × 5 concurrent sessions: one open per tenant, weight 20 × (4 + 5), all calls on each tenant’s worker', async () => {
  await using pool = await usePool({ capacity: 1000, walletIdleTtlMs: 60_000 });
  const ids = await createTenants(pool, 20);
  const sessions = await Promise.all(ids.flatMap((id) => Array.from({ length: 5 }, async () => pool.acquire(id))));
  const st = pool.stats();
  assert.is(st.sessions, 100);
  assert.is(st.weightInUse, 20 * (4 + 5));
  assert.is(st.totals.walletOpens, 20);
  assert.is(st.wallets.open, 20);
  await Promise.all(sessions.map(async (s, i) => s.records.save('c', `r${i}`, i)));
  await Promise.all(sessions.map(async (s) => s.release()));
  assert.is(pool.stats().weightInUse, 20 * 4, 'the 20 wallets stay cached');
  const counts = await Promise.all(ids.map(async (id) => pool.withSession(id, async (s) => (await s.records.find('c')).length)));
  assert.equal(counts, ids.map(() => 5));
  assert.is(pool.stats().totals.walletOpens, 20, 'cache hits: no second open within the TTL');
});

test('1 tenant × 10,000 concurrent sessions: one wallet open, weight 4 + 10,000', async () => {
  await using pool = await usePool({ capacity: 10_004, walletIdleTtlMs: 0, acquireTimeoutMs: 60_000 });
  const [id] = await createTenants(pool, 1);
  const sessions = await Promise.all(Array.from({ length: 10_000 }, async () => pool.acquire(id!)));
  const st = pool.stats();
  assert.is(st.sessions, 10_000);
  assert.is(st.weightInUse, 4 + 10_000);
  assert.is(st.totals.walletOpens, 1);
  assert.is(st.totals.keyDerivations, 2, 'one at create, one open');
  // One more would exceed the capacity: it waits, and times out holding nothing.
  await rejectsWith(pool.acquire(id!, { timeoutMs: 0 }), 'ERR_ACQUIRE_TIMEOUT');
  await Promise.all(sessions.map(async (s) => s.release()));
  await eventually(() => pool.stats().weightInUse === 0, 'the wallet closes at the last release');
  assert.is(pool.stats().totals.walletCloses, 1);
});

test('100 tenants × 10 concurrent sessions', async () => {
  await using pool = await usePool({ capacity: 100 * 14, walletIdleTtlMs: 60_000, acquireTimeoutMs: 60_000 });
  const ids = await createTenants(pool, 100);
  const sessions = await Promise.all(ids.flatMap((id) => Array.from({ length: 10 }, async () => pool.acquire(id))));
  const st = pool.stats();
  assert.is(st.sessions, 1000);
  assert.is(st.weightInUse, 1400);
  assert.is(st.totals.walletOpens, 100);
  assert.equal(st.workers.map((w) => w.sessions).reduce((a, b) => a + b), 1000);
  const tenants = st.workers.map((w) => w.tenants);
  assert.ok(Math.max(...tenants) - Math.min(...tenants) <= 1, `raw tenants spread evenly across workers: ${tenants.join(', ')}`);
  await Promise.all(sessions.map(async (s) => s.release()));
  assert.is(pool.stats().weightInUse, 400);
  // Closed, then opened again at once: the opens spread them evenly too.
  await pool.closeIdleWallets();
  const again = await Promise.all(ids.map(async (id) => pool.acquire(id)));
  const reopened = pool.stats().workers.map((w) => w.tenants);
  assert.ok(Math.max(...reopened) - Math.min(...reopened) <= 1, `reopened evenly: ${reopened.join(', ')}`);
  await Promise.all(again.map(async (s) => s.release()));
});

/** 20 × capacity of acquires at once with timeouts of 5–24 ms; returns how many were granted. */
async function contend(pool: Awaited<ReturnType<typeof openPool>>, ids: string[], count: number): Promise<{ granted: number; timedOut: number }> {
  let granted = 0;
  let timedOut = 0;
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      try {
        const session = await pool.acquire(ids[i % ids.length]!, { timeoutMs: 5 + (i % 20) });
        granted++;
        await session.records.get('c', 'x');
        await session.release();
      } catch (error) {
        assert.is((error as { code?: string }).code, 'ERR_ACQUIRE_TIMEOUT');
        timedOut++;
      }
    }),
  );
  assert.is(granted + timedOut, count, 'every acquire settled');
  const st = pool.stats();
  assert.is(st.queued, 0);
  assert.is(st.sessions, 0);
  assert.is(st.totals.timedOut, timedOut);
  return { granted, timedOut };
}

test('20× capacity of contending acquires on cold wallets with short timeouts all settle, leak nothing, and full capacity is usable right after', async () => {
  const capacity = 50;
  await using pool = await usePool({ capacity, walletIdleTtlMs: 0, maxQueue: 100_000 });
  const ids = await createTenants(pool, 10);
  await contend(pool, ids, capacity * 20);
  await eventually(() => pool.stats().weightInUse === 0 && pool.stats().wallets.idle === 0, 'no weight left once idle wallets close');
  // The whole capacity is usable: 10 tenants × (4 + 1) = 50, all admitted at once, none queued.
  const opening = ids.map(async (id) => pool.acquire(id, { timeoutMs: 30_000 }));
  assert.is(pool.stats().queued, 0);
  assert.is(pool.stats().weightInUse, capacity);
  const all = await Promise.all(opening);
  await Promise.all(all.map(async (s) => s.release()));
});

test('20× capacity of contending acquires on warm wallets: the free capacity is granted at once, the rest time out, nothing leaks', async () => {
  const capacity = 50;
  await using pool = await usePool({ capacity, walletIdleTtlMs: 600_000, maxQueue: 100_000 });
  const ids = await createTenants(pool, 10);
  for (const id of ids) await pool.withSession(id, () => undefined);
  assert.is(pool.stats().weightInUse, 40, 'ten cached wallets');
  const { granted } = await contend(pool, ids, capacity * 20);
  // The first ten fit at once (10 free units); their sessions come before any timer can fire.
  assert.ok(granted >= 10, `granted ${granted}`);
  // Waiting heads may have evicted idle wallets on the way (4 units freed for a 1-unit session): only wallets hold weight now.
  await eventually(() => pool.stats().wallets.opening === 0 && pool.stats().totals.walletCloses === pool.stats().totals.evictions, 'evictions finished');
  const st = pool.stats();
  assert.is(st.weightInUse, 4 * st.wallets.idle, 'no session weight is left');
  const opening = ids.map(async (id) => pool.acquire(id, { timeoutMs: 30_000 }));
  assert.is(pool.stats().queued, 0);
  assert.is(pool.stats().weightInUse, capacity);
  await Promise.all((await Promise.all(opening)).map(async (s) => s.release()));
});

test('abort while queued: rejects with the reason at once, leaves the queue, holds nothing', async () => {
  await using pool = await usePool({ capacity: 5, walletIdleTtlMs: 60_000 });
  const [a, b] = await createTenants(pool, 2);
  const held = await pool.acquire(a!);
  const controller = new AbortController();
  const waiting = pool.acquire(b!, { signal: controller.signal, timeoutMs: 60_000 });
  assert.is(pool.stats().queued, 1);
  const reason = new Error('caller went away');
  controller.abort(reason);
  try {
    await waiting;
    assert.unreachable('should reject');
  } catch (error) {
    assert.is(error, reason);
  }
  assert.is(pool.stats().queued, 0);
  assert.is(pool.stats().weightInUse, 5);
  await held.release();
  // Nothing phantom: b is admitted at once now that a's weight is back (a's idle wallet is evicted).
  await pool.withSession(b!, () => undefined, { timeoutMs: 5_000 });
});

test('tenant limits: queued waiters wait for their own tenant and do not delay others; reject mode refuses', async () => {
  const pool = await openPool({ capacity: 100, maxSessionsPerTenant: 2 });
  try {
    const [a, b] = await createTenants(pool, 2);
    const a1 = await pool.acquire(a!);
    const a2 = await pool.acquire(a!);
    const a3 = pool.acquire(a!, { timeoutMs: 60_000 });
    assert.is(pool.stats().queued, 1);
    // b is admitted at once although a's waiter arrived first.
    const b1Opening = pool.acquire(b!, { timeoutMs: 30_000 });
    assert.is(pool.stats().queued, 1, 'only a’s waiter is queued');
    const b1 = await b1Opening;
    await a1.release();
    const s3 = await a3;
    assert.is(pool.stats().sessions, 3);
    await pool.tenants.update(b!, { maxSessions: 1 });
    await rejectsWith(pool.acquire(b!, { timeoutMs: 0 }), 'ERR_ACQUIRE_TIMEOUT', 'b’s own limit of 1');
    for (const s of [a2, s3, b1]) await s.release();
  } finally {
    await disposePool(pool);
  }
  await using strict = await usePool({ maxSessionsPerTenant: 1, tenantLimit: 'reject' });
  const [a] = await createTenants(strict, 1);
  const held = await strict.acquire(a!);
  await rejectsWith(strict.acquire(a!), 'ERR_TENANT_LIMIT');
  await held.release();
  await strict.withSession(a!, () => undefined);
});

test('maxQueue: acquires beyond it are refused at once with ERR_QUEUE_FULL', async () => {
  await using pool = await usePool({ capacity: 5, maxQueue: 2 });
  const ids = await createTenants(pool, 4);
  const held = await pool.acquire(ids[0]!);
  const queued = [pool.acquire(ids[1]!, { timeoutMs: 60_000 }), pool.acquire(ids[2]!, { timeoutMs: 60_000 })];
  await rejectsWith(pool.acquire(ids[3]!), 'ERR_QUEUE_FULL');
  await held.release();
  for (const p of queued) await (await p).release();
});

test('eviction: a waiter that does not fit closes the least used idle wallet, and only that one', async () => {
  await using pool = await usePool({ capacity: 12, walletIdleTtlMs: Infinity });
  const [a, b, c] = await createTenants(pool, 3);
  await pool.closeIdleWallets();
  const opens = pool.stats().totals.walletOpens;
  await pool.withSession(a!, () => undefined);
  await pool.withSession(b!, () => undefined);
  assert.is(pool.stats().weightInUse, 8);
  await pool.withSession(a!, () => undefined); // a is now more recently used than b
  const session = await pool.acquire(c!, { timeoutMs: 5_000 });
  const st = pool.stats();
  assert.is(st.totals.evictions, 1);
  assert.is(st.weightInUse, 4 + 5);
  assert.is(st.totals.walletOpens - opens, 3);
  await session.release();
  await pool.withSession(a!, () => undefined);
  assert.is(pool.stats().totals.walletOpens - opens, 3, 'a was kept: b was used less, and less recently');
});

test('idle TTL: a wallet closes once idle for walletIdleTtlMs, and its weight returns', async () => {
  await using pool = await usePool({ walletIdleTtlMs: 20 });
  const [a] = await createTenants(pool, 1);
  await pool.withSession(a!, () => undefined);
  assert.is(pool.stats().wallets.idle, 1);
  await eventually(() => pool.stats().totals.walletCloses === 1, 'the idle wallet closes');
  assert.is(pool.stats().weightInUse, 0);
});

test('per-tenant weights override the pool’s, from the tenant’s next wallet open', async () => {
  await using pool = await usePool({ capacity: 100, walletIdleTtlMs: 0 });
  const heavy = await pool.tenants.create({ weights: { wallet: 20, session: 3 } });
  const s1 = await pool.acquire(heavy.tenantId);
  assert.is(pool.stats().weightInUse, 23);
  await pool.tenants.update(heavy.tenantId, { weights: { wallet: 10, session: 2 } });
  const s2 = await pool.acquire(heavy.tenantId);
  assert.is(pool.stats().weightInUse, 23 + 2, 'the session weight is read per session; the open wallet keeps its weight');
  await s1.release();
  await s2.release();
  await eventually(() => pool.stats().weightInUse === 0, 'closed');
  await pool.withSession(heavy.tenantId, () => assert.is(pool.stats().weightInUse, 12));
  await rejectsWith(pool.tenants.create({ weights: { wallet: 100 } }), 'ERR_INVALID_ARGUMENT', 'heavier than the pool');
});

test('sticky placement: a tenant reopens on the worker of its rendezvous ranking while loads are even', async () => {
  await using pool = await usePool({ workers: 2, walletIdleTtlMs: 0 });
  const [a] = await createTenants(pool, 1);
  const expected = rankWorkers(a!, 2)[0];
  for (let i = 0; i < 3; i++) {
    await pool.withSession(a!, () => {
      assert.equal(pool.stats().workers.map((w) => w.sessions), expected === 0 ? [1, 0] : [0, 1]);
    });
    await eventually(() => pool.stats().wallets.idle === 0, 'closed again');
  }
});

test('leak warning: a session held past leakWarningMs warns once, with the stack of its acquire', async () => {
  await using pool = await usePool({ leakWarningMs: 10 });
  const messages: unknown[] = [];
  const onLeak = (m: unknown): void => void messages.push(m);
  subscribe('tenant-pool:session:leak', onLeak);
  try {
    const [a] = await createTenants(pool, 1);
    const warned = once(process, 'warning') as Promise<[Error & { code?: string; detail?: string }]>;
    const session: TenantSession = await pool.acquire(a!);
    const [warning] = await warned;
    assert.is(warning.code, 'TENANT_POOL_SESSION_LEAK');
    assert.match(warning.detail ?? '', 'admission.test.ts');
    assert.is(messages.length, 1);
    assert.is((messages[0] as { tenantId: string }).tenantId, a);
    // A later session is warned about in its turn; the first is not warned about again.
    const later = await pool.acquire(a!);
    await eventually(() => messages.length === 2, 'the second session is warned about');
    const third = await pool.acquire(a!);
    await eventually(() => messages.length === 3, 'the third session is warned about');
    assert.is(new Set(messages).size, 3);
    await session.records.save('c', 'still', 'usable');
    for (const s of [session, later, third]) await s.release();
  } finally {
    unsubscribe('tenant-pool:session:leak', onLeak);
  }
});

test('revocation: a session held past maxSessionMs is revoked, its weight freed, its calls rejected', async () => {
  await using pool = await usePool({ maxSessionMs: 10, walletIdleTtlMs: 60_000 });
  const revoked: unknown[] = [];
  const onRevoke = (m: unknown): void => void revoked.push(m);
  subscribe('tenant-pool:session:revoke', onRevoke);
  try {
    const [a] = await createTenants(pool, 1);
    const session = await pool.acquire(a!);
    await eventually(() => revoked.length === 1, 'revoked');
    assert.equal((revoked[0] as { reason: string }).reason, 'maxSessionMs');
    const error = await rejectsWith(session.records.get('c', 'x'), 'ERR_SESSION_REVOKED');
    assert.is((error as { reason?: string }).reason, 'maxSessionMs');
    const st = pool.stats();
    assert.is(st.sessions, 0);
    assert.is(st.weightInUse, 4);
    assert.is(st.totals.revoked, 1);
    await session.release();
    assert.is(pool.stats().totals.released, 1, 'a release after revocation changes nothing');
  } finally {
    unsubscribe('tenant-pool:session:revoke', onRevoke);
  }
});

test('close: waiters get ERR_POOL_CLOSED at once', async () => {
  const pool = await openPool({ capacity: 5 });
  const [a, b] = await createTenants(pool, 2);
  const held = await pool.acquire(a!);
  const waiting = pool.acquire(b!, { timeoutMs: 60_000 });
  await until(() => pool.stats().queued === 1, 'queued');
  const closing = pool.close({ timeoutMs: 0 });
  await rejectsWith(waiting, 'ERR_POOL_CLOSED');
  await closing;
  await held.release();
  await disposePool(pool);
});

test.run();
