/**
 * A bench child: one instance of a cluster. `hold`: opens tenant `t` (kept open) and reports
 * `held`, then waits to be killed. `load SECONDS warm|cold`: acquires, reads and releases its own
 * tenants (`<instanceId>-0..15`) for that long, and reports how many sessions it served; `warm`
 * keeps their wallets open (and leased) between sessions, `cold` closes each wallet when its
 * session ends, so every acquire takes the lease, opens the wallet, and gives both up after;
 * `cold-solo` is `cold` without cluster mode (the single-instance PostgreSQL store).
 * argv: schema rootKey instanceId leaseTtlMs mode [seconds warm|cold|cold-solo]
 */
import { TenantPool } from '../src/pool.js';
import { benchPostgresUrl } from './systems/types.js';

const [schema, rootKey, instanceId, ttl, mode, seconds, temperature] = process.argv.slice(2);
const pool = await TenantPool.open({
  dataDir: `/tmp/tp-bench-cluster-${instanceId}`,
  rootKey: rootKey!,
  workers: 1,
  walletIdleTtlMs: temperature?.startsWith('cold') === true ? 0 : 600_000,
  postgres: { connectionString: benchPostgresUrl!, schema: schema! },
  ...(temperature === 'cold-solo' ? {} : { cluster: { instanceId: instanceId!, leaseTtlMs: Number(ttl) } }),
});
if (mode === 'hold') {
  const session = await pool.acquire('t');
  await session.records.save('c', 'r', 1);
  process.stdout.write('held\n');
  setInterval(() => {}, 60_000);
} else {
  const ids = Array.from({ length: 16 }, (_, i) => `${instanceId}-${i}`);
  const until = performance.now() + Number(seconds) * 1000;
  let served = 0;
  await Promise.all(
    ids.map(async (id) => {
      while (performance.now() < until) {
        await pool.withSession(id, async (s) => s.records.get('c', 'r'));
        served++;
      }
    }),
  );
  process.stdout.write(`served ${served}\n`);
  await pool.close();
}
