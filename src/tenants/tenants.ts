/**
 * `pool.tenants`: create, read, update and delete tenants. A tenant's wallet file is created (key
 * derived on a worker) before its registry row is written, and built under a temporary name, so a
 * crash at any point leaves either a whole tenant or none (and at most a file the sweep removes).
 *
 * Create, delete, open and close of one tenant id run one at a time (the tenant's critical section
 * in the wallet manager), and each tenant's wallet file carries an incarnation kept in its registry
 * row: a delete can only ever remove the files of the tenant it deleted, never a later one's.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { ms } from '../observability/diagnostics.js';
import { poolError } from '../../common/errors.js';
import { KDF_METHODS, type KdfMethod } from '../../common/protocol.js';
import type { KdfParams } from '../../common/kdf.js';
import { placeTenant } from '../engine/placement.js';
import type { TenantRecord, TenantWeights } from '../store/tenant-store.js';
import { kRehash, TenantKeys, type ExportOptions, type ImportOptions, type RekeyOptions } from './tenant-keys.js';
import {
  checkMaxSessions,
  checkPassphrase,
  checkWeights,
  DEFAULT_PASSPHRASE_KDF,
  toInfo,
  type TenantInfo,
  type TenantsContext,
} from './tenants-base.js';
import { checkLimit, checkName, checkOptionalObject, checkTags, checkTenantId, invalid } from '../../common/validate.js';

export { checkPassphrase, toInfo } from './tenants-base.js';
export type { TenantInfo, TenantsContext } from './tenants-base.js';
export type { ExportOptions, ImportOptions, RekeyOptions } from './tenant-keys.js';
export { kRehash } from './tenant-keys.js';

export interface CreateTenantOptions {
  /** Must match /^[A-Za-z0-9_-]{1,64}$/. @default a random UUID */
  tenantId?: string;
  label?: string;
  /** @default the pool's `kdf` option for a managed tenant; `'argon2i-mod'` for a passphrase tenant (`'raw'` is refused with a passphrase) */
  kdf?: KdfMethod;
  /** Given: the wallet key is derived from it through Argon2 and it is not stored; every acquire must pass it. Absent: a managed tenant. */
  passphrase?: string;
  maxSessions?: number;
  /** Overrides the pool's weights for this tenant, from its next wallet open. */
  weights?: TenantWeights;
  metadata?: Record<string, string>;
}

/** What `tenants.find` and `tenants.page` filter by: an exact label, and metadata entries that must all be equal. */
export interface TenantFilter {
  label?: string;
  metadata?: Record<string, string>;
}

function decodeTenantCursor(cursor: unknown): string {
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > 200) invalid('Expected `cursor` to be a cursor string from an earlier page');
  const tenantId = Buffer.from(cursor, 'base64url').toString('utf8');
  return checkTenantId(tenantId, 'cursor');
}

export interface UpdateTenantOptions {
  label?: string | null;
  maxSessions?: number | null;
  weights?: TenantWeights | null;
  metadata?: Record<string, string>;
}

export class Tenants {
  readonly #ctx: TenantsContext;
  readonly #keys: TenantKeys;

