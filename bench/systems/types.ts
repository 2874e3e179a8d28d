/** What every system in the bench offers: tenant-pool and the baselines it replaces. */
import type { KdfMethod } from '../../common/protocol.js';

export interface BenchSession {
  get(category: string, id: string): Promise<unknown>;
  save(category: string, id: string, value: unknown): Promise<void>;
  createKey(): Promise<string>;
  sign(kid: string, data: Uint8Array): Promise<Uint8Array>;
  release(): Promise<void>;
}

export interface SystemOptions {
  /** tenant-pool's weighted capacity. */
  capacity: number;
  /** The baselines' plain limit on concurrent sessions. */
  sessionLimit: number;
  /** How long an acquire may wait. */
  timeoutMs: number;
  /** tenant-pool's idle wallet cache TTL (the baselines have no cache). */
  walletIdleTtlMs: number;
  workers: number;
  /** Worker modules (tenant-pool only). */
  modules?: string[];
  /** tenant-pool's key tier (`keyCache`): false measures every cold open's derivation. @default on */
  keyTier?: boolean;
}

export interface System {
  readonly name: SystemName;
  createTenants(count: number, kdf: KdfMethod, prefix: string): Promise<string[]>;
  acquire(tenantId: string): Promise<BenchSession>;
  /** Wallet opens (key derivations for an open) so far. */
  walletOpens(): number;
  /** Capacity still held by sessions once all have ended: weight (tenant-pool) or a session count (baselines). 0 means nothing leaked. */
  heldBySessions(): number;
  close(): Promise<void>;
}

/** `tenant-pool` is the pool on SQLite files; `tenant-pool-postgres` the same pool on PostgreSQL (run beside it when a server is given). */
export type SystemName = 'tenant-pool' | 'tenant-pool-postgres' | 'credo-model' | 'no-affinity';
export const SYSTEM_NAMES: readonly SystemName[] = ['tenant-pool', 'tenant-pool-postgres', 'credo-model', 'no-affinity'];

/** The server the bench's PostgreSQL rows run on: TENANT_POOL_BENCH_POSTGRES_URL, else the tests' server. */
export const benchPostgresUrl: string | undefined = process.env['TENANT_POOL_BENCH_POSTGRES_URL'] || process.env['TENANT_POOL_TEST_POSTGRES_URL'] || undefined;
