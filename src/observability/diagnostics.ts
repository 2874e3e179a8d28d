/**
 * The pool's events: every `node:diagnostics_channel` channel it publishes on, named
 * `tenant-pool:<area>:<event>`, and the payload of each. A payload is built only when someone
 * listens (a channel subscriber, the pool's logger, `collectMetrics()`), and never carries a
 * secret: no passphrase, key, key material or record value, only tenant ids, worker indexes,
 * timings, counts, reasons and error codes.
 */
import { channel, type Channel } from 'node:diagnostics_channel';
import type { KdfMethod } from '../../common/protocol.js';

/** Why a wallet closed: idle past its TTL, evicted for capacity, its tenant deleted, the pool closed, its worker died. */
export type WalletCloseReason = 'idle' | 'capacity' | 'delete' | 'rekey' | 'close' | 'crash' | 'lease' | 'ownership';

/**
 * Why this instance stopped holding a tenant's lease before giving it up: `expired` by its own
 * monotonic clock (not renewed in time), `taken` (a renewal found it gone: another instance took it),
 * `fenced` (a write of the tenant found the lease taken).
 */
export type LeaseLossReason = 'expired' | 'taken' | 'fenced';

/** Why the pool ended a session itself. */
export type RevokeReason = 'maxSessionMs' | 'delete' | 'rekey' | 'close' | 'lease' | 'ownership';

/** Payload of each event, by channel name. Times are milliseconds, rounded to 0.01 ms. */
export interface PoolEvents {
  /** A session was handed out. `waitMs` runs from the `acquire()` call: admission (`queuedMs`) then wallet open. */
  'tenant-pool:session:acquire': { tenantId: string; worker: number; waitMs: number; queuedMs: number; isCacheHit: boolean };
  /** A session ended (released, disposed or revoked). */
  'tenant-pool:session:release': { tenantId: string; worker: number; holdMs: number };
  /** An acquire gave up at its deadline, waiting for admission or for the wallet to open. */
  'tenant-pool:session:timeout': { tenantId: string; waitMs: number; stage: 'admission' | 'open'; queued: number; weightInUse: number };
  /** An acquire failed for any other reason: its error code, or `ABORTED` for an aborted signal. `tenantId` is null when the id given was not a string. */
  'tenant-pool:session:reject': { tenantId: string | null; code: string; waitMs: number };
  /** A session held past `leakWarningMs`; `stack` is where it was acquired. */
  'tenant-pool:session:leak': { tenantId: string; heldMs: number; stack: string };
  /** The pool ended a session itself. */
  'tenant-pool:session:revoke': { tenantId: string; reason: RevokeReason; heldMs: number };
  /** A wallet opened: `waitMs` for a key-derivation slot, `deriveMs` in the KDF, `openMs` opening the file, `totalMs` all of it. */
  'tenant-pool:wallet:open': { tenantId: string; worker: number; kdf: KdfMethod; waitMs: number; deriveMs: number; openMs: number; totalMs: number };
  /** A wallet closed (or was lost with its worker), after `openForMs` open. */
  'tenant-pool:wallet:close': { tenantId: string; worker: number; reason: WalletCloseReason; openForMs: number };
  /** An idle wallet is being closed to make room for a waiting acquire (a `close` with reason `capacity` follows). */
  'tenant-pool:wallet:evict': { tenantId: string; idleMs: number; forTenantId: string };
  /** A worker died; `walletsLost` wallets went with it, and a replacement starts unless it keeps failing. */
  'tenant-pool:worker:crash': { worker: number; message: string; walletsLost: number; crashes: number };
  /** A worker is ready to serve, `startMs` after it was asked for. */
  'tenant-pool:worker:spawn': { worker: number; startMs: number; isReplacement: boolean };
  /** A tenant was created: `deriveMs` in the KDF, `totalMs` all of it; `isKeptOpen` when its new wallet stayed open (cached) so its first session derives nothing. */
  'tenant-pool:tenant:create': { tenantId: string; worker: number; kdf: KdfMethod; deriveMs: number; totalMs: number; isKeptOpen: boolean };
  /** Cluster mode: this instance took the tenant's lease (a wallet open, a delete or a rekey); `epoch` is its fencing token, `takeMs` the statement's time. */
  'tenant-pool:lease:take': { tenantId: string; epoch: number; takeMs: number };
  /** Cluster mode: this instance gave the tenant's lease up (its wallet closed, a hand-off, the pool closed), after `heldMs`. */
  'tenant-pool:lease:release': { tenantId: string; epoch: number; heldMs: number };
  /** Cluster mode: this instance lost the tenant's lease (see `LeaseLossReason`) and stopped serving it: its sessions are revoked, its wallet closed. */
  'tenant-pool:lease:lost': { tenantId: string; epoch: number; heldMs: number; reason: LeaseLossReason };
  /** At open, files of the wallet folder that no tenant owns were removed (`removed`), or could not be (`failed`, tried again next open). */
  'tenant-pool:pool:sweep': { dataDir: string; removed: string[]; failed: string[] };
  /**
   * PostgreSQL: this pool (or cluster instance) lost the schema: another pool or the cluster's
   * instances took it while this one was cut off or paused. Its sessions were revoked; every call
   * fails `ERR_OWNERSHIP_LOST` until it is closed.
   */
  'tenant-pool:schema:lost': { schema: string; instanceId: string | null; message: string };
}

