/**
 * The messages between the main thread and a wallet worker. Both sides import this file, so the
 * method table below is the single definition of what a worker answers.
 */
import type { MessagePort } from 'node:worker_threads';
import type { EncodedError } from './errors.js';
import type { QueryNode } from './query.js';
import type { ExportedTenant } from './export-format.js';
import type { KdfMethod, KdfParams } from './kdf.js';

/** Key derivation methods: `raw` (no stretching, for high-entropy secrets), Askar's two Argon2i levels, and Argon2id. */
export { KDF_METHODS, type KdfMethod } from './kdf.js';

/** A JSON value, as a record's value must be. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * A value that survives JSON unchanged, as a record value must: `T` itself when it is made of
 * strings, finite numbers, booleans, null, arrays and plain objects. Interfaces qualify (no index
 * signature is needed); functions, symbols, bigints, `undefined` values and class instances with
 * methods (a `Date`) make it `never`, so `tsc` rejects them.
 */
export type JsonCompatible<T> = T extends string | number | boolean | null
  ? T
  : T extends bigint | symbol | undefined | ((...args: never[]) => unknown)
    ? never
    : T extends readonly unknown[]
      ? { [K in keyof T]: JsonCompatible<T[K]> }
      : T extends object
        ? { [K in keyof T]: JsonCompatible<T[K]> }
        : never;

/** A record as stored in a wallet; `T` is the value's type as the caller knows it. */
export interface StoredRecord<T = JsonValue> {
  category: string;
  id: string;
  value: T;
  tags: Record<string, string>;
}

/** A page of records: `cursor` asks for the next one, null at the end. */
export interface RecordPage<T = JsonValue> {
  records: StoredRecord<T>[];
  cursor: string | null;
}

/** A record as the worker sends it: value and tags stay JSON text until the main thread parses them. */
export interface RawRecord {
  category: string;
  id: string;
  value: string;
  tags: string;
}

/** What a worker needs to derive a tenant's wallet key and open (or create) its file. */
export interface WalletKeyMaterial {
  tenantId: string;
  /** The wallet's name in the store: the absolute path of its file (SQLite), or its wallet name (PostgreSQL). */
  path: string;
  kdf: KdfMethod;
  /** An Argon2 method's parameters; absent, the level's format-1 parameters (a record that predates them). */
  params?: KdfParams;
  salt: Uint8Array;
  /** The managed secret (32 bytes) or the tenant's passphrase. */
  secret: Uint8Array | string;
}

/** A PostgreSQL wallet's row: its name, id and profile key sealed under the wallet key (nothing secret without that key). */
export interface WalletProfileRow {
  name: string;
  id: string;
  sealedProfileKey: Uint8Array;
}

export interface OpenWalletRequest extends WalletKeyMaterial {
  /** Key check value stored at creation; a derived key that does not match it is the wrong key. */
  verifier: Uint8Array;
  /** Cluster mode: the lease this open holds; every write of the wallet is fenced by it. */
  fence?: { owner: string; epoch: number };
  /**
   * Cluster mode (PostgreSQL): the wallet's row as the lease's take read it, in the same statement,
   * so the open reads nothing more. A row that no longer opens with the key (a rekey committed
   * since) is read again.
   */
  profile?: WalletProfileRow;
  /** Open only from the key tier: a miss answers `{ missed: true }` and derives nothing (the caller then asks again within its derivation cap). */
  keyTierOnly?: boolean;
}

export interface WalletTimings {
  deriveMs: number;
  openMs: number;
  /** The key came from the worker's key tier: nothing was derived. */
  fromKeyTier?: boolean;
  /** `keyTierOnly` found no entry: nothing was opened. */
  missed?: boolean;
}

export interface CreateWalletResult extends WalletTimings {
  verifier: Uint8Array;
}

