/**
 * Per-tenant wallet state on the main thread: opening → open (with or without sessions) → closing →
 * closed, plus crashed when the worker holding it dies. When a wallet closes is the scheduler's
 * call (idle TTL, eviction); this file carries it out.
 *
 * Opens are single-flight: concurrent first sessions of a tenant wait on one per-tenant mutex, the
 * first derives the key and opens the wallet, the rest find it open. Opens, closes and deletes of a
 * tenant are serialised by the same mutex, so a close never races an open. Key derivations are
 * capped pool-wide (`kdfConcurrency`): Argon2 is memory-bandwidth bound, and more at once than
 * there are cores only makes each slower.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Mutex, Semaphore } from 'async-mutex';
import { ms, type EventHub, type WalletCloseReason } from '../observability/diagnostics.js';
import { poolError, type TenantPoolError } from '../../common/errors.js';
import { placeTenant } from './placement.js';
import { LinkedList, ValueNode } from './linked-list.js';
import type { KdfMethod, OpenWalletRequest, WalletProfileRow, WalletTimings } from '../../common/protocol.js';
import type { TenantRecord } from '../store/tenant-store.js';
import type { Grant } from './scheduler.js';
import { Session, type SessionHost, type SessionWallet } from '../session.js';
import type { WorkerSlot } from '../threads/worker-slot.js';

export type WalletState = 'opening' | 'open' | 'closing' | 'closed' | 'crashed';

/** Why a wallet closed. */
export type CloseReason = WalletCloseReason;

/** One opening of one tenant's wallet on one worker. Sessions keep their entry even after it closes. */
export class WalletEntry implements SessionWallet {
  readonly tenantId: string;
  readonly worker: WorkerSlot;
  state: WalletState = 'opening';
  readonly sessions = new LinkedList<ValueNode<Session>>();
  /** Keyed hash of the passphrase that opened it (passphrase tenants only): later acquires are checked against it without Argon2. */
  passCheck: Buffer | null = null;
  /** When the wallet opened (the manager's clock). */
  openedAt = 0;
  /** How its open went: the key derivation and the open itself (for the acquire's trace). */
  timings: WalletTimings | undefined;

  get isCrashed(): boolean {
    return this.state === 'crashed';
  }

  constructor(tenantId: string, worker: WorkerSlot) {
    this.tenantId = tenantId;
    this.worker = worker;
  }
}

export interface WalletCounters {
  walletOpens: number;
  /** Wallets that stopped being open, for any reason (a worker's death and the pool's close included). */
  walletCloses: number;
  /** Key derivations run on workers (wallet opens and tenant creations). */
  keyDerivations: number;
  /** Opens whose key came from the worker's key tier (nothing derived). */
  keyTierOpens: number;
}

export interface WalletManagerOptions {
  workers: readonly WorkerSlot[];
  walletPath: (tenant: TenantRecord) => string;
  kdfConcurrency: number;
  now: () => number;
  events: EventHub;
  /** A wallet opened (for the sessions already granted on it). */
  onOpened: (entry: WalletEntry, timings: WalletTimings) => void;
  /** Cluster mode: a wallet opens under its tenant's lease, and gives it up when it closes. */
  leases?: WalletLeases;
  /**
   * Before a passphrase tenant's wallet opens: re-derives its key to stronger parameters when its
   * own are weaker than the pool's (as a password hash is upgraded at login), and returns the tenant
   * as it is then; undefined when nothing was to be done.
   */
  rehash?: (tenant: TenantRecord, passphrase: string) => Promise<TenantRecord | undefined>;
  /** The workers keep derived keys (the key tier): an open asks its worker first, outside the cap on derivations. Absent: no tier. */
  keyTier?: { passphrases: boolean };
}

/** What the wallet lifecycle needs of the cluster's leases. */
export interface WalletLeases {
  /**
   * Takes the tenant's lease and reads the tenant as it is now, and its wallet's row, in one round
   * trip; no lease for a tenant that is gone (`record` undefined).
   * @throws ERR_TENANT_ELSEWHERE
   */
  take(tenantId: string): Promise<{ fence: { owner: string; epoch: number } | undefined; record: TenantRecord | undefined; wallet?: WalletProfileRow | undefined }>;
  release(tenantId: string): Promise<void>;
  /** Whether the lease is surely still this instance's now (the monotonic clock). */
  holds(tenantId: string): boolean;
  /** The lease of an open wallet ran out before the instance noticed (its event loop was held up): stop serving the tenant now. */
  expired(tenantId: string): void;
}

