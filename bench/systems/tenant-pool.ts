/** tenant-pool itself, behind the bench's System interface. */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { TenantPool } from '../../src/pool.js';
import type { TenantSession } from '../../src/session.js';
import type { BenchSession, System, SystemOptions } from './types.js';

export async function openTenantPool(dataDir: string, options: SystemOptions): Promise<System & { pool: TenantPool }> {
  const pool = await TenantPool.open({
    dataDir,
    rootKey: randomBytes(32).toString('hex'),
    workers: options.workers,
    capacity: options.capacity,
    acquireTimeoutMs: options.timeoutMs,
    walletIdleTtlMs: options.walletIdleTtlMs,
    maxQueue: 1_000_000,
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
    name: 'tenant-pool',
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
    },
  };
}
