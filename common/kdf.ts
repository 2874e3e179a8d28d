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

/** Askar's parameters: memory in KiB, passes; Argon2 v0x13, parallelism 1, 32-byte output. */
export const ARGON2_PARAMS: Readonly<Record<Exclude<KdfMethod, 'raw'>, Options>> = Object.freeze({
  'argon2i-int': { algorithm: ARGON2I, version: V0X13, memoryCost: 32_768, timeCost: 4, parallelism: 1, outputLen: KEY_BYTES },
  'argon2i-mod': { algorithm: ARGON2I, version: V0X13, memoryCost: 131_072, timeCost: 6, parallelism: 1, outputLen: KEY_BYTES },
  // RFC 9106's second recommended option, at parallelism 1 so one derivation holds one core.
  argon2id: { algorithm: ARGON2ID, version: V0X13, memoryCost: 65_536, timeCost: 3, parallelism: 1, outputLen: KEY_BYTES },
});

/**
 * Derives a 32-byte wallet key from a tenant's secret and salt.
 * `raw` does no stretching (HKDF-SHA256 only): it is for managed tenants, whose secret is 32 random bytes.
 */
export async function deriveKey(method: KdfMethod, secret: Uint8Array | string, salt: Uint8Array): Promise<Buffer> {
  if (method === 'raw') {
    const ikm = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
    return Buffer.from(hkdfSync('sha256', ikm, salt, 'tenant-pool wallet key v1', KEY_BYTES));
  }
  const params = ARGON2_PARAMS[method];
  return hashRaw(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret, { ...params, salt });
}

/**
 * The key check value kept in the registry: tells a wrong key from a damaged file without touching
 * the file. For a passphrase tenant it costs a guesser one full derivation per guess, since the
 * passphrase reaches it only through Argon2.
 */
export function keyVerifier(key: Uint8Array): Buffer {
  return createHmac('sha256', key).update('tenant-pool key check v1').digest();
}
