/**
 * What the worker needs of a wallet store, whichever it is: SQLite files (the embedded default,
 * synchronous) or PostgreSQL (asynchronous). The worker's handlers, the export, the import and the
 * module API see only these two interfaces.
 */
import type { RawRecord, StoreConfig, WalletProfileRow } from '../../common/protocol.js';
import type { QueryNode } from '../../common/query.js';
import type { WalletSnapshot } from '../../common/export-format.js';
import { PostgresWalletStore } from './postgres-wallet.js';
import { Wallet } from './sqlite-wallet.js';

type Maybe<T> = T | Promise<T>;

/** A page of records, as `query` gives it. */
export interface QueryPage {
  rows: RawRecord[];
  lastRid: number;
  upTo: number;
  hasMore: boolean;
}

/** A tenant's open wallet. */
export interface StoredWallet {
  save(category: string, id: string, valueJson: string, tags: Record<string, string>): Maybe<void>;
  get(category: string, id: string): Maybe<RawRecord | null>;
  find(category: string, tags: Record<string, string>, limit: number): Maybe<RawRecord[]>;
  query(category: string, node: QueryNode | null, after: number, upTo: number, limit: number): Maybe<QueryPage>;
  count(category: string, node: QueryNode | null): Maybe<number>;
  delete(category: string, id: string): Maybe<boolean>;
  createKey(): Maybe<{ kid: string; publicKey: string }>;
  listKeys(): Maybe<Array<{ kid: string; publicKey: string; createdAt: string }>>;
  deleteKey(kid: string): Maybe<string | null>;
  publicKeyOf(kid: string): Maybe<string>;
  sign(kid: string, data: Uint8Array): Maybe<Uint8Array>;
  /** Every record and key in one consistent read, private keys in the clear: for an export. */
  snapshot(): Maybe<WalletSnapshot>;
  /**
   * Checks the wallet's storage whole (SQLite: an integrity check that reads every page, each under
   * its authentication tag; PostgreSQL: the server's, nothing more here) and says how many bytes it holds.
   * @throws ERR_WALLET_CORRUPT
   */
  check(): Maybe<{ bytes: number }>;
  close(): void;
}

/** Where a wallet is: its tenant, and the name the registry gives it (a file path for SQLite, a wallet name in PostgreSQL). */
export interface WalletRef {
  tenantId: string;
  path: string;
  /** PostgreSQL: the wallet's row, read already (see `OpenWalletRequest.profile`). */
  profile?: WalletProfileRow;
}

export interface WalletBackend {
  /** Creates the wallet under `key` and opens it. Nothing is left behind if this fails. */
  create(ref: WalletRef, key: Uint8Array): Promise<StoredWallet>;
  /** Opens the wallet; the key is already checked against the tenant's verifier. In cluster mode its writes are fenced by `fence`. */
  open(ref: WalletRef, key: Uint8Array, fence?: { owner: string; epoch: number }): Promise<StoredWallet>;
  /**
   * Prepares the wallet under `newKey`: SQLite writes a whole new file at `newRef`; PostgreSQL
   * returns the profile key wrapped by the new key, which the registry writes together with the
   * tenant's new key (the commit point) — or, with `rotateDataKey`, writes a whole new wallet at
   * `newRef` under a new profile key, every row encrypted anew. Nothing the tenant opens today changes.
   */
  rekey(ref: WalletRef, oldKey: Uint8Array, newRef: WalletRef, newKey: Uint8Array, rotateDataKey?: boolean): Promise<{ profileKey?: Uint8Array }>;
  /** Creates a wallet holding what a snapshot gave (an import), all or nothing. */
  createFrom(ref: WalletRef, key: Uint8Array, snapshot: WalletSnapshot): Promise<void>;
  close(): Promise<void>;
}

const sqliteBackend: WalletBackend = {
  create: async (ref, key) => {
    Wallet.create(ref.path, key);
    return Wallet.open(ref.path, key);
  },
  open: async (ref, key) => Wallet.open(ref.path, key),
  rekey: async (ref, oldKey, newRef, newKey) => {
    Wallet.rekey(ref.path, oldKey, newRef.path, newKey);
    return {};
  },
  createFrom: async (ref, key, snapshot) => Wallet.createFrom(ref.path, key, snapshot),
  close: async () => {},
};

function postgresBackend(store: PostgresWalletStore): WalletBackend {
  return {
    create: async (ref, key) => store.create(ref.path, ref.tenantId, key),
    open: async (ref, key, fence) => store.open(ref.path, key, fence === undefined ? undefined : { tenantId: ref.tenantId, ...fence }, ref.profile),
    rekey: async (ref, oldKey, newRef, newKey, rotateDataKey) => {
      if (rotateDataKey !== true) return { profileKey: await store.rewrap(ref.path, oldKey, newKey) };
      await store.copyUnder(ref.path, oldKey, newRef.path, newRef.tenantId, newKey);
      return {};
    },
    createFrom: async (ref, key, snapshot) => store.createFrom(ref.path, ref.tenantId, key, snapshot),
    close: async () => store.close(),
  };
}

/** The worker's store: SQLite needs nothing opened; PostgreSQL gets this worker's connections (opened as they are needed). */
export async function openBackend(config: StoreConfig): Promise<WalletBackend> {
  if (config.kind === 'sqlite') return sqliteBackend;
  return postgresBackend(await PostgresWalletStore.connect(config.connectionString, config.schema, config.connectionsPerWorker, config.ownerEpoch === undefined ? {} : { ownerEpoch: config.ownerEpoch }));
}
