/**
 * The cluster-scale scenario (needs a PostgreSQL server; pg_stat_statements for server times):
 *
 * - **Renewal at 100, 10,000 and 100,000 leases held** by one instance (lease TTL 6 s): rows written per renewal
 *   (counted exactly: lease rows whose xmin changed between two renewals, plus the member row) and
 *   the renewal statement's server time (pg_stat_statements), with leases bound to the membership
 *   (this release) and renewed one by one (what it does while a member of release 0.2.0 is live).
 * - **A capacity model**: for each operation (cold acquire, warm call, write, renewal, takeover)
 *   the statements (round trips) and server time it costs, from pg_stat_statements over many of
 *   them; from those, the throughput and connections N instances need of a server of C cores.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Client as PgClient } from 'pg';
import { TenantPool } from '../src/pool.js';
import { ClusterMember } from '../src/cluster/member.js';
import { EventHub } from '../src/observability/diagnostics.js';
import { round } from './measure.js';
import type { Figures } from './scenarios.js';
import { dropBenchSchema } from './systems/tenant-pool.js';
import { benchPostgresUrl } from './systems/types.js';

async function admin(): Promise<PgClient> {
  const pg = (await import('pg')).default;
  const client = new pg.Client(benchPostgresUrl);
  await client.connect();
  return client;
}

/** Whether pg_stat_statements is loaded (shared_preload_libraries) and installed; installs it when it can. */
async function statementStats(client: PgClient): Promise<boolean> {
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await client.query('SELECT pg_stat_statements_reset()');
    return true;
  } catch {
    return false;
  }
}

interface StatementCost {
  calls: number;
  ms: number;
}

/** Calls and server time of the statements on `schema` (and the transaction statements around them) since the last reset. */
async function costs(client: PgClient, schema: string): Promise<StatementCost> {
  const { rows } = await client.query<{ calls: string; ms: number }>(
    `SELECT COALESCE(sum(calls), 0) AS calls, COALESCE(sum(total_exec_time), 0) AS ms FROM pg_stat_statements
     WHERE (query LIKE '%' || $1 || '%' OR query IN ('BEGIN', 'COMMIT', 'ROLLBACK')) AND query NOT LIKE '%pg_stat_statements%'`,
    [schema],
  );
  return { calls: Number(rows[0]!.calls), ms: rows[0]!.ms };
}

async function heartbeat(client: PgClient, schema: string): Promise<string> {
  return (await client.query<{ t: string }>(`SELECT heartbeat_at::text AS t FROM ${schema}.members WHERE instance_id = 'r'`)).rows[0]!.t;
}

