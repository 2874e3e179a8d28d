/**
 * The one way this package connects to PostgreSQL: `pg` loaded only when a PostgreSQL store is
 * opened (it is an optional peer), a pool of at most `maxConnections`, and a schema name checked
 * before it is written into SQL.
 */
import type { Pool as PgPool, PoolConfig } from 'pg';
import { poolError } from '../errors.js';

/** A schema name: it is written into SQL, so only this shape is accepted. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

interface PgModule {
  Pool: new (config: PoolConfig) => PgPool;
}

/**
 * A `pg` pool for `schema`.
 * @throws ERR_INVALID_CONFIG for a bad schema name or a missing `pg` package
 */
export async function openPgPool(connectionString: string, schema: string, maxConnections: number): Promise<PgPool> {
  if (!SCHEMA_NAME.test(schema)) throw poolError('ERR_INVALID_CONFIG', `Expected \`postgres.schema\` to match ${String(SCHEMA_NAME)}, got a string of length ${schema.length}`);
  let pg: PgModule;
  try {
    pg = ((await import('pg')) as { default: PgModule }).default;
  } catch (error) {
    throw poolError('ERR_INVALID_CONFIG', 'the PostgreSQL store needs the `pg` package: npm install pg', error);
  }
  const pool = new pg.Pool({ connectionString, max: maxConnections, connectionTimeoutMillis: 10_000, allowExitOnIdle: true });
  // An idle client's error (the server went away) must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  return pool;
}
