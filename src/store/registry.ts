/**
 * The tenant registry: one encrypted SQLite file (`<dataDir>/registry.sqlite`) keyed with the root
 * key, holding each tenant's KDF, salt, key check value, managed secret, wallet file, limits and
 * metadata.
 *
 * All tenant rows are loaded into memory at open, so `acquire()` never touches the file; writes
 * (create, update, delete) go to the file first and to memory after they commit.
 *
 * A data folder is initialised when its header `registry.json` exists: it is written last, atomically,
 * after the root key file and the registry file are complete and synced. A kill before that leaves a
 * folder that is simply initialised again at the next open.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3-multiple-ciphers';
import { asPoolError, poolError, TenantPoolError } from '../../common/errors.js';
import { invalid } from '../../common/validate.js';
import type { KdfMethod } from '../../common/protocol.js';
import { fsyncDir } from '../../common/fs.js';
import { hasWallets, writeFileAtomic } from './data-dir.js';
import { paramsOf, rootKeyFrom, routeConflict, type TenantRecord, type TenantWeights, type Warn } from './tenant-store.js';
import { checkKdfParams, type KdfParams } from '../../common/kdf.js';
import { formatTooNew, STORE_FORMAT, upgradeRequired, type UpgradeMode } from '../../common/formats.js';
import { registryFormat, upgradeRegistry, type UpgradeProgress } from './sqlite-format.js';


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
  created_at TEXT NOT NULL,
  wallet_file TEXT
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
  wallet_file: string | null;
  /** Format 2: the Argon2 parameters (JSON), null for `raw` (and for rows an upgrade has not reached yet). */
  kdf_params?: string | null;
}

/**
 * Plaintext sidecar: the salt for a passphrase root key and a check value that tells a wrong root key
 * from a damaged file; `sum` (a plain hash of the rest) tells a damaged check value from a wrong key.
 */
interface RegistryHeader {
  version: 1;
  salt: string;
  keyCheck: string;
  /** The registry file, when a root-key rotation wrote a new one (`registry.<random>.sqlite`); absent: `registry.sqlite`. */
  registryFile?: string;
  sum?: string;
}

const REGISTRY_FILE = /^registry\.[0-9a-f]{16}\.sqlite$/;

function headerSum(header: RegistryHeader): string {
  return createHash('sha256')
    .update(`${header.version}\n${header.salt}\n${header.keyCheck}${header.registryFile === undefined ? '' : `\n${header.registryFile}`}`)
    .digest('hex');
}

/** The registry file a header names. */
function registryPath(dataDir: string, header: RegistryHeader): string {
  return join(dataDir, header.registryFile ?? 'registry.sqlite');
}

function parseHeader(text: string, path: string): RegistryHeader {
  const header = JSON.parse(text) as RegistryHeader;
  // The header's own layout has one version so far; a later one is a later release's folder, not damage.
  const version: unknown = (header as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && Number.isInteger(version) && version > 1) throw formatTooNew(`the registry header ${path}`, version, 1);
  if (header === null || typeof header !== 'object' || header.version !== 1) throw new Error('unknown format');
  if (typeof header.salt !== 'string' || !/^[0-9a-f]{32}$/.test(header.salt)) throw new Error('the salt is damaged');
  if (typeof header.keyCheck !== 'string' || !/^[0-9a-f]{64}$/.test(header.keyCheck)) throw new Error('the key check value is damaged');
  if (header.registryFile !== undefined && (typeof header.registryFile !== 'string' || !REGISTRY_FILE.test(header.registryFile))) throw new Error('the registry file it names is not one');
  // Headers written before the checksum existed have none; every header written since has one.
  if (header.sum !== undefined && header.sum !== headerSum(header)) throw new Error('its checksum does not match (the key check value or salt was changed)');
  return header;
}

/** The wallet file name of a tenant made before wallet files carried an incarnation. */
export function legacyWalletFile(tenantId: string): string {
  return `${tenantId}.sqlite`;
}

