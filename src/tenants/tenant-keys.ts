/**
 * A tenant's key and its portability: `rekey` writes the wallet anew under a new key (the registry
 * row is the commit point), `export` seals the wallet and settings in one file, `import` recreates
 * a tenant from one. Part of `pool.tenants`.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { readExportedTenantId, type ExportedTenant } from '../../common/export-format.js';
import { poolError } from '../../common/errors.js';
import { rankWorkers } from '../engine/placement.js';
import { KDF_METHODS, type KdfMethod, type WorkerApi } from '../../common/protocol.js';
import type { KdfParams } from '../../common/kdf.js';
import type { TenantRecord, TenantWeights } from '../store/tenant-store.js';
import { checkMaxSessions, checkPassphrase, checkWeights, DEFAULT_PASSPHRASE_KDF, toInfo, type TenantInfo, type TenantsContext } from './tenants-base.js';
import { checkBytes, checkName, checkOptionalObject, checkTags, checkTenantId, invalid } from '../../common/validate.js';

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
    return checkBytes(value, 'exportKey');
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
  /**
   * PostgreSQL: also rotate the data key — the wallet is written anew under a new profile key, every
   * row encrypted again, so the old secret with an old backup of the database opens nothing written
   * after the rekey. Without it, a PostgreSQL rekey rewraps the profile key only (fast; the rows are
   * not touched). SQLite always writes the wallet anew under the new key. @default false
   */
  rotateDataKey?: boolean;
}

/** What the key operations need of `pool.tenants`. */
export interface TenantHelpers {
  /** The tenant now. @throws ERR_TENANT_NOT_FOUND, ERR_POOL_CLOSED */
  record(tenantId: string): Promise<TenantRecord>;
  /** Removes a wallet no tenant names (warns unless `isQuiet` when it cannot). */
  removeWallet(record: Pick<TenantRecord, 'tenantId' | 'walletFile'>, isQuiet?: boolean): Promise<void>;
  /** @throws ERR_INVALID_ARGUMENT when the weights cannot fit the pool's capacity */
  checkFits(weights: TenantWeights): TenantWeights;
}

/** The method that re-derives a passphrase tenant's key before its wallet opens (the pool's, not a host's). */
export const kRehash = Symbol('tenant-pool.rehash');

export class TenantKeys {
  readonly #ctx: TenantsContext;
  readonly #helpers: TenantHelpers;

  constructor(ctx: TenantsContext, helpers: TenantHelpers) {
    this.#ctx = ctx;
    this.#helpers = helpers;
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
    for (const key of Object.keys(opts)) if (!['passphrase', 'newPassphrase', 'kdf', 'rotateDataKey'].includes(key)) invalid(`Unknown option \`${key}\` for tenants.rekey; known: passphrase, newPassphrase, kdf, rotateDataKey`);
    if (opts['rotateDataKey'] !== undefined && typeof opts['rotateDataKey'] !== 'boolean') invalid('Expected `rotateDataKey` to be a boolean');
    const rotateDataKey = opts['rotateDataKey'] === true;
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    const given = opts['newPassphrase'] === undefined ? undefined : checkPassphrase(opts['newPassphrase']);
    if (opts['kdf'] !== undefined && !KDF_METHODS.includes(opts['kdf'] as KdfMethod)) invalid(`Expected \`kdf\` to be one of ${KDF_METHODS.join(', ')}, got ${JSON.stringify(opts['kdf'])}`);
    return ctx.wallets.exclusive(tenantId, async () => {
      const record = await this.#helpers.record(tenantId);
      if (record.secret === null && passphrase === undefined) throw poolError('ERR_WALLET_KEY_INVALID', `tenant ${tenantId} needs its current passphrase to be rekeyed`, undefined, { tenantId });
      if (record.secret !== null && passphrase !== undefined) invalid(`tenant ${tenantId} is managed: rekey it without a passphrase`);
      // A passphrase tenant keeps its passphrase unless given a new one; a managed tenant gets a new secret.
      const newPassphrase = given ?? (record.secret === null ? passphrase : undefined);
      const fallback: KdfMethod = newPassphrase !== undefined && record.kdf === 'raw' ? DEFAULT_PASSPHRASE_KDF : record.kdf;
      const kdf = (opts['kdf'] as KdfMethod | undefined) ?? fallback;
      if (newPassphrase !== undefined && kdf === 'raw') invalid("Expected `kdf` to be an Argon2 method with a passphrase: 'raw' does no stretching");
      ctx.assertOpen();
      const unclaim = await ctx.claim?.(tenantId);
      try {
        return await this.#rekeyClaimed(record, kdf, newPassphrase, passphrase, rotateDataKey);
      } finally {
        await unclaim?.();
      }
    });
  }

