/**
 * The pool's policies for what ends sessions and wallets before their holders do, each a named
 * method: a deleted tenant, a rekey, a session held past `maxSessionMs`, a lease lost in cluster
 * mode, a PostgreSQL schema taken by another pool, a dead worker, and the pool's close. Each
 * revokes the sessions concerned (with the code and reason a host sees), closes what must close,
 * gives the weight back and lets waiting acquires in.
 */
import { ms, type EventHub, type LeaseLossReason, type RevokeReason } from '../observability/diagnostics.js';
import { poolError, type ErrorCode, type ErrorDetails, type TenantPoolError } from '../../common/errors.js';
import type { Admission } from './admission.js';
import type { ClusterMember } from '../cluster/member.js';
import type { Scheduler } from './scheduler.js';
import type { Session } from '../session.js';
import type { SessionLedger } from './session-ledger.js';
import type { Clock } from './timers.js';
import type { WalletManager } from './wallet-manager.js';
import type { WorkerSlot } from '../threads/worker-slot.js';

export interface EndingsOptions {
  ledger: SessionLedger;
  wallets: WalletManager;
  scheduler: Scheduler;
  admission: Admission;
  workers: readonly WorkerSlot[];
  member: ClusterMember | undefined;
  events: EventHub;
  clock: Clock;
  warn: (message: string, code: string) => void;
  /** The PostgreSQL schema, for the event of a lost one. */
  schema: string | undefined;
  maxSessionMs: number;
  /** Whether the pool is closed (nothing more is ended by a late report then). */
  isClosed: () => boolean;
}

type RevocationCode = Extract<ErrorCode, 'ERR_SESSION_REVOKED' | 'ERR_TENANT_DELETED' | 'ERR_LEASE_LOST'>;

export class Endings {
  readonly #o: EndingsOptions;
  /** Sessions the pool ended itself. */
  revoked = 0;
  #ownershipLost: TenantPoolError | undefined;

  constructor(options: EndingsOptions) {
    this.#o = options;
  }

  /** Ends a session for the pool's own reason: its calls reject with `code`, and its weight returns. */
  revoke(session: Session, code: RevocationCode, message: string, reason: RevokeReason): void {
    if (session.isEnded) return;
    this.revoked++;
    this.#o.events.emit('tenant-pool:session:revoke', () => ({ tenantId: session.tenantId, reason, heldMs: ms(this.#o.clock.now() - session.acquiredAt) }));
    const details: ErrorDetails | undefined = reason === 'delete' ? undefined : { reason };
    session.revoke(code, message, details);
  }

  /** A session held longer than `maxSessionMs`. */
  overAge(session: Session): void {
    this.revoke(session, 'ERR_SESSION_REVOKED', `this session was revoked: held longer than maxSessionMs (${this.#o.maxSessionMs} ms)`, 'maxSessionMs');
  }

  /** A session of a tenant being deleted (its calls reject `ERR_TENANT_DELETED`). */
  deleted(session: Session): void {
    this.revoke(session, 'ERR_TENANT_DELETED', 'the tenant of this session was deleted', 'delete');
  }

  /** The tenant is deleted: sessions whose wallet was already gone (its worker died) are on no wallet entry, so they end here; its weight returns. */
  tenantDeleted(tenantId: string): void {
    for (const session of this.#o.ledger.sessions()) if (session.tenantId === tenantId) this.deleted(session);
    this.#o.scheduler.walletLost(tenantId);
    this.#o.admission.pump();
  }

  /** A session of a tenant being rekeyed. */
  rekeyed(session: Session): void {
    this.revoke(session, 'ERR_SESSION_REVOKED', 'this session was revoked: its tenant was rekeyed; acquire a new session', 'rekey');
  }

  /** The tenant's wallet was closed for a rekey: its weight returns, and its next session opens it with the new key. */
  tenantRekeyed(tenantId: string): void {
    this.#o.scheduler.walletLost(tenantId);
    this.#o.admission.pump();
  }

  /**
   * Cluster mode: the tenant's lease is no longer this instance's (not renewed in time, or a write
   * found it taken). Its sessions are revoked (`ERR_LEASE_LOST`) and its wallet closed.
   */
  leaseLost(tenantId: string, reason: LeaseLossReason): void {
    const { member, ledger, wallets, scheduler, admission } = this.#o;
    member?.forget(tenantId, reason);
    const revoke = (session: Session): void => this.revoke(session, 'ERR_LEASE_LOST', `this session was revoked: instance ${member?.instanceId ?? ''} no longer holds the lease of tenant ${tenantId}`, 'lease');
    for (const session of ledger.sessions()) if (session.tenantId === tenantId) revoke(session);
    void wallets
      .exclusive(tenantId, async () => wallets.closeForce(tenantId, 'lease', revoke))
      .catch(() => {})
      .finally(() => {
        scheduler.walletLost(tenantId);
        admission.pump();
      });
  }

  /**
   * Another pool, or the cluster's instances, took the PostgreSQL schema while this pool was cut off
   * or paused (its writes were refused in the database). It stops serving: waiting acquires and
   * every later call fail `ERR_OWNERSHIP_LOST`, live sessions are revoked (reason `ownership`) and
   * every wallet is closed. Said once: a warning and `tenant-pool:schema:lost`.
   */
  ownershipLost(error: TenantPoolError): void {
    const { ledger, wallets, scheduler, admission, events, member } = this.#o;
    if (this.#ownershipLost !== undefined || this.#o.isClosed()) return;
    this.#ownershipLost = error;
    this.#o.warn(`tenant-pool: ${error.message}`, 'TENANT_POOL_OWNERSHIP_LOST');
    events.emit('tenant-pool:schema:lost', () => ({ schema: this.#o.schema ?? '', instanceId: member?.instanceId ?? null, message: error.message }));
    admission.close(() => this.ownershipError()!);
    const revoke = (session: Session): void => this.revoke(session, 'ERR_SESSION_REVOKED', `this session was revoked: ${error.message}`, 'ownership');
    for (const session of ledger.sessions()) revoke(session);
    for (const entry of [...wallets.entries()]) {
      void wallets
        .exclusive(entry.tenantId, async () => wallets.closeForce(entry.tenantId, 'ownership', revoke))
        .catch(() => {})
        .finally(() => scheduler.walletLost(entry.tenantId));
    }
  }

  /** Once the schema is lost: the error every call gets (a fresh one each time, with its own stack). */
  ownershipError(): TenantPoolError | undefined {
    return this.#ownershipLost === undefined ? undefined : poolError('ERR_OWNERSHIP_LOST', this.#ownershipLost.message);
  }

  /** A worker died: its wallets are gone, their weight returns, and waiting acquires may open them elsewhere. */
  workerCrashed(index: number, error: Error): void {
    const { wallets, scheduler, events, workers, admission } = this.#o;
    const lost = wallets.workerCrashed(index);
    for (const tenantId of lost) scheduler.walletLost(tenantId);
    events.emit('tenant-pool:worker:crash', () => ({ worker: index, message: error.message, walletsLost: lost.length, crashes: workers[index]!.crashes }));
    admission.pump();
  }

  /** The pool closes: the sessions still held after its wait are revoked. */
  closing(): void {
    for (const session of this.#o.ledger.sessions()) this.revoke(session, 'ERR_SESSION_REVOKED', 'this session was revoked: the pool closed', 'close');
  }
}
