/** Ed25519 keys as both wallet stores keep them: raw 32-byte public keys, PKCS#8 private keys. */
import { createPrivateKey, createPublicKey, generateKeyPairSync, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import bs58 from 'bs58';
import { poolError } from '../common/errors.js';

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** A new key pair: the raw public key, the private key as PKCS#8 (fill it with zeros once stored) and as a ready KeyObject. */
export function generateEd25519(): { rawPublic: Buffer; pkcs8: Buffer; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { rawPublic: publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519_PREFIX.length), pkcs8: privateKey.export({ format: 'der', type: 'pkcs8' }), privateKey };
}

/** Whether the PKCS#8 private key is the one `rawPublic` names (an imported key must be, or its signatures would not verify). */
export function isKeyPair(pkcs8: Buffer, rawPublic: Uint8Array): boolean {
  return createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519_PREFIX.length).equals(rawPublic);
}

/** Builds the raw Ed25519 public key's SPKI form, as node:crypto takes it. */
function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** Ed25519 verification against a base58 public key; needs no wallet. */
export function verifySignature(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  let raw: Uint8Array;
  try {
    raw = bs58.decode(publicKey);
  } catch {
    throw poolError('ERR_INVALID_ARGUMENT', 'Expected `publicKey` to be a base58 Ed25519 public key');
  }
  if (raw.length !== 32) throw poolError('ERR_INVALID_ARGUMENT', `Expected \`publicKey\` to decode to 32 bytes, got ${raw.length}`);
  let key: KeyObject;
  try {
    key = publicKeyObject(raw);
  } catch (error) {
    throw poolError('ERR_INVALID_ARGUMENT', 'Expected `publicKey` to be a valid Ed25519 public key', error);
  }
  if (signature.length !== 64) return false;
  return cryptoVerify(null, data, key, signature);
}
