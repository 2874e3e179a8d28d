/**
 * The format of a PostgreSQL schema (its registry and wallet tables) and its forward migrations. A
 * schema without a `format_history` table is format 1 (release 0.1.0; routes of its first form are
 * hashed by the open, marker-guarded). Every step is an expansion: it adds what old readers ignore,
 * so instances of the previous release keep working on the schema while a cluster rolls to this one
 * (see `olderMembers`), and what old writers leave out reads as the previous format meant it. Its
 * DDL runs in the open's transaction, its backfill in batches of their own (idempotent), and the
 * format is recorded last: a kill at any moment leaves a schema that opens, and the next open
 * resumes the step.
 */
import type { Pool as PgPool, PoolClient } from 'pg';
import { KDF_PARAMS_V1 } from '../../common/kdf.js';
import { RELEASE, SCHEMA_FORMAT } from '../../common/formats.js';
import { inTransaction } from '../../common/pg.js';
import type { UpgradeProgress } from './sqlite-format.js';

/** Rows rewritten per transaction by a step's backfill. */
const BATCH = 1000;

/** The schema's format: the last one recorded, or 1 (no record: 0.1.0, or a schema being created). */
export async function schemaFormat(client: PoolClient, s: string): Promise<number> {
  const { rows } = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [`${s}.format_history`]);
  if (rows[0]?.exists !== true) return 1;
  const max = await client.query<{ version: number | null }>(`SELECT max(version)::int AS version FROM ${s}.format_history`);
  return max.rows[0]?.version ?? 1;
}

/** The expansion of each step, in the open's transaction: additive DDL only. */
export async function expandSchema(client: PoolClient, s: string, from: number): Promise<void> {
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.format_history (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), release TEXT NOT NULL)`);
  if (from < 2) {
    // Format 2: each tenant's Argon2 parameters; each member's format, so that a newer instance knows an older one is live.
    await client.query(`ALTER TABLE ${s}.tenants ADD COLUMN IF NOT EXISTS kdf_params JSONB`);
    await client.query(`ALTER TABLE ${s}.members ADD COLUMN IF NOT EXISTS format INTEGER`);
  }
  if (from < 3) {
    // Format 3: the life of the member that took a lease. A lease with one holds while that life of
    // its owner is live (its expiry is 'infinity' once no older member is live); one without (an
    // older release's) holds until its expiry, as it always did.
    await client.query(`ALTER TABLE ${s}.leases ADD COLUMN IF NOT EXISTS life TEXT`);
  }
}

/** A new schema: born at this release's format (its tables were just made, nothing to backfill). */
export async function recordNewSchema(client: PoolClient, s: string): Promise<void> {
  await expandSchema(client, s, 1);
  await client.query(`INSERT INTO ${s}.format_history (version, name, release) VALUES ($1, 'created', $2) ON CONFLICT (version) DO NOTHING`, [SCHEMA_FORMAT, RELEASE]);
}

/**
 * The rest of each step after its expansion: the backfill, in batches, then the record of the format.
 * Safe to run by several instances at once (each batch takes what no one has written yet).
 */
export async function completeUpgrade(pool: PgPool, s: string, from: number, progress: UpgradeProgress = () => {}): Promise<void> {
  if (from < 2) {
    // Every tenant of format 1 was derived with its level's format-1 parameters: write them into its row.
    const cases = Object.entries(KDF_PARAMS_V1)
      .map(([kdf, params]) => `WHEN '${kdf}' THEN '${JSON.stringify(params)}'::jsonb`)
      .join(' ');
    const total = await inTransaction(pool, 'upgrading the schema', async (client) => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.tenants WHERE kdf_params IS NULL AND kdf <> 'raw'`)).rows[0]!.n));
    let done = 0;
    progress({ version: 2, name: 'kdf-params', done, total });
    for (;;) {
      const n = await inTransaction(pool, 'upgrading the schema', async (client) => {
        const result = await client.query(
          `UPDATE ${s}.tenants SET kdf_params = CASE kdf ${cases} END
           WHERE tenant_id IN (SELECT tenant_id FROM ${s}.tenants WHERE kdf_params IS NULL AND kdf <> 'raw' LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)`,
        );
        return result.rowCount ?? 0;
      });
      if (n === 0) break;
      done += n;
      progress({ version: 2, name: 'kdf-params', done: Math.min(done, total), total });
    }
    // The commit point of the step.
    await inTransaction(pool, 'upgrading the schema', async (client) => {
      await client.query(`INSERT INTO ${s}.format_history (version, name, release) VALUES (2, 'kdf-params', $1) ON CONFLICT (version) DO NOTHING`, [RELEASE]);
    });
  }
  if (from < 3) {
    // Nothing to backfill: a lease row without a life is an older release's, and holds by its expiry.
    await inTransaction(pool, 'upgrading the schema', async (client) => {
      await client.query(`INSERT INTO ${s}.format_history (version, name, release) VALUES (3, 'member-leases', $1) ON CONFLICT (version) DO NOTHING`, [RELEASE]);
    });
  }
}

