/**
 * `tenant-pool/router`: where a front proxy sends a tenant's requests in cluster mode, read from
 * the cluster's tables with no pool of its own (no workers, no root key): the instance holding the
 * tenant's lease, or for a free tenant the instance the pools themselves would choose (the
 * bounded-load rendezvous rule over the live members). A hint for forwarding, never a fence: the
 * instance that gets the request takes the lease or answers `ERR_TENANT_ELSEWHERE` naming the owner.
 * Bad options fail `ERR_INVALID_CONFIG` before any connection.
 *
 * @example
 * const router = await createRouter({ connectionString, schema: 'tenant_pool', leaseTtlMs: 10_000 })
 * const { address } = await router.route(tenantId)   // forward the request there
 */
import type { Pool as PgPool } from 'pg';
import { poolError, type LeaseOwner } from '../common/errors.js';
import { leaseOwner, leasesHaveLife, routeTenant, type ClusterQuery } from './cluster/routing.js';
import { openPgPool, pgError } from '../common/pg.js';
import { checkTenantId } from '../common/validate.js';

export interface RouterOptions {
  connectionString: string;
  /** @default 'tenant_pool' */
  schema?: string;
  /** The lease TTL of a member that recorded none (each instance records its own): a member whose heartbeat is older is not live. @default 10000 */
  leaseTtlMs?: number;
  /** @default 2 */
  maxConnections?: number;
}

export interface Router {
  /** The instance that should serve the tenant: its lease holder, or the pools' own choice for a free tenant. Null when no member is live. */
  route(tenantId: string): Promise<LeaseOwner | null>;
  /** The instance holding the tenant's lease, or null. */
  ownerOf(tenantId: string): Promise<LeaseOwner | null>;
  close(): Promise<void>;
}

export async function createRouter(options: RouterOptions): Promise<Router> {
  const schema = options.schema ?? 'tenant_pool';
  const ttl = options.leaseTtlMs ?? 10_000;
  const connections = options.maxConnections ?? 2;
  if (typeof options.connectionString !== 'string' || options.connectionString.length === 0) throw poolError('ERR_INVALID_CONFIG', 'Expected `connectionString` to be a PostgreSQL URL');
  if (!Number.isSafeInteger(ttl) || ttl < 1000 || ttl > 3_600_000) throw poolError('ERR_INVALID_CONFIG', `Expected \`leaseTtlMs\` to be an integer from 1000 to 3600000 (the cluster's lease TTL), got ${typeof ttl === 'number' ? ttl : typeof ttl}`);
  if (!Number.isSafeInteger(connections) || connections < 1 || connections > 100) throw poolError('ERR_INVALID_CONFIG', `Expected \`maxConnections\` to be an integer from 1 to 100, got ${typeof connections === 'number' ? connections : typeof connections}`);
  const pool: PgPool = await openPgPool(options.connectionString, schema, connections);
  const query: ClusterQuery = async <R>(what: string, sql: string, params: unknown[]): Promise<R[]> => {
    try {
      return (await pool.query(sql, params)).rows as R[];
    } catch (error) {
      throw pgError(error, what, false);
    }
  };
  // A schema of format 2 (the cluster's first instance of this release has not upgraded it yet) has
  // no lease lives: asked again until it has (a column is never taken away).
  let hasLife = false;
  const life = async (): Promise<boolean> => (hasLife ||= await leasesHaveLife(query, schema));
  return {
    ownerOf: async (tenantId) => leaseOwner(query, schema, checkTenantId(tenantId), await life()),
    route: async (tenantId) => routeTenant(query, schema, ttl, checkTenantId(tenantId), await life()),
    close: async () => {
      await pool.end();
    },
  };
}
