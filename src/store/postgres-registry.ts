/**
 * The tenant registry in PostgreSQL: tenants and routes in shared tables, read through a bounded
 * cache, so that a pool over a million tenants loads none of them at open. A tenant's secrets (its
 * salt, managed secret and key check value) are sealed with a key derived from the root key, bound
 * to the tenant id, so rows cannot be swapped; its settings (label, limits, metadata) stay in plain
 * columns, where `tenants.find` and `tenants.page` can filter them in SQL.
 *
 * `pg` is loaded only when this registry is opened.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Pool as PgPool } from 'pg';
import { asPoolError, poolError } from '../errors.js';
import type { KdfMethod } from '../protocol.js';
import { openPgPool } from './pg.js';
import { rootKeyFrom, type TenantRecord, type TenantWeights } from './registry.js';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

interface Secrets {
  salt: string;
  secret: string | null;
  verifier: string;
}

interface TenantRow {
  tenant_id: string;
  label: string | null;
  kdf: KdfMethod;
  sealed: Buffer;
  max_sessions: number | null;
  weights: TenantWeights | null;
  metadata: Record<string, string>;
  created_at: string;
}

export interface PostgresRegistryOptions {
  connectionString: string;
  schema: string;
  /** The root key: 64 hex characters, or a passphrase (Argon2id). */
  rootKey: string;
  /** Most tenants kept in memory. */
  cacheSize: number;
  maxConnections: number;
}

export class PostgresRegistry {
  readonly #pool: PgPool;
  readonly #s: string;
  readonly #sealKey: Buffer;
  readonly #cacheSize: number;
  /** Least recently used first (a Map keeps insertion order; a hit moves the tenant to the end). */
  readonly #cache = new Map<string, TenantRecord>();

  private constructor(pool: PgPool, schema: string, sealKey: Buffer, cacheSize: number) {
    this.#pool = pool;
    this.#s = schema;
    this.#sealKey = sealKey;
    this.#cacheSize = cacheSize;
  }