  constructor(ctx: TenantsContext) {
    this.#ctx = ctx;
    this.#keys = new TenantKeys(ctx, {
      record: async (tenantId) => this.#record(tenantId),
      removeWallet: async (record, isQuiet) => this.#removeWallet(record, isQuiet),
      checkFits: (weights) => this.#checkFits(weights),
    });
  }

  /**
   * Creates a tenant and its wallet.
   * @throws ERR_TENANT_EXISTS, ERR_INVALID_ARGUMENT
   */
  async create(options: CreateTenantOptions = {}): Promise<TenantInfo> {
    const ctx = this.#ctx;
    ctx.assertOpen();
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) {
      if (!['tenantId', 'label', 'kdf', 'passphrase', 'maxSessions', 'weights', 'metadata'].includes(key)) invalid(`Unknown option \`${key}\` for tenants.create`);
    }
    const tenantId = opts['tenantId'] === undefined ? randomUUID() : checkTenantId(opts['tenantId']);
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    const kdf = opts['kdf'] === undefined ? (passphrase === undefined ? ctx.defaultKdf : DEFAULT_PASSPHRASE_KDF) : (opts['kdf'] as KdfMethod);
    if (!KDF_METHODS.includes(kdf)) invalid(`Expected \`kdf\` to be one of ${KDF_METHODS.join(', ')}, got ${String(kdf)}`);
    if (passphrase !== undefined && kdf === 'raw') invalid("Expected `kdf` to be an Argon2 method with a passphrase: 'raw' does no stretching and is only for managed tenants' random secrets");
    const label = opts['label'] === undefined ? undefined : checkName(opts['label'], 'label');
    const maxSessions = opts['maxSessions'] === undefined ? undefined : checkMaxSessions(opts['maxSessions']);
    const weights = opts['weights'] === undefined ? undefined : this.#checkFits(checkWeights(opts['weights']));
    const metadata = checkTags(opts['metadata'], 'metadata');

    // Checked inside the tenant's critical section: a create or delete of this id still under way finishes first.
    return ctx.wallets.exclusive(tenantId, async () => {
      if ((await ctx.store.get(tenantId)) !== undefined) throw poolError('ERR_TENANT_EXISTS', `tenant ${tenantId} already exists`, undefined, { tenantId });
      ctx.assertOpen();
      const salt = randomBytes(16);
      const secret = passphrase === undefined ? randomBytes(32) : null;
      // The new wallet may stay open there (cached): placed as an open places it, within the workers' bounded load.
      const worker = ctx.workers[placeTenant(tenantId, ctx.wallets.loads(), (i) => ctx.workers[i]!.isAlive, kdf !== 'raw')]!;
      const walletFile = ctx.store.newWalletName(tenantId);
      const path = ctx.walletPath({ walletFile });
      const startedAt = ctx.now();
      const crashes = worker.crashes;
      const kdfParams = ctx.paramsFor(kdf);
      const { verifier, deriveMs } = await ctx.wallets.derive(kdf, async () => worker.call('createWallet', { tenantId, path, kdf, ...(kdfParams === undefined ? {} : { params: kdfParams }), salt, secret: secret ?? passphrase ?? '' }));
      // The worker left the new wallet open; unless it died since (and the wallet with it), it is closed again if not kept.
      const closeOnWorker = async (): Promise<void> => {
        if (worker.crashes === crashes) await worker.call('closeWallet', tenantId).catch(() => {});
      };
      const record: TenantRecord = {
        tenantId,
        ...(label === undefined ? {} : { label }),
        kdf,
        ...(kdfParams === undefined ? {} : { kdfParams }),
        salt,
        secret,
        verifier: Buffer.from(verifier),
        walletFile,
        ...(maxSessions === undefined ? {} : { maxSessions }),
        ...(weights === undefined ? {} : { weights }),
        metadata,
        createdAt: new Date().toISOString(),
      };
      try {
        ctx.assertOpen();
        await ctx.store.insert(record);
      } catch (error) {
        await closeOnWorker();
        await this.#removeWallet(record);
        throw error;
      }
      const isKeptOpen = worker.crashes === crashes && ctx.adoptCreated(record, worker, passphrase);
      if (!isKeptOpen) await closeOnWorker();
      ctx.events.emit('tenant-pool:tenant:create', () => ({ tenantId, worker: worker.index, kdf, deriveMs: ms(deriveMs), totalMs: ms(ctx.now() - startedAt), isKeptOpen }));
      return toInfo(record);
    });
  }

  /** The tenant that routes `recipientKey` (made with `keys.create({ routing: true })` or `keys.setRouting`), if any. */
  async byRoutingKey(recipientKey: string): Promise<string | undefined> {
    this.#ctx.assertOpen();
    return this.#ctx.store.routeOf(checkName(recipientKey, 'recipientKey'));
  }

  /** @throws ERR_TENANT_NOT_FOUND */
  async get(tenantId: string): Promise<TenantInfo> {
    return toInfo(await this.#record(tenantId));
  }

  async list(): Promise<TenantInfo[]> {
    this.#ctx.assertOpen();
    return (await this.#all({})).map(toInfo);
  }

  /**
   * One page of tenants in tenant id order, filtered by `label` and `metadata` (every given entry
   * equal): `limit` of them and a cursor for the next page, null at the end. Tenants created or
   * deleted meanwhile do not make a page repeat or skip one that stays.
   */
  async page(options: TenantFilter & { limit: number; cursor?: string | null }): Promise<{ tenants: TenantInfo[]; cursor: string | null }> {
    this.#ctx.assertOpen();
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (!['limit', 'cursor', 'label', 'metadata'].includes(key)) invalid(`Unknown option \`${key}\` for tenants.page; known: limit, cursor, label, metadata`);
    const limit = checkLimit(opts['limit']);
    if (limit < 0 || limit > 10_000) invalid('Expected `limit` to be an integer from 1 to 10000');
    const after = opts['cursor'] === undefined || opts['cursor'] === null ? '' : decodeTenantCursor(opts['cursor']);
    const page = await this.#ctx.store.page({ after, limit: limit + 1, ...this.#filter(opts) });
    const hasMore = page.length > limit;
    if (hasMore) page.pop();
    return { tenants: page.map(toInfo), cursor: hasMore ? Buffer.from(page.at(-1)!.tenantId, 'utf8').toString('base64url') : null };
  }

  /** Every tenant with this `label` and these `metadata` entries, in tenant id order. */
  async find(filter: TenantFilter): Promise<TenantInfo[]> {
    this.#ctx.assertOpen();
    const opts = checkOptionalObject(filter, 'filter');
    for (const key of Object.keys(opts)) if (key !== 'label' && key !== 'metadata') invalid(`Unknown filter \`${key}\` for tenants.find; known: label, metadata`);
    return (await this.#all(this.#filter(opts))).map(toInfo);
  }

  #filter(opts: Record<string, unknown>): { label?: string; metadata: Record<string, string> } {
    const metadata = checkTags(opts['metadata'], 'metadata');
    return opts['label'] === undefined ? { metadata } : { label: checkName(opts['label'], 'label'), metadata };
  }

  /** Every tenant matching the filter, in id order, read a page at a time. */
  async #all(filter: { label?: string; metadata?: Record<string, string> }): Promise<TenantRecord[]> {
    const out: TenantRecord[] = [];
    for (let after = ''; ; ) {
      const page = await this.#ctx.store.page({ after, limit: 1000, ...filter });
      out.push(...page);
      if (page.length < 1000) return out;
      after = page.at(-1)!.tenantId;
    }
  }

  /**
   * Changes a tenant's label, limits, weights or metadata (`null` clears an optional field).
   * New weights apply from the tenant's next wallet open.
   * @throws ERR_TENANT_NOT_FOUND, ERR_INVALID_ARGUMENT
   */
  async update(tenantId: string, changes: UpdateTenantOptions): Promise<TenantInfo> {
    const record = await this.#record(tenantId);
    const opts = checkOptionalObject(changes, 'changes');
    const next: TenantRecord = { ...record };
    for (const [key, value] of Object.entries(opts)) {
      if (value === undefined) continue;
      switch (key) {
        case 'label':
          if (value === null) delete next.label;
          else next.label = checkName(value, 'label');
          break;
        case 'maxSessions':
          if (value === null) delete next.maxSessions;
          else next.maxSessions = checkMaxSessions(value);
          break;
        case 'weights':
          if (value === null) delete next.weights;
          else next.weights = this.#checkFits(checkWeights(value));
          break;
        case 'metadata':
          next.metadata = checkTags(value, 'metadata');
          break;
        default:
          invalid(`Unknown option \`${key}\` for tenants.update; known: label, maxSessions, weights, metadata`);
      }
    }
    await this.#ctx.store.update(next);
    this.#ctx.onUpdated(next);
    return toInfo(next);
  }

  /**
   * Changes a tenant's key: a new passphrase, another KDF, or a rotated managed secret. See
   * {@link TenantKeys.rekey}. @throws ERR_TENANT_NOT_FOUND, ERR_WALLET_KEY_INVALID, ERR_INVALID_ARGUMENT
   */
  async rekey(tenantId: string, options: RekeyOptions = {}): Promise<TenantInfo> {
    return this.#keys.rekey(tenantId, options);
  }

  /** Writes the tenant to one sealed, self-contained file. See {@link TenantKeys.export}. */
  async export(tenantId: string, options: ExportOptions): Promise<{ file: string; bytes: number; records: number; keys: number; digest: string }> {
    return this.#keys.export(tenantId, options);
  }

  /** A digest of the tenant's records and keys, equal for equal content on any store. See {@link TenantKeys.digest}. */
  async digest(tenantId: string, options?: { passphrase?: string }): Promise<{ digest: string; records: number; keys: number }> {
    return this.#keys.digest(tenantId, options);
  }

  /** Checks the tenant's wallet whole (key, storage integrity, every record and key), changing nothing. See {@link TenantKeys.verify}. */
  async verify(tenantId: string, options?: { passphrase?: string }): Promise<{ digest: string; records: number; keys: number; bytes: number }> {
    return this.#keys.verify(tenantId, options);
  }

  /** @internal The pool's re-derivation of a weaker passphrase tenant's key before its wallet opens. */
  async [kRehash](record: TenantRecord, passphrase: string, target: { kdf: KdfMethod; params: KdfParams }): Promise<TenantRecord> {
    return this.#keys[kRehash](record, passphrase, target);
  }

  /** Recreates an exported tenant in this pool. See {@link TenantKeys.import}. @throws ERR_TENANT_EXISTS, ERR_WALLET_KEY_INVALID, ERR_WALLET_CORRUPT */
  async import(file: string, options: ImportOptions): Promise<TenantInfo & { records: number; keys: number }> {
    return this.#keys.import(file, options);
  }

  /**
   * Deletes a tenant: new acquires get ERR_TENANT_NOT_FOUND, live sessions are revoked (their calls
   * reject ERR_TENANT_DELETED), the wallet is closed and its files removed.
   * @throws ERR_TENANT_NOT_FOUND
   */
  async delete(tenantId: string): Promise<void> {
    const ctx = this.#ctx;
    ctx.assertOpen();
    checkTenantId(tenantId);
    await ctx.wallets.exclusive(tenantId, async () => {
      // Inside the critical section: no open, close or create of this id is under way.
      const record = await this.#record(tenantId);
      const unclaim = await ctx.claim?.(tenantId);
      try {
        // The commit point: once the row is gone the tenant is gone; if this write fails, nothing changed.
        await ctx.store.delete(tenantId);
        await ctx.wallets.closeForce(tenantId, 'delete', ctx.revoke);
        ctx.wallets.forgetKeys(tenantId);
        await this.#removeWallet(record);
      } finally {
        await unclaim?.();
      }
    });
    ctx.onDeleted(tenantId);
  }

  /** Removes a wallet no tenant names; what cannot be removed now (an unwritable folder) is left to the next open's sweep. */
  async #removeWallet(record: Pick<TenantRecord, 'tenantId' | 'walletFile'>, isQuiet = false): Promise<void> {
    try {
      await this.#ctx.store.removeWallet(record);
    } catch (error) {
      if (isQuiet) return;
      this.#ctx.warn(
        `tenant-pool could not remove the wallet file of tenant ${record.tenantId} (${(error as Error).message}); the tenant is gone from the registry, and the next open of the pool removes the file`,
        'TENANT_POOL_WALLET_FILE_LEFT',
      );
    }
  }

  /** A tenant whose first session would weigh more than the whole pool could never be admitted. */
  #checkFits(weights: TenantWeights): TenantWeights {
    const total = (weights.wallet ?? this.#ctx.defaultWeights.wallet) + (weights.session ?? this.#ctx.defaultWeights.session);
    if (total > this.#ctx.capacity) invalid(`Expected \`weights\` to total at most the pool's capacity ${this.#ctx.capacity}, got ${total}`);
    return weights;
  }

  async #record(tenantId: string): Promise<TenantRecord> {
    this.#ctx.assertOpen();
    const record = await this.#ctx.store.get(checkTenantId(tenantId));
    if (record === undefined) throw poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`, undefined, { tenantId });
    return record;
  }
}