  /** The rekey itself, with the tenant's critical section (and, in cluster mode, its lease) held. */
  async #rekeyClaimed(record: TenantRecord, kdf: KdfMethod, newPassphrase: string | undefined, passphrase: string | undefined, rotateDataKey: boolean): Promise<TenantInfo> {
    const ctx = this.#ctx;
    await ctx.wallets.closeForce(record.tenantId, 'rekey', ctx.revokeForRekey);
    ctx.wallets.forgetKeys(record.tenantId);
    ctx.onRekeyed(record.tenantId);
    return toInfo(await this.#rewrite(record, kdf, ctx.paramsFor(kdf), newPassphrase, passphrase, rotateDataKey));
  }

  /**
   * Re-derives a passphrase tenant's key to `params` under the same passphrase, before its wallet
   * opens (the pool's open holds the tenant's critical section and, in cluster mode, its lease; no
   * session is on it). Crash-safe as a rekey is. Returns the tenant as it is now.
   */
  async [kRehash](record: TenantRecord, passphrase: string, target: { kdf: KdfMethod; params: KdfParams }): Promise<TenantRecord> {
    return this.#rewrite(record, target.kdf, target.params, passphrase, passphrase, false);
  }

  /** Writes the wallet under new key material and records it (the commit point); the wallet is not open. */
  async #rewrite(record: TenantRecord, kdf: KdfMethod, newParams: KdfParams | undefined, newPassphrase: string | undefined, passphrase: string | undefined, rotateDataKey: boolean): Promise<TenantRecord> {
    const ctx = this.#ctx;
    const tenantId = record.tenantId;
    const salt = randomBytes(16);
    const secret = newPassphrase === undefined ? randomBytes(32) : null;
    // SQLite writes the wallet anew to a new file; PostgreSQL keeps it and rewraps its profile key, or
    // (rotating the data key) writes it anew as a new wallet, as SQLite does.
    const inPlace = ctx.store.rekeysInPlace && !rotateDataKey;
    const walletFile = inPlace ? record.walletFile : ctx.store.newWalletName(tenantId);
    const { kdfParams: _old, ...rest } = record;
    const next: TenantRecord = { ...rest, kdf, ...(newParams === undefined ? {} : { kdfParams: newParams }), salt, secret, walletFile, verifier: Buffer.alloc(0) };
    const worker = ctx.workers[rankWorkers(tenantId, ctx.workers.length)[0] ?? 0]!;
    let rekeyed: TenantRecord;
    try {
      const { verifier, profileKey } = await ctx.wallets.derive(
        record.kdf === 'raw' ? kdf : record.kdf,
        async () =>
          worker.call('rekeyWallet', {
            tenantId,
            path: ctx.walletPath(record),
            kdf: record.kdf,
            ...(record.kdfParams === undefined ? {} : { params: record.kdfParams }),
            salt: record.salt,
            secret: record.secret ?? passphrase ?? '',
            verifier: record.verifier,
            newPath: ctx.walletPath(next),
            newKdf: kdf,
            ...(newParams === undefined ? {} : { newParams }),
            newSalt: salt,
            newSecret: secret ?? newPassphrase ?? '',
            ...(rotateDataKey ? { rotateDataKey } : {}),
          }),
        2,
      );
      next.verifier = Buffer.from(verifier);
      ctx.assertOpen();
      // The commit point: from here the tenant is the new file under the new key.
      rekeyed = await ctx.store.replaceKey(tenantId, next, profileKey);
    } catch (error) {
      if (!inPlace) await this.#helpers.removeWallet(next, true);
      throw error;
    }
    if (!inPlace) await this.#helpers.removeWallet(record);
    return rekeyed;
  }

  /**
   * Writes one self-contained file with the tenant's records (with tags), keys, routes and settings,
   * encrypted and authenticated under `exportKey` (32 bytes, or a passphrase through Argon2id). The
   * pool keeps serving: the snapshot is one read on the tenant's worker, so it is consistent while
   * sessions go on writing. A passphrase tenant needs its `passphrase` (or the pool's provider).
   * The file is written atomically, mode 0600; it holds private keys, sealed: keep `exportKey` apart.
   */
  async export(tenantId: string, options: ExportOptions): Promise<{ file: string; bytes: number; records: number; keys: number; digest: string }> {
    const ctx = this.#ctx;
    const record = await this.#helpers.record(tenantId);
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (!['file', 'exportKey', 'passphrase'].includes(key)) invalid(`Unknown option \`${key}\` for tenants.export; known: file, exportKey, passphrase`);
    const file = resolve(checkName(opts['file'], 'file'));
    const exportKey = checkExportKey(opts['exportKey']);
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    const result = await ctx.withSession(record.tenantId, passphrase, async (session) => {
      const current = await this.#helpers.record(tenantId);
      // The keys of its wallet that route to it (a store may keep only a hash of each routed key).
      const keys = await session.call('keysList');
      const routeOwners = await Promise.all(keys.map(async (k) => ctx.store.routeOf(k.publicKey)));
      const tenant: ExportedTenant = {
        tenantId: current.tenantId,
        ...(current.label === undefined ? {} : { label: current.label }),
        ...(current.maxSessions === undefined ? {} : { maxSessions: current.maxSessions }),
        ...(current.weights === undefined ? {} : { weights: current.weights }),
        metadata: current.metadata,
        createdAt: current.createdAt,
        routes: keys.filter((_, i) => routeOwners[i] === current.tenantId).map((k) => k.publicKey),
      };
      return session.call('exportWallet', file, exportKey, tenant);
    });
    return { file, ...result };
  }

  /**
   * A digest of the tenant's wallet content — every record (category, id, value, tags) and every key —
   * with its counts, from one consistent read on the tenant's worker: equal content gives an equal
   * digest on any store. What `migrateTenants` compares between source and target; nothing of the
   * content can be learned from it. A passphrase tenant needs its `passphrase`.
   */
  async digest(tenantId: string, options: { passphrase?: string } = {}): Promise<{ digest: string; records: number; keys: number }> {
    const record = await this.#helpers.record(tenantId);
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (key !== 'passphrase') invalid(`Unknown option \`${key}\` for tenants.digest; known: passphrase`);
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    return this.#ctx.withSession(record.tenantId, passphrase, async (session) => session.call('digestWallet'));
  }

  /**
   * Checks the tenant's wallet whole, changing nothing: it opens with its key (the key check), its
   * storage passes an integrity check (SQLite: every page under its authentication tag), and every
   * record and key decrypts. A passphrase tenant needs its `passphrase`.
   * @throws ERR_WALLET_CORRUPT naming what failed, ERR_WALLET_KEY_INVALID, ERR_FORMAT_TOO_NEW
   */
  async verify(tenantId: string, options: { passphrase?: string } = {}): Promise<{ digest: string; records: number; keys: number; bytes: number }> {
    const record = await this.#helpers.record(tenantId);
    const opts = checkOptionalObject(options, 'options');
    for (const key of Object.keys(opts)) if (key !== 'passphrase') invalid(`Unknown option \`${key}\` for tenants.verify; known: passphrase`);
    const passphrase = opts['passphrase'] === undefined ? undefined : checkPassphrase(opts['passphrase']);
    return this.#ctx.withSession(record.tenantId, passphrase, async (session) => session.call('checkWallet'));
  }

  /**
   * Recreates an exported tenant in this pool: its records, keys (which still sign for their public
   * keys), settings and routes (only of keys its wallet holds, and none another tenant here routes: that is `ERR_ROUTE_CONFLICT`, and nothing is imported). It becomes `tenantId` (default:
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
      if ((await ctx.store.get(tenantId)) !== undefined) throw poolError('ERR_TENANT_EXISTS', `tenant ${tenantId} already exists`, undefined, { tenantId });
      ctx.assertOpen();
      const salt = randomBytes(16);
      const secret = passphrase === undefined ? randomBytes(32) : null;
      const walletFile = ctx.store.newWalletName(tenantId);
      const worker = ctx.workers[rankWorkers(tenantId, ctx.workers.length)[0] ?? 0]!;
      const kdfParams = ctx.paramsFor(kdf);
      let imported: ReturnType<WorkerApi['importWallet']>;
      try {
        imported = await ctx.wallets.derive(kdf, async () =>
          worker.call('importWallet', { tenantId, path: ctx.walletPath({ walletFile }), kdf, ...(kdfParams === undefined ? {} : { params: kdfParams }), salt, secret: secret ?? passphrase ?? '', file: path, exportKey }),
        );
      } catch (error) {
        await this.#helpers.removeWallet({ tenantId, walletFile }, true);
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
          ...(kdfParams === undefined ? {} : { kdfParams }),
          salt,
          secret,
          verifier: Buffer.from(imported.verifier),
          walletFile,
          ...(settings.maxSessions === undefined ? {} : { maxSessions: checkMaxSessions(settings.maxSessions) }),
          ...(settings.weights === undefined ? {} : { weights: this.#helpers.checkFits(checkWeights(settings.weights)) }),
          metadata: checkTags(settings.metadata, 'metadata'),
          // The same tenant, moved: it keeps its creation time.
          createdAt: typeof settings.createdAt === 'string' && settings.createdAt.length <= 64 && !Number.isNaN(Date.parse(settings.createdAt)) ? settings.createdAt : new Date().toISOString(),
          };
        ctx.assertOpen();
        // Its routes are the keys its wallet holds (checked on the worker); one another tenant here routes refuses the import (ERR_ROUTE_CONFLICT).
        await ctx.store.insert(record, Array.isArray(settings.routes) ? settings.routes.map((k, i) => checkName(k, `routes[${i}]`)) : []);
      } catch (error) {
        await this.#helpers.removeWallet({ tenantId, walletFile }, true);
        throw error;
      }
      return { ...toInfo(record), records: imported.records, keys: imported.keys };
    });
  }
}