export class WalletManager {
  readonly #workers: readonly WorkerSlot[];
  readonly #walletPath: (tenant: TenantRecord) => string;
  readonly #now: () => number;
  readonly #events: EventHub;
  readonly #onOpened: (entry: WalletEntry, timings: WalletTimings) => void;
  readonly #leases: WalletLeases | undefined;
  /** Lease releases of closed wallets still under way (`leasesGivenUp` waits for them). */
  readonly #releasing = new Set<Promise<void>>();
  readonly #rehash: WalletManagerOptions['rehash'];
  readonly #keyTier: { passphrases: boolean } | undefined;
  readonly #entries = new Map<string, WalletEntry>();
  readonly #mutexes = new Map<string, Mutex>();
  readonly #derivations: Semaphore;
  /** Random per pool: passphrase checks are HMACs under it, so no passphrase is kept in memory. */
  readonly #passKey = randomBytes(32);
  readonly counters: WalletCounters = { walletOpens: 0, walletCloses: 0, keyDerivations: 0, keyTierOpens: 0 };

  constructor(options: WalletManagerOptions) {
    this.#workers = options.workers;
    this.#walletPath = options.walletPath;
    this.#now = options.now;
    this.#events = options.events;
    this.#onOpened = options.onOpened;
    this.#leases = options.leases;
    this.#rehash = options.rehash;
    this.#keyTier = options.keyTier;
    this.#derivations = new Semaphore(options.kdfConcurrency);
  }

  /** Current entry of a tenant, if its wallet is opening, open or closing. */
  entry(tenantId: string): WalletEntry | undefined {
    return this.#entries.get(tenantId);
  }

  entries(): IterableIterator<WalletEntry> {
    return this.#entries.values();
  }

