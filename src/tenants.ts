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
import { rmSync } from 'node:fs';
import { ms, type EventHub } from './diagnostics.js';
import { poolError } from './errors.js';
import { KDF_METHODS, type KdfMethod, type WorkerApi } from './protocol.js';
import { rankWorkers } from './placement.js';
import { resolve } from 'node:path';
import { newWalletFile, type Registry, type TenantRecord, type TenantWeights, type Warn } from './store/registry.js';
import { readExportedTenantId, type ExportedTenant } from '../workers/transfer.js';
import type { WalletManager } from './lifecycle.js';
import type { Session } from './session.js';
import type { WorkerSlot } from './threads.js';
import { checkLimit, checkName, checkOptionalObject, checkTags, checkTenantId, invalid } from './validate.js';

/** A tenant as callers see it: never its salt, secret or key check value. */
export interface TenantInfo {
  tenantId: string;
  label?: string;
  kdf: KdfMethod;
  /** True if the pool generated and stores the tenant's secret; false for a passphrase tenant. */
  managed: boolean;
  maxSessions?: number;
  weights?: TenantWeights;
  metadata: Record<string, string>;
  createdAt: string;
}

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

/** Options of `tenants.export`. */
export interface ExportOptions {
  /** Where to write the export (created or replaced atomically, mode 0600). */
  file: string;
  /** 32 bytes (a random key kept in a secret store), or a passphrase (through Argon2id). */
  exportKey: Uint8Array | string;
  /** The tenant's passphrase, for a passphrase tenant (or the pool's `passphraseProvider`). */
  passphrase?: string;
}

/** Options of `tenants.import`. */
export interface ImportOptions {
  exportKey: Uint8Array | string;
  /** @default the exported tenant's id */
  tenantId?: string;
  /** Given: the imported tenant is a passphrase tenant under it. Absent: a managed tenant. */
  passphrase?: string;
  /** @default the pool's `kdf` (managed), `argon2i-mod` (passphrase) */
  kdf?: KdfMethod;
}

/** An export key: 32 bytes, or a passphrase of 1 to 4,096 characters. */
function checkExportKey(value: unknown): Uint8Array | string {
  if (value instanceof Uint8Array) {
    if (value.length !== 32) invalid(`Expected \`exportKey\` to be 32 bytes or a passphrase, got ${value.length} bytes`);
    return value;
  }
  if (typeof value === 'string') {
    try {
      return checkPassphrase(value);
    } catch {
      invalid('Expected `exportKey` to be 32 bytes or a well-formed passphrase of 1 to 4096 characters');
    }
  }
  invalid('Expected `exportKey` to be 32 bytes (a Uint8Array) or a passphrase');
}

/** Options of `tenants.rekey`. */
export interface RekeyOptions {
  /** The current passphrase of a passphrase tenant (required for one). */
  passphrase?: string;
  /** The new passphrase; a passphrase tenant keeps its passphrase without one; a managed tenant given one becomes a passphrase tenant. */
  newPassphrase?: string;
  /** The new KDF. @default the tenant's own (`argon2i-mod` for a passphrase tenant that had `raw`) */
  kdf?: KdfMethod;
}

export interface UpdateTenantOptions {
  label?: string | null;
  maxSessions?: number | null;
  weights?: TenantWeights | null;
  metadata?: Record<string, string>;
}

export interface TenantsContext {
  registry: Registry;
  wallets: WalletManager;
  workers: readonly WorkerSlot[];
  defaultKdf: KdfMethod;
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
}

const MAX_PASSPHRASE_LENGTH = 4096;
/** A passphrase is a human secret: it always goes through Argon2, at Askar's default level unless told otherwise. */
const DEFAULT_PASSPHRASE_KDF: KdfMethod = 'argon2i-mod';
/** Weights above this are refused: sums of them must stay exact integers. */
export const MAX_WEIGHT = 1_000_000_000;