async function nextRenewal(client: PgClient, schema: string): Promise<void> {
  const last = await heartbeat(client, schema);
  for (let polls = 0; (await heartbeat(client, schema)) === last; polls++) {
    if (polls > 4000) throw new Error('no renewal');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function xmins(client: PgClient, schema: string): Promise<Map<string, string>> {
  const { rows } = await client.query<{ tenant_id: string; x: string }>(`SELECT tenant_id, xmin::text AS x FROM ${schema}.leases`);
  return new Map(rows.map((r) => [r.tenant_id, r.x]));
}

/** One instance holding `leases` leases: rows written by one renewal and its server time. */
async function renewal(leases: number, olderLive: boolean, hasStats: boolean): Promise<{ rows: number; serverMs: number | null }> {
  const schema = `tp_bench_renew_${process.pid}_${leases}_${olderLive ? 'old' : 'new'}`;
  const dataDir = join(tmpdir(), `tp-bench-renew-${process.pid}`);
  await (await TenantPool.open({ dataDir, rootKey: '4d'.repeat(32), workers: 1, postgres: { connectionString: benchPostgresUrl!, schema } })).close();
  rmSync(dataDir, { recursive: true, force: true });
  const client = await admin();
  if (olderLive) await client.query(`INSERT INTO ${schema}.members (instance_id, address, heartbeat_at, lease_ttl_ms, life, format) VALUES ('old', NULL, now() + interval '1 hour', 60000, 'o', 2)`);
  const member = await ClusterMember.join(benchPostgresUrl!, schema, { instanceId: 'r', address: null, leaseTtlMs: 6000 }, {
    onLost: () => {},
    idleTenants: () => [],
    handOff: () => {},
    warn: () => {},
    events: new EventHub(),
    onOwnershipLost: () => {},
  });
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < leases) await member.take(`t${next++}`);
      }),
    );
    await nextRenewal(client, schema);
    await nextRenewal(client, schema);
    if (hasStats) await client.query('SELECT pg_stat_statements_reset()');
    const written: number[] = [];
    for (let i = 0; i < 3; i++) {
      await nextRenewal(client, schema);
      const before = await xmins(client, schema);
      await nextRenewal(client, schema);
      const after = await xmins(client, schema);
      let changed = 0;
      for (const [tenant, x] of after) if (before.get(tenant) !== x) changed++;
      written.push(changed + 1); // and the member row
    }
    written.sort((a, b) => a - b);
    let serverMs: number | null = null;
    if (hasStats) {
      const { rows } = await client.query<{ calls: string; ms: number }>(
        `SELECT sum(calls) AS calls, sum(total_exec_time) AS ms FROM pg_stat_statements WHERE query LIKE 'WITH beat AS%' AND query LIKE '%' || $1 || '%'`,
        [schema],
      );
      serverMs = Number(rows[0]!.calls) > 0 ? rows[0]!.ms / Number(rows[0]!.calls) : null;
    }
    return { rows: written[1]!, serverMs };
  } finally {
    await member.close();
    await client.end();
    await dropBenchSchema(schema).catch(() => {});
  }
}

/** Statements and server time per operation of a cluster instance, over `count` of each. */
async function operationCosts(count: number, hasStats: boolean): Promise<Record<string, { statements: number; serverMs: number }>> {
  const schema = `tp_bench_capacity_${process.pid}`;
  const rootKey = randomBytes(32).toString('hex');
  const dataDir = join(tmpdir(), `tp-bench-capacity-${process.pid}`);
  const client = await admin();
  const pool = await TenantPool.open({ dataDir, rootKey, workers: 2, walletIdleTtlMs: 0, leakWarningMs: 0, postgres: { connectionString: benchPostgresUrl!, schema }, cluster: { instanceId: 'cap', leaseTtlMs: 10_000 } });
  const out: Record<string, { statements: number; serverMs: number }> = {};
  const measure = async (name: string, fn: () => Promise<void>): Promise<void> => {
    if (!hasStats) return;
    await client.query('SELECT pg_stat_statements_reset()');
    await fn();
    const c = await costs(client, schema);
    out[name] = { statements: round(c.calls / count, 2), serverMs: round(c.ms / count, 3) };
  };
  try {
    for (let i = 0; i < count; i++) await pool.tenants.create({ tenantId: `c${i}` });
    await pool.closeIdleWallets();
    // A cold acquire: the lease taken with the tenant's row and its wallet's row, the wallet's open in its worker (no read); the wallet's close and the lease given up after.
    await measure('coldAcquire', async () => {
      for (let i = 0; i < count; i++) await pool.withSession(`c${i}`, () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 100));
    });
    const session = await pool.acquire('c0');
    try {
      await session.records.save('cat', 'warm', { n: 0 });
      await measure('warmCall', async () => {
        for (let i = 0; i < count; i++) await session.records.get('cat', 'warm');
      });
      await measure('write', async () => {
        for (let i = 0; i < count; i++) await session.records.save('cat', `w${i}`, { n: i });
      });
    } finally {
      await session.release();
    }
    // A takeover: tenants whose lease belongs to a member whose heartbeat lapsed.
    await client.query(`INSERT INTO ${schema}.members (instance_id, address, heartbeat_at, lease_ttl_ms, life, format) VALUES ('dead', NULL, now() - interval '1 hour', 10000, 'd', 3)`);
    await client.query(`INSERT INTO ${schema}.leases (tenant_id, owner, epoch, expires_at, life) SELECT 'c' || i, 'dead', nextval('${schema}.lease_epochs'), 'infinity', 'd' FROM generate_series(0, $1 - 1) AS i ON CONFLICT (tenant_id) DO UPDATE SET owner = 'dead', life = 'd', expires_at = 'infinity'`, [count]);
    await measure('takeover', async () => {
      for (let i = 0; i < count; i++) await pool.withSession(`c${i}`, () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 100));
    });
  } finally {
    await pool.close();
    await client.end();
    rmSync(dataDir, { recursive: true, force: true });
    await dropBenchSchema(schema).catch(() => {});
  }
  return out;
}