/** A live cluster member of an older format than this release's, and its format. */
export interface OlderMember {
  instanceId: string;
  format: number;
}

/**
 * Live cluster members of an older format than this release's (a member row without a format is
 * 0.1.0's): while one is live, nothing is written that it could not read. Below format 2, no tenant
 * is re-derived to parameters other than its level's format-1 ones; below format 3, leases are
 * renewed one by one (an older member takes a lease by its expiry alone).
 */
export async function olderMembers(client: PoolClient | PgPool, s: string): Promise<OlderMember[]> {
  const { rows } = await client.query<{ older: OlderMember[] }>(`SELECT ${olderMembersJson(s, '$1')} AS older`, [SCHEMA_FORMAT]);
  return rows[0]!.older;
}

/** SQL: the live members of a format below the parameter `format` (this release's), as a JSON array of {@link OlderMember}, by id. */
export function olderMembersJson(s: string, format: string): string {
  return `(SELECT COALESCE(json_agg(json_build_object('instanceId', instance_id, 'format', COALESCE(format, 1)) ORDER BY instance_id), '[]'::json) FROM ${s}.members
    WHERE heartbeat_at > now() - COALESCE(lease_ttl_ms, 10000) * interval '1 millisecond' AND COALESCE(format, 1) < ${format})`;
}

/** What `tenant-pool info` tells of a PostgreSQL schema, read without taking it. */
export interface SchemaInfo {
  exists: boolean;
  format: number | null;
  tenants: number | null;
  byKdf: Record<string, number>;
  passphraseTenants: number | null;
  ownership: { mode: string; epoch: number } | null;
  holder: unknown;
  members: Array<{ instanceId: string; address: string | null; format: number; leases: number }>;
  bytes: number;
}

export async function inspectSchema(pool: PgPool, s: string): Promise<SchemaInfo> {
  const client = await pool.connect();
  try {
    const exists = (await client.query<{ e: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS e`, [`${s}.tenants`])).rows[0]?.e === true;
    if (!exists) return { exists: false, format: null, tenants: null, byKdf: {}, passphraseTenants: null, ownership: null, holder: null, members: [], bytes: 0 };
    const format = await schemaFormat(client, s);
    const kdfs = (await client.query<{ kdf: string; n: string }>(`SELECT kdf, count(*) AS n FROM ${s}.tenants GROUP BY kdf`)).rows;
    const byKdf = Object.fromEntries(kdfs.map((r) => [r.kdf, Number(r.n)]));
    const ownership = (await client.query<{ mode: string; epoch: string }>(`SELECT mode, epoch FROM ${s}.ownership`).catch(() => ({ rows: [] }))).rows[0];
    const holder = (await client.query<{ value: string }>(`SELECT value FROM ${s}.registry_config WHERE name = 'holder'`)).rows[0]?.value;
    const hasFormat = (await client.query<{ e: boolean }>(`SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'members' AND column_name = 'format') AS e`, [s])).rows[0]?.e === true;
    const members = (
      await client.query<{ instance_id: string; address: string | null; format: number | null; leases: string }>(
        `SELECT m.instance_id, m.address, ${hasFormat ? 'm.format' : 'NULL::int AS format'}, (SELECT count(*) FROM ${s}.leases l WHERE l.owner = m.instance_id AND l.expires_at > now()) AS leases
         FROM ${s}.members m WHERE m.heartbeat_at > now() - COALESCE(m.lease_ttl_ms, 10000) * interval '1 millisecond' ORDER BY m.instance_id`,
      )
    ).rows.map((r) => ({ instanceId: r.instance_id, address: r.address, format: r.format ?? 1, leases: Number(r.leases) }));
    const bytes = Number((await client.query<{ b: string }>(`SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) AS b FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'`, [s])).rows[0]?.b ?? 0);
    // A passphrase tenant has no managed secret; the registry seals both alike, so the count comes from the KDF: raw is managed only.
    return {
      exists: true,
      format,
      tenants: kdfs.reduce((sum, r) => sum + Number(r.n), 0),
      byKdf,
      passphraseTenants: null,
      ownership: ownership === undefined ? null : { mode: ownership.mode, epoch: Number(ownership.epoch) },
      holder: holder === undefined ? null : (JSON.parse(holder) as unknown),
      members,
      bytes,
    };
  } finally {
    client.release();
  }
}
