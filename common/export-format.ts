/**
 * Export files: one tenant's wallet and settings in one self-contained file, encrypted and
 * authenticated under an export key (32 raw bytes, or a passphrase through Argon2id). Written and
 * read in the worker, so private keys are only ever in plain text there, never on the main thread.
 *
 * Layout: the line `tenant-pool export <format>`, a JSON header line (KDF and, from format 2, its
 * Argon2 parameters, salt, nonce and a check value of the export key), then the payload (JSON) sealed with ChaCha20-Poly1305, the header lines as
 * associated data and the 16-byte tag last. A wrong key fails the check value
 * (`ERR_WALLET_KEY_INVALID`); any changed or missing byte fails the tag (`ERR_WALLET_CORRUPT`).
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { asPoolError, poolError } from './errors.js';
import { fsyncDir } from './fs.js';
import { checkKdfParams, CURRENT_KDF_PARAMS, deriveKey, KDF_PARAMS_V1, type KdfParams } from './kdf.js';
import { EXPORT_FORMAT, formatTooNew } from './formats.js';

/** The first line of an export file, with its format. */
const MAGIC_PREFIX = 'tenant-pool export ';
const MAGIC = `${MAGIC_PREFIX}${EXPORT_FORMAT}\n`;

/**
 * The format of an export file from its first bytes: a number, or undefined when it is no export.
 * @throws ERR_FORMAT_TOO_NEW for a later release's file
 */
function formatOf(bytes: Buffer, file: string): { format: number; headerAt: number } | undefined {
  const eol = bytes.indexOf(0x0a);
  if (eol < 0 || eol > 40) return undefined;
  const line = bytes.subarray(0, eol).toString('latin1');
  const match = /^tenant-pool export ([1-9][0-9]{0,5})$/.exec(line);
  if (match === null) return undefined;
  const format = Number(match[1]);
  if (format > EXPORT_FORMAT) throw formatTooNew(`the export file ${file}`, format, EXPORT_FORMAT);
  return { format, headerAt: eol + 1 };
}
const TAG_BYTES = 16;
/** Largest export file read back (the payload is held in memory). */
const MAX_EXPORT_BYTES = 2 ** 30;

/** What an export holds besides the wallet's rows: the tenant's settings and routes, as the registry had them. */
export interface ExportedTenant {
  tenantId: string;
  label?: string;
  maxSessions?: number;
  weights?: { wallet?: number; session?: number };
  metadata: Record<string, string>;
  createdAt: string;
  /** Public keys that routed inbound messages to the tenant. */
  routes: string[];
}

/** The wallet's contents, as `Wallet.snapshot()` gives them. */
export interface WalletSnapshot {
  records: Array<[category: string, id: string, value: string, tags: string]>;
  /** Private keys as PKCS#8 DER, base64. */
  keys: Array<{ kid: string; publicKey: string; privateKey: string; createdAt: string }>;
}

/** A tenant's wallet content as a digest (see {@link walletDigest}), with its counts. */
export interface WalletDigest {
  digest: string;
  records: number;
  keys: number;
}

/** A JSON value with every object's keys sorted: equal content, equal text. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
  );
}

/**
 * SHA-256 over every record (category, id, value, tags) and every key (kid, public key, private
 * key, creation time) of a wallet, in a canonical order and encoding: two wallets with the same
 * content have the same digest, whichever store holds them and in whatever order they were
 * written. It says nothing of the content but whether it is equal.
 */
export function walletDigest(snapshot: WalletSnapshot): WalletDigest {
  const hash = createHash('sha256').update('tenant-pool wallet digest v1\n');
  const records = snapshot.records
    .map(([category, id, value, tags]) => JSON.stringify([category, id, canonical(JSON.parse(value)), canonical(JSON.parse(tags))]))
    .sort();
  for (const line of records) hash.update(`r${line}\n`);
  const keys = snapshot.keys.map((k) => JSON.stringify([k.kid, k.publicKey, k.privateKey, k.createdAt])).sort();
  for (const line of keys) hash.update(`k${line}\n`);
  return { digest: hash.digest('hex'), records: records.length, keys: keys.length };
}

