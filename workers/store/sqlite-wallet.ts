/**
 * A tenant's wallet: one SQLite file, whole-file encrypted (SQLite3MultipleCiphers, ChaCha20-Poly1305
 * pages) with a raw 32-byte key. Records are JSON values with string tags; Ed25519 private keys are
 * wrapped once more under a key derived from the wallet key and never leave this thread.
 *
 * Synchronous by design: better-sqlite3 calls are short and run on the worker thread that owns the wallet.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, hkdfSync, randomBytes, randomUUID, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { accessSync, chmodSync, closeSync, constants, existsSync, openSync, renameSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3-multiple-ciphers';
import bs58 from 'bs58';
import { basename, dirname } from 'node:path';
import { asPoolError, poolError, storageCode, TenantPoolError } from '../../common/errors.js';
import { formatTooNew, WALLET_FILE_FORMAT } from '../../common/formats.js';
import { fsyncDir } from '../../common/fs.js';
import type { RawRecord } from '../../common/protocol.js';
import { like, type QueryNode } from '../../common/query.js';
import { generateEd25519, isKeyPair } from '../ed25519.js';
import type { WalletSnapshot } from '../../common/export-format.js';

const SCHEMA = `
CREATE TABLE records (
  rid INTEGER PRIMARY KEY,
  category TEXT NOT NULL,
  id TEXT NOT NULL,
  value TEXT NOT NULL,
  tags TEXT NOT NULL,
  UNIQUE (category, id)
);
-- Records of a category in insertion order: find() without tags walks this.
CREATE INDEX records_by_category ON records (category);
CREATE TABLE tags (
  rid INTEGER NOT NULL REFERENCES records (rid) ON DELETE CASCADE,
  category TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (rid, name)
) WITHOUT ROWID;
-- find() drives from this index: one (category, name, value) gives its matching rids in order.
CREATE INDEX tags_by_value ON tags (category, name, value, rid);
CREATE TABLE keys (
  kid TEXT PRIMARY KEY,
  public_key BLOB NOT NULL,
  wrapped_private_key BLOB NOT NULL,
  created_at TEXT NOT NULL
);
PRAGMA user_version = ${WALLET_FILE_FORMAT};
`;

const WRAP_NONCE_BYTES = 12;
const WRAP_TAG_BYTES = 16;
/** find() counts a tag's matches only up to this, to pick the rarest tag cheaply. */
const TAG_COUNT_CAP = 1000;
/** Most signing keys kept as ready KeyObjects per wallet; beyond this they are unwrapped per call. */
const KEY_CACHE_LIMIT = 256;

type Db = Database.Database;
type Stmt = Database.Statement;

function keyDatabase(db: Db, key: Uint8Array): void {
  db.pragma(`cipher='chacha20'`);
  db.pragma(`key="x'${Buffer.from(key).toString('hex')}'"`);
}

/** Opens the file with the key and checks it really is a wallet; any failure here is a corrupt file. */
function openKeyed(path: string, key: Uint8Array): Db {
  let db: Db | undefined;
  try {
    db = new Database(path, { fileMustExist: true });
    keyDatabase(db, key);
    const version = db.pragma('user_version', { simple: true });
    // A later release's wallet: refused as such, not as damage. (Format 1 is the only one so far: a
    // later wallet format would be upgraded here, at the wallet's first open, step by step.)
    if (typeof version === 'number' && version > WALLET_FILE_FORMAT) throw formatTooNew(`the wallet file ${basename(path)}`, version, WALLET_FILE_FORMAT);
    if (version !== WALLET_FILE_FORMAT) throw new Error(`unexpected schema version ${String(version)}`);
    db.pragma('journal_mode = WAL');
    // FULL: a commit is on disk before save()/delete() resolve, also across power loss.
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    // `$like` through the one matcher both stores use (SQLite's own LIKE stops at a U+0000 in the value).
    db.function('tp_like', { deterministic: true }, (value: unknown, pattern: unknown) => (typeof value === 'string' && typeof pattern === 'string' && like(value, pattern) ? 1 : 0));
    return db;
  } catch (error) {
    db?.close();
    throw openFailure(path, error);
  }
}