export function toInfo(record: TenantRecord): TenantInfo {
  return {
    tenantId: record.tenantId,
    ...(record.label === undefined ? {} : { label: record.label }),
    kdf: record.kdf,
    managed: record.secret !== null,
    ...(record.maxSessions === undefined ? {} : { maxSessions: record.maxSessions }),
    ...(record.weights === undefined ? {} : { weights: { ...record.weights } }),
    metadata: { ...record.metadata },
    createdAt: record.createdAt,
  };
}

function checkMaxSessions(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) invalid(`Expected \`maxSessions\` to be a positive integer, got ${String(value)}`);
  return value;
}

function checkWeights(value: unknown): TenantWeights {
  const raw = checkOptionalObject(value, 'weights');
  const out: TenantWeights = {};
  for (const [key, weight] of Object.entries(raw)) {
    if (key !== 'wallet' && key !== 'session') invalid(`Unknown key \`weights.${key}\`; known keys: wallet, session`);
    const min = key === 'session' ? 1 : 0;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < min || weight > MAX_WEIGHT) invalid(`Expected \`weights.${key}\` to be an integer from ${min} to ${MAX_WEIGHT}, got ${String(weight)}`);
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

export class Tenants {
  readonly #ctx: TenantsContext;

  constructor(ctx: TenantsContext) {
    this.#ctx = ctx;
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
      if (ctx.registry.has(tenantId)) throw poolError('ERR_TENANT_EXISTS', `tenant ${tenantId} already exists`, undefined, { tenantId });
      ctx.assertOpen();
      const salt = randomBytes(16);
      const secret = passphrase === undefined ? randomBytes(32) : null;
      const worker = ctx.workers[rankWorkers(tenantId, ctx.workers.length)[0] ?? 0]!;
      const walletFile = newWalletFile(tenantId);
      const path = ctx.walletPath({ walletFile });
      const startedAt = ctx.now();
      const crashes = worker.crashes;
      const { verifier, deriveMs } = await ctx.wallets.derive(kdf, async () => worker.call('createWallet', { tenantId, path, kdf, salt, secret: secret ?? passphrase ?? '' }));
      // The worker left the new wallet open; unless it died since (and the wallet with it), it is closed again if not kept.
      const closeOnWorker = async (): Promise<void> => {
        if (worker.crashes === crashes) await worker.call('closeWallet', tenantId).catch(() => {});
      };
      const record: TenantRecord = {
        tenantId,
        ...(label === undefined ? {} : { label }),
        kdf,
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
        ctx.registry.insert(record);
      } catch (error) {
        await closeOnWorker();
        this.#removeFiles(record);
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
    return this.#ctx.registry.routeOf(checkName(recipientKey, 'recipientKey'));
  }

  /** @throws ERR_TENANT_NOT_FOUND */
  async get(tenantId: string): Promise<TenantInfo> {
    return toInfo(this.#record(tenantId));
  }

  async list(): Promise<TenantInfo[]> {
    this.#ctx.assertOpen();
    return this.#ctx.registry.list().map(toInfo);
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
    const matches = this.#matcher(opts);
    const page: TenantRecord[] = [];
    let hasMore = false;
    for (const record of this.#sorted()) {
      if (record.tenantId <= after || !matches(record)) continue;
      if (page.length === limit) {
        hasMore = true;
        break;
      }
      page.push(record);
    }
    return { tenants: page.map(toInfo), cursor: hasMore ? Buffer.from(page.at(-1)!.tenantId, 'utf8').toString('base64url') : null };
  }

  /** Every tenant with this `label` and these `metadata` entries, in tenant id order. */
  async find(filter: TenantFilter): Promise<TenantInfo[]> {
    this.#ctx.assertOpen();
    const opts = checkOptionalObject(filter, 'filter');
    for (const key of Object.keys(opts)) if (key !== 'label' && key !== 'metadata') invalid(`Unknown filter \`${key}\` for tenants.find; known: label, metadata`);
    const matches = this.#matcher(opts);
    return this.#sorted().filter(matches).map(toInfo);
  }

  #matcher(opts: Record<string, unknown>): (record: TenantRecord) => boolean {
    const label = opts['label'] === undefined ? undefined : checkName(opts['label'], 'label');
    const metadata = Object.entries(checkTags(opts['metadata'], 'metadata'));
    return (record) => (label === undefined || record.label === label) && metadata.every(([k, v]) => Object.hasOwn(record.metadata, k) && record.metadata[k] === v);
  }

  #sorted(): TenantRecord[] {
    return this.#ctx.registry.list().sort((a, b) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0));
  }

  /**
   * Changes a tenant's label, limits, weights or metadata (`null` clears an optional field).
   * New weights apply from the tenant's next wallet open.
   * @throws ERR_TENANT_NOT_FOUND, ERR_INVALID_ARGUMENT
   */
  async update(tenantId: string, changes: UpdateTenantOptions): Promise<TenantInfo> {
    const record = this.#record(tenantId);
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
    this.#ctx.registry.update(next);
    this.#ctx.onUpdated(next);
    return toInfo(next);
  }

  /**
   * Changes a tenant's key: a passphrase tenant's passphrase (`passphrase` → `newPassphrase`) or KDF
   * (`raw` → `argon2i-mod`, say), or a managed tenant's secret (rotated when no option is given; a
   * `newPassphrase` makes it a passphrase tenant). The wallet is written anew under the new key to
   * a new file, and the registry row naming the new file and key is the commit point: killed at any
   * moment, the tenant opens with the old key or the new one, never neither, and the registry says
   * which. The tenant's live sessions are revoked (`ERR_SESSION_REVOKED`, reason `rekey`) and its
   * wallet closed first; acquires meanwhile wait, as for any open.
   * @throws ERR_TENANT_NOT_FOUND, ERR_WALLET_KEY_INVALID (a wrong current passphrase), ERR_INVALID_ARGUMENT
   */
  async rekey(tenantId: string, options: RekeyOptions = {}): Promise<TenantInfo> {
    const ctx = this.#ctx;
    ctx.assertOpen();
    checkTenantId(tenantId);
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (!['passphrase', 'newPassphrase', 'kdf'].includes(key)) invalid(`Unknown option \`${key}\` for tenants.rekey; known: passphrase, newPassphrase, kdf`);
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    const given = opts['newPassphrase'] === undefined ? undefined : checkPassphrase(opts['newPassphrase']);
    if (opts['kdf'] !== undefined && !KDF_METHODS.includes(opts['kdf'] as KdfMethod)) invalid(`Expected \`kdf\` to be one of ${KDF_METHODS.join(', ')}, got ${JSON.stringify(opts['kdf'])}`);
    return ctx.wallets.exclusive(tenantId, async () => {
      const record = this.#record(tenantId);
      if (record.secret === null && passphrase === undefined) throw poolError('ERR_WALLET_KEY_INVALID', `tenant ${tenantId} needs its current passphrase to be rekeyed`, undefined, { tenantId });
      if (record.secret !== null && passphrase !== undefined) invalid(`tenant ${tenantId} is managed: rekey it without a passphrase`);
      // A passphrase tenant keeps its passphrase unless given a new one; a managed tenant gets a new secret.
      const newPassphrase = given ?? (record.secret === null ? passphrase : undefined);
      const fallback: KdfMethod = newPassphrase !== undefined && record.kdf === 'raw' ? DEFAULT_PASSPHRASE_KDF : record.kdf;
      const kdf = (opts['kdf'] as KdfMethod | undefined) ?? fallback;
      if (newPassphrase !== undefined && kdf === 'raw') invalid("Expected `kdf` to be an Argon2 method with a passphrase: 'raw' does no stretching");
      ctx.assertOpen();
      await ctx.wallets.closeForce(tenantId, 'rekey', ctx.revokeForRekey);
      ctx.onRekeyed(tenantId);
      const salt = randomBytes(16);
      const secret = newPassphrase === undefined ? randomBytes(32) : null;
      const walletFile = newWalletFile(tenantId);
      const next: TenantRecord = { ...record, kdf, salt, secret, walletFile, verifier: Buffer.alloc(0) };
      const worker = ctx.workers[rankWorkers(tenantId, ctx.workers.length)[0] ?? 0]!;
      let rekeyed: TenantRecord;
      try {
        const { verifier } = await ctx.wallets.derive(
          record.kdf === 'raw' ? kdf : record.kdf,
          async () =>
            worker.call('rekeyWallet', {
              tenantId,
              path: ctx.walletPath(record),
              kdf: record.kdf,
              salt: record.salt,
              secret: record.secret ?? passphrase ?? '',
              verifier: record.verifier,
              newPath: ctx.walletPath(next),
              newKdf: kdf,
              newSalt: salt,
              newSecret: secret ?? newPassphrase ?? '',
            }),
          2,
        );
        next.verifier = Buffer.from(verifier);
        ctx.assertOpen();
        // The commit point: from here the tenant is the new file under the new key.
        rekeyed = ctx.registry.replaceKey(tenantId, next);
      } catch (error) {
        this.#removeFiles(next, true);
        throw error;
      }
      this.#removeFiles(record);
      return toInfo(rekeyed);
    });
  }

  /**
   * Writes one self-contained file with the tenant's records (with tags), keys, routes and settings,
   * encrypted and authenticated under `exportKey` (32 bytes, or a passphrase through Argon2id). The
   * pool keeps serving: the snapshot is one read on the tenant's worker, so it is consistent while
   * sessions go on writing. A passphrase tenant needs its `passphrase` (or the pool's provider).
   * The file is written atomically, mode 0600; it holds private keys, sealed: keep `exportKey` apart.
   */
  async export(tenantId: string, options: ExportOptions): Promise<{ file: string; bytes: number; records: number; keys: number }> {
    const ctx = this.#ctx;
    const record = this.#record(tenantId);
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (!['file', 'exportKey', 'passphrase'].includes(key)) invalid(`Unknown option \`${key}\` for tenants.export; known: file, exportKey, passphrase`);
    const file = resolve(checkName(opts['file'], 'file'));
    const exportKey = checkExportKey(opts['exportKey']);
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    const result = await ctx.withSession(record.tenantId, passphrase, async (session) => {
      const current = this.#record(tenantId);
      const tenant: ExportedTenant = {
        tenantId: current.tenantId,
        ...(current.label === undefined ? {} : { label: current.label }),
        ...(current.maxSessions === undefined ? {} : { maxSessions: current.maxSessions }),
        ...(current.weights === undefined ? {} : { weights: current.weights }),
        metadata: current.metadata,
        createdAt: current.createdAt,
        routes: ctx.registry.routesOf(current.tenantId),
      };
      return session.call('exportWallet', file, exportKey, tenant);
    });
    return { file, ...result };
  }

  /**
   * Recreates an exported tenant in this pool: its records, keys (which still sign for their public
   * keys), settings and routes (those no other tenant here routes). It becomes `tenantId` (default:
   * the exported id), a passphrase tenant if `passphrase` is given (Argon2, `kdf` default
   * `argon2i-mod`), else a managed one. A wrong `exportKey` is `ERR_WALLET_KEY_INVALID`, a damaged or
   * truncated file `ERR_WALLET_CORRUPT`; either way nothing is imported.
   * @throws ERR_TENANT_EXISTS, ERR_WALLET_KEY_INVALID, ERR_WALLET_CORRUPT, ERR_INVALID_ARGUMENT
   */
  async import(file: string, options: ImportOptions): Promise<TenantInfo & { records: number; keys: number }> {
    const ctx = this.#ctx;
    ctx.assertOpen();
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (!['exportKey', 'tenantId', 'passphrase', 'kdf'].includes(key)) invalid(`Unknown option \`${key}\` for tenants.import; known: exportKey, tenantId, passphrase, kdf`);
    const path = resolve(checkName(file, 'file'));
    const exportKey = checkExportKey(opts['exportKey']);
    const tenantId = opts['tenantId'] === undefined ? checkTenantId(readExportedTenantId(path), 'the exported tenantId') : checkTenantId(opts['tenantId']);
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    const kdf = (opts['kdf'] as KdfMethod | undefined) ?? (passphrase === undefined ? ctx.defaultKdf : DEFAULT_PASSPHRASE_KDF);
    if (!KDF_METHODS.includes(kdf)) invalid(`Expected \`kdf\` to be one of ${KDF_METHODS.join(', ')}`);
    if (passphrase !== undefined && kdf === 'raw') invalid("Expected `kdf` to be an Argon2 method with a passphrase: 'raw' does no stretching");
    return ctx.wallets.exclusive(tenantId, async () => {
      if (ctx.registry.has(tenantId)) throw poolError('ERR_TENANT_EXISTS', `tenant ${tenantId} already exists`, undefined, { tenantId });
      ctx.assertOpen();
      const salt = randomBytes(16);
      const secret = passphrase === undefined ? randomBytes(32) : null;
      const walletFile = newWalletFile(tenantId);
      const worker = ctx.workers[rankWorkers(tenantId, ctx.workers.length)[0] ?? 0]!;
      let imported: ReturnType<WorkerApi['importWallet']>;
      try {
        imported = await ctx.wallets.derive(kdf, async () => worker.call('importWallet', { tenantId, path: ctx.walletPath({ walletFile }), kdf, salt, secret: secret ?? passphrase ?? '', file: path, exportKey }));
      } catch (error) {
        this.#removeFiles({ tenantId, walletFile }, true);
        throw error;
      }
      const settings = imported.tenant;
      let record: TenantRecord;
      try {
        // Settings from the file are checked like a create's (a pool with a smaller capacity may refuse its weights).
        record = {
          tenantId,
          ...(typeof settings.label === 'string' ? { label: checkName(settings.label, 'label') } : {}),
          kdf,
          salt,
          secret,
          verifier: Buffer.from(imported.verifier),
          walletFile,
          ...(settings.maxSessions === undefined ? {} : { maxSessions: checkMaxSessions(settings.maxSessions) }),
          ...(settings.weights === undefined ? {} : { weights: this.#checkFits(checkWeights(settings.weights)) }),
          metadata: checkTags(settings.metadata, 'metadata'),
          createdAt: new Date().toISOString(),
          };
        ctx.assertOpen();
        ctx.registry.insert(record);
      } catch (error) {
        this.#removeFiles({ tenantId, walletFile }, true);
        throw error;
      }
      // Routes another tenant of this pool already has stay with it.
      for (const publicKey of settings.routes) if (typeof publicKey === 'string' && ctx.registry.routeOf(publicKey) === undefined) ctx.registry.addRoute(publicKey, tenantId);
      return { ...toInfo(record), records: imported.records, keys: imported.keys };
    });
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
      const record = this.#record(tenantId);
      // The commit point: once the row is gone the tenant is gone; if this write fails, nothing changed.
      ctx.registry.delete(tenantId);
      await ctx.wallets.closeForce(tenantId, 'delete', ctx.revoke);
      this.#removeFiles(record);
    });
    ctx.onDeleted(tenantId);
  }

  /** Removes a wallet's files; what cannot be removed now (an unwritable folder) is left to the next open's sweep. */
  #removeFiles(record: Pick<TenantRecord, 'tenantId' | 'walletFile'>, isQuiet = false): void {
    try {
      removeWalletFiles(this.#ctx.walletPath(record));
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

  #record(tenantId: string): TenantRecord {
    this.#ctx.assertOpen();
    const record = this.#ctx.registry.get(checkTenantId(tenantId));
    if (record === undefined) throw poolError('ERR_TENANT_NOT_FOUND', `no tenant ${tenantId}`, undefined, { tenantId });
    return record;
  }
}

export function removeWalletFiles(path: string): void {
  for (const suffix of ['-wal', '-shm', '-journal', '.creating', '.creating-journal', '']) rmSync(path + suffix, { force: true });
}