/** A fresh wallet file name for a new tenant. */
export function newWalletFile(tenantId: string): string {
  return `${tenantId}.${randomBytes(8).toString('hex')}.sqlite`;
}


function keyCheck(key: Uint8Array): Buffer {
  return createHmac('sha256', key).update('tenant-pool registry key check v1').digest();
}


/**
 * Reads the root key from the option, the environment, or `<dataDir>/root.key`. The file is
 * generated only while the folder is not yet initialised (`isNew`): a folder that has a registry and
 * no key to it fails instead, and no file is written.
 */
function rootKeySource(dataDir: string, option: string | undefined, isNew: boolean, warn: Warn): string {
  const given = option ?? process.env['TENANT_POOL_ROOT_KEY'];
  if (given !== undefined && given !== '') return given;
  const file = join(dataDir, 'root.key');
  const stored = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  if (stored !== '') return stored;
  if (!isNew) {
    throw poolError('ERR_ROOT_KEY_MISSING', `the data folder ${dataDir} holds a registry but no root key was given (rootKey, TENANT_POOL_ROOT_KEY or ${file}); nothing was changed`);
  }
  const generated = randomBytes(32).toString('hex');
  writeFileAtomic(file, `${generated}\n`);
  warn(
    `tenant-pool generated a root key into ${file}. Anyone who can read it can open the registry; ` +
      'in production pass `rootKey` or set TENANT_POOL_ROOT_KEY from a secret store.',
    'TENANT_POOL_ROOT_KEY_GENERATED',
  );
  return generated;
}

function toRecord(row: TenantRow): TenantRecord {
  let recorded: KdfParams | undefined;
  if (row.kdf_params !== undefined && row.kdf_params !== null) {
    recorded = checkKdfParams(JSON.parse(row.kdf_params));
    if (recorded === undefined) throw poolError('ERR_WALLET_CORRUPT', `the registry's KDF parameters of tenant ${row.tenant_id} are damaged`, undefined, { tenantId: row.tenant_id });
  }
  const kdfParams = paramsOf(row.kdf, recorded);
  return {
    tenantId: row.tenant_id,
    ...(row.label === null ? {} : { label: row.label }),
    kdf: row.kdf,
    ...(kdfParams === undefined ? {} : { kdfParams }),
    salt: row.salt,
    secret: row.secret,
    verifier: row.verifier,
    ...(row.max_sessions === null ? {} : { maxSessions: row.max_sessions }),
    ...(row.weights === null ? {} : { weights: JSON.parse(row.weights) as TenantWeights }),
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    createdAt: row.created_at,
    walletFile: row.wallet_file ?? legacyWalletFile(row.tenant_id),
  };
}

export class Registry {
  readonly #tenants = new Map<string, TenantRecord>();
  /** Routing public key → tenant, and each tenant's routing keys, for dispatch(). */
  readonly #routes = new Map<string, string>();
  readonly #routesOf = new Map<string, Set<string>>();

  #db: Database.Database;
  readonly #dataDir: string;
  #header: RegistryHeader;
  /** The root key came from `<dataDir>/root.key`: a rotation would leave that file naming the old one, so it is refused. */
  readonly #keyFromFile: boolean;