/**
 * Why a wallet file could not be opened: a folder or mount the process may not write (WAL needs its
 * -wal and -shm files), a full disk, another I/O failure — or, for anything else, a damaged file.
 */
function openFailure(path: string, error: unknown): Error {
  if (error instanceof TenantPoolError) return error;
  const code = (error as { code?: unknown }).code;
  let mapped = storageCode(code);
  if (mapped === undefined || (typeof code === 'string' && code.startsWith('SQLITE_CANTOPEN'))) {
    try {
      accessSync(dirname(path), constants.W_OK);
      accessSync(path, constants.R_OK | constants.W_OK);
    } catch {
      mapped = 'ERR_STORAGE_READONLY';
    }
  }
  if (mapped === undefined || mapped === 'ERR_WALLET_CORRUPT') return poolError('ERR_WALLET_CORRUPT', `wallet file of this tenant is unreadable: ${(error as Error).message}`, error);
  return poolError(mapped, `wallet file of this tenant cannot be opened: ${(error as Error).message}`, error);
}

/** Runs a wallet operation; a storage failure (a full disk, a read-only file) becomes its `TenantPoolError`. */
function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw asPoolError(error, what);
  }
}

const COMPARE_SQL = { eq: '=', neq: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/** SQL for a query tree over `records r`, its parameters pushed to `params`. Each tag condition is checked by primary key (rid, name). */
function conditionSql(node: QueryNode, params: unknown[]): string {
  switch (node.op) {
    case 'and':
    case 'or':
      if (node.children.length === 0) return node.op === 'and' ? '1' : '0';
      return `(${node.children.map((c) => conditionSql(c, params)).join(node.op === 'and' ? ' AND ' : ' OR ')})`;
    case 'not':
      return `NOT ${conditionSql(node.child, params)}`;
    case 'in':
      params.push(node.name, ...node.values);
      return `EXISTS (SELECT 1 FROM tags t WHERE t.rid = r.rid AND t.name = ? AND t.value IN (${node.values.map(() => '?').join(', ')}))`;
    case 'like':
      params.push(node.name, node.value);
      return `EXISTS (SELECT 1 FROM tags t WHERE t.rid = r.rid AND t.name = ? AND tp_like(t.value, ?))`;
    default:
      params.push(node.name, node.value);
      return `EXISTS (SELECT 1 FROM tags t WHERE t.rid = r.rid AND t.name = ? AND t.value ${COMPARE_SQL[node.op]} ?)`;
  }
}

/** Prepared statements kept per wallet for queries of different shapes, at most this many. */
const QUERY_CACHE_LIMIT = 64;

export class Wallet {
  readonly #db: Db;
  readonly #wrapKey: Buffer;
  readonly #signers = new Map<string, KeyObject>();
  readonly #save: Stmt;
  readonly #deleteTags: Stmt;
  readonly #insertTag: Stmt;
  readonly #countTag: Stmt;
  readonly #get: Stmt;
  readonly #delete: Stmt;
  readonly #findAll: Stmt;
  readonly #insertKey: Stmt;
  readonly #getKey: Stmt;
  readonly #getPublicKey: Stmt;
  readonly #listKeys: Stmt;
  readonly #deleteKey: Stmt;
  readonly #findByTagCount = new Map<number, Stmt>();
  readonly #queries = new Map<string, Stmt>();
  readonly #saveTx: (category: string, id: string, valueJson: string, tags: Record<string, string>) => void;

  private constructor(db: Db, key: Uint8Array) {
    this.#db = db;
    this.#wrapKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'tenant-pool key wrap v1', 32));
    this.#save = db.prepare(
      `INSERT INTO records (category, id, value, tags) VALUES (?, ?, ?, ?)
       ON CONFLICT (category, id) DO UPDATE SET value = excluded.value, tags = excluded.tags RETURNING rid`,
    );
    this.#deleteTags = db.prepare('DELETE FROM tags WHERE rid = ?');
    this.#insertTag = db.prepare('INSERT INTO tags (rid, category, name, value) VALUES (?, ?, ?, ?)');
    this.#countTag = db.prepare(`SELECT count(*) AS n FROM (SELECT 1 FROM tags WHERE category = ? AND name = ? AND value = ? LIMIT ${TAG_COUNT_CAP})`).pluck();
    this.#get = db.prepare('SELECT category, id, value, tags FROM records WHERE category = ? AND id = ?');
    this.#delete = db.prepare('DELETE FROM records WHERE category = ? AND id = ?');
    this.#findAll = db.prepare('SELECT category, id, value, tags FROM records WHERE category = ? ORDER BY rid LIMIT ?');
    this.#insertKey = db.prepare('INSERT INTO keys (kid, public_key, wrapped_private_key, created_at) VALUES (?, ?, ?, ?)');
    this.#getKey = db.prepare('SELECT wrapped_private_key FROM keys WHERE kid = ?');
    this.#getPublicKey = db.prepare('SELECT public_key FROM keys WHERE kid = ?');
    this.#listKeys = db.prepare('SELECT kid, public_key, created_at FROM keys ORDER BY created_at, kid');
    this.#deleteKey = db.prepare('DELETE FROM keys WHERE kid = ?');
    this.#saveTx = db.transaction((category: string, id: string, valueJson: string, tags: Record<string, string>) => {
      const tagsJson = JSON.stringify(tags);
      const row = this.#save.get(category, id, valueJson, tagsJson) as { rid: number };
      this.#deleteTags.run(row.rid);
      for (const [name, value] of Object.entries(tags)) this.#insertTag.run(row.rid, category, name, value);
    });
  }

  /**
   * Creates a new wallet file at `path`, atomically: it is built under a temporary name and renamed
   * into place only once complete, so a crash never leaves a half-written wallet behind.
   */
  static create(path: string, key: Uint8Array): void {
    guard('creating the wallet file', () => Wallet.#create(path, key));
  }

  /**
   * Writes a copy of the wallet at `oldPath` (opened with `oldKey`) to a new file at `newPath`
   * under `newKey`, as a create does: under a temporary name, renamed into place when complete.
   * Records keep their order; private keys are unwrapped and wrapped again under the new key. The
   * old file is left as it was: which of the two is the tenant's is the registry's to say.
   */
  static rekey(oldPath: string, oldKey: Uint8Array, newPath: string, newKey: Uint8Array): void {
    guard('rekeying the wallet', () => {
      const source = Wallet.open(oldPath, oldKey);
      try {
        Wallet.#create(newPath, newKey, (target) => source.#copyInto(target));
      } finally {
        source.close();
      }
    });
  }

  /** Every record and key, private keys in the clear (PKCS#8, base64), in one read: for an export, on this thread only. */
  check(): { bytes: number } {
    return guard('checking the wallet', () => {
      // Every page is read, so each page's authentication tag is checked; any finding is damage.
      const findings = this.#db.pragma('integrity_check') as { integrity_check: string }[];
      if (findings.length !== 1 || findings[0]!.integrity_check !== 'ok') {
        throw poolError('ERR_WALLET_CORRUPT', `the wallet file fails its integrity check: ${findings.slice(0, 3).map((f) => f.integrity_check).join('; ')}`);
      }
      const pages = this.#db.pragma('page_count', { simple: true }) as number;
      const size = this.#db.pragma('page_size', { simple: true }) as number;
      return { bytes: pages * size };
    });
  }

  snapshot(): WalletSnapshot {
    return guard('reading the wallet for an export', () =>
      this.#db.transaction(() => ({
        records: (this.#db.prepare('SELECT category, id, value, tags FROM records ORDER BY rid').raw().all() as WalletSnapshot['records']),
        keys: (this.#db.prepare('SELECT kid, public_key, wrapped_private_key, created_at FROM keys ORDER BY created_at, kid').all() as Array<{ kid: string; public_key: Buffer; wrapped_private_key: Buffer; created_at: string }>).map((k) => {
          const pkcs8 = this.#unwrap(k.kid, k.wrapped_private_key);
          const privateKey = pkcs8.toString('base64');
          pkcs8.fill(0);
          return { kid: k.kid, publicKey: bs58.encode(k.public_key), privateKey, createdAt: k.created_at };
        }),
      }))(),
    );
  }

  /** Creates a wallet at `path` under `key` holding what `snapshot` gave (an import), as a create does. */
  static createFrom(path: string, key: Uint8Array, snapshot: WalletSnapshot): void {
    guard('writing the imported wallet', () =>
      Wallet.#create(path, key, (target) => {
        for (const [category, id, value, tags] of snapshot.records) {
          const parsed = JSON.parse(tags) as Record<string, string>;
          target.#saveTx(category, id, value, parsed);
        }
        for (const k of snapshot.keys) {
          const pkcs8 = Buffer.from(k.privateKey, 'base64');
          const publicKey = Buffer.from(bs58.decode(k.publicKey));
          if (!isKeyPair(pkcs8, publicKey)) throw poolError('ERR_WALLET_CORRUPT', `the exported key ${k.kid} does not match its public key`);
          target.#insertKey.run(k.kid, publicKey, target.#wrap(k.kid, pkcs8), k.createdAt);
          pkcs8.fill(0);
        }
      }),
    );
  }

  #copyInto(target: Wallet): void {
    const records = target.#db.prepare('INSERT INTO records (rid, category, id, value, tags) VALUES (?, ?, ?, ?, ?)');
    for (const r of this.#db.prepare('SELECT rid, category, id, value, tags FROM records ORDER BY rid').iterate() as IterableIterator<RawRecord & { rid: number }>) {
      records.run(r.rid, r.category, r.id, r.value, r.tags);
    }
    const tags = target.#db.prepare('INSERT INTO tags (rid, category, name, value) VALUES (?, ?, ?, ?)');
    for (const t of this.#db.prepare('SELECT rid, category, name, value FROM tags').iterate() as IterableIterator<{ rid: number; category: string; name: string; value: string }>) {
      tags.run(t.rid, t.category, t.name, t.value);
    }
    for (const k of this.#db.prepare('SELECT kid, public_key, wrapped_private_key, created_at FROM keys').iterate() as IterableIterator<{ kid: string; public_key: Buffer; wrapped_private_key: Buffer; created_at: string }>) {
      const pkcs8 = this.#unwrap(k.kid, k.wrapped_private_key);
      target.#insertKey.run(k.kid, k.public_key, target.#wrap(k.kid, pkcs8), k.created_at);
      pkcs8.fill(0);
    }
  }

  static #create(path: string, key: Uint8Array, fill?: (target: Wallet) => void): void {
    const temp = `${path}.creating`;
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(temp + suffix, { force: true });
    // Made with 0600 before SQLite opens it; SQLite gives its -wal and -shm files the same mode.
    closeSync(openSync(temp, 'wx', 0o600));
    const db = new Database(temp);
    try {
      keyDatabase(db, key);
      db.exec(SCHEMA);
      if (fill !== undefined) {
        const target = new Wallet(db, key);
        try {
          db.transaction(() => fill(target))();
        } finally {
          target.#signers.clear();
          target.#wrapKey.fill(0);
        }
      }
      db.pragma('journal_mode = WAL');
    } finally {
      // Closing the last connection checkpoints the WAL into the file and removes it.
      db.close();
    }
    // The registry is the truth: a file with no registry row (left by a crash) cannot be opened by anyone, so it is replaced.
    for (const suffix of ['-wal', '-shm']) rmSync(path + suffix, { force: true });
    renameSync(temp, path);
    chmodSync(path, 0o600);
    // The rename is durable before the registry row that names this file is written.
    fsyncDir(dirname(path));
  }

  /** Opens an existing wallet. The key must already be checked against the tenant's verifier. */
  static open(path: string, key: Uint8Array): Wallet {
    if (!existsSync(path)) throw poolError('ERR_WALLET_CORRUPT', 'wallet file of this tenant is missing');
    return new Wallet(openKeyed(path, key), key);
  }

  close(): void {
    this.#signers.clear();
    this.#wrapKey.fill(0);
    if (this.#db.open) this.#db.close();
  }

  save(category: string, id: string, valueJson: string, tags: Record<string, string>): void {
    guard('saving a record', () => this.#saveTx(category, id, valueJson, tags));
  }

  get(category: string, id: string): RawRecord | null {
    return guard('reading a record', () => (this.#get.get(category, id) as RawRecord | undefined) ?? null);
  }

  /**
   * Records of `category` carrying every given tag, oldest first. The scan is driven by the rarest
   * tag (counted up to a cap through the index), and each other tag is checked by primary key, so a
   * rare tag is fast however common the others are.
   */
  find(category: string, tags: Record<string, string>, limit: number): RawRecord[] {
    return guard('finding records', () => this.#find(category, tags, limit));
  }

  #find(category: string, tags: Record<string, string>, limit: number): RawRecord[] {
    let entries = Object.entries(tags);
    if (entries.length === 0) return this.#findAll.all(category, limit) as RawRecord[];
    if (entries.length > 1) {
      const counted = entries.map((entry) => ({ entry, n: this.#countTag.get(category, entry[0], entry[1]) as number }));
      counted.sort((a, b) => a.n - b.n);
      if (counted[0]!.n === 0) return [];
      entries = counted.map((c) => c.entry);
    }
    return this.#findByTags(entries.length).all(category, ...entries.flat(), limit) as RawRecord[];
  }

  #findByTags(tagCount: number): Stmt {
    let stmt = this.#findByTagCount.get(tagCount);
    if (stmt === undefined) {
      const others = ' AND EXISTS (SELECT 1 FROM tags t WHERE t.rid = t0.rid AND t.name = ? AND t.value = ?)'.repeat(tagCount - 1);
      // CROSS JOIN keeps t0 (the rarest tag) as the outer loop; its index yields rids in order, so no sort.
      stmt = this.#db.prepare(
        `SELECT r.category, r.id, r.value, r.tags FROM tags t0 CROSS JOIN records r ON r.rid = t0.rid
         WHERE t0.category = ? AND t0.name = ? AND t0.value = ?${others} ORDER BY t0.rid LIMIT ?`,
      );
      this.#findByTagCount.set(tagCount, stmt);
    }
    return stmt;
  }

  /**
   * A page of the records of `category` matching `node` (null: all), oldest first: those after rid
   * `after` up to rid `upTo` (the newest when paging began; -1 takes it now). Returns the rows, the
   * last rid returned, the bound used, and whether more remain.
   */
  query(category: string, node: QueryNode | null, after: number, upTo: number, limit: number): { rows: RawRecord[]; lastRid: number; upTo: number; hasMore: boolean } {
    return guard('querying records', () => {
      const bound = upTo >= 0 ? upTo : ((this.#db.prepare('SELECT max(rid) FROM records').pluck().get() as number | null) ?? 0);
      const params: unknown[] = [category, after, bound];
      const where = node === null ? '' : ` AND ${conditionSql(node, params)}`;
      const rows = this.#prepared(`SELECT r.rid, r.category, r.id, r.value, r.tags FROM records r WHERE r.category = ? AND r.rid > ? AND r.rid <= ?${where} ORDER BY r.rid LIMIT ?`).all(
        ...params,
        limit < 0 ? -1 : limit + 1,
      ) as Array<RawRecord & { rid: number }>;
      const hasMore = limit >= 0 && rows.length > limit;
      if (hasMore) rows.pop();
      const lastRid = rows.at(-1)?.rid ?? after;
      return { rows: rows.map(({ category: c, id, value, tags }) => ({ category: c, id, value, tags })), lastRid, upTo: bound, hasMore };
    });
  }

  /** How many records of `category` match `node` (null: all). */
  count(category: string, node: QueryNode | null): number {
    return guard('counting records', () => {
      const params: unknown[] = [category];
      const where = node === null ? '' : ` AND ${conditionSql(node, params)}`;
      return this.#prepared(`SELECT count(*) FROM records r WHERE r.category = ?${where}`).pluck().get(...params) as number;
    });
  }

  #prepared(sql: string): Stmt {
    let stmt = this.#queries.get(sql);
    if (stmt === undefined) {
      if (this.#queries.size >= QUERY_CACHE_LIMIT) this.#queries.delete(this.#queries.keys().next().value!);
      stmt = this.#db.prepare(sql);
    } else {
      this.#queries.delete(sql);
    }
    this.#queries.set(sql, stmt);
    return stmt;
  }

  /** SQLite's plan for find() with this many tags (0 = none), for tests that check the indexes are used. */
  findPlan(tagCount: number): string[] {
    const sql = tagCount === 0 ? this.#findAll.source : this.#findByTags(tagCount).source;
    const params = Array.from({ length: 2 + 2 * tagCount }, () => 'x');
    return (this.#db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail);
  }

  /** Runs `fn` in one transaction: many saves commit (and sync) once. */
  batch<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  delete(category: string, id: string): boolean {
    return guard('deleting a record', () => this.#delete.run(category, id).changes > 0);
  }

  createKey(): { kid: string; publicKey: string } {
    return guard('creating a key', () => this.#createKey());
  }

  #createKey(): { kid: string; publicKey: string } {
    const { rawPublic, pkcs8, privateKey } = generateEd25519();
    const kid = randomUUID();
    this.#insertKey.run(kid, rawPublic, this.#wrap(kid, pkcs8), new Date().toISOString());
    pkcs8.fill(0);
    this.#remember(kid, privateKey);
    return { kid, publicKey: bs58.encode(rawPublic) };
  }

  /** The wallet's keys, oldest first. */
  listKeys(): Array<{ kid: string; publicKey: string; createdAt: string }> {
    const rows = guard('listing keys', () => this.#listKeys.all() as Array<{ kid: string; public_key: Buffer; created_at: string }>);
    return rows.map((r) => ({ kid: r.kid, publicKey: bs58.encode(r.public_key), createdAt: r.created_at }));
  }

  /** The public key of `kid`. @throws ERR_KEY_NOT_FOUND */
  publicKeyOf(kid: string): string {
    const row = guard('reading a key', () => this.#getPublicKey.get(kid) as { public_key: Buffer } | undefined);
    if (row === undefined) throw poolError('ERR_KEY_NOT_FOUND', 'no key with this kid in the wallet');
    return bs58.encode(row.public_key);
  }

  /** Deletes `kid`; returns its public key, or null if the wallet had no such key. */
  deleteKey(kid: string): string | null {
    return guard('deleting a key', () => {
      const row = this.#getPublicKey.get(kid) as { public_key: Buffer } | undefined;
      if (row === undefined) return null;
      this.#deleteKey.run(kid);
      this.#signers.delete(kid);
      return bs58.encode(row.public_key);
    });
  }

  sign(kid: string, data: Uint8Array): Uint8Array {
    let key = this.#signers.get(kid);
    if (key === undefined) {
      const row = guard('reading a key', () => this.#getKey.get(kid)) as { wrapped_private_key: Buffer } | undefined;
      if (row === undefined) throw poolError('ERR_KEY_NOT_FOUND', 'no key with this kid in the wallet');
      const pkcs8 = this.#unwrap(kid, row.wrapped_private_key);
      key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
      pkcs8.fill(0);
      this.#remember(kid, key);
    }
    return new Uint8Array(cryptoSign(null, data, key));
  }

  #remember(kid: string, key: KeyObject): void {
    if (this.#signers.size >= KEY_CACHE_LIMIT) {
      const oldest = this.#signers.keys().next().value;
      if (oldest !== undefined) this.#signers.delete(oldest);
    }
    this.#signers.set(kid, key);
  }

  #wrap(kid: string, plaintext: Buffer): Buffer {
    const nonce = randomBytes(WRAP_NONCE_BYTES);
    const cipher = createCipheriv('chacha20-poly1305', this.#wrapKey, nonce, { authTagLength: WRAP_TAG_BYTES });
    cipher.setAAD(Buffer.from(kid, 'utf8'), { plaintextLength: plaintext.length });
    return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  #unwrap(kid: string, wrapped: Buffer): Buffer {
    try {
      const nonce = wrapped.subarray(0, WRAP_NONCE_BYTES);
      const tag = wrapped.subarray(wrapped.length - WRAP_TAG_BYTES);
      const decipher = createDecipheriv('chacha20-poly1305', this.#wrapKey, nonce, { authTagLength: WRAP_TAG_BYTES });
      decipher.setAAD(Buffer.from(kid, 'utf8'), { plaintextLength: wrapped.length - WRAP_NONCE_BYTES - WRAP_TAG_BYTES });
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(wrapped.subarray(WRAP_NONCE_BYTES, wrapped.length - WRAP_TAG_BYTES)), decipher.final()]);
    } catch (error) {
      throw poolError('ERR_WALLET_CORRUPT', 'a stored private key failed its integrity check', error);
    }
  }
}
