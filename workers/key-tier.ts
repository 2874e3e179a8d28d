/**
 * The key tier: what reopening a closed wallet needs — its derived wallet key — kept in this
 * worker's memory after the wallet closes, so the tenant's next open derives nothing (Argon2 takes
 * hundreds of milliseconds; a reopen from here, a file open). Each key is sealed under a key of this
 * thread (ChaCha20-Poly1305, bound to the tenant and to its key check value), bounded in entries
 * (least recently used go first) and in age, zeroed when it goes, and never written anywhere.
 *
 * An entry serves an open only when the registry's key check value is still the one it was made
 * under (a rekey or a delete and re-create changes it), and, for a passphrase tenant, only when the
 * open's passphrase matches a keyed hash made under this thread's key (never stored).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface KeyTierOptions {
  /** Most entries this worker keeps; 0 turns the tier off. */
  maxEntries: number;
  /** How long an entry may serve after it was made, in ms. */
  ttlMs: number;
  /** Whether passphrase tenants get entries (off: Argon2 on every open of theirs). */
  passphrases: boolean;
}

interface Entry {
  /**
   * One allocation: nonce ‖ sealed key ‖ tag, then for a passphrase tenant a keyed hash of its
   * passphrase under this thread's key. The key check value the key was checked against is the
   * seal's associated data: under another one, the seal does not open.
   */
  data: Buffer;
  expiresAt: number;
}

const NONCE = 12;
const TAG = 16;
const KEY = 32;
const SEALED = NONCE + KEY + TAG;

export class KeyTier {
  readonly #options: KeyTierOptions;
  /** Insertion order is recency: a hit moves its entry to the end. */
  readonly #entries = new Map<string, Entry>();
  readonly #sealKey = randomBytes(32);
  readonly #macKey = randomBytes(32);
  readonly #now: () => number;

  constructor(options: KeyTierOptions, now: () => number = () => performance.now()) {
    this.#options = options;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Bytes the entries hold (sealed keys, key checks, passphrase hashes), for the bench's bytes-per-entry figure. */
  get bytes(): number {
    let total = 0;
    for (const [tenantId, e] of this.#entries) total += tenantId.length + e.data.length + 8;
    return total;
  }

  /** Keeps `key` (copied, sealed) for the tenant's next open. A passphrase tenant needs its passphrase here. */
  put(tenantId: string, key: Uint8Array, verifier: Uint8Array, passphrase: string | null): void {
    if (this.#options.maxEntries === 0 || (passphrase !== null && !this.#options.passphrases)) return;
    this.forget(tenantId);
    if (key.length !== KEY) return;
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('chacha20-poly1305', this.#sealKey, nonce, { authTagLength: TAG });
    cipher.setAAD(this.#aad(tenantId, verifier), { plaintextLength: key.length });
    const parts: Uint8Array[] = [nonce, cipher.update(key), cipher.final(), cipher.getAuthTag()];
    const passCheck = passphrase === null ? null : this.#passCheck(passphrase);
    if (passCheck !== null) parts.push(passCheck);
    const data = Buffer.concat(parts);
    for (const part of parts) part.fill(0);
    this.#entries.set(tenantId, { data, expiresAt: this.#now() + this.#options.ttlMs });
    while (this.#entries.size > this.#options.maxEntries) this.forget(this.#entries.keys().next().value!);
  }

  /**
   * The tenant's key if an entry may serve this open: present, not expired, made under the same key
   * check value, and (a passphrase tenant) asked with the same passphrase. The caller zeroes it.
   */
  take(tenantId: string, verifier: Uint8Array, secret: Uint8Array | string): Buffer | undefined {
    const entry = this.#entries.get(tenantId);
    if (entry === undefined) return undefined;
    if (this.#now() >= entry.expiresAt) {
      this.forget(tenantId);
      return undefined;
    }
    const { data } = entry;
    if (data.length > SEALED) {
      // A managed tenant's secret never matches a passphrase entry, and a wrong passphrase leaves the entry for the right one.
      if (typeof secret !== 'string') return undefined;
      const check = this.#passCheck(secret);
      const matches = timingSafeEqual(check, data.subarray(SEALED));
      check.fill(0);
      if (!matches) return undefined;
    }
    try {
      // Made under another key check value (a rekey, a tenant made anew under this id), it does not open: dropped.
      const decipher = createDecipheriv('chacha20-poly1305', this.#sealKey, data.subarray(0, NONCE), { authTagLength: TAG });
      decipher.setAAD(this.#aad(tenantId, verifier), { plaintextLength: KEY });
      decipher.setAuthTag(data.subarray(NONCE + KEY, SEALED));
      const key = Buffer.concat([decipher.update(data.subarray(NONCE, NONCE + KEY)), decipher.final()]);
      this.#entries.delete(tenantId);
      this.#entries.set(tenantId, entry);
      return key;
    } catch {
      this.forget(tenantId);
      return undefined;
    }
  }

  /** Drops the tenant's entry, zeroed. */
  forget(tenantId: string): void {
    const entry = this.#entries.get(tenantId);
    if (entry === undefined) return;
    entry.data.fill(0);
    this.#entries.delete(tenantId);
  }

  /** Drops every entry, zeroed, and this thread's keys (the worker's shutdown). */
  clear(): void {
    for (const tenantId of [...this.#entries.keys()]) this.forget(tenantId);
    this.#sealKey.fill(0);
    this.#macKey.fill(0);
  }

  #aad(tenantId: string, verifier: Uint8Array): Buffer {
    return Buffer.concat([Buffer.from(`${tenantId}\0`, 'utf8'), verifier]);
  }

  #passCheck(passphrase: string): Buffer {
    return createHmac('sha256', this.#macKey).update(passphrase, 'utf8').digest();
  }
}
