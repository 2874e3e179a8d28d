/**
 * The one way this package connects to PostgreSQL: `pg` loaded only when a PostgreSQL store is
 * opened (it is an optional peer), a pool of at most `maxConnections`, and a schema name checked
 * before it is written into SQL.
 */
import type { Pool as PgPool, PoolClient, PoolConfig } from 'pg';
import { asPoolError, poolError, type TenantPoolError } from './errors.js';

/** How long the server lets one of the pool's transactions sit idle before ending it. */
export const IDLE_IN_TRANSACTION_MS = 5000;

/** A schema name: it is written into SQL, so only this shape is accepted. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

interface PgModule {
  Pool: new (config: PoolConfig) => PgPool;
}

/**
 * A `pg` pool for `schema`.
 * @throws ERR_INVALID_CONFIG for a bad schema name or a missing `pg` package
 */
/**
 * The advisory lock's name by which one pool owns a schema (without the cluster option). Cluster
 * instances share the schema and take no such lock, but check that no single pool holds it.
 */
export function ownerLockName(schema: string): string {
  return `tenant-pool owner ${schema}`;
}

/**
 * The fence of a pool that owns its schema alone, checked first in each of its write transactions:
 * a shared advisory lock held to the transaction's end, then the ownership row with the pool's
 * epoch (two statements, so the read sees a takeover that the lock waited for). A takeover takes
 * the same lock exclusively (`lockOwnershipChange`) before it changes the row, so it waits for the
 * writes under way, and writes that start meanwhile wait for it and then find the new epoch. The
 * lock lives in the server's memory: no row lock, no WAL record per write (a row lock `FOR SHARE`
 * cost a save about a fifth more). Returns whether the schema is still owned under `epoch`.
 */
export async function checkOwnerEpoch(client: PoolClient, schema: string, epoch: number): Promise<boolean> {
  // One round trip, two statements (the simple protocol: no parameters; the schema name is checked, the epoch a number).
  const results = (await client.query(
    `SELECT pg_advisory_xact_lock_shared(hashtext('tenant-pool ownership ${schema}')); SELECT 1 FROM ${schema}.ownership WHERE mode = 'single' AND epoch = ${Math.trunc(epoch)}`,
  )) as unknown as Array<{ rowCount: number | null }>;
  return (results[1]?.rowCount ?? 0) > 0;
}

/** Before a change of the schema's owner, in its transaction: waits for every write under way of the pool that owned it (see `checkOwnerEpoch`). */
export async function lockOwnershipChange(client: PoolClient, schema: string): Promise<void> {
  await client.query(`SELECT pg_advisory_xact_lock(hashtext('tenant-pool ownership ${schema}'))`);
}

/**
 * A pool of connections to the schema. `lockTimeoutMs` cancels a statement that waits that long
 * for a row lock (a lease's: no use waiting past the time its answer is good for).
 */
export async function openPgPool(connectionString: string, schema: string, maxConnections: number, lockTimeoutMs?: number): Promise<PgPool> {
  if (!SCHEMA_NAME.test(schema)) throw poolError('ERR_INVALID_CONFIG', `Expected \`postgres.schema\` to match ${String(SCHEMA_NAME)}, got a string of length ${schema.length}`);
  let pg: PgModule;
  try {
    pg = ((await import('pg')) as { default: PgModule }).default;
  } catch (error) {
    throw poolError('ERR_INVALID_CONFIG', 'the PostgreSQL store needs the `pg` package: npm install pg', error);
  }
  // Named after the schema: an operator sees in pg_stat_activity which pool holds which connections.
  // The pool's transactions are a few statements sent back to back: one left idle (its process
  // stopped, SIGSTOP or a VM pause) is ended by the server, so its locks (a lease row's, in cluster
  // mode) do not outlive it.
  const pool = new pg.Pool({
    connectionString,
    max: maxConnections,
    connectionTimeoutMillis: 10_000,
    allowExitOnIdle: true,
    application_name: `tenant-pool:${schema}`,
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    ...(lockTimeoutMs === undefined ? {} : { lock_timeout: lockTimeoutMs }),
  });
  // An idle client's error (the server went away) must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  return pool;
}

/**
 * A PostgreSQL failure as the pool reports it: a refused or lost connection is retryable
 * (`ERR_STORAGE_UNAVAILABLE`, with `outcome: 'unknown'` for a write), never a hang.
 */
