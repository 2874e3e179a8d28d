/**
 * What `pool.tenants` and its key operations (rekey, export, import) share: the context the pool
 * gives them, the tenant as callers see it, and the checks of tenant options.
 */
import type { EventHub } from '../observability/diagnostics.js';
import type { WalletManager } from '../engine/wallet-manager.js';
import type { KdfMethod } from '../../common/protocol.js';
import type { KdfParams } from '../../common/kdf.js';
import type { Session } from '../session.js';
import type { TenantRecord, TenantWeights, Warn } from '../store/tenant-store.js';
import type { TenantStore } from '../store/tenant-store.js';
import type { WorkerSlot } from '../threads/worker-slot.js';
import { MAX_UNITS } from '../config/config.js';
import { checkOptionalObject, invalid } from '../../common/validate.js';

/** A tenant as callers see it: never its salt, secret or key check value. */
export interface TenantInfo {
  tenantId: string;
  label?: string;
  kdf: KdfMethod;
  /** The Argon2 parameters its key was derived with (absent for `raw`). Not secret: what a guesser of a passphrase pays per guess. */
  kdfParams?: KdfParams;
  /** True if the pool generated and stores the tenant's secret; false for a passphrase tenant. */
  managed: boolean;
  maxSessions?: number;
  weights?: TenantWeights;
  metadata: Record<string, string>;
  createdAt: string;
}

export interface TenantsContext {
  store: TenantStore;
  wallets: WalletManager;
  workers: readonly WorkerSlot[];
  defaultKdf: KdfMethod;
  /** The Argon2 parameters a key derived now gets for `kdf` (undefined for `raw`). */
  paramsFor: (kdf: KdfMethod) => KdfParams | undefined;
  /** The pool's capacity and weights: a tenant's weights must fit in the capacity. */
  capacity: number;
  defaultWeights: { readonly wallet: number; readonly session: number };
  walletPath: (tenant: Pick<TenantRecord, 'walletFile'>) => string;
  assertOpen: () => void;
  warn: Warn;
  /**
   * A new tenant's wallet, left open on `worker` by its creation: kept as an idle (cached) wallet
   * if the pool has room, so the first session derives nothing. Returns whether it was kept.
   */
  adoptCreated: (record: TenantRecord, worker: WorkerSlot, passphrase: string | undefined) => boolean;
  now: () => number;
  events: EventHub;
  /** Runs `fn` with a session of the tenant (given `passphrase`, or the pool's provider), always released. */
  withSession: <T>(tenantId: string, passphrase: string | undefined, fn: (session: Session) => Promise<T>) => Promise<T>;
  /** The tenant's limits or weights changed: waiters its old limit held back may go now. */
  onUpdated: (record: TenantRecord) => void;
  /** Ends a session of a deleted tenant. */
  revoke: (session: Session) => void;
  /** Ends a session of a tenant being rekeyed. */
  revokeForRekey: (session: Session) => void;
  /** The tenant's wallet was closed for a rekey: its weight returns. */
  onRekeyed: (tenantId: string) => void;
  /** The tenant is gone, its wallet closed and files removed. */
  onDeleted: (tenantId: string) => void;
  /**
   * Cluster mode: takes the tenant's lease before a delete or a rekey changes it (another instance
   * holding it makes them fail `ERR_TENANT_ELSEWHERE`); returns what gives it up again.
   */
  claim?: (tenantId: string) => Promise<() => Promise<void>>;
}

export const MAX_PASSPHRASE_LENGTH = 4096;
/** A passphrase is a human secret: it always goes through Argon2, at Askar's default level unless told otherwise. */
export const DEFAULT_PASSPHRASE_KDF: KdfMethod = 'argon2i-mod';

export function toInfo(record: TenantRecord): TenantInfo {
  return {
    tenantId: record.tenantId,
    ...(record.label === undefined ? {} : { label: record.label }),
    kdf: record.kdf,
    ...(record.kdfParams === undefined ? {} : { kdfParams: record.kdfParams }),
    managed: record.secret !== null,
    ...(record.maxSessions === undefined ? {} : { maxSessions: record.maxSessions }),
    ...(record.weights === undefined ? {} : { weights: { ...record.weights } }),
    metadata: { ...record.metadata },
    createdAt: record.createdAt,
  };
}

export function checkMaxSessions(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) invalid(`Expected \`maxSessions\` to be a positive integer, got ${String(value)}`);
  return value;
}

export function checkWeights(value: unknown): TenantWeights {
  const raw = checkOptionalObject(value, 'weights');
  const out: TenantWeights = {};
  for (const [key, weight] of Object.entries(raw)) {
    if (key !== 'wallet' && key !== 'session') invalid(`Unknown key \`weights.${key}\`; known keys: wallet, session`);
    const min = key === 'session' ? 1 : 0;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < min || weight > MAX_UNITS) invalid(`Expected \`weights.${key}\` to be an integer from ${min} to ${MAX_UNITS}, got ${String(weight)}`);
    out[key] = weight;
  }
  return out;
}

export function checkPassphrase(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_PASSPHRASE_LENGTH || !value.isWellFormed()) {
    invalid(`Expected \`passphrase\` to be a well-formed string of 1 to ${MAX_PASSPHRASE_LENGTH} characters`);
  }
  return value;
}
