/**
 * Wallets in one PostgreSQL database, encrypted record by record in the worker that holds the
 * tenant (see `profile-key.ts`): the database stores and compares ciphertext only. One store per
 * worker owns a small `pg` pool (`connectionsPerWorker` connections at most); each wallet is a row
 * of `wallets` (named as the registry names it, with its profile key wrapped by the wallet key),
 * and its records, tags and keys are rows of shared tables, as Askar's profiles are.
 *
 * `pg` is loaded only when a PostgreSQL store is opened, so the embedded default never needs it.
 */
import { createPrivateKey, randomUUID, sign as cryptoSign, type KeyObject } from 'node:crypto';
import type { Pool as PgPool, PoolClient } from 'pg';
import bs58 from 'bs58';
import { poolError } from '../../common/errors.js';
import type { RawRecord, WalletProfileRow } from '../../common/protocol.js';
import { isEqualityOnly, matchesQuery, type QueryNode } from '../../common/query.js';
import { checkOwnerEpoch, createSchema, inTransaction, openPgPool, pgError } from '../../common/pg.js';
import { generateEd25519, isKeyPair } from '../ed25519.js';
import type { WalletSnapshot } from '../../common/export-format.js';
import { ProfileKey } from './profile-key.js';

/** In cluster mode, what every write of a wallet is fenced by: its tenant's lease as this instance took it. */
export interface WriteFence {
  tenantId: string;
  owner: string;
  epoch: number;
}

/** Records written per statement by an import (or a rekey that rotates the data key). */
const IMPORT_BATCH = 500;

/** Candidates read at a time by a query SQL cannot decide alone (`$like`, ranges). */
const FILTER_BATCH = 500;

/** Most signing keys kept ready per open wallet. */
const KEY_CACHE_LIMIT = 256;
/** Most records, and most bytes of them, kept decrypted per open wallet (see `PostgresWallet`). */
const RECORD_CACHE_LIMIT = 1024;
const RECORD_CACHE_BYTES = 4 * 2 ** 20;

const sizeOf = (r: RawRecord | null): number => (r === null ? 64 : 2 * (r.category.length + r.id.length + r.value.length + r.tags.length) + 64);

/** The store of one worker: its connections and the schema. */
export class PostgresWalletStore {
  readonly #pool: PgPool;
  readonly #schema: string;
  readonly #ownerEpoch: number | undefined;

  private constructor(pool: PgPool, schema: string, ownerEpoch: number | undefined) {
    this.#pool = pool;
    this.#schema = schema;
    this.#ownerEpoch = ownerEpoch;
  }

  /**
   * A store on at most `maxConnections` connections, opened as they are needed. With
   * `createTables`, the schema and its tables are created now if missing (the pool's registry
   * does this when it opens; a worker's store does not). With `ownerEpoch` (a pool that owns the
   * schema alone), every write first checks that the schema is still owned under that epoch.
   * @throws ERR_INVALID_CONFIG for a bad schema name or a missing `pg` package
   */
  static async connect(connectionString: string, schema: string, maxConnections: number, options: { createTables?: boolean; ownerEpoch?: number } = {}): Promise<PostgresWalletStore> {
    const pool = await openPgPool(connectionString, schema, maxConnections);
    if (options.createTables === true) {
      try {
        await inTransaction(pool, 'creating the wallet tables', async (client) => createSchema(client, schema));
      } catch (error) {
        await pool.end().catch(() => {});
        throw error;
      }
    }
    return new PostgresWalletStore(pool, schema, options.ownerEpoch);
  }

