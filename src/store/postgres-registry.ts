/**
 * The tenant registry in PostgreSQL: tenants and routes in shared tables, read through a bounded
 * cache, so that a pool over a million tenants loads none of them at open. A tenant's secrets (its
 * salt, managed secret and key check value) and its label and metadata are sealed with a key
 * derived from the root key, bound to the tenant id, so rows cannot be swapped. For
 * `tenants.find` and `tenants.page` to filter in SQL, the label and each metadata entry are also
 * kept as keyed hashes (HMAC): equal values compare equal, and the database learns nothing else.
 * So are the routes' public keys (`h1:` and the hash): dispatch finds the tenant of a key, and the
 * database cannot tell which public keys a tenant has. Limits, weights, KDF and creation time are
 * plain.
 *
 * The wallets live in the same schema (see `workers/store/postgres-wallet.ts`); a delete removes
 * the tenant's row and its wallet's rows in one transaction, and a rekey writes the tenant's new
 * key and its wallet's rewrapped profile key in one transaction.
 *
 * One pool owns a schema at a time. It holds a session advisory lock on a connection of its own
 * while it is open (a second pool gets `ERR_DATA_DIR_LOCKED` naming the holder), and its ownership
 * is recorded with an epoch (the `ownership` row) that every write it makes, here and in the
 * workers, checks in its own transaction: a lock can be lost with its connection (a server restart)
 * while the pool goes on, but once anyone else took the schema the epoch changed, and the pool's
 * writes fail `ERR_OWNERSHIP_LOST` and change nothing. On reconnect it checks the epoch too.
 *
 * `pg` is loaded only when this registry is opened.
 */
import { checkKdfParams, type KdfParams } from '../../common/kdf.js';
import { formatTooNew, KDF_PARAMS_FORMAT, SCHEMA_FORMAT, upgradeRequired, type UpgradeMode } from '../../common/formats.js';
import { completeUpgrade, expandSchema, olderMembers, recordNewSchema, schemaFormat } from './pg-format.js';
import type { UpgradeProgress } from './sqlite-format.js';
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { hostname } from 'node:os';
import type { Pool as PgPool, PoolClient } from 'pg';
import { asPoolError, poolError, type TenantPoolError } from '../../common/errors.js';
import type { KdfMethod, StoreConfig } from '../../common/protocol.js';
import { checkOwnerEpoch, createSchema, inTransaction, lockOwnershipChange, openPgPool, ownerLockName, pgError } from '../../common/pg.js';
import { paramsOf, rootKeyFrom, routeConflict, type TenantRecord, type TenantWeights } from './tenant-store.js';
import type { TenantKey, TenantStore } from './tenant-store.js';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

interface Secrets {
  salt: string;
  secret: string | null;
  verifier: string;
}

/** What the settings column seals. */
interface Settings {
  label: string | null;
  metadata: Record<string, string>;
}

interface TenantRow {
  tenant_id: string;
  kdf: KdfMethod;
  /** Format 2: the Argon2 parameters; null for `raw`, and for rows of format 1 an upgrade has not reached (or an instance of 0.1.0 wrote). */
  kdf_params?: unknown;
  sealed: Buffer;
  settings: Buffer;
  max_sessions: number | null;
  weights: TenantWeights | null;
  created_at: string;
  wallet_name: string;
}

export interface PostgresRegistryOptions {
  /** Whether a schema of an older format is upgraded at open. @default 'auto' */
  upgrade?: UpgradeMode;
  /** Progress of an upgrade, for the `upgrade` command. */
  progress?: UpgradeProgress;
  connectionString: string;
  schema: string;
  /** The root key: 64 hex characters, or a passphrase (Argon2id). */
  rootKey: string;
  /** Most tenants kept in memory. */
  cacheSize: number;
  maxConnections: number;
  /** What the workers are told: their connections each. */
  connectionsPerWorker: number;
  /** The owner's connection does not keep the process alive (the pool's `allowExitOnIdle`). */
  allowExitOnIdle?: boolean;
  /** Where a lost ownership is reported. */
  warn?: (message: string, code: string) => void;
  /** The schema was taken by another pool or the cluster's instances (seen on reconnect, or by a fenced write): stop serving. */
  onOwnershipLost?: (error: TenantPoolError) => void;
  /** The wallets the sweep at open removed: rows no tenant names (a create killed before its registry row). */
  onSwept?: (removed: string[]) => void;
  /**
   * false in cluster mode: several instances share the schema (each tenant under a lease), so no
   * instance owns it, and the sweep spares wallets young enough to be a create under way elsewhere.
   * @default true
   */
  exclusive?: boolean;
}

/** In cluster mode, a wallet no tenant names is swept only when older than this: a create under way on another instance is younger. */
const ORPHAN_AGE_IN_CLUSTER = '1 hour';

