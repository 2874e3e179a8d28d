/**
 * The types of the pool's public surface that are not options: what `acquire` takes, what
 * `stats()` gives, and `pool.cluster`.
 */
import type { LeaseOwner } from '../common/errors.js';
import type { ClusterMemberInfo } from './cluster/member.js';
import type { ClusterOptions, PoolOptions } from './config/config.js';

/** Options of one {@link TenantPool.acquire} call. */
export interface AcquireOptions {
  /** Abort while waiting: the acquire rejects with `signal.reason` and holds nothing. */
  signal?: AbortSignal;
  /** Overrides the pool's `acquireTimeoutMs` for this call; covers admission and wallet open together. `Infinity` or `null`: no limit. */
  timeoutMs?: number | null;
  /** Required for passphrase tenants. */
  passphrase?: string;
}

export interface PoolTotals {
  acquired: number;
  released: number;
  timedOut: number;
  rejected: number;
  walletOpens: number;
  /** Wallets that stopped being open for any reason: idle, eviction, delete, a worker's death, the pool's close. */
  walletCloses: number;
  evictions: number;
  revoked: number;
  workerCrashes: number;
  /** Key derivations started (wallet opens and tenant creations); a cache hit or a shared open derives nothing. */
  keyDerivations: number;
  /** Wallet opens whose key came from the workers' key tier (`keyCache`): nothing derived. */
  keyTierOpens: number;
}

/** A snapshot of the pool, cheap enough to poll. */
export interface PoolStats {
  capacity: number;
  weightInUse: number;
  sessions: number;
  queued: number;
  wallets: { open: number; idle: number; opening: number };
  workers: Array<{ index: number; tenants: number; sessions: number; weight: number; alive: boolean }>;
  totals: PoolTotals;
  /** Where the tenants are (SQLite files, or PostgreSQL with the most connections this pool opens), and what chose it (see `ResolvedOptions.storeChosenBy`). */
  store: { kind: 'sqlite'; chosenBy: 'options' | 'environment' | 'default' } | { kind: 'postgres'; connectionBudget: number; chosenBy: 'options' | 'environment' | 'default' };
}

/** Cluster mode as a host sees it: `pool.cluster`. */
export interface PoolCluster {
  readonly instanceId: string;
  readonly address: string | null;
  /** The instance holding the tenant's lease now, or null when none does. */
  ownerOf(tenantId: string): Promise<LeaseOwner | null>;
  /** The instance that should serve the tenant: its lease holder, or the bounded-load rendezvous choice over the live members. */
  route(tenantId: string): Promise<LeaseOwner>;
  /** The live members, with how many leases each holds. */
  members(): Promise<ClusterMemberInfo[]>;
  /**
   * Hands off now (rather than at the next round, every lease TTL) the idle tenants whose route
   * points to another member: their idle wallets close and their leases go. Returns how many.
   */
  rebalance(): Promise<number>;
}

/**
 * The type of `pool.cluster` for a pool opened with options `O`: present when `O` has a `cluster`
 * option; possibly undefined otherwise (a config file may still give one).
 */
export type ClusterOf<O extends PoolOptions> = O extends { cluster: ClusterOptions } ? PoolCluster : PoolCluster | undefined;