/** The worker's method table: name → (arguments) → result. */
export interface WorkerApi {
  /** Creates the wallet file and leaves it open on this worker (close it with `closeWallet` if it is not kept). */
  createWallet(req: WalletKeyMaterial): CreateWalletResult;
  openWallet(req: OpenWalletRequest): WalletTimings;
  /** Checks the old key material against its verifier, then writes the wallet anew under the new key at `newPath`. */
  rekeyWallet(req: OpenWalletRequest & { newPath: string; newKdf: KdfMethod; newParams?: KdfParams; newSalt: Uint8Array; newSecret: Uint8Array | string; rotateDataKey?: boolean }): CreateWalletResult & { profileKey?: Uint8Array };
  /** Closes the open wallet; `forget` drops its key-tier entry too (a delete, a rekey). */
  closeWallet(tenantId: string, forget?: boolean): void;
  /** Drops the tenant's key-tier entry, zeroed (a delete or a rekey). */
  forgetKey(tenantId: string): void;
  /** Writes the open wallet, with `tenant`'s settings, to an export file sealed under `exportKey`. */
  exportWallet(tenantId: string, file: string, exportKey: Uint8Array | string, tenant: ExportedTenant): { bytes: number; records: number; keys: number; digest: string };
  /** The open wallet's content digest (see `walletDigest`), from one consistent read. */
  digestWallet(tenantId: string): { digest: string; records: number; keys: number };
  /** Checks the open wallet's storage whole (see `StoredWallet.check`), then reads all of it: its digest and size. */
  checkWallet(tenantId: string): { digest: string; records: number; keys: number; bytes: number };
  /** Opens an export file and creates a wallet from it at `path` under the key material given; the export's settings come back. */
  importWallet(req: WalletKeyMaterial & { file: string; exportKey: Uint8Array | string }): CreateWalletResult & { tenant: ExportedTenant; records: number; keys: number };
  recordsSave(tenantId: string, category: string, id: string, valueJson: string, tags: Record<string, string>): void;
  recordsGet(tenantId: string, category: string, id: string): RawRecord | null;
  recordsFind(tenantId: string, category: string, tags: Record<string, string>, limit: number): RawRecord[];
  /** Records after rid `after`, up to rid `upTo` (-1: the newest now), matching the query; see `Wallet.query`. */
  recordsQuery(tenantId: string, category: string, query: QueryNode | null, after: number, upTo: number, limit: number): { rows: RawRecord[]; lastRid: number; upTo: number; hasMore: boolean };
  recordsCount(tenantId: string, category: string, query: QueryNode | null): number;
  recordsDelete(tenantId: string, category: string, id: string): boolean;
  keysCreate(tenantId: string): { kid: string; publicKey: string };
  keysList(tenantId: string): Array<{ kid: string; publicKey: string; createdAt: string }>;
  /** Deletes the key; its public key, or null if there was none. */
  keysDelete(tenantId: string, kid: string): string | null;
  /** The key's public key. @throws ERR_KEY_NOT_FOUND */
  keysPublicKey(tenantId: string, kid: string): string;
  keysSign(tenantId: string, kid: string, data: Uint8Array): Uint8Array;
  keysVerify(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean;
  /** Runs a module task; with a `token` (not 0), `abortTask(token)` aborts the task's `ctx.signal`. */
  runTask(tenantId: string, task: string, args: unknown, token: number, traceparent?: string): unknown;
  abortTask(token: number): void;
  runInbound(tenantId: string, message: { recipientKey: string; body: JsonValue }, traceparent?: string): unknown;
  echo(value: unknown): unknown;
}

export type WorkerMethod = keyof WorkerApi;

export interface CallMessage {
  id: number;
  method: WorkerMethod;
  args: unknown[];
}

export type ReplyMessage = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: EncodedError };

/** Where the wallets are: SQLite files (the path comes with each call), or one PostgreSQL schema. */
/**
 * The wallet store a worker opens. On PostgreSQL without cluster mode, `ownerEpoch` is the epoch of
 * the pool's ownership of the schema: every wallet write checks it in its own transaction.
 */
export type StoreConfig = { kind: 'sqlite' } | { kind: 'postgres'; connectionString: string; schema: string; connectionsPerWorker: number; ownerEpoch?: number };

/** The one task each worker runs under piscina: it hands the worker its port, and returns once the worker serves it. */
export interface LifelineTask {
  port: MessagePort;
  /** Absolute paths of the worker modules to import before serving. */
  modules: readonly string[];
  maxValueBytes: number;
  store: StoreConfig;
  /** The key tier of this worker (see `workers/key-tier.ts`): its share of the pool's `keyCache.maxEntries`. */
  keyCache: { maxEntries: number; ttlMs: number; passphrases: boolean };
}

/**
 * The worker's start-up messages on its port: before each module import, the module it imports
 * (`{ loading }`); then that it is serving, or why it could not start (a module failed to load).
 */
export type StartMessage = { ready: number } | { startFailed: EncodedError };
export interface LoadingMessage {
  loading: string;
}

/** Sent on the port to ask the worker to close its wallets and end its lifeline task. */
export const SHUTDOWN = 'shutdown';