export class PostgresRegistry implements TenantStore {
  readonly kind = 'postgres';
  readonly rekeysInPlace = true;
  readonly workerStore: StoreConfig;
  readonly #pool: PgPool;
  /** The owner's connection, holding the schema's advisory lock; none in cluster mode (`exclusive: false`), where instances share the schema. */
  #owner: { pool: PgPool; client: PoolClient } | undefined;
  readonly #options: PostgresRegistryOptions;
  readonly #s: string;
  #sealKey: Buffer;
  readonly #indexKey: Buffer;
  /** The root key's check value as this registry opened (or rotated) it: a write finding another one in the schema writes nothing (the key was rotated elsewhere). */
  #keyCheck: string;
  /** A rotation under way in this process: registry writes wait for it. */
  #rotating: Promise<void> | undefined;
  readonly #cacheSize: number;
  /** Least recently used first (a Map keeps insertion order; a hit moves the tenant to the end). */
  readonly #cache = new Map<string, TenantRecord>();
  #isClosed = false;
  /** Without cluster mode: the epoch of this pool's ownership of the schema, which its writes check. */
  readonly #ownerEpoch: number | undefined;
  #ownershipLost: TenantPoolError | undefined;

  private constructor(pool: PgPool, owner: { pool: PgPool; client: PoolClient; epoch: number } | undefined, options: PostgresRegistryOptions, keys: RegistryKeys) {
    this.#pool = pool;
    this.#owner = owner;
    this.#ownerEpoch = owner?.epoch;
    this.#options = options;
    if (owner !== undefined) this.#watchOwner(owner.client);
    this.#s = options.schema;
    this.#sealKey = keys.seal;
    this.#indexKey = keys.index;
    this.#keyCheck = keys.check;
    this.#cacheSize = options.cacheSize;
    this.workerStore = {
      kind: 'postgres',
      connectionString: options.connectionString,
      schema: options.schema,
      connectionsPerWorker: options.connectionsPerWorker,
      ...(owner === undefined ? {} : { ownerEpoch: owner.epoch }),
    };
  }

  /**
   * Connects, creates the tables on first use (recording the root key's check value), and checks
   * the root key against it.
   * @throws ERR_WALLET_KEY_INVALID for another root key, ERR_STORAGE_UNAVAILABLE when the server cannot be reached
   */
  static async open(options: PostgresRegistryOptions): Promise<PostgresRegistry> {
    const pool = await openPgPool(options.connectionString, options.schema, options.maxConnections);
    const ownerPool = options.exclusive === false ? undefined : await openPgPool(options.connectionString, options.schema, 1);
    const s = options.schema;
    let owner: PoolClient | undefined;
    try {
      // Cluster mode has no owner: the instances share the schema.
      if (ownerPool !== undefined) {
        owner = await ownerPool.connect().catch((error: unknown) => {
          throw pgError(error, 'cannot reach the registry database', false);
        });
        if (!(await takeOwnership(owner, s))) {
          const holder = await readHolder(owner, s);
          const who = holder === undefined ? 'another pool' : `pid ${holder.pid} on host ${holder.host} (open since ${holder.since})`;
          throw poolError('ERR_DATA_DIR_LOCKED', `the PostgreSQL schema ${s} is in use by ${who}; one pool owns a schema at a time`, undefined, holder === undefined ? undefined : { holder });
        }
      }
      let epoch: number | undefined;
      let upgradeFrom: number | undefined;
      const keys = await inTransaction(pool, 'opening the registry', async (client) => {
        await createSchema(client, s);
        // A single pool next to live cluster instances would open wallets under no lease. Checked
        // after the owner's lock was taken and with the ownership row locked, as an instance checks
        // the lock with that row locked when it joins: of a pool and an instance starting together,
        // at most one goes on.
        if (options.exclusive !== false) {
          await client.query(`SELECT epoch FROM ${s}.ownership FOR UPDATE`);
          const live = (await client.query<{ instance_id: string }>(`SELECT instance_id FROM ${s}.members WHERE heartbeat_at > now() - COALESCE(lease_ttl_ms, 10000) * interval '1 millisecond' ORDER BY instance_id`)).rows.map((r) => r.instance_id);
          if (live.length > 0) {
            throw poolError('ERR_DATA_DIR_LOCKED', `the PostgreSQL schema ${s} is in use by cluster instances (${live.join(', ')}); open this pool with the cluster option to join them, or stop them first`, undefined, { instances: live });
          }
          // The schema is this pool's from now on, under a new epoch. Leases of instances gone quiet
          // go: a paused instance that wakes up finds its tenants' leases gone, so its writes fail.
          await lockOwnershipChange(client, s);
          epoch = Number((await client.query<{ epoch: string }>(`UPDATE ${s}.ownership SET mode = 'single', epoch = nextval('${s}.lease_epochs') RETURNING epoch`)).rows[0]!.epoch);
          await client.query(`DELETE FROM ${s}.leases`);
        }
        const rows = (await client.query<{ name: string; value: string }>(`SELECT name, value FROM ${s}.registry_config WHERE name IN ('salt', 'keyCheck')`)).rows;
        const stored = Object.fromEntries(rows.map((r) => [r.name, r.value]));
        const header = { salt: stored['salt'] ?? randomBytes(16).toString('hex'), keyCheck: stored['keyCheck'] ?? '' };
        // The format: a new schema is born at this release's; an older one is upgraded (its additive
        // DDL here, its backfill after this transaction) or refused; a newer one is always refused.
        const format = await schemaFormat(client, s);
        if (header.keyCheck === '' && format === 1) {
          await recordNewSchema(client, s);
        } else if (format > SCHEMA_FORMAT) {
          throw formatTooNew(`the PostgreSQL schema ${s}`, format, SCHEMA_FORMAT);
        } else if (format < SCHEMA_FORMAT) {
          if (options.upgrade === 'never') throw upgradeRequired(`the PostgreSQL schema ${s}`, format, SCHEMA_FORMAT, `tenant-pool upgrade --postgres "$TENANT_POOL_POSTGRES_URL" --schema ${s}`);
          await expandSchema(client, s, format);
          upgradeFrom = format;
        }
        const key = await rootKeyFrom(options.rootKey, header.salt);
        try {
          const check = createHmac('sha256', key).update('tenant-pool registry key check v1').digest('hex');
          if (header.keyCheck === '') {
            await client.query(`INSERT INTO ${s}.registry_config (name, value) VALUES ('salt', $1), ('keyCheck', $2)`, [header.salt, check]);
          } else if (!timingSafeEqual(Buffer.from(check, 'hex'), Buffer.from(header.keyCheck, 'hex'))) {
            throw poolError('ERR_WALLET_KEY_INVALID', 'the root key does not open this registry (rootKey or TENANT_POOL_ROOT_KEY changed?)');
          }
          // Wallets of creates that never reached their registry row (a kill in between). A pool that
          // owns the schema has no create of another under way; in cluster mode, one may be, so only
          // orphans older than any create are swept.
          const young = options.exclusive === false ? ` AND w.created_at < now() - interval '${ORPHAN_AGE_IN_CLUSTER}'` : '';
          const swept = await client.query<{ name: string }>(`DELETE FROM ${s}.wallets w WHERE NOT EXISTS (SELECT 1 FROM ${s}.tenants t WHERE t.wallet_name = w.name)${young} RETURNING name`);
          if (swept.rows.length > 0) options.onSwept?.(swept.rows.map((r) => r.name).sort());
          const keys = await registryKeys(client, s, key, check);
          try {
            await hashPlainRoutes(client, s, keys.index);
          } catch (error) {
            keys.seal.fill(0);
            keys.index.fill(0);
            throw error;
          }
          return keys;
        } finally {
          key.fill(0);
        }
      });
      if (upgradeFrom !== undefined) {
        await completeUpgrade(pool, s, upgradeFrom, options.progress).catch((error: unknown) => {
          keys.seal.fill(0);
          keys.index.fill(0);
          throw error;
        });
        options.warn?.(`tenant-pool upgraded the PostgreSQL schema ${s} from format ${upgradeFrom} to format ${SCHEMA_FORMAT}`, 'TENANT_POOL_UPGRADED');
      }
      if (options.allowExitOnIdle === true) (owner as unknown as { connection?: { stream?: { unref?: () => void } } } | undefined)?.connection?.stream?.unref?.();
      return new PostgresRegistry(pool, ownerPool === undefined || owner === undefined || epoch === undefined ? undefined : { pool: ownerPool, client: owner, epoch }, options, keys);
    } catch (error) {
      owner?.release(true);
      await Promise.allSettled([pool.end(), ownerPool?.end()]);
      throw asPoolError(error, 'the registry could not open');
    }
  }