export function pgError(error: unknown, what: string, isWrite: boolean): TenantPoolError {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  // 53300 too_many_connections, 57P01-03 shutdown (pg_terminate_backend, a restart), 08xxx
  // connection exceptions, refused or reset sockets, and a connection that ended under the query.
  if (
    code === '53300' ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    code === '25P03' ||
    (typeof code === 'string' && (code.startsWith('08') || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOTFOUND' || code === 'ETIMEDOUT')) ||
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message)
  ) {
    return poolError(
      'ERR_STORAGE_UNAVAILABLE',
      `${what}: the database refused or lost the connection (${typeof code === 'string' ? code : message}); retry${isWrite ? ' after reading back: a write cut off at its commit may have committed' : ''}`,
      error,
      isWrite ? { outcome: 'unknown' } : undefined,
    );
  }
  // 55P03 lock_not_available: a row this statement needs stayed locked past the lock timeout.
  if (code === '55P03') return poolError('ERR_STORAGE_UNAVAILABLE', `${what}: a row it needs stayed locked elsewhere past the lock timeout; retry`, error);
  if (code === '53100') return poolError('ERR_STORAGE_FULL', `${what}: the database disk is full`, error);
  if (code === '25006') return poolError('ERR_STORAGE_READONLY', `${what}: the database is read-only`, error);
  return asPoolError(error, what);
}

/**
 * Runs `fn` in one transaction on one connection. A connection that failed is dropped, not given
 * back to the pool; any other failure rolls back.
 */
export async function inTransaction<T>(pool: PgPool, what: string, fn: (client: PoolClient) => Promise<T>, isolation = ''): Promise<T> {
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw pgError(error, what, false);
  }
  let result: T;
  try {
    await client.query(`BEGIN${isolation === '' ? '' : ` ISOLATION LEVEL ${isolation}`}`);
    result = await fn(client);
    await client.query('COMMIT');
  } catch (error) {
    const failure = error instanceof Error && error.name === 'TenantPoolError' ? (error as TenantPoolError) : pgError(error, what, true);
    if (failure.code === 'ERR_STORAGE_UNAVAILABLE') {
      client.release(true);
    } else {
      await client.query('ROLLBACK').catch(() => {});
      client.release();
    }
    throw failure;
  }
  client.release();
  return result;
}

/**
 * Creates the schema's tables if missing: the registry (tenants, routes, its key check) and the
 * wallets (one row per wallet with its wrapped profile key; items, tags and keys of all wallets in
 * shared tables). Several pools may start at once: one creates, the others wait and find it done.
 */
export async function createSchema(client: PoolClient, s: string): Promise<void> {
  await client.query("SELECT pg_advisory_xact_lock(hashtext('tenant-pool schema'))");
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.registry_config (name TEXT PRIMARY KEY, value TEXT NOT NULL)`);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${s}.tenants (tenant_id TEXT PRIMARY KEY, label TEXT, kdf TEXT NOT NULL, sealed BYTEA NOT NULL, settings BYTEA NOT NULL,
       max_sessions INTEGER, weights JSONB, metadata JSONB NOT NULL, created_at TEXT NOT NULL, wallet_name TEXT NOT NULL)`,
  );
  await client.query(`CREATE INDEX IF NOT EXISTS tenants_by_label ON ${s}.tenants (label, tenant_id)`);
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.routes (recipient_key TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES ${s}.tenants (tenant_id) ON DELETE CASCADE)`);
  await client.query(`CREATE INDEX IF NOT EXISTS routes_by_tenant ON ${s}.routes (tenant_id)`);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${s}.wallets (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
       profile_key BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
  );
  await client.query(`CREATE INDEX IF NOT EXISTS wallets_by_tenant ON ${s}.wallets (tenant_id)`);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${s}.items (id BIGSERIAL PRIMARY KEY, wallet_id BIGINT NOT NULL REFERENCES ${s}.wallets (id) ON DELETE CASCADE,
       category BYTEA NOT NULL, name BYTEA NOT NULL, value BYTEA NOT NULL, UNIQUE (wallet_id, category, name))`,
  );
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${s}.item_tags (item_id BIGINT NOT NULL REFERENCES ${s}.items (id) ON DELETE CASCADE,
       name BYTEA NOT NULL, value BYTEA NOT NULL, PRIMARY KEY (item_id, name))`,
  );
  await client.query(`CREATE INDEX IF NOT EXISTS item_tags_by_value ON ${s}.item_tags (name, value, item_id)`);
  // Cluster mode: the live instances, and which of them holds each open tenant (its lease and epoch).
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.members (instance_id TEXT PRIMARY KEY, address TEXT, heartbeat_at TIMESTAMPTZ NOT NULL, started_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
  // Each member's lease TTL: how long its heartbeat counts as live, to a pool that would open the schema alone.
  await client.query(`ALTER TABLE ${s}.members ADD COLUMN IF NOT EXISTS lease_ttl_ms INTEGER`);
  // Which life of an instance id the row is (a random token per join): a former life, paused and resumed, neither beats for nor removes the present one.
  await client.query(`ALTER TABLE ${s}.members ADD COLUMN IF NOT EXISTS life TEXT`);
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.leases (tenant_id TEXT PRIMARY KEY, owner TEXT NOT NULL, epoch BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)`);
  await client.query(`CREATE INDEX IF NOT EXISTS leases_by_owner ON ${s}.leases (owner)`);
  // Fencing tokens: every take draws a new one, never used before by any tenant (a released lease's row is deleted; its epoch does not start over).
  await client.query(`CREATE SEQUENCE IF NOT EXISTS ${s}.lease_epochs AS BIGINT`);
  // Who may write the schema: one pool alone ('single', fenced by this epoch), the cluster's
  // members ('cluster', each tenant fenced by its lease), or nobody yet ('none'). One row; a
  // change of owner draws a new epoch from the same sequence, so a token is never used twice.
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.ownership (singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton), mode TEXT NOT NULL, epoch BIGINT NOT NULL)`);
  await client.query(`INSERT INTO ${s}.ownership (singleton, mode, epoch) VALUES (true, 'none', 0) ON CONFLICT DO NOTHING`);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${s}.wallet_keys (wallet_id BIGINT NOT NULL REFERENCES ${s}.wallets (id) ON DELETE CASCADE,
       kid BYTEA NOT NULL, id BIGSERIAL, public_key BYTEA NOT NULL, private_key BYTEA NOT NULL, created_at BYTEA NOT NULL, PRIMARY KEY (wallet_id, kid))`,
  );
}
