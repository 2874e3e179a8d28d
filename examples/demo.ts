/**
 * `npm start`: tenant-pool on its embedded default, SQLite wallet files in ./.tenant-pool.
 *
 * The first run creates the tenants (and a root key, with a warning); later runs reuse them. Then a
 * burst of concurrent sessions saves, finds and signs across the tenants, and a summary shows what
 * the pool did: sessions, throughput, wallet opens against cache hits, and the load per worker.
 */
import { randomBytes } from 'node:crypto';
import { TenantPool } from '../src/index.js';

const TENANTS = 32;
const SESSIONS = 2_000;
const IN_FLIGHT = 64;

const pool = await TenantPool.open({ walletIdleTtlMs: 60_000, acquireTimeoutMs: 30_000 });
try {
  const existing = new Set((await pool.tenants.list()).map((t) => t.tenantId));
  const ids = Array.from({ length: TENANTS }, (_, i) => `demo-${String(i).padStart(2, '0')}`);
  let created = 0;
  for (const [i, tenantId] of ids.entries()) {
    if (existing.has(tenantId)) continue;
    // A few tenants use Askar's interactive Argon2 level, so some opens cost a real key derivation.
    await pool.tenants.create({ tenantId, label: `Demo tenant ${i}`, kdf: i % 8 === 0 ? 'argon2i-int' : 'raw' });
    created++;
  }
  console.log(created > 0 ? `Created ${created} tenants in ${pool.options.dataDir}` : `Reusing ${TENANTS} tenants in ${pool.options.dataDir}`);

  const started = performance.now();
  let done = 0;
  let failed = 0;
  const isTty = process.stdout.isTTY === true;
  const progress = (): void => {
    if (!isTty) return;
    const st = pool.stats();
    process.stdout.write(`\r  ${done}/${SESSIONS} sessions  ·  ${st.sessions} live  ·  weight ${st.weightInUse}/${st.capacity}  ·  wallets open ${st.wallets.open + st.wallets.idle}   `);
  };
  const ticker = setInterval(progress, 100);

  const oneSession = async (n: number): Promise<void> => {
    // Skewed popularity: low-numbered tenants get most of the traffic.
    const tenantId = ids[Math.floor(TENANTS * Math.random() ** 2)]!;
    await pool.withSession(tenantId, async (session) => {
      await session.records.save('message', `m-${n}`, { n, at: new Date().toISOString() }, { kind: n % 3 === 0 ? 'invite' : 'note' });
      await session.records.find('message', { kind: 'invite' }, { limit: 5 });
      const key = (await session.records.get('demo', 'signing-key'))?.value as { kid: string } | undefined;
      const kid = key?.kid ?? (await session.keys.create()).kid;
      if (key === undefined) await session.records.save('demo', 'signing-key', { kid });
      await session.keys.sign(kid, randomBytes(32));
    });
  };

  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < SESSIONS) {
        const n = next++;
        try {
          await oneSession(n);
        } catch (error) {
          failed++;
          console.error(`\nsession ${n} failed: ${(error as Error).message}`);
        }
        done++;
      }
    }),
  );
  clearInterval(ticker);
  progress();
  const seconds = (performance.now() - started) / 1000;
  const st = pool.stats();
  const opens = st.totals.walletOpens;
  console.log(`${isTty ? '\n' : ''}
Summary
  sessions        ${st.totals.acquired} served, ${failed} failed, in ${seconds.toFixed(2)} s (${Math.round(st.totals.acquired / seconds)} sessions/s, ${IN_FLIGHT} in flight)
  wallets         ${opens} opens (${st.totals.keyDerivations} key derivations incl. tenant creation), ${st.totals.acquired - opens} sessions served by an already open wallet
  weight          ${st.weightInUse} of ${st.capacity} in use now (idle wallets stay cached for ${pool.options.walletIdleTtlMs / 1000} s)
  workers         ${st.workers.map((w) => `#${w.index}: ${w.tenants} wallets`).join(', ')}`);
} finally {
  await pool.close();
}
