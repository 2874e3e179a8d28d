import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { eventually, usePool } from './helpers.js';

test('100× capacity of acquires with tiny timeouts and aborts at random moments: every promise settles, nothing leaks, the pool serves normally after', async () => {
  const capacity = 20;
  await using pool = await usePool({ capacity, walletIdleTtlMs: 0, maxQueue: 100_000, leakWarningMs: 0 });
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) ids.push((await pool.tenants.create({ tenantId: `s${i}`, kdf: i % 4 === 0 ? 'argon2i-int' : 'raw' })).tenantId);
  let seed = 99;
  const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
  const outcomes = { granted: 0, timedOut: 0, aborted: 0 };
  const reason = new Error('storm abort');
  const attempts = Array.from({ length: capacity * 100 }, async (_, i) => {
    const controller = new AbortController();
    const mode = random(4);
    // Aborted before the call, at a random moment while waiting or opening, or never.
    if (mode === 0) controller.abort(reason);
    else if (mode === 1) setTimeout(() => controller.abort(reason), random(40));
    try {
      const session = await pool.acquire(ids[i % ids.length]!, { timeoutMs: 1 + random(30), signal: controller.signal });
      outcomes.granted++;
      await session.records.get('c', 'x');
      // An abort after admission changes nothing for a session already handed out.
      controller.abort(reason);
      await session.release();
    } catch (error) {
      if (error === reason) outcomes.aborted++;
      else {
        assert.is((error as { code?: string }).code, 'ERR_ACQUIRE_TIMEOUT');
        outcomes.timedOut++;
      }
    }
  });
  // A watchdog: if any acquire never settled, this fails instead of hanging.
  let watchdog: NodeJS.Timeout | undefined;
  const settled = await Promise.race([Promise.all(attempts).then(() => true), new Promise<boolean>((resolve) => (watchdog = setTimeout(() => resolve(false), 60_000)))]);
  clearTimeout(watchdog);
  assert.ok(settled, 'every acquire settled');
  assert.is(outcomes.granted + outcomes.timedOut + outcomes.aborted, capacity * 100);
  assert.ok(outcomes.aborted >= capacity * 25, 'the pre-aborted ones at least');
  await eventually(() => pool.stats().weightInUse === 0 && pool.stats().wallets.opening === 0 && pool.stats().wallets.idle === 0, 'every wallet closed, no weight left');
  const st = pool.stats();
  assert.is(st.sessions, 0);
  assert.is(st.queued, 0);
  assert.is(st.totals.workerCrashes, 0);
  // Serving normally: a session on every tenant, with their data.
  for (const id of ids) await pool.withSession(id, async (s) => s.records.save('c', 'after', id), { timeoutMs: 30_000 });
  for (const id of ids) assert.is(await pool.withSession(id, async (s) => (await s.records.get('c', 'after'))?.value, { timeoutMs: 30_000 }), id);
});

test.run();