/**
 * The capacity model: what N instances holding T tenants ask of a PostgreSQL of C cores, from the
 * measured cost of each operation. Assumptions: the server's statement execution is the cost that
 * grows (pg_stat_statements' exec time; its parse, network and WAL flush beyond that are not in
 * it), a server kept at 70% of its cores, a lease TTL of 10 s (a renewal every 3.3 s), every tenant
 * leased (the worst case: every wallet open), 8 workers per instance with the default connections
 * (2 per worker, 2 for the registry, 2 for the membership).
 */
export function capacityModel(figures: Figures, cores = 16): Figures {
  const out: Figures = {};
  const renewMs = figures['renewal/server ms'];
  const coldMs = figures['coldAcquire/server ms'];
  const writeMs = figures['write/server ms'];
  const counts = Object.keys(figures)
    .filter((k) => k.endsWith(' leases/server ms per renewal (an older member live)'))
    .map((k) => Number(k.split(' ')[0]));
  if (renewMs === undefined || coldMs === undefined || writeMs === undefined || counts.length === 0) return out;
  const most = Math.max(...counts);
  const perLeaseMs = figures[`${most} leases/server ms per renewal (an older member live)`]! / most;
  const budget = cores * 0.7 * 1000;
  for (const instances of [10, 100]) {
    for (const tenants of [100_000, 1_000_000]) {
      const key = `${instances} instances, ${tenants / 1000}k tenants`;
      const renewals = instances / (10 / 3);
      const bound = renewals * renewMs;
      const perLease = renewals * perLeaseMs * (tenants / instances);
      out[`${key}/renewal: server ms per s`] = round(bound, 1);
      out[`${key}/renewal one row per lease: server ms per s`] = round(perLease, 1);
      out[`${key}/cold acquires per s`] = Math.round((budget - bound) / coldMs);
      out[`${key}/writes per s`] = Math.round((budget - bound) / writeMs);
      out[`${key}/connections`] = instances * (8 * 2 + 2 + 2);
    }
  }
  return out;
}

export async function clusterScale(quick: boolean): Promise<Figures> {
  if (benchPostgresUrl === undefined) throw new Error('set TENANT_POOL_BENCH_POSTGRES_URL to a PostgreSQL server');
  const client = await admin();
  const hasStats = await statementStats(client);
  await client.end();
  const figures: Figures = { pgStatStatements: hasStats ? 1 : 0 };
  for (const leases of quick ? [100, 1_000, 10_000] : [100, 10_000, 100_000]) {
    const bound = await renewal(leases, false, hasStats);
    const byExpiry = await renewal(leases, true, hasStats);
    figures[`${leases} leases/rows per renewal`] = bound.rows;
    figures[`${leases} leases/rows per renewal (an older member live)`] = byExpiry.rows;
    if (bound.serverMs !== null) figures[`${leases} leases/server ms per renewal`] = round(bound.serverMs, 3);
    if (byExpiry.serverMs !== null) figures[`${leases} leases/server ms per renewal (an older member live)`] = round(byExpiry.serverMs, 3);
  }
  const most = quick ? 10_000 : 100_000;
  if (figures[`${most} leases/server ms per renewal`] !== undefined) {
    figures['renewal/statements'] = 1;
    figures['renewal/server ms'] = figures[`${most} leases/server ms per renewal`]!;
  }
  const ops = await operationCosts(quick ? 50 : 300, hasStats);
  for (const [op, c] of Object.entries(ops)) {
    figures[`${op}/statements`] = c.statements;
    figures[`${op}/server ms`] = c.serverMs;
  }
  return { ...figures, ...capacityModel(figures) };
}
