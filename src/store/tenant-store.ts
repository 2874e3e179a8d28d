/**
 * The tenants' store as the pool sees it, whichever it is: the registry (tenants, routes) and where
 * each tenant's wallet lives. Two implementations: SQLite files in a data folder
 * (`sqlite-store.ts`, the embedded default) and one PostgreSQL schema (`postgres-registry.ts`).
 * Every method is asynchronous: the PostgreSQL registry reads what its cache does not hold.
 */
import { deriveKey, KDF_PARAMS_V1, type KdfParams } from '../../common/kdf.js';
import { poolError, type TenantPoolError } from '../../common/errors.js';
import type { KdfMethod, StoreConfig } from '../../common/protocol.js';

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
  /** The Argon2 parameters the wallet key was derived with (undefined for `raw`); a registry of format 1 had none recorded, and reads the level's format-1 parameters. */
  kdfParams?: KdfParams;
  salt: Buffer;
  /** The managed secret; `null` for a passphrase tenant (its passphrase is never stored). */
  secret: Buffer | null;
  verifier: Buffer;
  /** The wallet's file name in `<dataDir>/wallets`: the tenant id and an incarnation, so a later tenant of the same id never shares a file with an earlier one. */
  walletFile: string;
  maxSessions?: number;
  weights?: TenantWeights;
  metadata: Record<string, string>;
  createdAt: string;
}

const ROOT_KEY_HEX = /^[0-9a-fA-F]{64}$/;

/** The registry key from a root key: 64 hex characters used raw, or a passphrase through Argon2id with the registry's salt. */
export async function rootKeyFrom(source: string, saltHex: string): Promise<Buffer> {
  return ROOT_KEY_HEX.test(source) ? Buffer.from(source, 'hex') : deriveKey('argon2id', source, Buffer.from(saltHex, 'hex'));
}

/** Where the registry's warnings go: the pool's logger, or `process.emitWarning()`. */
export type Warn = (message: string, code: string) => void;

/** A route another tenant holds: refused, never taken over. */
export function routeConflict(tenantId: string, count: number): TenantPoolError {
  return poolError('ERR_ROUTE_CONFLICT', `${count === 1 ? 'a public key' : `${count} public keys`} that tenant ${tenantId} would route ${count === 1 ? 'is' : 'are'} routed to another tenant already; a route is never taken from its tenant, and nothing was changed`, undefined, { tenantId });
}


/** The fields a rekey changes. */
export type TenantKey = Pick<TenantRecord, 'kdf' | 'kdfParams' | 'salt' | 'secret' | 'verifier' | 'walletFile'>;

export interface TenantStore {
  readonly kind: 'sqlite' | 'postgres';
  /** What the workers open wallets in. */
  readonly workerStore: StoreConfig;
  /**
   * A rekey keeps the wallet where it is and changes only its wrapped profile key (PostgreSQL),
   * rather than writing a new wallet file (SQLite).
   */
  readonly rekeysInPlace: boolean;
  /**
   * Whether the store answers now: one cheap read (SQLite: the registry file; PostgreSQL: a round
   * trip). Rejects with the store's error; the caller bounds how long it waits.
   */
  ping(): Promise<void>;
  /**
   * Re-seals every tenant secret and registry secret under a new root key, crash-safe: killed at
   * any moment, the store opens with the old key or the new, never neither.
   */
  rotateRootKey(newRootKey: string, progress?: (done: number, total: number) => void): Promise<void>;
  /** A name for a new wallet of the tenant: new at each create, import (and SQLite rekey), so an old wallet is never a new one. */
  newWalletName(tenantId: string): string;
  /** What a worker is given to find the wallet: the file path (SQLite) or the wallet name (PostgreSQL). */
  walletRef(record: Pick<TenantRecord, 'walletFile'>): string;
  get(tenantId: string): Promise<TenantRecord | undefined>;
  /**
   * The tenant if the store knows it without a read: the record, `undefined` for no such tenant,
   * `null` when only a read can tell. An acquire that gets its answer here is admitted in the
   * same turn it was called, in call order.
   */
  peek(tenantId: string): TenantRecord | undefined | null;
  /** PostgreSQL: the record of a tenant row read by another statement (a cluster take reads it with the lease). */
  adoptRow?(row: Record<string, unknown>): TenantRecord;
  /**
   * Inserts the tenant and, in the same transaction, its `routes` (an import's): a kill leaves the
   * tenant with its routes, or neither. Returns the routes taken.
   * @throws ERR_TENANT_EXISTS; ERR_ROUTE_CONFLICT when another tenant routes one of them (nothing is inserted)
   */
  insert(record: TenantRecord, routes?: readonly string[]): Promise<string[]>;
  /** Changes the settings (label, limits, weights, metadata), never the key. */
  update(record: TenantRecord): Promise<void>;
  /**
   * The commit point of a rekey: the tenant's new key (and, on PostgreSQL, its profile key wrapped
   * by it, written in the same transaction). Returns the tenant as it now is.
   */
  replaceKey(tenantId: string, key: TenantKey, profileKey?: Uint8Array): Promise<TenantRecord>;
  /** The commit point of a delete: the tenant, its routes and (PostgreSQL) its wallet rows. */
  delete(tenantId: string): Promise<void>;
  /** Removes a wallet no tenant row names (a failed create or import, a rekey's old file). */
  removeWallet(record: Pick<TenantRecord, 'tenantId' | 'walletFile'>): Promise<void>;
  /** Tenants in id order after `after`, at most `limit`, filtered by label and metadata (every entry equal). */
  page(options: { after: string; limit: number; label?: string; metadata?: Record<string, string> }): Promise<TenantRecord[]>;
  /** @throws ERR_ROUTE_CONFLICT when another tenant routes `recipientKey`: a route is never taken from its tenant */
  addRoute(recipientKey: string, tenantId: string): Promise<void>;
  removeRoute(recipientKey: string): Promise<boolean>;
  routeOf(recipientKey: string): Promise<string | undefined>;
  /** The pool serves: the store may record its holder. */
  opened(): Promise<void>;
  close(): Promise<void>;
}

/** The parameters a tenant's key was derived with: those recorded, or (a record of format 1) its level's format-1 parameters. */
export function paramsOf(kdf: KdfMethod, recorded: KdfParams | undefined): KdfParams | undefined {
  return kdf === 'raw' ? undefined : (recorded ?? KDF_PARAMS_V1[kdf]);
}
