/** tenant-pool itself, behind the bench's System interface. */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { TenantPool } from '../../src/pool.js';
import type { TenantSession } from '../../src/session.js';
import { benchPostgresUrl, type BenchSession, type System, type SystemOptions } from './types.js';

/** The pool on SQLite files in `dataDir`, or (`onPostgres`) on a fresh schema of the bench's PostgreSQL server, dropped at close. */
export async function openTenantPool(dataDir: string, options: SystemOptions, onPostgres = false): Promise<System & { pool: TenantPool }> {
  if (onPostgres && benchPostgresUrl === undefined) throw new Error('set TENANT_POOL_BENCH_POSTGRES_URL to a PostgreSQL server');
  const schema = `tp_bench_${randomBytes(6).toString('hex')}`;
  const pool = await TenantPool.open({
    dataDir,
    ...(onPostgres ? { postgres: { connectionString: benchPostgresUrl!, schema } } : {}),
    rootKey: randomBytes(32).toString('hex'),
    workers: options.workers,
    capacity: options.capacity,
    acquireTimeoutMs: options.timeoutMs,
    walletIdleTtlMs: options.walletIdleTtlMs,
    maxQueue: 1_000_000,
    // A scenario about key derivations (a cold open's Argon2) turns the key tier off: the tenants it
    // creates would otherwise reopen from the keys kept at their creation.
    ...(options.keyTier === false ? { keyCache: { maxEntries: 0 } } : {}),
    ...(options.modules === undefined ? {} : { modules: options.modules }),
  });
  const wrap = (s: TenantSession): BenchSession => ({
    get: async (c, id) => s.records.get(c, id),
    save: async (c, id, v) => s.records.save(c, id, v as never),
    createKey: async () => (await s.keys.create()).kid,
    sign: async (kid, data) => s.keys.sign(kid, data),
    release: async () => s.release(),
  });
  let createdOpens = 0;
  return {
    name: onPostgres ? 'tenant-pool-postgres' : 'tenant-pool',
    pool,
    async createTenants(count, kdf, prefix) {
      const ids: string[] = [];
      const before = pool.stats().totals.walletOpens;
      for (let i = 0; i < count; i += 8) {
        const batch = await Promise.all(Array.from({ length: Math.min(8, count - i) }, async (_, j) => (await pool.tenants.create({ tenantId: `${prefix}${i + j}`, kdf })).tenantId));
        ids.push(...batch);
      }
      // A new wallet stays open after its creation; the scenarios start from closed wallets, as on the
      // baselines (create-then-use measures the warm start), and count only the opens they cause.
      await pool.closeIdleWallets();
      createdOpens += pool.stats().totals.walletOpens - before;
      return ids;
    },
    acquire: async (tenantId) => wrap(await pool.acquire(tenantId)),
    walletOpens: () => pool.stats().totals.walletOpens - createdOpens,
    heldBySessions: () => {
      const st = pool.stats();
      // Idle cached wallets hold their weight by design; what sessions still hold is the rest.
      return st.weightInUse - st.wallets.idle * pool.options.weights.wallet;
    },
    async close() {
      await pool.close();
      rmSync(dataDir, { recursive: true, force: true });
      if (onPostgres) await dropBenchSchema(schema);
    },
  };
}

/** Removes a bench schema and everything in it. */
export async function dropBenchSchema(schema: string): Promise<void> {
  const pg = (await import('pg')).default;
  const client = new pg.Client(benchPostgresUrl);
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}