  /**
   * Connects, creates the tables on first use (recording the root key's check value), and checks
   * the root key against it.
   * @throws ERR_WALLET_KEY_INVALID for another root key, ERR_STORAGE_UNAVAILABLE when the server cannot be reached
   */
  static async open(options: PostgresRegistryOptions): Promise<PostgresRegistry> {
    const pool = await openPgPool(options.connectionString, options.schema, options.maxConnections);
    const s = options.schema;
    try {
      const client = await pool.connect().catch((error: unknown) => {
        throw poolError('ERR_STORAGE_UNAVAILABLE', `cannot reach the registry database: ${(error as Error).message}`, error);
      });
      let header: { salt: string; keyCheck: string };
      try {
        await client.query('BEGIN');
        await client.query("SELECT pg_advisory_xact_lock(hashtext('tenant-pool registry'))");
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${s}.registry_config (name TEXT PRIMARY KEY, value TEXT NOT NULL)`);
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${s}.tenants (tenant_id TEXT PRIMARY KEY, label TEXT, kdf TEXT NOT NULL, sealed BYTEA NOT NULL,
             max_sessions INTEGER, weights JSONB, metadata JSONB NOT NULL, created_at TEXT NOT NULL)`,
        );
        await client.query(`CREATE INDEX IF NOT EXISTS tenants_by_label ON ${s}.tenants (label, tenant_id)`);
        await client.query(`CREATE TABLE IF NOT EXISTS ${s}.routes (recipient_key TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES ${s}.tenants (tenant_id) ON DELETE CASCADE)`);
        await client.query(`CREATE INDEX IF NOT EXISTS routes_by_tenant ON ${s}.routes (tenant_id)`);
        const rows = (await client.query<{ name: string; value: string }>(`SELECT name, value FROM ${s}.registry_config WHERE name IN ('salt', 'keyCheck')`)).rows;
        const stored = Object.fromEntries(rows.map((r) => [r.name, r.value]));
        header = { salt: stored['salt'] ?? randomBytes(16).toString('hex'), keyCheck: stored['keyCheck'] ?? '' };
        const key = await rootKeyFrom(options.rootKey, header.salt);
        try {
          const check = createHmac('sha256', key).update('tenant-pool registry key check v1').digest('hex');
          if (header.keyCheck === '') {
            await client.query(`INSERT INTO ${s}.registry_config (name, value) VALUES ('salt', $1), ('keyCheck', $2)`, [header.salt, check]);
          } else if (!timingSafeEqual(Buffer.from(check, 'hex'), Buffer.from(header.keyCheck, 'hex'))) {
            throw poolError('ERR_WALLET_KEY_INVALID', 'the root key does not open this registry (rootKey or TENANT_POOL_ROOT_KEY changed?)');
          }
          await client.query('COMMIT');
          const sealKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'tenant-pool registry seal v1', 32));
          return new PostgresRegistry(pool, s, sealKey, options.cacheSize);
        } finally {
          key.fill(0);
        }
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    } catch (error) {
      await pool.end().catch(() => {});
      throw asPoolError(error, 'the registry could not open');
    }
  }

  async #query<R>(what: string, sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.#pool.query(sql, params)).rows as R[];
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === '23505') throw poolError('ERR_TENANT_EXISTS', `${what}: it exists already`, error);
      throw asPoolError(error, `the registry could not record ${what}`);
    }
  }

  #seal(tenantId: string, secrets: Secrets): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const plaintext = Buffer.from(JSON.stringify(secrets), 'utf8');
    const cipher = createCipheriv('chacha20-poly1305', this.#sealKey, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(tenantId, 'utf8'), { plaintextLength: plaintext.length });
    return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  #unseal(tenantId: string, sealed: Buffer): Secrets {
    try {
      const decipher = createDecipheriv('chacha20-poly1305', this.#sealKey, sealed.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(tenantId, 'utf8'), { plaintextLength: sealed.length - NONCE_BYTES - TAG_BYTES });
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      return JSON.parse(Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]).toString('utf8')) as Secrets;
    } catch (error) {
      throw poolError('ERR_WALLET_CORRUPT', `the registry row of tenant ${tenantId} failed its integrity check`, error, { tenantId });
    }
  }

  #toRecord(row: TenantRow): TenantRecord {
    const secrets = this.#unseal(row.tenant_id, row.sealed);
    return {
      tenantId: row.tenant_id,
      ...(row.label === null ? {} : { label: row.label }),
      kdf: row.kdf,
      salt: Buffer.from(secrets.salt, 'hex'),
      secret: secrets.secret === null ? null : Buffer.from(secrets.secret, 'hex'),
      verifier: Buffer.from(secrets.verifier, 'hex'),
      // In the database a wallet is found by its tenant, not by a file.
      walletFile: '',
      ...(row.max_sessions === null ? {} : { maxSessions: row.max_sessions }),
      ...(row.weights === null ? {} : { weights: row.weights }),
      metadata: row.metadata,
      createdAt: row.created_at,
    };
  }

  #remember(record: TenantRecord): void {
    this.#cache.delete(record.tenantId);
    this.#cache.set(record.tenantId, record);
    if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
  }

  /** Tenants held in memory now (at most `cacheSize`). */
  get cached(): number {
    return this.#cache.size;
  }

  async get(tenantId: string): Promise<TenantRecord | undefined> {
    const hit = this.#cache.get(tenantId);
    if (hit !== undefined) {
      this.#remember(hit);
      return hit;
    }
    const [row] = await this.#query<TenantRow>(`a read of tenant ${tenantId}`, `SELECT * FROM ${this.#s}.tenants WHERE tenant_id = $1`, [tenantId]);
    if (row === undefined) return undefined;
    const record = this.#toRecord(row);
    this.#remember(record);
    return record;
  }

  async insert(record: TenantRecord): Promise<void> {
    await this.#query(
      `the creation of tenant ${record.tenantId}`,
      `INSERT INTO ${this.#s}.tenants (tenant_id, label, kdf, sealed, max_sessions, weights, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [record.tenantId, record.label ?? null, record.kdf, this.#seal(record.tenantId, secretsOf(record)), record.maxSessions ?? null, record.weights ?? null, record.metadata, record.createdAt],
    );
    this.#remember(record);
  }

  async update(record: TenantRecord): Promise<void> {
    await this.#query(`an update of tenant ${record.tenantId}`, `UPDATE ${this.#s}.tenants SET label = $2, max_sessions = $3, weights = $4, metadata = $5 WHERE tenant_id = $1`, [
      record.tenantId,
      record.label ?? null,
      record.maxSessions ?? null,
      record.weights ?? null,
      record.metadata,
    ]);
    this.#cache.delete(record.tenantId);
  }

  /** The commit point of a rekey: the tenant's new key material, sealed. */
  async replaceKey(tenantId: string, key: Pick<TenantRecord, 'kdf' | 'salt' | 'secret' | 'verifier'>): Promise<void> {
    await this.#query(`the new key of tenant ${tenantId}`, `UPDATE ${this.#s}.tenants SET kdf = $2, sealed = $3 WHERE tenant_id = $1`, [tenantId, key.kdf, this.#seal(tenantId, secretsOf(key))]);
    this.#cache.delete(tenantId);
  }

  /** Deletes the tenant and its routes; returns whether it existed. */
  async delete(tenantId: string): Promise<boolean> {
    const rows = await this.#query(`the deletion of tenant ${tenantId}`, `DELETE FROM ${this.#s}.tenants WHERE tenant_id = $1 RETURNING tenant_id`, [tenantId]);
    this.#cache.delete(tenantId);
    return rows.length > 0;
  }

  /** Tenants in id order after `after`, filtered by label and metadata in SQL. */
  async page(options: { after: string; limit: number; label?: string; metadata?: Record<string, string> }): Promise<TenantRecord[]> {
    const params: unknown[] = [options.after, options.limit];
    let where = '';
    if (options.label !== undefined) {
      params.push(options.label);
      where += ` AND label = $${params.length}`;
    }
    if (options.metadata !== undefined && Object.keys(options.metadata).length > 0) {
      params.push(options.metadata);
      where += ` AND metadata @> $${params.length}`;
    }
    const rows = await this.#query<TenantRow>('a page of tenants', `SELECT * FROM ${this.#s}.tenants WHERE tenant_id > $1${where} ORDER BY tenant_id LIMIT $2`, params);
    return rows.map((row) => this.#toRecord(row));
  }

  async count(): Promise<number> {
    const [row] = await this.#query<{ n: number }>('a count of tenants', `SELECT count(*)::int AS n FROM ${this.#s}.tenants`, []);
    return row!.n;
  }

  async addRoute(recipientKey: string, tenantId: string): Promise<void> {
    await this.#query(`a route of tenant ${tenantId}`, `INSERT INTO ${this.#s}.routes (recipient_key, tenant_id) VALUES ($1, $2) ON CONFLICT (recipient_key) DO UPDATE SET tenant_id = EXCLUDED.tenant_id`, [recipientKey, tenantId]);
  }

  async removeRoute(recipientKey: string): Promise<boolean> {
    return (await this.#query('the removal of a route', `DELETE FROM ${this.#s}.routes WHERE recipient_key = $1 RETURNING tenant_id`, [recipientKey])).length > 0;
  }

  async routeOf(recipientKey: string): Promise<string | undefined> {
    const [row] = await this.#query<{ tenant_id: string }>('a route', `SELECT tenant_id FROM ${this.#s}.routes WHERE recipient_key = $1`, [recipientKey]);
    return row?.tenant_id;
  }

  async routesOf(tenantId: string): Promise<string[]> {
    return (await this.#query<{ recipient_key: string }>(`the routes of tenant ${tenantId}`, `SELECT recipient_key FROM ${this.#s}.routes WHERE tenant_id = $1 ORDER BY recipient_key`, [tenantId])).map((r) => r.recipient_key);
  }

  async close(): Promise<void> {
    this.#sealKey.fill(0);
    this.#cache.clear();
    await this.#pool.end();
  }
}

function secretsOf(record: Pick<TenantRecord, 'salt' | 'secret' | 'verifier'>): Secrets {
  return { salt: record.salt.toString('hex'), secret: record.secret === null ? null : record.secret.toString('hex'), verifier: record.verifier.toString('hex') };
}
