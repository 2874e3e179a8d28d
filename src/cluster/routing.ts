/**
 * Who holds a tenant and who should: read from the cluster's tables. Shared by the pool's
 * `pool.cluster` and the standalone `tenant-pool/router`, so both route by one rule.
 */
import type { LeaseOwner } from '../../common/errors.js';
import { placeAmong } from '../engine/placement.js';
import { MEMBER_LEASES_FORMAT } from '../../common/formats.js';

/** Runs one read on the cluster's database. */
export type ClusterQuery = <R>(what: string, sql: string, params: unknown[]) => Promise<R[]>;

/** A member of the cluster as `pool.cluster.members()` lists it. */
export interface ClusterMemberInfo extends LeaseOwner {
  heartbeatAt: string;
  /** Leases it holds now. */
  leases: number;
}

/**
 * SQL: whether the lease row `l` holds now. Every lease holds until its expiry. One that records
 * the life of the member that took it (schema format 3: `hasLife`) holds only while that life of
 * its owner is live: its expiry is 'infinity' while no member of an older release is live, and its
 * owner's heartbeat alone keeps it. An older release's lease holds by its expiry alone: one it
 * wrote (no life), or one it took over from a member of this release (its upsert leaves the life it
 * found, but its owner's member row says format 2 or less).
 */
export function leaseHolds(schema: string, l: string, hasLife: boolean): string {
  if (!hasLife) return `${l}.expires_at > now()`;
  return `(${l}.expires_at > now() AND (${l}.life IS NULL OR EXISTS (SELECT 1 FROM ${schema}.members lm WHERE lm.instance_id = ${l}.owner
    AND (COALESCE(lm.format, 1) < ${MEMBER_LEASES_FORMAT} OR (lm.life = ${l}.life AND lm.heartbeat_at >= now() - COALESCE(lm.lease_ttl_ms, 10000) * interval '1 millisecond')))))`;
}

/** Whether the schema's leases record their member's life (format 3; a router may meet a schema of format 2). */
export async function leasesHaveLife(query: ClusterQuery, schema: string): Promise<boolean> {
  const [row] = await query<{ e: boolean }>('reading the schema', `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'leases' AND column_name = 'life') AS e`, [schema]);
  return row?.e === true;
}

/** The instance holding the tenant's lease now, or null when it is free (or expired). */
export async function leaseOwner(query: ClusterQuery, schema: string, tenantId: string, hasLife = true): Promise<LeaseOwner | null> {
  const [row] = await query<{ owner: string; address: string | null }>(
    `reading the owner of tenant ${tenantId}`,
    `SELECT l.owner, m.address FROM ${schema}.leases l LEFT JOIN ${schema}.members m ON m.instance_id = l.owner WHERE l.tenant_id = $1 AND ${leaseHolds(schema, 'l', hasLife)}`,
    [tenantId],
  );
  return row === undefined ? null : { instanceId: row.owner, address: row.address };
}

/**
 * The live members (a heartbeat within the member's own lease TTL; `leaseTtlMs` for a member that
 * recorded none), with how many leases each holds, by id. Instances with different TTLs agree on
 * who is live.
 */
export async function liveMembers(query: ClusterQuery, schema: string, leaseTtlMs: number, hasLife = true): Promise<ClusterMemberInfo[]> {
  // The member is live (the outer condition): a lease of its present life holds, one of an older release's until its expiry.
  const holds = hasLife ? `l.expires_at > now() AND (l.life IS NULL OR l.life = m.life OR COALESCE(m.format, 1) < ${MEMBER_LEASES_FORMAT})` : `l.expires_at > now()`;
  const rows = await query<{ instance_id: string; address: string | null; heartbeat_at: Date; leases: number }>(
    'listing the members',
    `SELECT m.instance_id, m.address, m.heartbeat_at, (SELECT count(*)::int FROM ${schema}.leases l WHERE l.owner = m.instance_id AND ${holds}) AS leases
     FROM ${schema}.members m WHERE m.heartbeat_at > now() - COALESCE(m.lease_ttl_ms, $1) * interval '1 millisecond' ORDER BY m.instance_id`,
    [leaseTtlMs],
  );
  return rows.map((r) => ({ instanceId: r.instance_id, address: r.address, heartbeatAt: new Date(r.heartbeat_at).toISOString(), leases: r.leases }));
}

/**
 * The instance that should serve the tenant: its lease holder, or for a free tenant the
 * bounded-load rendezvous choice over the live members (the rule workers are chosen by: 1.25 ×
 * average). Null when no member is live.
 */
export async function routeTenant(query: ClusterQuery, schema: string, leaseTtlMs: number, tenantId: string, hasLife = true): Promise<LeaseOwner | null> {
  const owner = await leaseOwner(query, schema, tenantId, hasLife);
  if (owner !== null) return owner;
  const members = await liveMembers(query, schema, leaseTtlMs, hasLife);
  const chosen = members.find((m) => m.instanceId === placeAmong(tenantId, members.map((c) => ({ name: c.instanceId, load: c.leases }))));
  return chosen === undefined ? null : { instanceId: chosen.instanceId, address: chosen.address };
}
