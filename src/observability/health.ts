/**
 * `pool.health()`: whether the pool can serve now — its workers alive, its store answering (and how
 * fast), in cluster mode its membership live — answered within a bound even when the store is gone.
 * It never throws for what it finds: a store that fails or does not answer in time is `ok: false`
 * with the reason's code.
 */
import type { ClusterMember } from '../cluster/member.js';
import type { TenantStore } from '../store/tenant-store.js';
import type { WorkerSlot } from '../threads/worker-slot.js';

/** What `pool.health()` resolves. */
export interface PoolHealth {
  /** Ready to serve: not closed, every worker alive, the store answered in time, and (cluster mode) a live member. */
  ok: boolean;
  /** The pool is closing or closed. */
  closed: boolean;
  workers: { ok: boolean; alive: number; total: number };
  store: {
    ok: boolean;
    kind: 'sqlite' | 'postgres';
    /** How long the store took to answer one read, in ms; null when it did not answer in time. */
    latencyMs: number | null;
    /** Why it is not ok: the error's code, or `'TIMEOUT'`. */
    code?: string;
  };
  /** Cluster mode: whether this instance is a live member (its heartbeat recorded within its lease TTL). */
  cluster?: {
    ok: boolean;
    member: boolean;
    /** How long ago the server last recorded this instance's heartbeat, in ms; null before the first. */
    lastRenewalAgeMs: number | null;
    /** Leases held now. */
    leases: number;
    /** Live members of an older release (a rolling upgrade under way). */
    olderMembers: string[];
  };
  /** How long the check took, in ms. */
  tookMs: number;
}

export interface HealthParts {
  closed: boolean;
  workers: readonly WorkerSlot[];
  store: TenantStore;
  member: ClusterMember | undefined;
}

/** Checks the parts, waiting at most `timeoutMs` for the store. */
export async function checkHealth(parts: HealthParts, timeoutMs: number): Promise<PoolHealth> {
  const started = performance.now();
  const alive = parts.workers.filter((w) => w.isAlive).length;
  const workers = { ok: alive === parts.workers.length, alive, total: parts.workers.length };
  let store: PoolHealth['store'];
  if (parts.closed) {
    store = { ok: false, kind: parts.store.kind, latencyMs: null, code: 'ERR_POOL_CLOSED' };
  } else {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      timer.unref();
    });
    const ping = parts.store.ping().then(
      () => ({ ok: true as const }),
      (error: unknown) => ({ ok: false as const, code: typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : 'ERR_INTERNAL' }),
    );
    const answer = await Promise.race([ping, timeout]);
    clearTimeout(timer);
    const latencyMs = Math.round((performance.now() - started) * 100) / 100;
    store =
      answer === 'timeout'
        ? { ok: false, kind: parts.store.kind, latencyMs: null, code: 'TIMEOUT' }
        : answer.ok
          ? { ok: true, kind: parts.store.kind, latencyMs }
          : { ok: false, kind: parts.store.kind, latencyMs, code: answer.code };
  }
  let cluster: PoolHealth['cluster'];
  if (parts.member !== undefined) {
    const h = parts.member.health();
    cluster = { ok: h.member, member: h.member, lastRenewalAgeMs: h.lastRenewalAgeMs, leases: h.leases, olderMembers: [...parts.member.olderMembers()] };
  }
  const ok = !parts.closed && workers.ok && store.ok && (cluster?.ok ?? true);
  return { ok, closed: parts.closed, workers, store, ...(cluster === undefined ? {} : { cluster }), tookMs: Math.round((performance.now() - started) * 100) / 100 };
}