  /**
   * @internal Without cluster mode: checks the ownership row for the pool's epoch, under the
   * ownership fence (`checkOwnerEpoch`), in the write's transaction. A pool that lost the schema (another pool or cluster instances took it while
   * its lock was gone) finds none and writes nothing; a takeover waits until this transaction ends.
   */
  async checkOwner(client: PoolClient, what: string): Promise<void> {
    if (this.#ownerEpoch === undefined) return;
    if (!(await checkOwnerEpoch(client, this.#schema, this.#ownerEpoch))) throw poolError('ERR_OWNERSHIP_LOST', `${what}: the PostgreSQL schema ${this.#schema} was taken by another pool or by cluster instances; nothing was written`);
  }

  /** One statement; with a `name`, prepared once per connection (the hot statements: a get, a delete). */
  async query(what: string, sql: string, params: unknown[], isWrite = false, name?: string): Promise<Array<Record<string, unknown>>> {
    try {
      return (await this.#pool.query(name === undefined ? { text: sql, values: params } : { name, text: sql, values: params })).rows as Array<Record<string, unknown>>;
    } catch (error) {
      throw pgError(error, what, isWrite);
    }
  }

  /** @internal For the wallet: a transaction on one connection. */
  async transaction<T>(what: string, fn: (client: PoolClient) => Promise<T>, isolation = ''): Promise<T> {
    return inTransaction(this.#pool, what, fn, isolation);
  }

  /**
   * Creates the wallet `name` of `tenantId` with a new profile key wrapped by `walletKey`, and opens it.
   * @throws ERR_TENANT_EXISTS when a wallet of that name exists
   */
  async create(name: string, tenantId: string, walletKey: Uint8Array): Promise<PostgresWallet> {
    const profile = ProfileKey.generate();
    try {
      const walletId = await this.transaction('creating a wallet', async (client) => {
        await this.checkOwner(client, 'creating a wallet');
        return this.#insertWallet(client, name, tenantId, profile, walletKey);
      });
      return new PostgresWallet(this, this.#schema, walletId, profile);
    } catch (error) {
      profile.destroy();
      throw error;
    }
  }

  async #insertWallet(client: PoolClient, name: string, tenantId: string, profile: ProfileKey, walletKey: Uint8Array): Promise<string> {
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO ${this.#schema}.wallets (name, tenant_id, profile_key) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id`,
      [name, tenantId, profile.wrap(walletKey)],
    );
    if (rows.length === 0) throw poolError('ERR_TENANT_EXISTS', `a wallet named ${name} already exists in the database`, undefined, { tenantId });
    return rows[0]!.id;
  }

  /** Creates the wallet `name` under `walletKey` holding what `snapshot` gave (an import), in one transaction. */
  async createFrom(name: string, tenantId: string, walletKey: Uint8Array, snapshot: WalletSnapshot): Promise<void> {
    const profile = ProfileKey.generate();
    try {
      await this.transaction('writing the imported wallet', async (client) => {
        await this.checkOwner(client, 'writing the imported wallet');
        const wallet = new PostgresWallet(this, this.#schema, await this.#insertWallet(client, name, tenantId, profile, walletKey), profile);
        await wallet.insertAllOn(client, snapshot.records);
        for (const k of snapshot.keys) {
          const pkcs8 = Buffer.from(k.privateKey, 'base64');
          try {
            if (!isKeyPair(pkcs8, bs58.decode(k.publicKey))) throw poolError('ERR_WALLET_CORRUPT', `the exported key ${k.kid} does not match its public key`);
            await wallet.insertKeyOn(client, k.kid, k.publicKey, pkcs8, k.createdAt);
          } finally {
            pkcs8.fill(0);
          }
        }
      });
    } finally {
      profile.destroy();
    }
  }

  /**
   * Opens the wallet `name` with `walletKey` (already checked against the tenant's verifier).
   * @throws ERR_WALLET_CORRUPT when the wallet is missing or its profile key fails its check
   */
  async open(name: string, walletKey: Uint8Array, fence?: WriteFence, given?: WalletProfileRow): Promise<PostgresWallet> {
    if (given !== undefined && given.name === name) {
      let profile: ProfileKey | undefined;
      try {
        profile = ProfileKey.unwrap(given.sealedProfileKey, walletKey);
      } catch {
        // Read in the lease's statement, before a rekey elsewhere committed: read it again below.
      }
      if (profile !== undefined) return new PostgresWallet(this, this.#schema, given.id, profile, fence);
    }
    const row = await this.#profileRow(name, 'opening a wallet');
    return new PostgresWallet(this, this.#schema, row.id, ProfileKey.unwrap(row.profile_key, walletKey), fence);
  }

  async #profileRow(name: string, what: string): Promise<{ id: string; profile_key: Buffer }> {
    const rows = await this.query(what, `SELECT id, profile_key FROM ${this.#schema}.wallets WHERE name = $1`, [name]);
    const row = rows[0] as { id: string; profile_key: Buffer } | undefined;
    if (row === undefined) throw poolError('ERR_WALLET_CORRUPT', 'the wallet of this tenant is missing from the database');
    return row;
  }

  /**
   * The wallet's profile key wrapped by `newKey` instead of `oldKey`: a rekey changes that one
   * value, written by the registry in the transaction that records the tenant's new key. The
   * records are not touched.
   */
  async rewrap(name: string, oldKey: Uint8Array, newKey: Uint8Array): Promise<Buffer> {
    const profile = ProfileKey.unwrap((await this.#profileRow(name, 'reading a wallet for a rekey')).profile_key, oldKey);
    try {
      return profile.wrap(newKey);
    } finally {
      profile.destroy();
    }
  }

  /**
   * A rekey that rotates the data key: the wallet `name`, read in one consistent snapshot under
   * `oldKey`, is written whole as the new wallet `newName` under a new random profile key wrapped
   * by `newKey` (every record, tag and key encrypted anew), in one transaction. The old wallet is
   * not touched: the registry's switch to `newName` is the commit point, and whichever wallet the
   * registry does not name afterwards is removed (or swept at the next open).
   */
  async copyUnder(name: string, oldKey: Uint8Array, newName: string, tenantId: string, newKey: Uint8Array): Promise<void> {
    const old = await this.open(name, oldKey);
    try {
      await this.createFrom(newName, tenantId, newKey, await old.snapshot());
    } finally {
      old.close();
    }
  }

  /** Removes the wallet `name` and, by cascade, its records, tags and keys. Returns whether there was one. */
  async drop(name: string): Promise<boolean> {
    return (await this.query('deleting a wallet', `DELETE FROM ${this.#schema}.wallets WHERE name = $1 RETURNING id`, [name], true)).length > 0;
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

/**
 * One tenant's wallet in the database. Every field is encrypted here before it is sent.
 *
 * Records read or written recently are kept decrypted in memory (at most 1,024 and 4 MiB per open
 * wallet), as SQLite keeps pages: a tenant is open on one worker of one pool at a time (the pool
 * owns its schema), so every write of it passes here and the copy cannot go stale. A write evicts
 * its record before it starts and puts it back only after its commit, and only when no other write
 * of that record overlapped it; a read fills the cache only when no write of the wallet started
 * while it ran; a write that failed leaves its record out.
 */
export class PostgresWallet {
  readonly #store: PostgresWalletStore;
  readonly #s: string;
  readonly #walletId: string;
  readonly #profile: ProfileKey;
  readonly #signers = new Map<string, KeyObject>();
  /** Least recently used first. `null`: known to be absent. */
  readonly #records = new Map<string, RawRecord | null>();
  #recordBytes = 0;
  /** Writes under way per record, and whether another overlapped them. */
  readonly #writing = new Map<string, { count: number; isContended: boolean }>();
  /** Writes started on this wallet: a read that saw this change while it ran does not fill the cache. */
  #writes = 0;
  /** Reads of a record under way: a get of the same record joins one (10,000 sessions reading one record make one query). */
  readonly #reading = new Map<string, Promise<RawRecord | null>>();

  readonly #fence: WriteFence | undefined;

  constructor(store: PostgresWalletStore, schema: string, walletId: string, profile: ProfileKey, fence?: WriteFence) {
    this.#fence = fence;
    this.#store = store;
    this.#s = schema;
    this.#walletId = walletId;
    this.#profile = profile;
  }

  /** Inserts or replaces a record and its tags in one transaction; resolves after the commit. */
  async save(category: string, id: string, valueJson: string, tags: Record<string, string>): Promise<void> {
    await this.#write(category, id, { category, id, value: valueJson, tags: JSON.stringify(tags) }, async () =>
      this.#transact('saving a record', async (client) => this.saveOn(client, category, id, valueJson, tags)),
    );
  }

  /**
   * A write transaction. In cluster mode it first reads the tenant's lease row `FOR SHARE` with the
   * owner and epoch this wallet was opened under: a stale owner finds none and changes nothing
   * (`ERR_LEASE_LOST`), and a takeover waits until this transaction ends. A pool that owns the
   * schema alone reads its ownership row so instead (`ERR_OWNERSHIP_LOST`). The fence is in the
   * database, not in this process.
   */
  async #transact<T>(what: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const fence = this.#fence;
    return this.#store.transaction(what, async (client) => {
      if (fence !== undefined) {
        const { rowCount } = await client.query({
          name: `tp-fence-${this.#s}`,
          text: `SELECT 1 FROM ${this.#s}.leases WHERE tenant_id = $1 AND owner = $2 AND epoch = $3 FOR SHARE`,
          values: [fence.tenantId, fence.owner, fence.epoch],
        });
        if (rowCount === 0) throw poolError('ERR_LEASE_LOST', `${what}: this instance no longer holds the lease of tenant ${fence.tenantId} (epoch ${fence.epoch}); nothing was written`, undefined, { tenantId: fence.tenantId });
      } else {
        await this.#store.checkOwner(client, what);
      }
      return fn(client);
    });
  }

  /** Runs a write of one record, keeping the record cache true (see the class). */
  async #write<T>(category: string, id: string, after: RawRecord | null, fn: () => Promise<T>): Promise<T> {
    const key = `${category}\u0000${id}`;
    this.#writes++;
    this.#dropRecord(key);
    // A get from now on must not join a read that began before this write.
    this.#reading.delete(key);
    let state = this.#writing.get(key);
    if (state === undefined) this.#writing.set(key, (state = { count: 0, isContended: false }));
    else state.isContended = true;
    state.count++;
    let isDone = false;
    try {
      const result = await fn();
      isDone = true;
      return result;
    } finally {
      state.count--;
      if (state.count === 0) this.#writing.delete(key);
      this.#dropRecord(key);
      if (isDone && !state.isContended && this.#writing.get(key) === undefined) this.#keepRecord(key, after);
    }
  }

  #dropRecord(key: string): void {
    const old = this.#records.get(key);
    if (old === undefined && !this.#records.has(key)) return;
    this.#records.delete(key);
    this.#recordBytes -= sizeOf(old ?? null);
  }

  #keepRecord(key: string, record: RawRecord | null): void {
    const size = sizeOf(record);
    if (size > RECORD_CACHE_BYTES / 16) return;
    this.#dropRecord(key);
    this.#records.set(key, record);
    this.#recordBytes += size;
    while (this.#records.size > RECORD_CACHE_LIMIT || this.#recordBytes > RECORD_CACHE_BYTES) this.#dropRecord(this.#records.keys().next().value!);
  }

  /** @internal The save's statements, in the caller's transaction. */
  async saveOn(client: PoolClient, category: string, id: string, valueJson: string, tags: Record<string, string>): Promise<void> {
    const p = this.#profile;
    const entries = Object.entries(tags);
    const sealedValue = p.encryptValue(category, id, JSON.stringify([valueJson, JSON.stringify(tags)]));
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO ${this.#s}.items (wallet_id, category, name, value) VALUES ($1, $2, $3, $4)
       ON CONFLICT (wallet_id, category, name) DO UPDATE SET value = EXCLUDED.value RETURNING id`,
      [this.#walletId, p.encrypt('category', category), p.encrypt('name', id), sealedValue],
    );
    const itemId = rows[0]!.id;
    await client.query(`DELETE FROM ${this.#s}.item_tags WHERE item_id = $1`, [itemId]);
    if (entries.length > 0) {
      await client.query(`INSERT INTO ${this.#s}.item_tags (item_id, name, value) SELECT $1, unnest($2::bytea[]), unnest($3::bytea[])`, [
        itemId,
        entries.map(([name]) => p.encrypt('tagName', name)),
        entries.map(([, value]) => p.encrypt('tagValue', value)),
      ]);
    }
  }

  /**
   * @internal Records into this new, empty wallet (an import, a rekey that rotates the data key), in
   * the caller's transaction: 500 at a time, a statement for their rows and one for their tags.
   */
  async insertAllOn(client: PoolClient, records: WalletSnapshot['records']): Promise<void> {
    const p = this.#profile;
    for (let start = 0; start < records.length; start += IMPORT_BATCH) {
      const chunk = records.slice(start, start + IMPORT_BATCH);
      const categories = chunk.map(([category]) => p.encrypt('category', category));
      const names = chunk.map(([, id]) => p.encrypt('name', id));
      const { rows } = await client.query<{ id: string; category: Buffer; name: Buffer }>(
        `INSERT INTO ${this.#s}.items (wallet_id, category, name, value) SELECT $1, unnest($2::bytea[]), unnest($3::bytea[]), unnest($4::bytea[]) RETURNING id, category, name`,
        [this.#walletId, categories, names, chunk.map(([category, id, value, tags]) => p.encryptValue(category, id, JSON.stringify([value, JSON.stringify(JSON.parse(tags))])))],
      );
      // Rows come back in no promised order: each is matched by its (unique) category and name.
      const idOf = new Map(rows.map((r) => [`${r.category.toString('hex')}:${r.name.toString('hex')}`, r.id]));
      const tagItems: string[] = [];
      const tagNames: Buffer[] = [];
      const tagValues: Buffer[] = [];
      chunk.forEach(([, , , tags], i) => {
        const itemId = idOf.get(`${categories[i]!.toString('hex')}:${names[i]!.toString('hex')}`)!;
        for (const [name, value] of Object.entries(JSON.parse(tags) as Record<string, string>)) {
          tagItems.push(itemId);
          tagNames.push(p.encrypt('tagName', name));
          tagValues.push(p.encrypt('tagValue', value));
        }
      });
      if (tagItems.length > 0) {
        await client.query(`INSERT INTO ${this.#s}.item_tags (item_id, name, value) SELECT unnest($1::bigint[]), unnest($2::bytea[]), unnest($3::bytea[])`, [tagItems, tagNames, tagValues]);
      }
    }
  }

  #record(category: string, row: { name: Buffer; value: Buffer }): RawRecord {
    const id = this.#profile.decrypt('name', row.name);
    const [value, tags] = JSON.parse(this.#profile.decryptValue(category, id, row.value)) as [string, string];
    return { category, id, value, tags };
  }

  async get(category: string, id: string): Promise<RawRecord | null> {
    const key = `${category}\u0000${id}`;
    const hit = this.#records.get(key);
    if (hit !== undefined || this.#records.has(key)) {
      // Most recently used now.
      this.#records.delete(key);
      this.#records.set(key, hit ?? null);
      return hit ?? null;
    }
    const joined = this.#reading.get(key);
    if (joined !== undefined) return joined;
    const reading = this.#read(key, category, id).finally(() => {
      if (this.#reading.get(key) === reading) this.#reading.delete(key);
    });
    this.#reading.set(key, reading);
    return reading;
  }

  async #read(key: string, category: string, id: string): Promise<RawRecord | null> {
    const p = this.#profile;
    // Filled only from a read that no write of this wallet overlapped.
    const writes = this.#writing.size === 0 ? this.#writes : -1;
    const rows = await this.#store.query(
      'reading a record',
      `SELECT name, value FROM ${this.#s}.items WHERE wallet_id = $1 AND category = $2 AND name = $3`,
      [this.#walletId, p.encrypt('category', category), p.encrypt('name', id)],
      false,
      `tp-get-${this.#s}`,
    );
    const row = rows[0] as { name: Buffer; value: Buffer } | undefined;
    const record = row === undefined ? null : this.#record(category, row);
    if (this.#writes === writes) this.#keepRecord(key, record);
    return record;
  }

  /** Records of `category` carrying every given tag (equality, compared on ciphertext), oldest first. */
  async find(category: string, tags: Record<string, string>, limit: number): Promise<RawRecord[]> {
    const p = this.#profile;
    const params: unknown[] = [this.#walletId, p.encrypt('category', category)];
    const [first, ...others] = Object.entries(tags);
    // With a tag, the scan drives from the tag index (name, value → item ids) and joins items by key.
    let from = `${this.#s}.items i`;
    if (first !== undefined) {
      params.push(p.encrypt('tagName', first[0]), p.encrypt('tagValue', first[1]));
      from = `${this.#s}.item_tags t0 JOIN ${this.#s}.items i ON i.id = t0.item_id AND t0.name = $3 AND t0.value = $4`;
    }
    const conditions = others.map(([name, value]) => {
      params.push(p.encrypt('tagName', name), p.encrypt('tagValue', value));
      return ` AND EXISTS (SELECT 1 FROM ${this.#s}.item_tags t WHERE t.item_id = i.id AND t.name = $${params.length - 1} AND t.value = $${params.length})`;
    });
    params.push(limit < 0 ? null : limit);
    const rows = await this.#store.query('finding records', `SELECT i.name, i.value FROM ${from} WHERE i.wallet_id = $1 AND i.category = $2${conditions.join('')} ORDER BY i.id LIMIT $${params.length}`, params);
    return (rows as Array<{ name: Buffer; value: Buffer }>).map((row) => this.#record(category, row));
  }

  /**
   * SQL for a query over `items i`, comparing ciphertexts. Equality, `$neq`, `$in`, `$not`, `$and`
   * and `$or` run on deterministic encryption. `$like` and ranges need the plain value, which the
   * database never has: in SQL they match everything they might (TRUE where `positive`, FALSE under
   * an odd number of `$not`), so the SQL selects a superset that the worker filters exactly.
   */
  #condition(node: QueryNode, params: unknown[], positive = true): string {
    const p = this.#profile;
    /** The record has tag `name` whose value compares so: `compare` gets the value's placeholder. */
    const tag = (name: string, value: unknown, compare: (placeholder: string) => string): string => {
      params.push(p.encrypt('tagName', name), value);
      return `EXISTS (SELECT 1 FROM ${this.#s}.item_tags t WHERE t.item_id = i.id AND t.name = $${params.length - 1} AND ${compare(`$${params.length}`)})`;
    };
    switch (node.op) {
      case 'and':
      case 'or':
        if (node.children.length === 0) return node.op === 'and' ? 'TRUE' : 'FALSE';
        return `(${node.children.map((c) => this.#condition(c, params, positive)).join(node.op === 'and' ? ' AND ' : ' OR ')})`;
      case 'not':
        return `NOT ${this.#condition(node.child, params, !positive)}`;
      case 'eq':
        return tag(node.name, p.encrypt('tagValue', node.value), (v) => `t.value = ${v}`);
      case 'neq':
        return tag(node.name, p.encrypt('tagValue', node.value), (v) => `t.value <> ${v}`);
      case 'in':
        return tag(node.name, node.values.map((v) => p.encrypt('tagValue', v)), (v) => `t.value = ANY(${v}::bytea[])`);
      default:
        return positive ? 'TRUE' : 'FALSE';
    }
  }

  /** Rows of `items i` of the category after item `after` up to `upTo`, matching `node` in SQL (a superset unless the query is equality only), oldest first. */
  async #candidates(category: string, node: QueryNode | null, after: number, upTo: number, limit: number | null): Promise<Array<{ id: string; name: Buffer; value: Buffer }>> {
    const params: unknown[] = [this.#walletId, this.#profile.encrypt('category', category), after, upTo];
    const where = node === null ? '' : ` AND ${this.#condition(node, params)}`;
    params.push(limit);
    return (await this.#store.query(
      'querying records',
      `SELECT i.id, i.name, i.value FROM ${this.#s}.items i WHERE i.wallet_id = $1 AND i.category = $2 AND i.id > $3 AND i.id <= $4${where} ORDER BY i.id LIMIT $${params.length}`,
      params,
    )) as Array<{ id: string; name: Buffer; value: Buffer }>;
  }

  /**
   * A page of the records matching `node` (null: all): after item `after`, up to item `upTo` (-1:
   * the newest now). A query with `$like` or ranges reads candidates in batches and keeps those
   * that match, so it returns what the SQLite store returns, at the cost of decrypting the rest.
   */
  async query(category: string, node: QueryNode | null, after: number, upTo: number, limit: number): Promise<{ rows: RawRecord[]; lastRid: number; upTo: number; hasMore: boolean }> {
    let bound = upTo;
    if (bound < 0) {
      const rows = await this.#store.query('querying records', `SELECT coalesce(max(id), 0)::bigint AS max FROM ${this.#s}.items WHERE wallet_id = $1`, [this.#walletId]);
      bound = Number((rows[0] as { max: string }).max);
    }
    if (isEqualityOnly(node)) {
      const rows = await this.#candidates(category, node, after, bound, limit < 0 ? null : limit + 1);
      const hasMore = limit >= 0 && rows.length > limit;
      if (hasMore) rows.pop();
      return { rows: rows.map((row) => this.#record(category, row)), lastRid: rows.length === 0 ? after : Number(rows.at(-1)!.id), upTo: bound, hasMore };
    }
    const out: RawRecord[] = [];
    let lastRid = after;
    for (let cursor = after; ; ) {
      const batch = await this.#candidates(category, node, cursor, bound, FILTER_BATCH);
      for (const row of batch) {
        const record = this.#record(category, row);
        if (!matchesQuery(node, JSON.parse(record.tags) as Record<string, string>)) continue;
        if (limit >= 0 && out.length === limit) return { rows: out, lastRid, upTo: bound, hasMore: true };
        out.push(record);
        lastRid = Number(row.id);
      }
      if (batch.length < FILTER_BATCH) return { rows: out, lastRid, upTo: bound, hasMore: false };
      cursor = Number(batch.at(-1)!.id);
    }
  }

  /** How many records of `category` match `node` (null: all). */
  async count(category: string, node: QueryNode | null = null): Promise<number> {
    if (isEqualityOnly(node)) {
      const params: unknown[] = [this.#walletId, this.#profile.encrypt('category', category)];
      const where = node === null ? '' : ` AND ${this.#condition(node, params)}`;
      const rows = await this.#store.query('counting records', `SELECT count(*)::int AS n FROM ${this.#s}.items i WHERE i.wallet_id = $1 AND i.category = $2${where}`, params);
      return (rows[0] as { n: number }).n;
    }
    let n = 0;
    for (let cursor = 0; ; ) {
      const batch = await this.#candidates(category, node, cursor, Number.MAX_SAFE_INTEGER, FILTER_BATCH);
      for (const row of batch) if (matchesQuery(node, JSON.parse(this.#record(category, row).tags) as Record<string, string>)) n++;
      if (batch.length < FILTER_BATCH) return n;
      cursor = Number(batch.at(-1)!.id);
    }
  }

  async delete(category: string, id: string): Promise<boolean> {
    const p = this.#profile;
    const rows = await this.#write(category, id, null, async () =>
      this.#transact('deleting a record', async (client) =>
        (
          await client.query<{ id: string }>({
            name: `tp-delete-${this.#s}`,
            text: `DELETE FROM ${this.#s}.items WHERE wallet_id = $1 AND category = $2 AND name = $3 RETURNING id`,
            values: [this.#walletId, p.encrypt('category', category), p.encrypt('name', id)],
          })
        ).rows,
      ),
    );
    return rows.length > 0;
  }

  /** An Ed25519 key pair; the private key is sealed under the profile key and never leaves this thread. */
  async createKey(): Promise<{ kid: string; publicKey: string }> {
    const { rawPublic, pkcs8, privateKey } = generateEd25519();
    const kid = randomUUID();
    const publicKey = bs58.encode(rawPublic);
    try {
      await this.#transact('creating a key', async (client) => this.insertKeyOn(client, kid, publicKey, pkcs8, new Date().toISOString()));
    } finally {
      pkcs8.fill(0);
    }
    this.#remember(kid, privateKey);
    return { kid, publicKey };
  }

  /** @internal A key's row, in the caller's transaction. */
  async insertKeyOn(client: PoolClient, kid: string, publicKey: string, pkcs8: Buffer, createdAt: string): Promise<void> {
    const p = this.#profile;
    await client.query(`INSERT INTO ${this.#s}.wallet_keys (wallet_id, kid, public_key, private_key, created_at) VALUES ($1, $2, $3, $4, $5)`, [
      this.#walletId,
      p.encrypt('kid', kid),
      p.encryptValue('key public', kid, publicKey),
      p.encryptValue('key private', kid, pkcs8.toString('base64')),
      p.encryptValue('key created', kid, createdAt),
    ]);
  }

  /** The public key of `kid`. @throws ERR_KEY_NOT_FOUND */
  async publicKeyOf(kid: string): Promise<string> {
    const rows = await this.#store.query('reading a key', `SELECT public_key FROM ${this.#s}.wallet_keys WHERE wallet_id = $1 AND kid = $2`, [this.#walletId, this.#profile.encrypt('kid', kid)]);
    const row = rows[0] as { public_key: Buffer } | undefined;
    if (row === undefined) throw poolError('ERR_KEY_NOT_FOUND', 'no key with this kid in the wallet');
    return this.#profile.decryptValue('key public', kid, row.public_key);
  }

  /** Deletes `kid`; returns its public key, or null if the wallet had no such key. */
  async deleteKey(kid: string): Promise<string | null> {
    const rows = await this.#transact('deleting a key', async (client) => (await client.query<{ public_key: Buffer }>(`DELETE FROM ${this.#s}.wallet_keys WHERE wallet_id = $1 AND kid = $2 RETURNING public_key`, [this.#walletId, this.#profile.encrypt('kid', kid)])).rows);
    this.#signers.delete(kid);
    const row = rows[0];
    return row === undefined ? null : this.#profile.decryptValue('key public', kid, row.public_key);
  }

  /** The server keeps its own pages' integrity; this says how many bytes of rows the wallet holds (every row decrypts in `snapshot`). */
  async check(): Promise<{ bytes: number }> {
    return this.#store.transaction(
      'checking the wallet',
      async (client) => {
        const { rows } = await client.query<{ bytes: string }>(
          `SELECT COALESCE((SELECT sum(octet_length(category) + octet_length(name) + octet_length(value)) FROM ${this.#s}.items WHERE wallet_id = $1), 0)
             + COALESCE((SELECT sum(octet_length(t.name) + octet_length(t.value)) FROM ${this.#s}.item_tags t JOIN ${this.#s}.items i ON i.id = t.item_id WHERE i.wallet_id = $1), 0) AS bytes`,
          [this.#walletId],
        );
        return { bytes: Number(rows[0]?.bytes ?? 0) };
      },
      'REPEATABLE READ READ ONLY',
    );
  }

  /** Every record and key, private keys in the clear (PKCS#8, base64), in one repeatable read: for an export, on this thread only. */
  async snapshot(): Promise<WalletSnapshot> {
    const p = this.#profile;
    return this.#store.transaction(
      'reading the wallet for an export',
      async (client) => {
        const items = (await client.query<{ category: Buffer; name: Buffer; value: Buffer }>(`SELECT category, name, value FROM ${this.#s}.items WHERE wallet_id = $1 ORDER BY id`, [this.#walletId])).rows;
        const keys = (await client.query<{ kid: Buffer; public_key: Buffer; private_key: Buffer; created_at: Buffer }>(
          `SELECT kid, public_key, private_key, created_at FROM ${this.#s}.wallet_keys WHERE wallet_id = $1 ORDER BY id`,
          [this.#walletId],
        )).rows;
        return {
          records: items.map((row) => {
            const r = this.#record(p.decrypt('category', row.category), row);
            return [r.category, r.id, r.value, r.tags] as [string, string, string, string];
          }),
          keys: keys.map((k) => {
            const kid = p.decrypt('kid', k.kid);
            return { kid, publicKey: p.decryptValue('key public', kid, k.public_key), privateKey: p.decryptValue('key private', kid, k.private_key), createdAt: p.decryptValue('key created', kid, k.created_at) };
          }),
        };
      },
      'REPEATABLE READ READ ONLY',
    );
  }

  async sign(kid: string, data: Uint8Array): Promise<Uint8Array> {
    let key = this.#signers.get(kid);
    if (key === undefined) {
      const rows = await this.#store.query('reading a key', `SELECT private_key FROM ${this.#s}.wallet_keys WHERE wallet_id = $1 AND kid = $2`, [this.#walletId, this.#profile.encrypt('kid', kid)]);
      const row = rows[0] as { private_key: Buffer } | undefined;
      if (row === undefined) throw poolError('ERR_KEY_NOT_FOUND', 'no key with this kid in the wallet');
      const pkcs8 = Buffer.from(this.#profile.decryptValue('key private', kid, row.private_key), 'base64');
      key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
      pkcs8.fill(0);
      this.#remember(kid, key);
    }
    return new Uint8Array(cryptoSign(null, data, key));
  }

  /** The wallet's keys, oldest first. */
  async listKeys(): Promise<Array<{ kid: string; publicKey: string; createdAt: string }>> {
    const p = this.#profile;
    const rows = await this.#store.query('listing keys', `SELECT kid, public_key, created_at FROM ${this.#s}.wallet_keys WHERE wallet_id = $1 ORDER BY id`, [this.#walletId]);
    return (rows as Array<{ kid: Buffer; public_key: Buffer; created_at: Buffer }>).map((r) => {
      const kid = p.decrypt('kid', r.kid);
      return { kid, publicKey: p.decryptValue('key public', kid, r.public_key), createdAt: p.decryptValue('key created', kid, r.created_at) };
    });
  }

  #remember(kid: string, key: KeyObject): void {
    if (this.#signers.size >= KEY_CACHE_LIMIT) this.#signers.delete(this.#signers.keys().next().value!);
    this.#signers.set(kid, key);
  }

  /** Forgets the keys; the store's connections stay with the store. */
  close(): void {
    this.#signers.clear();
    this.#records.clear();
    this.#recordBytes = 0;
    this.#reading.clear();
    this.#profile.destroy();
  }
}
