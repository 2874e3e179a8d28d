/**
 * Record-by-record encryption for a wallet kept in a shared database, as Askar does it for its
 * PostgreSQL store: a random per-tenant profile key, wrapped by the wallet key, from which one key
 * per field is derived. Category, record id, tag names and tag values are encrypted
 * deterministically (the nonce is an HMAC of the plaintext), so equal inputs give equal ciphertexts
 * and equality queries run in SQL; values are encrypted with random nonces under a key bound to
 * their category and id. Every ciphertext is authenticated (ChaCha20-Poly1305).
 *
 * The database then sees ciphertext only. What deterministic encryption lets it see is which rows
 * share a category, an id or a tag value, as with Askar.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { poolError } from '../../common/errors.js';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/** The fields with a deterministic encryption of their own. */
export type SearchableField = 'category' | 'name' | 'tagName' | 'tagValue' | 'kid';

const FIELDS: readonly SearchableField[] = ['category', 'name', 'tagName', 'tagValue', 'kid'];

function subkey(profileKey: Uint8Array, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', profileKey, Buffer.alloc(0), `tenant-pool profile ${label} v1`, KEY_BYTES));
}

function seal(key: Uint8Array, nonce: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad, { plaintextLength: plaintext.length });
  return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function open(key: Uint8Array, sealed: Uint8Array, aad: Buffer, what: string): Buffer {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (bytes.length < NONCE_BYTES + TAG_BYTES) throw poolError('ERR_WALLET_CORRUPT', `a stored ${what} is too short to be a ciphertext`);
  try {
    const decipher = createDecipheriv('chacha20-poly1305', key, bytes.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad, { plaintextLength: bytes.length - NONCE_BYTES - TAG_BYTES });
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)), decipher.final()]);
  } catch (error) {
    throw poolError('ERR_WALLET_CORRUPT', `a stored ${what} failed its integrity check`, error);
  }
}

/** A length-prefixed encoding, so that ("ab", "c") and ("a", "bc") bind to different keys. */
function framed(...parts: string[]): Buffer {
  return Buffer.concat(
    parts.flatMap((part) => {
      const bytes = Buffer.from(part, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      return [length, bytes];
    }),
  );
}

/** A tenant's profile key and the keys derived from it. Never leaves the worker that holds the tenant. */
export class ProfileKey {
  readonly #raw: Buffer;
  readonly #fieldKeys: ReadonlyMap<SearchableField, Buffer>;
  readonly #nonceKey: Buffer;
  readonly #valueKey: Buffer;
  #isDestroyed = false;

  private constructor(raw: Buffer) {
    this.#raw = raw;
    this.#fieldKeys = new Map(FIELDS.map((field) => [field, subkey(raw, field)]));
    this.#nonceKey = subkey(raw, 'nonce');
    this.#valueKey = subkey(raw, 'value');
  }

  /** A new random profile key, for a new wallet. */
  static generate(): ProfileKey {
    return new ProfileKey(randomBytes(KEY_BYTES));
  }

  /**
   * Unwraps a stored profile key with the wallet key. The wallet key must already be checked
   * against the tenant's verifier: a failure here is damage, not a wrong key.
   */
  static unwrap(wrapped: Uint8Array, walletKey: Uint8Array): ProfileKey {
    return new ProfileKey(open(walletKey, wrapped, Buffer.from('tenant-pool profile key v1'), 'profile key'));
  }

  /** The profile key sealed under the wallet key (random nonce), as the database keeps it. */
  wrap(walletKey: Uint8Array): Buffer {
    this.#assertLive();
    return seal(walletKey, randomBytes(NONCE_BYTES), this.#raw, Buffer.from('tenant-pool profile key v1'));
  }

  /** Deterministic: the same plaintext always gives the same ciphertext, so `=` works on it in SQL. */
  encrypt(field: SearchableField, plaintext: string): Buffer {
    this.#assertLive();
    const bytes = Buffer.from(plaintext, 'utf8');
    const aad = Buffer.from(field, 'utf8');
    const nonce = createHmac('sha256', this.#nonceKey).update(aad).update(Buffer.from([0])).update(bytes).digest().subarray(0, NONCE_BYTES);
    return seal(this.#fieldKeys.get(field)!, nonce, bytes, aad);
  }

  decrypt(field: SearchableField, ciphertext: Uint8Array): string {
    this.#assertLive();
    return open(this.#fieldKeys.get(field)!, ciphertext, Buffer.from(field, 'utf8'), field).toString('utf8');
  }

  /** A record's value (and whatever else rides with it), under a key bound to its category and id, with a random nonce. */
  encryptValue(category: string, name: string, plaintext: string): Buffer {
    return seal(this.#valueKeyFor(category, name), randomBytes(NONCE_BYTES), Buffer.from(plaintext, 'utf8'), Buffer.from('value', 'utf8'));
  }

  decryptValue(category: string, name: string, ciphertext: Uint8Array): string {
    return open(this.#valueKeyFor(category, name), ciphertext, Buffer.from('value', 'utf8'), 'value').toString('utf8');
  }

  #valueKeyFor(category: string, name: string): Buffer {
    this.#assertLive();
    return createHmac('sha256', this.#valueKey).update(framed(category, name)).digest();
  }

  /**
   * A forgotten key is never used: zeroed buffers would still encrypt, and whatever they sealed
   * anyone could open. A call that gets here after `destroy` fails before it writes anything.
   */
  #assertLive(): void {
    if (this.#isDestroyed) throw poolError('ERR_INTERNAL', 'the wallet\'s keys were already forgotten (the wallet closed); nothing was written');
  }

  /** Forgets the keys (best effort: buffers are zeroed); any later use fails. */
  destroy(): void {
    this.#isDestroyed = true;
    this.#raw.fill(0);
    for (const key of this.#fieldKeys.values()) key.fill(0);
    this.#nonceKey.fill(0);
    this.#valueKey.fill(0);
  }
}
