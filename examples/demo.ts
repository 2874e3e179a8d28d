/**
 * `npm start`: tenant-pool on its embedded default, SQLite wallet files in ./.tenant-pool, with the
 * example worker module in examples/agent-module.ts.
 *
 * The first run creates the tenants (and a root key, with a warning) and gives each a routing key;
 * later runs reuse them. Then a burst of concurrent sessions and inbound messages runs across the
 * tenants, with a live progress line on a terminal, and a summary shows what the pool did.
 *
 * `npm start -- --live` shows the pool's live panel (tenant-pool/live) instead of the progress line.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TenantPool } from 'tenant-pool';
import { startLiveView } from 'tenant-pool/live';

const TENANTS = 32;
const SESSIONS = 2_000;
const MESSAGES = 1_000;
const IN_FLIGHT = 64;

// Capacity for about 20 of the 32 wallets at once: the cold tail of tenants is opened, evicted and
// reopened while the popular ones stay cached.
const pool = await TenantPool.open({ capacity: 120, walletIdleTtlMs: 60_000, acquireTimeoutMs: 30_000, modules: [join(import.meta.dirname, 'agent-module.ts')] });
try {
  const existing = new Set((await pool.tenants.list()).map((t) => t.tenantId));
  const ids = Array.from({ length: TENANTS }, (_, i) => `demo-${String(i).padStart(2, '0')}`);
  let created = 0;
  for (const [i, tenantId] of ids.entries()) {
    if (existing.has(tenantId)) continue;
    // A few tenants use Askar's interactive Argon2 level, so some opens cost a real key derivation.
    await pool.tenants.create({ tenantId, label: `Demo tenant ${i}`, kdf: i % 8 === 0 ? 'argon2i-int' : 'raw' });
    await pool.withSession(tenantId, async (s) => s.records.save('config', 'routing', await s.keys.create({ routing: true })));
    created++;
  }
  console.log(created > 0 ? `Created ${created} tenants in ${pool.options.dataDir}` : `Reusing ${TENANTS} tenants in ${pool.options.dataDir}`);
  const routingKeys = await Promise.all(
    ids.map(async (id) => pool.withSession(id, async (s) => ((await s.records.get('config', 'routing'))?.value as { publicKey: string }).publicKey)),
  );
  const before = pool.stats().totals;

  const started = performance.now();
  let done = 0;
  let failed = 0;
  const isLive = process.argv.includes('--live');
  const view = isLive ? startLiveView(pool, { stream: process.stdout, title: 'tenant-pool demo' }) : undefined;
  const isTty = process.stdout.isTTY === true;
  const progress = (): void => {
    if (!isTty || isLive) return;
    const st = pool.stats();
    const width = 30;
    const filled = Math.round((done / (SESSIONS + MESSAGES)) * width);
    process.stdout.write(
      `\r  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${SESSIONS + MESSAGES}  ·  ${st.sessions} live, ${st.queued} queued  ·  weight ${st.weightInUse}/${st.capacity}  ·  ${st.wallets.open + st.wallets.idle} wallets open   `,
    );
  };
  const ticker = setInterval(progress, 100);
  // Skewed popularity: low-numbered tenants get most of the traffic.
  const pick = (): number => Math.floor(TENANTS * Math.random() ** 2);

  const work: Array<() => Promise<unknown>> = [
    ...Array.from({ length: SESSIONS }, (_, n) => async () =>
      pool.withSession(ids[pick()]!, async (session) => {
        await session.records.save('note', `n-${n}`, { n, at: new Date().toISOString() }, { kind: n % 3 === 0 ? 'todo' : 'memo' });
        await session.records.find('note', { kind: 'todo' }, { limit: 5 });
        return session.run('inboxSize');
      }),
    ),
    ...Array.from({ length: MESSAGES }, (_, n) => async () =>
      pool.dispatch({ recipientKey: routingKeys[pick()]!, body: { from: `did:example:${randomBytes(4).toString('hex')}`, text: `message ${n}` } }),
    ),
  ].sort(() => Math.random() - 0.5);

  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < work.length) {
        const job = work[next++]!;
        try {
          await job();
        } catch (error) {
          failed++;
          console.error(`\n${(error as Error).message}`);
        }
        done++;
      }
    }),
  );
  clearInterval(ticker);
  view?.refresh();
  view?.stop();
  progress();
  const seconds = (performance.now() - started) / 1000;
  const st = pool.stats();
  const served = st.totals.acquired - before.acquired;
  const opens = st.totals.walletOpens - before.walletOpens;
  console.log(`${isTty ? '\n' : ''}
Summary
  burst           ${SESSIONS} sessions and ${MESSAGES} inbound messages, ${failed} failed, in ${seconds.toFixed(2)} s (${Math.round(served / seconds)} sessions/s, ${IN_FLIGHT} in flight)
  wallets         ${opens} opens during the burst, ${served - opens} sessions served by an already open wallet (${((100 * (served - opens)) / served).toFixed(1)}% cache hits), ${st.totals.evictions - before.evictions} idle wallets evicted to make room
  key derivations ${st.totals.keyDerivations} since start (tenant creation and cold opens)
  weight          ${st.weightInUse} of ${st.capacity} in use now (idle wallets stay cached for ${pool.options.walletIdleTtlMs / 1000} s)
  workers         ${st.workers.map((w) => `#${w.index}: ${w.tenants} wallets`).join(', ')}`);
} finally {
  await pool.close();
}