export type EventName = keyof PoolEvents;

/** Every channel, by name: subscribe with `diagnostics_channel.subscribe(name, fn)`. */
export const CHANNEL_NAMES = [
  'tenant-pool:session:acquire',
  'tenant-pool:session:release',
  'tenant-pool:session:timeout',
  'tenant-pool:session:reject',
  'tenant-pool:session:leak',
  'tenant-pool:session:revoke',
  'tenant-pool:wallet:open',
  'tenant-pool:wallet:close',
  'tenant-pool:wallet:evict',
  'tenant-pool:worker:crash',
  'tenant-pool:worker:spawn',
  'tenant-pool:tenant:create',
  'tenant-pool:lease:take',
  'tenant-pool:lease:release',
  'tenant-pool:lease:lost',
  'tenant-pool:pool:sweep',
  'tenant-pool:schema:lost',
] as const satisfies readonly EventName[];

const channels = Object.fromEntries(CHANNEL_NAMES.map((name) => [name, channel(name)])) as Record<EventName, Channel>;

/** An event: its name and payload, as a pair that narrows together. */
export type PoolEvent = { [K in EventName]: [name: K, payload: PoolEvents[K]] }[EventName];

/** A listener of one pool's events (the logger, metrics, the live view). */
export type EventListener = (...event: PoolEvent) => void;

/** Milliseconds, rounded to 0.01 ms for payloads. */
export function ms(value: number): number {
  return Math.round(value * 100) / 100;
}

/**
 * One pool's event source: publishes on the process-wide channels and to the pool's own listeners.
 * A listener that throws does not reach the pool (it would break the operation that emitted).
 */
export class EventHub {
  #listeners: EventListener[] = [];

  /** Adds a listener of this pool's events; returns its remover. */
  on(listener: EventListener): () => void {
    this.#listeners = [...this.#listeners, listener];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  /** Whether anyone would receive `name` now. */
  wants(name: EventName): boolean {
    return this.#listeners.length > 0 || channels[name].hasSubscribers;
  }

  /** Builds and delivers the payload, only if anyone listens. */
  emit<K extends EventName>(name: K, build: () => PoolEvents[K]): void {
    if (!this.wants(name)) return;
    const payload = build();
    const ch = channels[name];
    if (ch.hasSubscribers) ch.publish(payload);
    const event = [name, payload] as PoolEvent;
    for (const listener of this.#listeners) {
      try {
        listener(...event);
      } catch (error) {
        // Subscribers of diagnostics_channel get the same treatment: the error surfaces, the pool goes on.
        process.nextTick(() => {
          throw error;
        });
      }
    }
  }
}
