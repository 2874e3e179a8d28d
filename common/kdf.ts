/**
 * Wallet key derivation. Wallet keys are derived in the worker threads: the Argon2 variants take
 * 100–700 ms of a core, and `hashRaw` runs them on the libuv thread pool, so the worker keeps
 * answering its other tenants while a derivation is under way. The main thread derives only the
 * root key, once at open.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { hashRaw, type Algorithm, type Options, type Version } from '@node-rs/argon2';

/** How a wallet key is derived from a tenant's secret or passphrase. */
export type KdfMethod = 'raw' | 'argon2i-int' | 'argon2i-mod' | 'argon2id';
export const KDF_METHODS: readonly KdfMethod[] = ['raw', 'argon2i-int', 'argon2i-mod', 'argon2id'];

/** Salt length for every method, as Askar uses. */
export const SALT_BYTES = 16;
/** Wallet keys are 32 bytes, passed raw to the ChaCha20 cipher. */
export const KEY_BYTES = 32;

// @node-rs/argon2 declares its enums `const`, which isolated modules cannot inline.
const ARGON2I = 1 as Algorithm;
const ARGON2ID = 2 as Algorithm;
const V0X13 = 1 as Version;

/** An Argon2 level (every method but `raw`). */
export type Argon2Method = Exclude<KdfMethod, 'raw'>;

/**
 * The parameters of one Argon2 derivation, recorded with each tenant (format 2), so that a change of
 * a level's defaults in a later release never strands a tenant: it keeps opening with what it was
 * derived with, and is re-derived to the new defaults at its next open with its passphrase.
 */
export interface KdfParams {
  readonly algorithm: 'argon2i' | 'argon2id';
  /** Memory, in KiB. */
  readonly memoryKiB: number;
  /** Passes over the memory (Argon2's time cost). */
  readonly passes: number;
  /** Parallelism. */
  readonly lanes: number;
  /** Argon2's version: 19 (0x13). */
  readonly version: 19;
}

/**
 * What format 1 (release 0.1.0) derived each level with — Askar's parameters for the `argon2i`
 * levels, RFC 9106's second option at parallelism 1 for `argon2id`. A tenant recorded without
 * parameters was derived with these. Never change them: change {@link CURRENT_KDF_PARAMS}.
 */
export const KDF_PARAMS_V1: Readonly<Record<Argon2Method, KdfParams>> = Object.freeze({
  'argon2i-int': Object.freeze({ algorithm: 'argon2i', memoryKiB: 32_768, passes: 4, lanes: 1, version: 19 }),
  'argon2i-mod': Object.freeze({ algorithm: 'argon2i', memoryKiB: 131_072, passes: 6, lanes: 1, version: 19 }),
  argon2id: Object.freeze({ algorithm: 'argon2id', memoryKiB: 65_536, passes: 3, lanes: 1, version: 19 }),
});

/** Each level's parameters for keys derived now: new tenants, rekeys, imports, and the re-derivation of weaker ones. */
export const CURRENT_KDF_PARAMS: Readonly<Record<Argon2Method, KdfParams>> = KDF_PARAMS_V1;

/** Bounds of parameters read from a store: outside them the record is damage (or tampering), never a 4 TiB allocation. */
const MAX_MEMORY_KIB = 4 * 1024 * 1024;
const MAX_PASSES = 64;
const MAX_LANES = 16;

/** Parameters as a store gave them, checked; `undefined` when they are not parameters this code derives with. */
export function checkKdfParams(value: unknown): KdfParams | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const int = (x: unknown, min: number, max: number): x is number => typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;
  if ((v['algorithm'] !== 'argon2i' && v['algorithm'] !== 'argon2id') || v['version'] !== 19) return undefined;
  if (!int(v['memoryKiB'], 8, MAX_MEMORY_KIB) || !int(v['passes'], 1, MAX_PASSES) || !int(v['lanes'], 1, MAX_LANES) || v['memoryKiB'] < 8 * v['lanes']) return undefined;
  return Object.freeze({ algorithm: v['algorithm'], memoryKiB: v['memoryKiB'], passes: v['passes'], lanes: v['lanes'], version: 19 });
}

/** Whether `params` cost a guesser less than `than` in memory or in passes (a re-derivation makes them `than`). */
export function isWeaker(params: KdfParams, than: KdfParams): boolean {
  return params.algorithm !== than.algorithm || params.memoryKiB < than.memoryKiB || params.passes < than.passes;
}

/** The same parameters, compared field by field. */
export function sameParams(a: KdfParams | undefined, b: KdfParams | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.algorithm === b.algorithm && a.memoryKiB === b.memoryKiB && a.passes === b.passes && a.lanes === b.lanes && a.version === b.version);
}

/** For the bench: `@node-rs/argon2` options of each level's current parameters. */
export const ARGON2_PARAMS: Readonly<Record<Argon2Method, Options>> = Object.freeze({
  'argon2i-int': argon2Options(CURRENT_KDF_PARAMS['argon2i-int']),
  'argon2i-mod': argon2Options(CURRENT_KDF_PARAMS['argon2i-mod']),
  argon2id: argon2Options(CURRENT_KDF_PARAMS.argon2id),
});

function argon2Options(params: KdfParams): Options {
  return { algorithm: params.algorithm === 'argon2i' ? ARGON2I : ARGON2ID, version: V0X13, memoryCost: params.memoryKiB, timeCost: params.passes, parallelism: params.lanes, outputLen: KEY_BYTES };
}

/**
 * Derives a 32-byte wallet key from a tenant's secret and salt.
 * `raw` does no stretching (HKDF-SHA256 only): it is for managed tenants, whose secret is 32 random
 * bytes. An Argon2 method derives with `params`, or (a record of format 1) the level's format-1 parameters.
 */
export async function deriveKey(method: KdfMethod, secret: Uint8Array | string, salt: Uint8Array, params?: KdfParams): Promise<Buffer> {
  if (method === 'raw') {
    const ikm = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
    return Buffer.from(hkdfSync('sha256', ikm, salt, 'tenant-pool wallet key v1', KEY_BYTES));
  }
  return hashRaw(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret, { ...argon2Options(params ?? KDF_PARAMS_V1[method]), salt });
}

/**
 * The key check value kept in the registry: tells a wrong key from a damaged file without touching
 * the file. For a passphrase tenant it costs a guesser one full derivation per guess, since the
 * passphrase reaches it only through Argon2.
 */
export function keyVerifier(key: Uint8Array): Buffer {
  return createHmac('sha256', key).update('tenant-pool key check v1').digest();
}