  /** Wallets (opening, open or closing) held by each worker. */
  loads(): number[] {
    const loads = this.#workers.map(() => 0);
    for (const entry of this.#entries.values()) loads[entry.worker.index]! += 1;
    return loads;
  }

  /**
   * Runs a worker call that derives a key, within the pool-wide cap on concurrent derivations.
   * `raw` costs microseconds and is not capped.
   */
  async derive<T>(kdf: KdfMethod, fn: () => Promise<T>, derivations = 1): Promise<T> {
    this.counters.keyDerivations += derivations;
    return kdf === 'raw' ? fn() : this.#derivations.runExclusive(fn);
  }

  /** Drops the tenant's kept key on every worker (a delete, a rekey: the tenant may have been open on any of them). */
  forgetKeys(tenantId: string): void {
    if (this.#keyTier === undefined) return;
    for (const worker of this.#workers) if (worker.isAlive) void worker.call('forgetKey', tenantId).catch(() => {});
  }

  #mutex(tenantId: string): Mutex {
    let mutex = this.#mutexes.get(tenantId);
    if (mutex === undefined) {
      mutex = new Mutex();
      this.#mutexes.set(tenantId, mutex);
    }
    return mutex;
  }

  #dropMutexIfIdle(tenantId: string): void {
    const mutex = this.#mutexes.get(tenantId);
    if (mutex !== undefined && !mutex.isLocked() && !this.#entries.has(tenantId)) this.#mutexes.delete(tenantId);
  }

  #passCheck(passphrase: string | undefined): Buffer | null {
    return passphrase === undefined ? null : createHmac('sha256', this.#passKey).update(passphrase, 'utf8').digest();
  }

  #admitTo(entry: WalletEntry, passphrase: string | undefined, host: SessionHost, grant: Grant): Session {
    if (entry.passCheck !== null) {
      const check = this.#passCheck(passphrase);
      if (check === null || !timingSafeEqual(check, entry.passCheck)) {
        throw poolError('ERR_WALLET_KEY_INVALID', `the passphrase does not open the wallet of tenant ${entry.tenantId}`);
      }
    }
    const session = new Session(entry, host, grant, this.#now());
    session.walletNode = entry.sessions.push(new ValueNode(session));
    return session;
  }

  /**
   * Gives a session on the tenant's wallet under an admission grant, opening the wallet first if
   * needed (once, however many ask at once). `currentRecord()` is asked inside the tenant's critical
   * section: a tenant deleted meanwhile is not opened, and one rekeyed meanwhile opens with its new key.
   */
  async openSession(tenant: TenantRecord, passphrase: string | undefined, host: SessionHost, grant: Grant, currentRecord: () => Promise<TenantRecord | undefined>): Promise<Session> {
    const ready = this.#entries.get(tenant.tenantId);
    if (ready?.state === 'open' && this.#isLeased(tenant.tenantId)) return this.#admitTo(ready, passphrase, host, grant);
    const tenantId = tenant.tenantId;
    return this.exclusive(tenantId, async () => {
      const notFound = (): TenantPoolError => poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`, undefined, { tenantId });
      const current = this.#entries.get(tenantId);
      if (current?.state === 'open') {
        // Deleted meanwhile, it is not served.
        if ((await currentRecord()) === undefined) throw notFound();
        if (this.#isLeased(tenantId)) return this.#admitTo(current, passphrase, host, grant);
        // Its lease ran out while this instance could not notice: the tenant may be served elsewhere already.
        this.#leases!.expired(tenantId);
        throw poolError('ERR_LEASE_LOST', `the lease of tenant ${tenantId} ran out on this instance; try again`, undefined, { tenantId });
      }
      // A tenant of a raw key keeps nothing on a worker once closed: it goes where load is least.
      const place = (kdf: KdfMethod): WalletEntry => {
        const placed = new WalletEntry(tenantId, this.#workers[placeTenant(tenantId, this.loads(), (i) => this.#workers[i]!.isAlive, kdf !== 'raw')]!);
        this.#entries.set(tenantId, placed);
        return placed;
      };
      // The tenant as it is now: deleted meanwhile, it is not opened; rekeyed meanwhile, its new key is used.
      // Cluster mode: the lease first (another instance may hold the tenant), so no key is derived in
      // vain, taken in the same statement that reads the tenant and its wallet's row (the worker then
      // reads nothing before it opens).
      const taken = this.#leases === undefined ? { fence: undefined, record: await currentRecord(), wallet: undefined } : await this.#leases.take(tenantId);
      const fence = taken.fence;
      let record = taken.record;
      if (record === undefined) throw notFound();
      if (record.secret === null && passphrase !== undefined && this.#rehash !== undefined) {
        try {
          record = (await this.#rehash(record, passphrase)) ?? record;
        } catch (error) {
          if (fence !== undefined) void this.#leases!.release(tenantId);
          throw error;
        }
      }
      let entry = place(record.kdf);
      const askedAt = this.#now();
      let slotAt = askedAt;
      let timings: WalletTimings;
      // A rehash (new KDF parameters) wrote the wallet's row anew: the worker reads it.
      const profile = record === taken.record ? taken.wallet : undefined;
      const request: OpenWalletRequest = {
        tenantId,
        path: this.#walletPath(record),
        kdf: record.kdf,
        ...(record.kdfParams === undefined ? {} : { params: record.kdfParams }),
        salt: record.salt,
        secret: record.secret ?? passphrase ?? '',
        verifier: record.verifier,
        ...(fence === undefined ? {} : { fence }),
        ...(profile === undefined ? {} : { profile }),
      };
      try {
        // The key tier first: a worker that kept the key opens at once, outside the cap on derivations.
        // Only where an entry may exist: the tier keeps no raw key, and passphrase tenants only when allowed.
        const mayBeKept = this.#keyTier !== undefined && record.kdf !== 'raw' && (record.secret !== null || this.#keyTier.passphrases);
        const kept = mayBeKept ? await entry.worker.call('openWallet', { ...request, keyTierOnly: true }) : { missed: true, deriveMs: 0, openMs: 0 };
        if (kept.missed !== true) {
          this.counters.keyTierOpens++;
          timings = kept;
        } else timings = await this.derive(record.kdf, async () => {
          slotAt = this.#now();
          // The worker chosen may have died while this open waited for a derivation slot. Nothing was
          // sent to it yet: place the wallet afresh. (Sent on, it would open on the replacement thread
          // as a wallet the pool had already written off, and the next open there would collide.)
          if (entry.state === 'crashed') entry = place(record.kdf);
          return entry.worker.call('openWallet', request);
        });
      } catch (error) {
        if (fence !== undefined) void this.#leases!.release(tenantId);
        if (this.#entries.get(tenantId) === entry) this.#entries.delete(tenantId);
        if (entry.state !== 'crashed') entry.state = 'closed';
        throw error;
      }
      // The worker may have died between its answer and now.
      if (entry.state === 'crashed') throw poolError('ERR_WORKER_CRASHED', `the worker holding tenant ${tenantId} died while opening its wallet`);
      entry.state = 'open';
      entry.openedAt = this.#now();
      entry.timings = timings;
      entry.passCheck = record.secret === null ? this.#passCheck(passphrase) : null;
      this.counters.walletOpens++;
      this.#events.emit('tenant-pool:wallet:open', () => ({
        tenantId,
        worker: entry.worker.index,
        kdf: record.kdf,
        waitMs: ms(slotAt - askedAt),
        deriveMs: ms(timings.deriveMs),
        openMs: ms(timings.openMs),
        totalMs: ms(entry.openedAt - askedAt),
      }));
      this.#onOpened(entry, timings);
      return this.#admitTo(entry, passphrase, host, grant);
    });
  }

  /** Without a cluster, always; in cluster mode, whether the tenant's lease is surely still this instance's. */
  #isLeased(tenantId: string): boolean {
    return this.#leases === undefined || this.#leases.holds(tenantId);
  }

  /** A wallet that `createWallet` left open on `worker` is this tenant's open (idle) wallet from now on. */
  adoptCreated(tenant: TenantRecord, worker: WorkerSlot, passphrase: string | undefined): void {
    const entry = new WalletEntry(tenant.tenantId, worker);
    entry.state = 'open';
    entry.openedAt = this.#now();
    entry.passCheck = tenant.secret === null ? this.#passCheck(passphrase) : null;
    this.#entries.set(tenant.tenantId, entry);
    this.counters.walletOpens++;
  }

  /** A session ended. Whether its wallet then closes is the scheduler's decision. */
  release(session: Session): void {
    if (session.walletNode !== undefined) session.entry.sessions.remove(session.walletNode);
    session.walletNode = undefined;
  }

  /**
   * Closes the tenant's wallet if it is open and (for `idle`/`capacity`) has no session; resolves
   * when closed or when there was nothing to close.
   */
  async close(tenantId: string, reason: CloseReason): Promise<void> {
    await this.exclusive(tenantId, async () => {
      const entry = this.#entries.get(tenantId);
      if (entry !== undefined) await this.#closeLocked(entry, reason);
    });
  }

  async #closeLocked(entry: WalletEntry, reason: CloseReason): Promise<void> {
    const force = reason === 'delete' || reason === 'rekey' || reason === 'close' || reason === 'lease' || reason === 'ownership';
    if (entry.state !== 'open' || (!force && entry.sessions.size > 0)) return;
    entry.state = 'closing';
    try {
      // A delete or a rekey drops the key the worker kept: it opens nothing any more.
      await entry.worker.call('closeWallet', entry.tenantId, reason === 'delete' || reason === 'rekey');
    } catch {
      // A worker that died took the wallet with it: closed either way.
    } finally {
      if (entry.state === 'closing') entry.state = 'closed';
      if (this.#entries.get(entry.tenantId) === entry) this.#entries.delete(entry.tenantId);
      this.#closed(entry, reason);
    }
  }

  #closed(entry: WalletEntry, reason: CloseReason): void {
    this.counters.walletCloses++;
    if (this.#leases !== undefined && reason !== 'lease') {
      const released = this.#leases.release(entry.tenantId).finally(() => this.#releasing.delete(released));
      this.#releasing.add(released);
    }
    this.#events.emit('tenant-pool:wallet:close', () => ({ tenantId: entry.tenantId, worker: entry.worker.index, reason, openForMs: ms(this.#now() - entry.openedAt) }));
  }

  /**
   * Resolves when the leases of the wallets closed so far are given up (a close gives its weight
   * back at once, before the lease's row is deleted; a caller that closed wallets for another
   * instance to take them waits here).
   */
  async leasesGivenUp(): Promise<void> {
    await Promise.all(this.#releasing);
  }

  /** The pool closed its workers, and every wallet with them. */
  poolClosed(): void {
    for (const entry of this.#entries.values()) {
      if (entry.state === 'open') this.#closed(entry, 'close');
      entry.state = 'closed';
    }
    this.#entries.clear();
  }

  /**
   * Ends a tenant's wallet for a delete or a rekey: revokes its sessions and closes it. Call it
   * inside the tenant's critical section (`exclusive`), so no open of it is under way or can start before.
   */
  async closeForce(tenantId: string, reason: 'delete' | 'rekey' | 'lease' | 'ownership', revoke: (session: Session) => void): Promise<void> {
    const entry = this.#entries.get(tenantId);
    if (entry === undefined) return;
    for (const { value: session } of [...entry.sessions]) revoke(session);
    await this.#closeLocked(entry, reason);
  }

  /** Waits until no open, close or delete of the tenant is under way, then runs `fn` inside its critical section. */
  async exclusive<T>(tenantId: string, fn: () => Promise<T> | T): Promise<T> {
    try {
      return await this.#mutex(tenantId).runExclusive(fn);
    } finally {
      this.#dropMutexIfIdle(tenantId);
    }
  }

  /**
   * The wallets on a dead worker are gone: their entries are dropped and their sessions' calls
   * reject. Returns the tenants whose current wallet was lost (not those already being closed).
   */
  workerCrashed(index: number): string[] {
    const lost: string[] = [];
    for (const entry of [...this.#entries.values()]) {
      if (entry.worker.index !== index) continue;
      if (entry.state !== 'closing') lost.push(entry.tenantId);
      if (entry.state === 'open') this.#closed(entry, 'crash');
      entry.state = 'crashed';
      this.#entries.delete(entry.tenantId);
    }
    return lost;
  }
}
