/**
 * The tenant registry: one encrypted SQLite file (`<dataDir>/registry.sqlite`) keyed with the root
 * key, holding each tenant's KDF, salt, key check value, managed secret, limits and metadata.
 *
 * All tenant rows are loaded into memory at open, so `acquire()` never touches the file; writes
 * (create, update, delete) go to the file first and to memory after they commit.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3-multiple-ciphers';
import { deriveKey } from '../workers/kdf.js';
import { poolError } from './errors.js';
import type { KdfMethod } from './protocol.js';

/** Per-tenant overrides of the pool's weights. */
export interface TenantWeights {
  wallet?: number;
  session?: number;
}

/** A tenant as the registry keeps it. Secrets stay on this object and are never returned to callers. */
export interface TenantRecord {
  tenantId: string;
  label?: string;
  kdf: KdfMethod;
  salt: Buffer;
  /** The managed secret; `null` for a passphrase tenant (its passphrase is never stored). */
  secret: Buffer | null;
  verifier: Buffer;
  maxSessions?: number;
  weights?: TenantWeights;
  metadata: Record<string, string>;
  createdAt: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tenants (
  tenant_id TEXT PRIMARY KEY,
  label TEXT,
  kdf TEXT NOT NULL,
  salt BLOB NOT NULL,
  secret BLOB,
  verifier BLOB NOT NULL,
  max_sessions INTEGER,
  weights TEXT,
  metadata TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS routes (
  recipient_key TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS routes_by_tenant ON routes (tenant_id);
`;

interface TenantRow {
  tenant_id: string;
  label: string | null;
  kdf: KdfMethod;
  salt: Buffer;
  secret: Buffer | null;
  verifier: Buffer;
  max_sessions: number | null;
  weights: string | null;
  metadata: string;
  created_at: string;
}

/** Plaintext sidecar: the salt for a passphrase root key and a check value that tells a wrong root key from a damaged file. */
interface RegistryHeader {
  version: 1;
  salt: string;
  keyCheck: string;
}

const ROOT_KEY_HEX = /^[0-9a-fA-F]{64}$/;

function keyCheck(key: Uint8Array): Buffer {
  return createHmac('sha256', key).update('tenant-pool registry key check v1').digest();
}

/** Where the registry's warnings go: the pool's logger, or `process.emitWarning()`. */
export type Warn = (message: string, code: string) => void;

/** Reads the root key from the option, the environment, or `<dataDir>/root.key`, creating that file once. */
function rootKeySource(dataDir: string, option: string | undefined, warn: Warn): string {
  const given = option ?? process.env['TENANT_POOL_ROOT_KEY'];
  if (given !== undefined && given !== '') return given;
  const file = join(dataDir, 'root.key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const generated = randomBytes(32).toString('hex');
  writeFileSync(file, `${generated}\n`, { mode: 0o600, flag: 'wx' });
  warn(
    `tenant-pool generated a root key into ${file}. Anyone who can read it can open the registry; ` +
      'in production pass `rootKey` or set TENANT_POOL_ROOT_KEY from a secret store.',
    'TENANT_POOL_ROOT_KEY_GENERATED',
  );
  return generated;
}

function toRecord(row: TenantRow): TenantRecord {
  return {
    tenantId: row.tenant_id,
    ...(row.label === null ? {} : { label: row.label }),
    kdf: row.kdf,
    salt: row.salt,
    secret: row.secret,
    verifier: row.verifier,
    ...(row.max_sessions === null ? {} : { maxSessions: row.max_sessions }),
    ...(row.weights === null ? {} : { weights: JSON.parse(row.weights) as TenantWeights }),
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    createdAt: row.created_at,
  };
}

export class Registry {
  readonly #db: Database.Database;
  readonly #tenants = new Map<string, TenantRecord>();
  /** Routing public key → tenant, and each tenant's routing keys, for dispatch(). */
  readonly #routes = new Map<string, string>();
  readonly #routesOf = new Map<string, Set<string>>();

  private constructor(db: Database.Database) {
    this.#db = db;
    for (const row of db.prepare('SELECT * FROM tenants').all() as TenantRow[]) {
      this.#tenants.set(row.tenant_id, toRecord(row));
    }
    for (const { recipient_key, tenant_id } of db.prepare('SELECT recipient_key, tenant_id FROM routes').all() as { recipient_key: string; tenant_id: string }[]) {
      this.#remember(recipient_key, tenant_id);
    }
  }

  #remember(recipientKey: string, tenantId: string): void {
    this.#routes.set(recipientKey, tenantId);
    let keys = this.#routesOf.get(tenantId);
    if (keys === undefined) this.#routesOf.set(tenantId, (keys = new Set()));
    keys.add(recipientKey);
  }

  /** Records that messages for `recipientKey` go to `tenantId`. */
  addRoute(recipientKey: string, tenantId: string): void {
    this.#db.prepare('INSERT INTO routes (recipient_key, tenant_id) VALUES (?, ?) ON CONFLICT (recipient_key) DO UPDATE SET tenant_id = excluded.tenant_id').run(recipientKey, tenantId);
    const previous = this.#routes.get(recipientKey);
    if (previous !== undefined) this.#routesOf.get(previous)?.delete(recipientKey);
    this.#remember(recipientKey, tenantId);
  }

  /** The tenant a routing key belongs to. */
  routeOf(recipientKey: string): string | undefined {
    return this.#routes.get(recipientKey);
  }

  /**
   * Opens (or creates) the registry in `dataDir`.
   * @throws ERR_WALLET_KEY_INVALID if the root key is not the one the registry was made with.
   * @throws ERR_WALLET_CORRUPT if the registry files are damaged; they are left as they are.
   */
  static async open(dataDir: string, rootKeyOption: string | undefined, warn: Warn = (message, code) => process.emitWarning(message, { code })): Promise<Registry> {
    const source = rootKeySource(dataDir, rootKeyOption, warn);
    const headerPath = join(dataDir, 'registry.json');
    const dbPath = join(dataDir, 'registry.sqlite');
    const isNew = !existsSync(dbPath) && !existsSync(headerPath);
    let header: RegistryHeader;
    if (isNew) {
      header = { version: 1, salt: randomBytes(16).toString('hex'), keyCheck: '' };
    } else {
      try {
        header = JSON.parse(readFileSync(headerPath, 'utf8')) as RegistryHeader;
        if (header.version !== 1 || typeof header.salt !== 'string' || typeof header.keyCheck !== 'string') throw new Error('unknown format');
      } catch (error) {
        throw poolError('ERR_WALLET_CORRUPT', `the registry header ${headerPath} is missing or damaged: ${(error as Error).message}`, error);
      }
    }
    const key = ROOT_KEY_HEX.test(source) ? Buffer.from(source, 'hex') : await deriveKey('argon2id', source, Buffer.from(header.salt, 'hex'));
    const check = keyCheck(key);
    if (isNew) {
      header.keyCheck = check.toString('hex');
      writeFileSync(headerPath, `${JSON.stringify(header, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
      closeSync(openSync(dbPath, 'wx', 0o600));
    } else {
      const stored = Buffer.from(header.keyCheck, 'hex');
      if (stored.length !== check.length || !timingSafeEqual(stored, check)) {
        throw poolError('ERR_WALLET_KEY_INVALID', 'the root key does not open this registry (rootKey, TENANT_POOL_ROOT_KEY or root.key changed?)');
      }
      if (!existsSync(dbPath)) throw poolError('ERR_WALLET_CORRUPT', `the registry file ${dbPath} is missing`);
    }
    let db: Database.Database | undefined;
    try {
      db = new Database(dbPath, { fileMustExist: true });
      db.pragma(`cipher='chacha20'`);
      db.pragma(`key="x'${key.toString('hex')}'"`);
      key.fill(0);
      // An existing registry must already hold its tables: an empty or truncated file is damage, not a fresh start.
      const hasTables = db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tenants'").pluck().get() === 1;
      if (!isNew && !hasTables) throw new Error('the registry holds no tenant table');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.exec(SCHEMA);
      chmodSync(dbPath, 0o600);
      return new Registry(db);
    } catch (error) {
      db?.close();
      throw poolError('ERR_WALLET_CORRUPT', `the registry file ${dbPath} is unreadable: ${(error as Error).message}`, error);
    }
  }

  get(tenantId: string): TenantRecord | undefined {
    return this.#tenants.get(tenantId);
  }

  has(tenantId: string): boolean {
    return this.#tenants.has(tenantId);
  }

  list(): TenantRecord[] {
    return [...this.#tenants.values()];
  }

  get size(): number {
    return this.#tenants.size;
  }

  insert(record: TenantRecord): void {
    this.#db
      .prepare(
        `INSERT INTO tenants (tenant_id, label, kdf, salt, secret, verifier, max_sessions, weights, metadata, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        record.tenantId,
        record.label ?? null,
        record.kdf,
        record.salt,
        record.secret,
        record.verifier,
        record.maxSessions ?? null,
        record.weights === undefined ? null : JSON.stringify(record.weights),
        JSON.stringify(record.metadata),
        record.createdAt,
      );
    this.#tenants.set(record.tenantId, record);
  }

  update(record: TenantRecord): void {
    this.#db
      .prepare('UPDATE tenants SET label = ?, max_sessions = ?, weights = ?, metadata = ? WHERE tenant_id = ?')
      .run(
        record.label ?? null,
        record.maxSessions ?? null,
        record.weights === undefined ? null : JSON.stringify(record.weights),
        JSON.stringify(record.metadata),
        record.tenantId,
      );
    this.#tenants.set(record.tenantId, record);
  }

  /** Deletes the tenant and (by cascade) its routes. */
  delete(tenantId: string): void {
    this.#db.prepare('DELETE FROM tenants WHERE tenant_id = ?').run(tenantId);
    this.#tenants.delete(tenantId);
    for (const key of this.#routesOf.get(tenantId) ?? []) this.#routes.delete(key);
    this.#routesOf.delete(tenantId);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
