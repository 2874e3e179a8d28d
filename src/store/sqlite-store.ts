/**
 * The embedded default: the registry and one wallet file per tenant in a data folder that one pool
 * owns at a time (its lock). Opening takes the lock before anything in the folder is read, opens
 * the registry, and sweeps wallet files no tenant owns.
 */
import { asPoolError } from '../../common/errors.js';
import type { UpgradeMode } from '../../common/formats.js';
import type { UpgradeProgress } from './sqlite-format.js';
import { accessSync, chmodSync, constants, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { StoreConfig } from '../../common/protocol.js';
import { DataDirLock, sweepWallets } from './data-dir.js';
import { newWalletFile, Registry } from './registry.js';
import type { TenantRecord, Warn } from './tenant-store.js';
import type { TenantKey, TenantStore } from './tenant-store.js';
import { removeWalletFiles } from './wallet-files.js';

export interface SqliteStoreOptions {
  dataDir: string;
  rootKey: string | undefined;
  warn: Warn;
  /** What the sweep at open removed (and could not remove). */
  onSwept: (removed: string[], failed: string[]) => void;
  /** Whether a registry of an older format is upgraded at open. @default 'auto' */
  upgrade?: UpgradeMode;
  /** Progress of an upgrade, for the `upgrade` command. */
  progress?: UpgradeProgress;
}

export class SqliteTenantStore implements TenantStore {
  readonly kind = 'sqlite';
  readonly workerStore: StoreConfig = { kind: 'sqlite' };
  readonly rekeysInPlace = false;
  readonly #dataDir: string;
  readonly #lock: DataDirLock;
  readonly #registry: Registry;
  /** The tenants in id order, made when a page is asked for and dropped at the next change. */
  #sorted: TenantRecord[] | undefined;

  private constructor(dataDir: string, lock: DataDirLock, registry: Registry) {
    this.#dataDir = dataDir;
    this.#lock = lock;
    this.#registry = registry;
  }

  /**
   * Creates the folder if missing (mode 0700), takes its lock, opens the registry and sweeps.
   * @throws ERR_DATA_DIR_LOCKED, ERR_ROOT_KEY_MISSING, ERR_WALLET_KEY_INVALID, ERR_WALLET_CORRUPT
   */
  static async open(options: SqliteStoreOptions): Promise<SqliteTenantStore> {
    const { dataDir } = options;
    const isNewDir = !existsSync(dataDir);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (isNewDir) chmodSync(dataDir, 0o700);
    // Nothing in the folder is read or written before it is ours.
    const lock = DataDirLock.acquire(dataDir);
    let registry: Registry | undefined;
    try {
      mkdirSync(join(dataDir, 'wallets'), { recursive: true, mode: 0o700 });
      registry = await Registry.open(dataDir, options.rootKey, options.warn, options.upgrade ?? 'auto', options.progress);
      const { removed, failed } = sweepWallets(join(dataDir, 'wallets'), registry.walletFiles());
      if (removed.length > 0 || failed.length > 0) options.onSwept(removed, failed);
      return new SqliteTenantStore(dataDir, lock, registry);
    } catch (error) {
      registry?.close();
      lock.release();
      throw error;
    }
  }

  newWalletName(tenantId: string): string {
    return newWalletFile(tenantId);
  }

  walletRef(record: Pick<TenantRecord, 'walletFile'>): string {
    return join(this.#dataDir, 'wallets', record.walletFile);
  }

  async get(tenantId: string): Promise<TenantRecord | undefined> {
    return this.#registry.get(tenantId);
  }

  /** Every tenant is in memory. */
  peek(tenantId: string): TenantRecord | undefined {
    return this.#registry.get(tenantId);
  }

  async insert(record: TenantRecord, routes: readonly string[] = []): Promise<string[]> {
    const taken = this.#registry.insert(record, routes);
    this.#sorted = undefined;
    return taken;
  }

  async update(record: TenantRecord): Promise<void> {
    this.#registry.update(record);
    this.#sorted = undefined;
  }

  async replaceKey(tenantId: string, key: TenantKey): Promise<TenantRecord> {
    this.#sorted = undefined;
    return this.#registry.replaceKey(tenantId, key);
  }

  async delete(tenantId: string): Promise<void> {
    this.#registry.delete(tenantId);
    this.#sorted = undefined;
  }

  async removeWallet(record: Pick<TenantRecord, 'walletFile'>): Promise<void> {
    removeWalletFiles(this.walletRef(record));
  }

  async page(options: { after: string; limit: number; label?: string; metadata?: Record<string, string> }): Promise<TenantRecord[]> {
    this.#sorted ??= this.#registry.list().sort((a, b) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0));
    const { after, limit, label } = options;
    const metadata = Object.entries(options.metadata ?? {});
    // Binary search for the first tenant after the cursor.
    let lo = 0;
    let hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#sorted[mid]!.tenantId <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: TenantRecord[] = [];
    for (let i = lo; i < this.#sorted.length && out.length < limit; i++) {
      const r = this.#sorted[i]!;
      if ((label === undefined || r.label === label) && metadata.every(([k, v]) => Object.hasOwn(r.metadata, k) && r.metadata[k] === v)) out.push(r);
    }
    return out;
  }

  async addRoute(recipientKey: string, tenantId: string): Promise<void> {
    this.#registry.addRoute(recipientKey, tenantId);
  }

  async removeRoute(recipientKey: string): Promise<boolean> {
    return this.#registry.removeRoute(recipientKey);
  }

  async routeOf(recipientKey: string): Promise<string | undefined> {
    return this.#registry.routeOf(recipientKey);
  }

  async opened(): Promise<void> {
    this.#lock.recordHolder();
  }

  async rotateRootKey(newRootKey: string, progress?: (done: number, total: number) => void): Promise<void> {
    await this.#registry.rotateRootKey(newRootKey, progress);
  }

  async ping(): Promise<void> {
    this.#registry.ping();
    // The folder is still there and writable (a removed, unmounted or read-only data folder fails here).
    try {
      accessSync(join(this.#dataDir, 'wallets'), constants.R_OK | constants.W_OK);
    } catch (error) {
      throw asPoolError(error, `the data folder ${this.#dataDir} cannot be used`);
    }
  }

  async close(): Promise<void> {
    this.#registry.close();
    this.#lock.release();
  }
}