  private constructor(db: Database.Database, at: { dataDir: string; header: RegistryHeader; fromFile: boolean }) {
    this.#db = db;
    this.#dataDir = at.dataDir;
    this.#header = at.header;
    this.#keyFromFile = at.fromFile;
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

  /** Records that messages for `recipientKey` go to `tenantId`. @throws ERR_ROUTE_CONFLICT when another tenant routes it: a route is never taken from its tenant */
  addRoute(recipientKey: string, tenantId: string): void {
    const previous = this.#routes.get(recipientKey);
    if (previous === tenantId) return;
    if (previous !== undefined) throw routeConflict(tenantId, 1);
    this.#write(`a route of tenant ${tenantId}`, (db) => db.prepare('INSERT INTO routes (recipient_key, tenant_id) VALUES (?, ?)').run(recipientKey, tenantId));
    this.#remember(recipientKey, tenantId);
  }

  /** Stops routing `recipientKey` (to whichever tenant had it). Returns whether it was routed. */
  removeRoute(recipientKey: string): boolean {
    const tenantId = this.#routes.get(recipientKey);
    if (tenantId === undefined) return false;
    this.#write(`the removal of a route of tenant ${tenantId}`, (db) => db.prepare('DELETE FROM routes WHERE recipient_key = ?').run(recipientKey));
    this.#routes.delete(recipientKey);
    this.#routesOf.get(tenantId)?.delete(recipientKey);
    return true;
  }

  /** The routing keys of a tenant. */
  routesOf(tenantId: string): string[] {
    return [...(this.#routesOf.get(tenantId) ?? [])];
  }

  /** The tenant a routing key belongs to. */
  routeOf(recipientKey: string): string | undefined {
    return this.#routes.get(recipientKey);
  }

  /**
   * Opens (or creates) the registry in `dataDir`. Call it holding the folder's lock.
   * @throws ERR_WALLET_KEY_INVALID if the root key is not the one the registry was made with.
   * @throws ERR_ROOT_KEY_MISSING if the folder has a registry and no root key is given.
   * @throws ERR_WALLET_CORRUPT if the registry files are damaged, or missing next to wallets; they are left as they are.
   */
  static async open(
    dataDir: string,
    rootKeyOption: string | undefined,
    warn: Warn = (message, code) => process.emitWarning(message, { code }),
    upgrade: UpgradeMode = 'auto',
    progress?: UpgradeProgress,
  ): Promise<Registry> {
    const headerPath = join(dataDir, 'registry.json');
    const isNew = !existsSync(headerPath);
    if (isNew) {
      if (hasWallets(join(dataDir, 'wallets'))) {
        throw poolError('ERR_WALLET_CORRUPT', `the data folder ${dataDir} holds wallets but no registry (${headerPath} is missing); refusing to start an empty registry over them`);
      }
      // What an initialisation cut short may have left (a registry file is only renamed into place
      // once complete, and no tenant exists before the header does): it is done again from the start.
      for (const name of ['registry.sqlite', 'registry.sqlite-journal', 'registry.sqlite-wal', 'registry.sqlite-shm', 'registry.sqlite.init', 'registry.sqlite.init-journal', 'registry.json.tmp', 'root.key.tmp']) {
        rmSync(join(dataDir, name), { force: true });
      }
    }
    const source = rootKeySource(dataDir, rootKeyOption, isNew, warn);
    let header: RegistryHeader;
    if (isNew) {
      header = { version: 1, salt: randomBytes(16).toString('hex'), keyCheck: '' };
    } else {
      try {
        header = parseHeader(readFileSync(headerPath, 'utf8'), headerPath);
      } catch (error) {
        if (error instanceof TenantPoolError) throw error;
        throw poolError('ERR_WALLET_CORRUPT', `the registry header ${headerPath} is damaged: ${error instanceof SyntaxError ? 'not JSON' : (error as Error).message}`, error);
      }
    }
    const dbPath = registryPath(dataDir, header);
    const key = await rootKeyFrom(source, header.salt);
    const check = keyCheck(key);
    if (isNew) {
      header.keyCheck = check.toString('hex');
      header.sum = headerSum(header);
      try {
        createRegistryFile(`${dbPath}.init`, key, dbPath);
        // The header is the commit point: until it is in place, the folder is not initialised.
        writeFileAtomic(headerPath, `${JSON.stringify(header, null, 2)}\n`);
      } catch (error) {
        key.fill(0);
        throw asPoolError(error, `cannot initialise the data folder ${dataDir}`);
      }
    } else {
      const stored = Buffer.from(header.keyCheck, 'hex');
      if (stored.length !== check.length || !timingSafeEqual(stored, check)) {
        key.fill(0);
        throw poolError('ERR_WALLET_KEY_INVALID', 'the root key does not open this registry (rootKey, TENANT_POOL_ROOT_KEY or root.key changed?)');
      }
      if (!existsSync(dbPath)) {
        key.fill(0);
        throw poolError('ERR_WALLET_CORRUPT', `the registry file ${dbPath} is missing`);
      }
    }
    let db: Database.Database | undefined;
    try {
      db = new Database(dbPath, { fileMustExist: true });
      db.pragma(`cipher='chacha20'`);
      db.pragma(`key="x'${key.toString('hex')}'"`);
      key.fill(0);
      // An existing registry must already hold its tables: an empty or truncated file is damage, not a fresh start.
      const hasTables = db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tenants'").pluck().get() === 1;
      if (!hasTables) throw new Error('the registry holds no tenant table');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const columns = (db.prepare('PRAGMA table_info(tenants)').all() as { name: string }[]).map((c) => c.name);
      if (!columns.includes('wallet_file')) db.exec('ALTER TABLE tenants ADD COLUMN wallet_file TEXT');
      const format = registryFormat(db);
      if (format > STORE_FORMAT) throw formatTooNew(`the data folder ${dataDir}`, format, STORE_FORMAT);
      if (format < STORE_FORMAT) {
        if (upgrade === 'never') throw upgradeRequired(`the data folder ${dataDir}`, format, STORE_FORMAT, `tenant-pool upgrade --data-dir ${dataDir}`);
        upgradeRegistry(db, progress);
        warn(`tenant-pool upgraded the data folder ${dataDir} from format ${format} to format ${STORE_FORMAT}`, 'TENANT_POOL_UPGRADED');
      }
      sweepRegistryFiles(dataDir, basename(dbPath));
      return new Registry(db, { dataDir, header, fromFile: rootKeyOption === undefined && !process.env['TENANT_POOL_ROOT_KEY'] });
    } catch (error) {
      key.fill(0);
      db?.close();
      const failure = asPoolError(error, `the registry file ${dbPath} is unreadable`);
      throw failure.code === 'ERR_INTERNAL' ? poolError('ERR_WALLET_CORRUPT', failure.message, error) : failure;
    }
  }

  /** The wallet file names the registry owns (for the sweep). */
  walletFiles(): Set<string> {
    return new Set([...this.#tenants.values()].map((t) => t.walletFile));
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

  /** Inserts the tenant and, in the same transaction, routes of `routes` that no tenant has yet (an import's). Returns the routes taken. */
  insert(record: TenantRecord, routes: readonly string[] = []): string[] {
    const taken = [...new Set(routes)];
    const held = taken.filter((key) => this.#routes.has(key)).length;
    if (held > 0) throw routeConflict(record.tenantId, held);
    this.#write(`creating tenant ${record.tenantId}`, (db) => db.transaction(() => {
      this.#insertRow(db, record);
      const route = db.prepare('INSERT INTO routes (recipient_key, tenant_id) VALUES (?, ?)');
      for (const key of taken) route.run(key, record.tenantId);
    })());
    this.#tenants.set(record.tenantId, record);
    for (const key of taken) this.#remember(key, record.tenantId);
    return taken;
  }

  /** Inserts many tenants in one transaction (a bulk load: the bench, a restore). */
  insertMany(records: readonly TenantRecord[]): void {
    this.#write(`creating ${records.length} tenants`, (db) => db.transaction(() => {
      for (const record of records) this.#insertRow(db, record);
    })());
    for (const record of records) this.#tenants.set(record.tenantId, record);
  }

  #insertRow(db: Database.Database, record: TenantRecord): void {
    db
      .prepare(
        `INSERT INTO tenants (tenant_id, label, kdf, salt, secret, verifier, max_sessions, weights, metadata, created_at, wallet_file, kdf_params)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
        record.walletFile,
        record.kdfParams === undefined ? null : JSON.stringify(record.kdfParams),
      );
  }

  /** Runs a write on the registry file; a storage failure becomes its `TenantPoolError`, and memory is left as it was. */
  #write(what: string, fn: (db: Database.Database) => unknown): void {
    try {
      fn(this.#db);
    } catch (error) {
      throw asPoolError(error, `the registry could not record ${what}`);
    }
  }

  update(record: TenantRecord): void {
    this.#write(`an update of tenant ${record.tenantId}`, (db) => db
      .prepare('UPDATE tenants SET label = ?, max_sessions = ?, weights = ?, metadata = ? WHERE tenant_id = ?')
      .run(
        record.label ?? null,
        record.maxSessions ?? null,
        record.weights === undefined ? null : JSON.stringify(record.weights),
        JSON.stringify(record.metadata),
        record.tenantId,
      ));
    this.#tenants.set(record.tenantId, record);
  }

  /**
   * Records a tenant's new key material and wallet file (a rekey): the commit point of the rekey.
   * Only those fields change: an update of its label or limits made meanwhile stays. Returns the tenant as it now is.
   */
  replaceKey(tenantId: string, key: Pick<TenantRecord, 'kdf' | 'kdfParams' | 'salt' | 'secret' | 'verifier' | 'walletFile'>): TenantRecord {
    const current = this.#tenants.get(tenantId);
    if (current === undefined) throw poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`, undefined, { tenantId });
    this.#write(`the new key of tenant ${tenantId}`, (db) =>
      db
        .prepare('UPDATE tenants SET kdf = ?, kdf_params = ?, salt = ?, secret = ?, verifier = ?, wallet_file = ? WHERE tenant_id = ?')
        .run(key.kdf, key.kdfParams === undefined ? null : JSON.stringify(key.kdfParams), key.salt, key.secret, key.verifier, key.walletFile, tenantId),
    );
    const { kdfParams: _old, ...rest } = current;
    const next: TenantRecord = { ...rest, kdf: key.kdf, ...(key.kdfParams === undefined ? {} : { kdfParams: key.kdfParams }), salt: key.salt, secret: key.secret, verifier: key.verifier, walletFile: key.walletFile };
    this.#tenants.set(tenantId, next);
    return next;
  }

  /** Deletes the tenant and (by cascade) its routes. */
  delete(tenantId: string): void {
    this.#write(`the deletion of tenant ${tenantId}`, (db) => db.prepare('DELETE FROM tenants WHERE tenant_id = ?').run(tenantId));
    this.#tenants.delete(tenantId);
    for (const key of this.#routesOf.get(tenantId) ?? []) this.#routes.delete(key);
    this.#routesOf.delete(tenantId);
  }

  /**
   * Re-encrypts the registry — and with it every tenant secret it holds — under a new root key.
   * The registry is copied to a new file under the new key and synced; writing the header that
   * names it (with the new salt and key check) is the commit point, after which the old file is
   * removed. Killed at any moment, the folder opens with the old key or the new, never neither; a
   * new file left behind by a kill is swept at the next open.
   * @throws ERR_INVALID_ARGUMENT when the root key came from `root.key` (rotate a key you pass in)
   */
  async rotateRootKey(newRootKey: string, progress: (done: number, total: number) => void = () => {}): Promise<void> {
    if (this.#keyFromFile) invalid('the root key of this folder comes from its root.key file: pass the root key in (rootKey or TENANT_POOL_ROOT_KEY) to rotate it, and store the new one the same way');
    const dataDir = this.#dataDir;
    const salt = randomBytes(16).toString('hex');
    const key = await rootKeyFrom(newRootKey, salt);
    const file = `registry.${randomBytes(8).toString('hex')}.sqlite`;
    const path = join(dataDir, file);
    try {
      // A copy of every table and index, written through the open connection into a new file under the new key
      // (made empty first: the connection was opened without the right to create files).
      closeSync(openSync(path, 'wx', 0o600));
      this.#db.exec(`ATTACH DATABASE '${path.replaceAll("'", "''")}' AS rotated KEY "x'${key.toString('hex')}'"`);
      try {
        const objects = this.#db.prepare("SELECT type, name, sql FROM main.sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', name <> 'tenants', name").all() as { type: string; name: string; sql: string }[];
        const tables = objects.filter((o) => o.type === 'table');
        const rows = tables.map((o) => this.#db.prepare(`SELECT count(*) FROM main."${o.name}"`).pluck().get() as number);
        const total = rows.reduce((a, b) => a + b, 0);
        let done = 0;
        this.#db.transaction(() => {
          for (const o of objects) this.#db.exec(o.sql.replace(/^CREATE (TABLE|INDEX|UNIQUE INDEX)\s+(IF NOT EXISTS\s+)?/i, (m, kind: string) => `CREATE ${kind} rotated.`));
          tables.forEach((o, i) => {
            this.#db.exec(`INSERT INTO rotated."${o.name}" SELECT * FROM main."${o.name}"`);
            progress((done += rows[i]!), total);
          });
        })();
      } finally {
        this.#db.exec('DETACH DATABASE rotated');
      }
      chmodSync(path, 0o600);
      const fd = openSync(path, 'r+');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      const header: RegistryHeader = { version: 1, salt, keyCheck: keyCheck(key).toString('hex'), registryFile: file };
      header.sum = headerSum(header);
      // The commit point.
      writeFileAtomic(join(dataDir, 'registry.json'), `${JSON.stringify(header, null, 2)}\n`);
      const old = this.#db;
      const oldPath = old.name;
      const db = new Database(path, { fileMustExist: true });
      db.pragma(`cipher='chacha20'`);
      db.pragma(`key="x'${key.toString('hex')}'"`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      this.#db = db;
      this.#header = header;
      old.close();
      for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${oldPath}${suffix}`, { force: true });
    } catch (error) {
      if (this.#header.registryFile !== file) for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
      throw asPoolError(error, 'the root key could not be rotated');
    } finally {
      key.fill(0);
    }
  }

  /** One read of the registry file (a health check). */
  ping(): void {
    try {
      this.#db.prepare('SELECT count(*) FROM format_history').pluck().get();
    } catch (error) {
      throw asPoolError(error, 'the registry file cannot be read');
    }
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

/**
 * Builds a new, empty registry file under a temporary name, synced, then renamed to `path`: the
 * folder never holds a half-made registry under its real name.
 */
function createRegistryFile(temp: string, key: Uint8Array, path: string): void {
  rmSync(temp, { force: true });
  closeSync(openSync(temp, 'wx', 0o600));
  const db = new Database(temp);
  try {
    db.pragma(`cipher='chacha20'`);
    db.pragma(`key="x'${Buffer.from(key).toString('hex')}'"`);
    db.exec(SCHEMA);
    // A new registry is born at this release's format: the migrations run on it empty.
    upgradeRegistry(db);
  } finally {
    db.close();
  }
  const fd = openSync(temp, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(temp, 0o600);
  rmSync(path, { force: true });
  renameSync(temp, path);
  fsyncDir(path.slice(0, path.lastIndexOf('/')));
}


/** What `tenant-pool info` tells of a data folder, read without its lock and without writing. */
export interface DataDirInfo {
  initialised: boolean;
  format: number | null;
  tenants: number | null;
  byKdf: Record<string, number>;
  passphraseTenants: number | null;
  bytes: { registry: number; wallets: number; walletFiles: number };
}

/**
 * Reads a data folder as it is — a pool may hold it meanwhile (its registry is read through a
 * read-only connection, which WAL lets run beside the pool's writes).
 * @throws ERR_ROOT_KEY_MISSING, ERR_WALLET_KEY_INVALID, ERR_WALLET_CORRUPT
 */
export async function inspectDataDir(dataDir: string, rootKeyOption: string | undefined): Promise<DataDirInfo> {
  const headerPath = join(dataDir, 'registry.json');
  let dbPath = join(dataDir, 'registry.sqlite');
  const walletsDir = join(dataDir, 'wallets');
  let walletBytes = 0;
  let walletFiles = 0;
  if (existsSync(walletsDir)) {
    for (const name of readdirSync(walletsDir)) {
      walletBytes += statSync(join(walletsDir, name)).size;
      if (name.endsWith('.sqlite')) walletFiles++;
    }
  }
  const bytes = { registry: existsSync(dbPath) ? statSync(dbPath).size : 0, wallets: walletBytes, walletFiles };
  if (!existsSync(headerPath)) return { initialised: false, format: null, tenants: null, byKdf: {}, passphraseTenants: null, bytes };
  let header: RegistryHeader;
  try {
    header = parseHeader(readFileSync(headerPath, 'utf8'), headerPath);
  } catch (error) {
    if (error instanceof TenantPoolError) throw error;
    throw poolError('ERR_WALLET_CORRUPT', `the registry header ${headerPath} is damaged`, error);
  }
  dbPath = registryPath(dataDir, header);
  bytes.registry = existsSync(dbPath) ? statSync(dbPath).size : 0;
  // The same sources a pool reads, in the same order; an initialised folder never gets a key generated.
  const source = rootKeySource(dataDir, rootKeyOption, false, () => {});
  const key = await rootKeyFrom(source, header.salt);
  try {
    const stored = Buffer.from(header.keyCheck, 'hex');
    const check = keyCheck(key);
    if (stored.length !== check.length || !timingSafeEqual(stored, check)) throw poolError('ERR_WALLET_KEY_INVALID', 'the root key does not open this registry');
    let db: Database.Database | undefined;
    // A read-only connection to a WAL database makes its -wal and -shm files; those it made, it removes.
    const sidecars = [`${dbPath}-wal`, `${dbPath}-shm`].filter((f) => !existsSync(f));
    try {
      db = new Database(dbPath, { fileMustExist: true, readonly: true });
      db.pragma(`cipher='chacha20'`);
      db.pragma(`key="x'${key.toString('hex')}'"`);
      const rows = db.prepare('SELECT kdf, secret IS NULL AS passphrase, count(*) AS n FROM tenants GROUP BY kdf, secret IS NULL').all() as { kdf: string; passphrase: number; n: number }[];
      const byKdf: Record<string, number> = {};
      for (const r of rows) byKdf[r.kdf] = (byKdf[r.kdf] ?? 0) + r.n;
      return {
        initialised: true,
        format: registryFormat(db),
        tenants: rows.reduce((sum, r) => sum + r.n, 0),
        byKdf,
        passphraseTenants: rows.filter((r) => r.passphrase === 1).reduce((sum, r) => sum + r.n, 0),
        bytes,
      };
    } catch (error) {
      const failure = asPoolError(error, `the registry file ${dbPath} is unreadable`);
      throw failure.code === 'ERR_INTERNAL' ? poolError('ERR_WALLET_CORRUPT', failure.message, error) : failure;
    } finally {
      db?.close();
      for (const file of sidecars) if (existsSync(file) && (file.endsWith('-shm') || statSync(file).size === 0)) rmSync(file, { force: true });
    }
  } finally {
    key.fill(0);
  }
}

/** Registry files a root-key rotation left behind (killed before its commit, or the old one after it): every one but the header's. */
function sweepRegistryFiles(dataDir: string, current: string): void {
  for (const name of readdirSync(dataDir)) {
    const base = name.replace(/-(wal|shm|journal)$/, '');
    if (base === current || !(REGISTRY_FILE.test(base) || (base === 'registry.sqlite' && current !== 'registry.sqlite'))) continue;
    rmSync(join(dataDir, name), { force: true });
  }
}