export interface ExportPayload {
  tenant: ExportedTenant;
  wallet: WalletSnapshot;
}

interface Header {
  kdf: 'raw' | 'argon2id';
  /** Format 2: the Argon2 parameters of a passphrase export key (format 1 used the level's format-1 ones). */
  params?: KdfParams;
  salt: string;
  nonce: string;
  check: string;
  tenantId: string;
  exportedAt: string;
}

/** An export key as the caller gave it: 32 bytes, or a passphrase. */
export type ExportKey = Uint8Array | string;

async function keyOf(exportKey: ExportKey, kdf: Header['kdf'], salt: Buffer, params: KdfParams | undefined): Promise<Buffer> {
  if (kdf === 'raw') return Buffer.from(hkdfSync('sha256', exportKey as Uint8Array, salt, 'tenant-pool export key v1', 32));
  return deriveKey('argon2id', exportKey, salt, params ?? KDF_PARAMS_V1.argon2id);
}

function checkValue(key: Uint8Array): string {
  return createHmac('sha256', key).update('tenant-pool export key check v1').digest('hex');
}

/** Seals `payload` under `exportKey` and writes it to `file` atomically (temporary file, fsync, rename), mode 0600. */
export async function writeExport(file: string, exportKey: ExportKey, payload: ExportPayload): Promise<{ bytes: number }> {
  const salt = randomBytes(16);
  const kdf: Header['kdf'] = typeof exportKey === 'string' ? 'argon2id' : 'raw';
  const params = kdf === 'raw' ? undefined : CURRENT_KDF_PARAMS.argon2id;
  const key = await keyOf(exportKey, kdf, salt, params);
  const plaintext = Buffer.from(JSON.stringify(payload), 'utf8');
  try {
    const nonce = randomBytes(12);
    const header: Header = { kdf, ...(params === undefined ? {} : { params }), salt: salt.toString('hex'), nonce: nonce.toString('hex'), check: checkValue(key), tenantId: payload.tenant.tenantId, exportedAt: new Date().toISOString() };
    const head = Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`, 'utf8');
    const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(head, { plaintextLength: plaintext.length });
    const sealed = Buffer.concat([head, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    const temp = `${file}.tmp-${process.pid}`;
    try {
      const fd = openSync(temp, 'w', 0o600);
      try {
        writeSync(fd, sealed);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, file);
      fsyncDir(dirname(file));
    } catch (error) {
      rmSync(temp, { force: true });
      throw asPoolError(error, `cannot write the export file ${file}`);
    }
    return { bytes: sealed.length };
  } finally {
    key.fill(0);
    plaintext.fill(0);
  }
}

/** The tenant id an export file names in its header (no key needed; the id is not secret). */
export function readExportedTenantId(file: string): string {
  let head: Buffer;
  try {
    const fd = openSync(file, 'r');
    try {
      head = Buffer.alloc(4096);
      head = head.subarray(0, readSync(fd, head, 0, head.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw asPoolError(error, `cannot read the export file ${file}`);
  }
  const at = formatOf(head, file);
  const end = at === undefined ? -1 : head.indexOf(0x0a, at.headerAt);
  try {
    if (at === undefined || end < 0) throw new Error('not an export');
    const { tenantId } = JSON.parse(head.subarray(at.headerAt, end).toString('utf8')) as { tenantId?: unknown };
    if (typeof tenantId !== 'string') throw new Error('no tenant id');
    return tenantId;
  } catch {
    throw poolError('ERR_WALLET_CORRUPT', `the export file ${file} is damaged or truncated: its header cannot be read`);
  }
}

/** Reads and opens an export file. @throws ERR_WALLET_KEY_INVALID for a wrong key, ERR_WALLET_CORRUPT for a damaged or truncated file */
export async function readExport(file: string, exportKey: ExportKey): Promise<ExportPayload> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw asPoolError(error, `cannot read the export file ${file}`);
  }
  const damaged = (why: string): never => {
    throw poolError('ERR_WALLET_CORRUPT', `the export file ${file} is damaged or truncated: ${why}`);
  };
  if (bytes.length > MAX_EXPORT_BYTES) damaged('larger than any export');
  const at = formatOf(bytes, file) ?? damaged('it does not start as an export file');
  const end = bytes.indexOf(0x0a, at.headerAt);
  if (end < 0) damaged('no header');
  let header: Header;
  try {
    header = JSON.parse(bytes.subarray(at.headerAt, end).toString('utf8')) as Header;
  } catch {
    return damaged('the header is not JSON');
  }
  if ((header.kdf !== 'raw' && header.kdf !== 'argon2id') || !/^[0-9a-f]{32}$/.test(header.salt) || !/^[0-9a-f]{24}$/.test(header.nonce) || !/^[0-9a-f]{64}$/.test(header.check)) damaged('the header is malformed');
  // Format 2 records the Argon2 parameters of a passphrase key; format 1 derived it with the format-1 ones.
  let params: KdfParams | undefined;
  if (header.kdf === 'argon2id') {
    params = at.format >= 2 ? checkKdfParams(header.params) : KDF_PARAMS_V1.argon2id;
    if (params === undefined) damaged('the header is malformed');
  }
  if (header.kdf === 'raw' ? typeof exportKey === 'string' : typeof exportKey !== 'string') {
    throw poolError('ERR_WALLET_KEY_INVALID', `the export file ${file} was sealed with ${header.kdf === 'raw' ? 'a 32-byte key' : 'a passphrase'}; give the same kind of exportKey`);
  }
  const key = await keyOf(exportKey, header.kdf, Buffer.from(header.salt, 'hex'), params);
  try {
    const check = Buffer.from(checkValue(key), 'hex');
    if (!timingSafeEqual(check, Buffer.from(header.check, 'hex'))) throw poolError('ERR_WALLET_KEY_INVALID', `the exportKey does not open the export file ${file}`);
    const body = bytes.subarray(end + 1);
    if (body.length < TAG_BYTES) damaged('it ends before its payload');
    const decipher = createDecipheriv('chacha20-poly1305', key, Buffer.from(header.nonce, 'hex'), { authTagLength: TAG_BYTES });
    decipher.setAAD(bytes.subarray(0, end + 1), { plaintextLength: body.length - TAG_BYTES });
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]);
    } catch {
      return damaged('its contents fail their integrity check');
    }
    try {
      return checkPayload(JSON.parse(plaintext.toString('utf8')) as unknown) ?? damaged('its contents are not an export');
    } finally {
      plaintext.fill(0);
    }
  } finally {
    key.fill(0);
  }
}

/** The payload if it has the shape of one (sealed by a writer of this format), else undefined. */
function checkPayload(value: unknown): ExportPayload | undefined {
  const p = value as Partial<ExportPayload> | null;
  if (p === null || typeof p !== 'object' || typeof p.tenant !== 'object' || typeof p.wallet !== 'object' || p.tenant === null || p.wallet === null) return undefined;
  const { tenant, wallet } = p;
  if (typeof tenant.tenantId !== 'string' || !Array.isArray(tenant.routes) || typeof tenant.metadata !== 'object') return undefined;
  if (!Array.isArray(wallet.records) || !Array.isArray(wallet.keys)) return undefined;
  if (!wallet.records.every((r) => Array.isArray(r) && r.length === 4 && r.every((x) => typeof x === 'string'))) return undefined;
  if (!wallet.keys.every((k) => typeof k.kid === 'string' && typeof k.publicKey === 'string' && typeof k.privateKey === 'string' && typeof k.createdAt === 'string')) return undefined;
  return p as ExportPayload;
}
