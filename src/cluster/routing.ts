/**
 * Who holds a tenant and who should: read from the cluster's tables. Shared by the pool's
 * `pool.cluster` and the standalone `tenant-pool/router`, so both route by one rule.
 */
import type { LeaseOwner } from '../../common/errors.js';
import { placeAmong } from '../engine/placement.js';

/** Runs one read on the cluster's database. */
export type ClusterQuery = <R>(what: string, sql: string, params: unknown[]) => Promise<R[]>;

/** A member of the cluster as `pool.cluster.members()` lists it. */
export interface ClusterMemberInfo extends LeaseOwner {
  heartbeatAt: string;
  /** Leases it holds now. */
  leases: number;
}

/** The instance holding the tenant's lease now, or null when it is free (or expired). */
export async function leaseOwner(query: ClusterQuery, schema: string, tenantId: string): Promise<LeaseOwner | null> {
  const [row] = await query<{ owner: string; address: string | null }>(
    `reading the owner of tenant ${tenantId}`,
    `SELECT l.owner, m.address FROM ${schema}.leases l LEFT JOIN ${schema}.members m ON m.instance_id = l.owner WHERE l.tenant_id = $1 AND l.expires_at > now()`,
    [tenantId],
  );
  return row === undefined ? null : { instanceId: row.owner, address: row.address };
}

/**
 * The live members (a heartbeat within the member's own lease TTL; `leaseTtlMs` for a member that
 * recorded none), with how many leases each holds, by id. Instances with different TTLs agree on
 * who is live.
 */
export async function liveMembers(query: ClusterQuery, schema: string, leaseTtlMs: number): Promise<ClusterMemberInfo[]> {
  const rows = await query<{ instance_id: string; address: string | null; heartbeat_at: Date; leases: number }>(
    'listing the members',
    `SELECT m.instance_id, m.address, m.heartbeat_at, (SELECT count(*)::int FROM ${schema}.leases l WHERE l.owner = m.instance_id AND l.expires_at > now()) AS leases
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
export async function routeTenant(query: ClusterQuery, schema: string, leaseTtlMs: number, tenantId: string): Promise<LeaseOwner | null> {
  const owner = await leaseOwner(query, schema, tenantId);
  if (owner !== null) return owner;
  const members = await liveMembers(query, schema, leaseTtlMs);
  const chosen = members.find((m) => m.instanceId === placeAmong(tenantId, members.map((c) => ({ name: c.instanceId, load: c.leases }))));
  return chosen === undefined ? null : { instanceId: chosen.instanceId, address: chosen.address };
}