  async #query<R>(what: string, sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.#pool.query(sql, params)).rows as R[];
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === '23505') throw poolError('ERR_TENANT_EXISTS', `${what}: it exists already`, error);
      throw pgError(error, `the registry could not record ${what}`, !sql.startsWith('SELECT'));
    }
  }

  /**
   * A write of the registry, in one transaction that first checks (without cluster mode) that the
   * schema is still this pool's: its ownership row with this pool's epoch, under the ownership fence. A pool that
   * lost the schema writes nothing.
   */
  async #write<T>(what: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
    if (this.#ownershipLost !== undefined) throw poolError('ERR_OWNERSHIP_LOST', this.#ownershipLost.message);
    await this.#rotating;
    return inTransaction(this.#pool, what, async (client) => {
      if (this.#ownerEpoch !== undefined) {
        if (!(await checkOwnerEpoch(client, this.#s, this.#ownerEpoch))) throw this.#lost(`${what}: the PostgreSQL schema ${this.#s} was taken by another pool or by cluster instances; nothing was written`);
      }
      // The root key as this registry knows it, held for the transaction: a rotation (which updates
      // this row) waits for this write, or this write finds the new key and writes nothing.
      const { rows } = await client.query<{ value: string }>(`SELECT value FROM ${this.#s}.registry_config WHERE name = 'keyCheck' FOR SHARE`);
      if (rows[0]?.value !== this.#keyCheck) throw rotatedElsewhere(this.#s, what);
      return fn(client);
    });
  }

  /**
   * Re-seals every tenant's secrets and settings under a new registry key, wrapped by the new root
   * key, in one transaction (with the new salt and key check): killed at any moment, the schema
   * opens with the old root key or the new, never neither, and a second run completes it. The keyed
   * hashes (labels, metadata, routes) keep their key, rewrapped. Other cluster instances find the
   * new key at their next registry write (`ERR_WALLET_KEY_INVALID`: restart them with it) and are
   * sent a NOTIFY; wallets are not touched (their keys come from the tenants' own secrets).
   * @throws ERR_UPGRADE_REQUIRED while a cluster member of an older release is live (it derives the registry key from the root key)
   */
  async rotateRootKey(newRootKey: string, progress: (done: number, total: number) => void = () => {}): Promise<void> {
    if (this.#ownershipLost !== undefined) throw poolError('ERR_OWNERSHIP_LOST', this.#ownershipLost.message);
    const previous = this.#rotating;
    let done!: () => void;
    this.#rotating = new Promise((resolve) => (done = resolve));
    await previous;
    const s = this.#s;
    const seal = randomBytes(32);
    try {
      const check = await inTransaction(this.#pool, 'rotating the root key', async (client) => {
        if (this.#ownerEpoch !== undefined && !(await checkOwnerEpoch(client, s, this.#ownerEpoch))) throw this.#lost(`rotating the root key: the PostgreSQL schema ${s} was taken by another pool or by cluster instances; nothing was written`);
        const { rows } = await client.query<{ value: string }>(`SELECT value FROM ${s}.registry_config WHERE name = 'keyCheck' FOR UPDATE`);
        if (rows[0]?.value !== this.#keyCheck) throw rotatedElsewhere(s, 'rotating the root key');
        const older = (await olderMembers(client, s)).filter((m) => m.format < KDF_PARAMS_FORMAT).map((m) => m.instanceId);
        if (older.length > 0) throw poolError('ERR_UPGRADE_REQUIRED', `live cluster instances of an older release (${older.join(', ')}) derive the registry key from the root key: finish the rolling upgrade, then rotate`, undefined, { instances: older });
        const salt = randomBytes(16).toString('hex');
        const root = await rootKeyFrom(newRootKey, salt);
        try {
          const check = createHmac('sha256', root).update('tenant-pool registry key check v1').digest('hex');
          const tenants = (await client.query<{ tenant_id: string; sealed: Buffer; settings: Buffer }>(`SELECT tenant_id, sealed, settings FROM ${s}.tenants ORDER BY tenant_id FOR UPDATE`)).rows;
          for (let i = 0; i < tenants.length; i += 1000) {
            const chunk = tenants.slice(i, i + 1000);
            await client.query(`UPDATE ${s}.tenants t SET sealed = u.sealed, settings = u.settings FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(tenant_id, sealed, settings) WHERE t.tenant_id = u.tenant_id`, [
              chunk.map((t) => t.tenant_id),
              chunk.map((t) => sealWith(seal, t.tenant_id, 'sealed', this.#unseal(t.tenant_id, 'sealed', t.sealed))),
              chunk.map((t) => sealWith(seal, t.tenant_id, 'settings', this.#unseal(t.tenant_id, 'settings', t.settings))),
            ]);
            progress(Math.min(i + 1000, tenants.length), tenants.length);
          }
          await client.query(`UPDATE ${s}.registry_config SET value = CASE name WHEN 'salt' THEN $1 WHEN 'keyCheck' THEN $2 ELSE $3 END WHERE name IN ('salt', 'keyCheck', 'keys')`, [salt, check, wrapKeys(root, seal, this.#indexKey)]);
          await client.query(`SELECT pg_notify($1, $2)`, [`tenant_pool_${s}`, JSON.stringify({ rootKeyRotated: true })]);
          return check;
        } finally {
          root.fill(0);
        }
      });
      // Committed: from here this registry seals under the new key.
      this.#sealKey.fill(0);
      this.#sealKey = seal;
      this.#keyCheck = check;
      this.#cache.clear();
    } catch (error) {
      seal.fill(0);
      throw error;
    } finally {
      done();
    }
  }

  /** This pool no longer owns the schema: said once (the pool stops serving); each caller gets an error of its own. */
  #lost(message: string): TenantPoolError {
    const error = poolError('ERR_OWNERSHIP_LOST', message);
    if (this.#ownershipLost === undefined) {
      this.#ownershipLost = error;
      this.#options.onOwnershipLost?.(error);
    }
    return error;
  }

  /** Sealed under the registry key, bound to the tenant and the column (`what`): a value moved to another row or column fails its check. */
  #seal(tenantId: string, what: 'sealed' | 'settings', value: Secrets | Settings): Buffer {
    return sealWith(this.#sealKey, tenantId, what, value);
  }

  #unseal<T>(tenantId: string, what: 'sealed' | 'settings', sealed: Buffer): T {
    try {
      const decipher = createDecipheriv('chacha20-poly1305', this.#sealKey, sealed.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(`${what}\0${tenantId}`, 'utf8'), { plaintextLength: sealed.length - NONCE_BYTES - TAG_BYTES });
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      return JSON.parse(Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]).toString('utf8')) as T;
    } catch (error) {
      throw poolError('ERR_WALLET_CORRUPT', `the registry row of tenant ${tenantId} failed its integrity check (if another instance rotated the root key, restart this one with the new key)`, error, { tenantId });
    }
  }

  /** A keyed hash: what the database compares instead of a label or a metadata entry. */
  #index(...parts: string[]): string {
    const mac = createHmac('sha256', this.#indexKey);
    for (const part of parts) mac.update(Buffer.from(part, 'utf8')).update(Buffer.from([0]));
    return mac.digest('base64url');
  }

  #labelIndex(label: string | undefined): string | null {
    return label === undefined ? null : this.#index('label', label);
  }

  #metadataIndex(metadata: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(metadata)) Object.defineProperty(out, this.#index('metadata key', k), { value: this.#index('metadata value', k, v), enumerable: true, writable: true, configurable: true });
    return out;
  }

  #toRecord(row: TenantRow): TenantRecord {
    const secrets = this.#unseal<Secrets>(row.tenant_id, 'sealed', row.sealed);
    const settings = this.#unseal<Settings>(row.tenant_id, 'settings', row.settings);
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(settings.metadata)) Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    let recorded: KdfParams | undefined;
    if (row.kdf_params !== undefined && row.kdf_params !== null) {
      recorded = checkKdfParams(row.kdf_params);
      if (recorded === undefined) throw poolError('ERR_WALLET_CORRUPT', `the registry's KDF parameters of tenant ${row.tenant_id} are damaged`, undefined, { tenantId: row.tenant_id });
    }
    const kdfParams = paramsOf(row.kdf, recorded);
    return {
      tenantId: row.tenant_id,
      ...(settings.label === null ? {} : { label: settings.label }),
      kdf: row.kdf,
      ...(kdfParams === undefined ? {} : { kdfParams }),
      salt: Buffer.from(secrets.salt, 'hex'),
      secret: secrets.secret === null ? null : Buffer.from(secrets.secret, 'hex'),
      verifier: Buffer.from(secrets.verifier, 'hex'),
      walletFile: row.wallet_name,
      ...(row.max_sessions === null ? {} : { maxSessions: row.max_sessions }),
      ...(row.weights === null ? {} : { weights: row.weights }),
      metadata,
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

  peek(tenantId: string): TenantRecord | null {
    const hit = this.#cache.get(tenantId);
    if (hit === undefined) return null;
    this.#remember(hit);
    return hit;
  }

  /**
   * The tenant: from the cache, or read. In cluster mode other instances change tenants too (a
   * delete or rekey under the tenant's lease), so every `get` reads the row; the cache serves only
   * `peek` (admission's weights and limits), and a wallet opens with what `get` read.
   */
  async get(tenantId: string): Promise<TenantRecord | undefined> {
    const hit = this.#options.exclusive === false ? undefined : this.#cache.get(tenantId);
    if (hit !== undefined) {
      this.#remember(hit);
      return hit;
    }
    const [row] = await this.#query<TenantRow>(`a read of tenant ${tenantId}`, `SELECT * FROM ${this.#s}.tenants WHERE tenant_id = $1`, [tenantId]);
    if (row === undefined) {
      this.#cache.delete(tenantId);
      return undefined;
    }
    const record = this.#toRecord(row);
    this.#remember(record);
    return record;
  }

  /** A tenant row read with another statement (a cluster take reads it with the lease): the record, remembered as `get` would. */
  adoptRow(row: Record<string, unknown>): TenantRecord {
    const record = this.#toRecord(row as unknown as TenantRow);
    this.#remember(record);
    return record;
  }

  newWalletName(tenantId: string): string {
    return `${tenantId}.${randomBytes(8).toString('hex')}`;
  }

  walletRef(record: Pick<TenantRecord, 'walletFile'>): string {
    return record.walletFile;
  }

  async insert(record: TenantRecord, routes: readonly string[] = []): Promise<string[]> {
    const taken = await this.#write(`creating tenant ${record.tenantId}`, async (client) => {
      try {
        await this.#insertRow(client, record);
      } catch (error) {
        if ((error as { code?: unknown }).code === '23505') throw poolError('ERR_TENANT_EXISTS', `tenant ${record.tenantId} already exists`, error, { tenantId: record.tenantId });
        throw error;
      }
      const wanted = [...new Set(routes.map((r) => routeIndex(this.#indexKey, r)))];
      if (wanted.length === 0) return [];
      const { rows } = await client.query<{ recipient_key: string }>(
        `INSERT INTO ${this.#s}.routes (recipient_key, tenant_id) SELECT unnest($1::text[]), $2 ON CONFLICT (recipient_key) DO NOTHING RETURNING recipient_key`,
        [wanted, record.tenantId],
      );
      // A route another tenant holds: the whole insert is refused (the transaction rolls back).
      if (rows.length < wanted.length) throw routeConflict(record.tenantId, wanted.length - rows.length);
      return rows.map((r) => r.recipient_key);
    });
    this.#remember(record);
    return taken;
  }

  /** Inserts many tenants, a thousand rows a statement, in one transaction (a bulk load: the bench, a restore). Not cached. */
  async insertMany(records: readonly TenantRecord[]): Promise<void> {
    await this.#write(`creating ${records.length} tenants`, async (client) => {
      for (let i = 0; i < records.length; i += 1000) {
        const chunk = records.slice(i, i + 1000);
        await client.query(
          `INSERT INTO ${this.#s}.tenants (tenant_id, label, kdf, sealed, settings, max_sessions, weights, metadata, created_at, wallet_name, kdf_params)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::int[], $7::jsonb[], $8::jsonb[], $9::text[], $10::text[], $11::jsonb[])`,
          [
            chunk.map((r) => r.tenantId),
            chunk.map((r) => this.#labelIndex(r.label)),
            chunk.map((r) => r.kdf),
            chunk.map((r) => this.#seal(r.tenantId, 'sealed', secretsOf(r))),
            chunk.map((r) => this.#seal(r.tenantId, 'settings', settingsOf(r))),
            chunk.map((r) => r.maxSessions ?? null),
            chunk.map((r) => (r.weights === undefined ? null : JSON.stringify(r.weights))),
            chunk.map((r) => JSON.stringify(this.#metadataIndex(r.metadata))),
            chunk.map((r) => r.createdAt),
            chunk.map((r) => r.walletFile),
            chunk.map((r) => (r.kdfParams === undefined ? null : JSON.stringify(r.kdfParams))),
          ],
        );
      }
    });
  }

  async #insertRow(client: PoolClient, record: TenantRecord): Promise<void> {
    await client.query(
      `INSERT INTO ${this.#s}.tenants (tenant_id, label, kdf, sealed, settings, max_sessions, weights, metadata, created_at, wallet_name, kdf_params) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        record.tenantId,
        this.#labelIndex(record.label),
        record.kdf,
        this.#seal(record.tenantId, 'sealed', secretsOf(record)),
        this.#seal(record.tenantId, 'settings', settingsOf(record)),
        record.maxSessions ?? null,
        record.weights ?? null,
        this.#metadataIndex(record.metadata),
        record.createdAt,
        record.walletFile,
        record.kdfParams === undefined ? null : JSON.stringify(record.kdfParams),
      ],
    );
  }

  async update(record: TenantRecord): Promise<void> {
    await this.#write(`an update of tenant ${record.tenantId}`, async (client) =>
      client.query(`UPDATE ${this.#s}.tenants SET label = $2, max_sessions = $3, weights = $4, metadata = $5, settings = $6 WHERE tenant_id = $1`, [
        record.tenantId,
        this.#labelIndex(record.label),
        record.maxSessions ?? null,
        record.weights ?? null,
        this.#metadataIndex(record.metadata),
        this.#seal(record.tenantId, 'settings', settingsOf(record)),
      ]),
    );
    this.#cache.delete(record.tenantId);
  }

  /** The commit point of a rekey: the tenant's new key material, sealed, and its wallet's profile key wrapped by the new key, in one transaction. */
  async replaceKey(tenantId: string, key: TenantKey, profileKey?: Uint8Array): Promise<TenantRecord> {
    this.#cache.delete(tenantId);
    const row = await this.#write(`recording the new key of tenant ${tenantId}`, async (client) => {
      const { rows } = await client.query<TenantRow>(`UPDATE ${this.#s}.tenants SET kdf = $2, sealed = $3, wallet_name = $4, kdf_params = $5 WHERE tenant_id = $1 RETURNING *`, [
        tenantId,
        key.kdf,
        this.#seal(tenantId, 'sealed', secretsOf(key)),
        key.walletFile,
        key.kdfParams === undefined ? null : JSON.stringify(key.kdfParams),
      ]);
      if (rows.length === 0) throw poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`, undefined, { tenantId });
      if (profileKey !== undefined) {
        const updated = await client.query(`UPDATE ${this.#s}.wallets SET profile_key = $2 WHERE name = $1`, [key.walletFile, profileKey]);
        if (updated.rowCount !== 1) throw poolError('ERR_WALLET_CORRUPT', `the wallet of tenant ${tenantId} is missing from the database`, undefined, { tenantId });
      }
      return rows[0]!;
    });
    const record = this.#toRecord(row);
    this.#remember(record);
    return record;
  }

  /** Deletes the tenant, its routes and its wallet (records, tags and keys by cascade) in one transaction. */
  async delete(tenantId: string): Promise<void> {
    this.#cache.delete(tenantId);
    await this.#write(`deleting tenant ${tenantId}`, async (client) => {
      await client.query(`DELETE FROM ${this.#s}.tenants WHERE tenant_id = $1`, [tenantId]);
      await client.query(`DELETE FROM ${this.#s}.wallets WHERE tenant_id = $1`, [tenantId]);
      // Cluster mode: the deleting instance held the lease; it goes with the tenant.
      await client.query(`DELETE FROM ${this.#s}.leases WHERE tenant_id = $1`, [tenantId]);
    });
    this.#cache.delete(tenantId);
  }

  /** Removes a wallet no tenant row names (a failed create or import). */
  async removeWallet(record: Pick<TenantRecord, 'walletFile'>): Promise<void> {
    await this.#write('the removal of an unused wallet', async (client) =>
      client.query(`DELETE FROM ${this.#s}.wallets w WHERE w.name = $1 AND NOT EXISTS (SELECT 1 FROM ${this.#s}.tenants t WHERE t.wallet_name = w.name)`, [record.walletFile]),
    );
  }

  /** Tenants in id order after `after`, filtered by label and metadata in SQL. */
  async page(options: { after: string; limit: number; label?: string; metadata?: Record<string, string> }): Promise<TenantRecord[]> {
    const params: unknown[] = [options.after, options.limit];
    let where = '';
    if (options.label !== undefined) {
      params.push(this.#labelIndex(options.label));
      where += ` AND label = $${params.length}`;
    }
    if (options.metadata !== undefined && Object.keys(options.metadata).length > 0) {
      params.push(this.#metadataIndex(options.metadata));
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
    await this.#write(`a route of tenant ${tenantId}`, async (client) => {
      const { rows } = await client.query<{ tenant_id: string }>(
        `WITH added AS (INSERT INTO ${this.#s}.routes (recipient_key, tenant_id) VALUES ($1, $2) ON CONFLICT (recipient_key) DO NOTHING RETURNING tenant_id)
         SELECT tenant_id FROM added UNION ALL SELECT tenant_id FROM ${this.#s}.routes WHERE recipient_key = $1 AND NOT EXISTS (SELECT 1 FROM added)`,
        [routeIndex(this.#indexKey, recipientKey), tenantId],
      );
      if (rows[0]?.tenant_id !== tenantId) throw routeConflict(tenantId, 1);
    });
  }

  async removeRoute(recipientKey: string): Promise<boolean> {
    return (await this.#write('the removal of a route', async (client) => client.query(`DELETE FROM ${this.#s}.routes WHERE recipient_key = $1 RETURNING tenant_id`, [routeIndex(this.#indexKey, recipientKey)]))).rows.length > 0;
  }

  async routeOf(recipientKey: string): Promise<string | undefined> {
    const [row] = await this.#query<{ tenant_id: string }>('a route', `SELECT tenant_id FROM ${this.#s}.routes WHERE recipient_key = $1`, [routeIndex(this.#indexKey, recipientKey)]);
    return row?.tenant_id;
  }



  /**
   * The owner's connection ended (the server restarted, an operator terminated it): its lock went
   * with it. Takes the lock again on a new connection, retrying each second until the pool closes,
   * and checks that the ownership row still carries this pool's epoch: if another pool or the
   * cluster's instances took the schema meanwhile, this pool has lost it (`onOwnershipLost`) and
   * gives the lock up. Its writes were fenced by the epoch all along.
   */
  #watchOwner(client: PoolClient): void {
    client.on('error', () => {
      client.release(true);
      void this.#retakeOwnership();
    });
  }

  async #retakeOwnership(): Promise<void> {
    let isWarned = false;
    while (!this.#isClosed) {
      try {
        const { pool } = this.#owner!;
        const client = await pool.connect();
        const [lock] = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [ownerLockName(this.#s)])).rows;
        // FOR SHARE: an instance joining right now holds the row; its change is seen once it commits.
        const [row] = (await client.query<{ mode: string; epoch: string }>(`SELECT mode, epoch FROM ${this.#s}.ownership FOR SHARE`)).rows;
        if (row === undefined || row.mode !== 'single' || Number(row.epoch) !== this.#ownerEpoch) {
          client.release(true);
          this.#lost(`the PostgreSQL schema ${this.#s} was taken by ${row?.mode === 'cluster' ? 'cluster instances' : 'another pool'} while this pool was disconnected; it stopped serving`);
          return;
        }
        if (lock?.ok === true && !this.#isClosed) {
          if (this.#options.allowExitOnIdle === true) (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream?.unref?.();
          this.#owner = { pool, client };
          this.#watchOwner(client);
          return;
        }
        client.release(true);
        if (lock?.ok !== true && !isWarned) {
          isWarned = true;
          this.#options.warn?.(`tenant-pool lost its hold on the PostgreSQL schema ${this.#s} and another pool holds it now; close one of them`, 'TENANT_POOL_OWNERSHIP_LOST');
        }
      } catch {
        // The server is still away: try again.
      }
      await new Promise((resolve) => setTimeout(resolve, 1000).unref());
    }
  }

  async ping(): Promise<void> {
    if (this.#ownershipLost !== undefined) throw poolError('ERR_OWNERSHIP_LOST', this.#ownershipLost.message);
    await this.#query('a health check', 'SELECT 1', []);
  }

  /** Records this process as the schema's holder, for the error a second pool gets. */
  async opened(): Promise<void> {
    if (this.#options.exclusive === false) return;
    const holder = JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() });
    await this.#write('the holder of the schema', async (client) =>
      client.query(`INSERT INTO ${this.#s}.registry_config (name, value) VALUES ('holder', $1) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`, [holder]),
    );
  }

  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#sealKey.fill(0);
    this.#indexKey.fill(0);
    this.#cache.clear();
    try {
      this.#owner?.client.release(true);
    } catch {
      // Already released: its connection had ended.
    }
    await Promise.allSettled([this.#pool.end(), this.#owner?.pool.end()]);
  }
}

/** How long an open waits for the lock of a holder that died on this host: its server backend ends a moment after its socket closes. */
const DEAD_HOLDER_WAIT_MS = 5000;

/**
 * Takes the schema's ownership lock. Refused while a holder is alive; a holder recorded on this
 * host whose process is gone (killed) left a lock its backend drops a moment later: that is waited for.
 */
async function takeOwnership(client: PoolClient, s: string): Promise<boolean> {
  const started = Date.now();
  for (;;) {
    const [lock] = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [ownerLockName(s)])).rows;
    if (lock?.ok === true) return true;
    const holder = await readHolder(client, s);
    if (holder === undefined || holder.host !== hostname() || isAlive(holder.pid) || Date.now() - started > DEAD_HOLDER_WAIT_MS) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}

async function readHolder(client: PoolClient, s: string): Promise<{ pid: number; host: string; since: string } | undefined> {
  try {
    const { rows } = await client.query<{ value: string }>(`SELECT value FROM ${s}.registry_config WHERE name = 'holder'`);
    return rows[0] === undefined ? undefined : (JSON.parse(rows[0].value) as { pid: number; host: string; since: string });
  } catch {
    return undefined;
  }
}
function settingsOf(record: Pick<TenantRecord, 'label' | 'metadata'>): Settings {
  return { label: record.label ?? null, metadata: record.metadata };
}

function secretsOf(record: Pick<TenantRecord, 'salt' | 'secret' | 'verifier'>): Secrets {
  return { salt: record.salt.toString('hex'), secret: record.secret === null ? null : record.secret.toString('hex'), verifier: record.verifier.toString('hex') };
}

/** The registry's keys: the one that seals tenants' secrets and settings, the one of the keyed hashes, and the root key's check value. */
interface RegistryKeys {
  seal: Buffer;
  index: Buffer;
  check: string;
}

function sealWith(key: Buffer, tenantId: string, what: 'sealed' | 'settings', value: unknown): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const plaintext = Buffer.from(JSON.stringify(value), 'utf8');
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(`${what}\0${tenantId}`, 'utf8'), { plaintextLength: plaintext.length });
  return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function rotatedElsewhere(schema: string, what: string): TenantPoolError {
  return poolError('ERR_WALLET_KEY_INVALID', `${what}: the root key of the PostgreSQL schema ${schema} was rotated (by another instance or the tenant-pool command); restart this one with the new root key. Nothing was written`);
}

/** The key that wraps the registry's keys, from the root key. */
function wrappingKeyOf(rootKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', rootKey, Buffer.alloc(0), 'tenant-pool registry wrapping v1', 32));
}

/** The registry's seal and index keys, sealed under the root key's wrapping key (the `keys` row). */
function wrapKeys(rootKey: Buffer, seal: Buffer, index: Buffer): string {
  const kek = wrappingKeyOf(rootKey);
  try {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('chacha20-poly1305', kek, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from('registry keys v1', 'utf8'), { plaintextLength: 64 });
    return Buffer.concat([nonce, cipher.update(Buffer.concat([seal, index])), cipher.final(), cipher.getAuthTag()]).toString('base64');
  } finally {
    kek.fill(0);
  }
}

/**
 * The registry's keys under `rootKey` (already checked against the key check value). Until a
 * root-key rotation they are derived from the root key, as 0.1.0 derived them (so instances of
 * 0.1.0 read the same rows during a rolling upgrade), and wrapped as they are in the `keys` row; a
 * rotation gives a new random seal key, wrapped under the new root key.
 */
async function registryKeys(client: PoolClient, s: string, rootKey: Buffer, check: string): Promise<RegistryKeys> {
  const { rows } = await client.query<{ value: string }>(`SELECT value FROM ${s}.registry_config WHERE name = 'keys'`);
  if (rows[0] === undefined) {
    const seal = sealKeyOf(rootKey);
    const index = indexKeyOf(seal);
    await client.query(`INSERT INTO ${s}.registry_config (name, value) VALUES ('keys', $1) ON CONFLICT (name) DO NOTHING`, [wrapKeys(rootKey, seal, index)]);
    return { seal, index, check };
  }
  const wrapped = Buffer.from(rows[0].value, 'base64');
  const kek = wrappingKeyOf(rootKey);
  try {
    const decipher = createDecipheriv('chacha20-poly1305', kek, wrapped.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from('registry keys v1', 'utf8'), { plaintextLength: wrapped.length - NONCE_BYTES - TAG_BYTES });
    decipher.setAuthTag(wrapped.subarray(wrapped.length - TAG_BYTES));
    const both = Buffer.concat([decipher.update(wrapped.subarray(NONCE_BYTES, wrapped.length - TAG_BYTES)), decipher.final()]);
    return { seal: both.subarray(0, 32), index: both.subarray(32, 64), check };
  } catch (error) {
    throw poolError('ERR_WALLET_CORRUPT', `the registry keys of the PostgreSQL schema ${s} fail their integrity check`, error);
  } finally {
    kek.fill(0);
  }
}

function sealKeyOf(rootKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', rootKey, Buffer.alloc(0), 'tenant-pool registry seal v1', 32));
}

function indexKeyOf(sealKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sealKey, Buffer.alloc(0), 'tenant-pool registry index v1', 32));
}

/** What the routes table keeps of a routing public key: a keyed hash, marked `h1:` (0.1.0 kept the key itself). */
function routeIndex(indexKey: Buffer, publicKey: string): string {
  return `h1:${createHmac('sha256', indexKey).update('route\0').update(publicKey, 'utf8').digest('base64url')}`;
}

/**
 * Routes written by 0.1.0 hold the public key itself: each becomes its keyed hash, in the open's
 * transaction (under the schema lock), so a kill leaves every route as it was or every one hashed.
 * A marker in `registry_config` says it is done.
 */
async function hashPlainRoutes(client: PoolClient, s: string, indexKey: Buffer): Promise<void> {
  const { rowCount } = await client.query(`SELECT 1 FROM ${s}.registry_config WHERE name = 'routes' AND value = 'hashed'`);
  if (rowCount !== 0) return;
  const plain = (await client.query<{ recipient_key: string }>(`SELECT recipient_key FROM ${s}.routes WHERE recipient_key NOT LIKE 'h1:%'`)).rows.map((r) => r.recipient_key);
  for (let i = 0; i < plain.length; i += 1000) {
    const chunk = plain.slice(i, i + 1000);
    await client.query(`UPDATE ${s}.routes r SET recipient_key = h.hashed FROM unnest($1::text[], $2::text[]) AS h(plain, hashed) WHERE r.recipient_key = h.plain`, [chunk, chunk.map((k) => routeIndex(indexKey, k))]);
  }
  await client.query(`INSERT INTO ${s}.registry_config (name, value) VALUES ('routes', 'hashed') ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`);
}
