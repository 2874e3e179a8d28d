/**
 * A tenant's open wallet as the worker hands it out (to the call handlers and to worker modules):
 * every call is counted while it runs, and a close waits for the calls under way before the wallet
 * forgets its keys. Without this, a PostgreSQL save between `BEGIN` and its encryption would go on
 * after a close zeroed the profile key, and commit a row sealed under a key of zeros.
 *
 * After a close has begun, a new call is refused before it does anything (`ERR_SESSION_REVOKED`:
 * the main thread ends a wallet's sessions before it closes the wallet). A call already running
 * finishes under the real key, whatever ends the wallet: an idle close, an eviction, a delete, a
 * rekey, a lost lease or the worker's shutdown.
 */
import { poolError } from '../../common/errors.js';
import type { StoredWallet } from './backend.js';

type Maybe<T> = T | Promise<T>;

export class GuardedWallet implements StoredWallet {
  readonly #inner: StoredWallet;
  readonly #tenantId: string;
  #running = 0;
  #isClosing = false;
  #closed: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  constructor(inner: StoredWallet, tenantId: string) {
    this.#inner = inner;
    this.#tenantId = tenantId;
  }

  /** Runs one call of the wallet, counted until it settles. */
  #use<T>(fn: (wallet: StoredWallet) => Maybe<T>): Maybe<T> {
    if (this.#isClosing) throw poolError('ERR_SESSION_REVOKED', `the wallet of tenant ${this.#tenantId} closed before this call ran; nothing was done`, undefined, { tenantId: this.#tenantId });
    this.#running++;
    let result: Maybe<T>;
    try {
      result = fn(this.#inner);
    } catch (error) {
      this.#leave();
      throw error;
    }
    if (!(result instanceof Promise)) {
      this.#leave();
      return result;
    }
    return result.finally(() => this.#leave());
  }

  #leave(): void {
    this.#running--;
    if (this.#running === 0) this.#drained?.();
  }

  save(category: string, id: string, valueJson: string, tags: Record<string, string>): Maybe<void> {
    return this.#use((w) => w.save(category, id, valueJson, tags));
  }
  get(...args: Parameters<StoredWallet['get']>): ReturnType<StoredWallet['get']> {
    return this.#use((w) => w.get(...args));
  }
  find(...args: Parameters<StoredWallet['find']>): ReturnType<StoredWallet['find']> {
    return this.#use((w) => w.find(...args));
  }
  query(...args: Parameters<StoredWallet['query']>): ReturnType<StoredWallet['query']> {
    return this.#use((w) => w.query(...args));
  }
  count(...args: Parameters<StoredWallet['count']>): ReturnType<StoredWallet['count']> {
    return this.#use((w) => w.count(...args));
  }
  delete(...args: Parameters<StoredWallet['delete']>): ReturnType<StoredWallet['delete']> {
    return this.#use((w) => w.delete(...args));
  }
  createKey(): ReturnType<StoredWallet['createKey']> {
    return this.#use((w) => w.createKey());
  }
  listKeys(): ReturnType<StoredWallet['listKeys']> {
    return this.#use((w) => w.listKeys());
  }
  deleteKey(kid: string): ReturnType<StoredWallet['deleteKey']> {
    return this.#use((w) => w.deleteKey(kid));
  }
  publicKeyOf(kid: string): ReturnType<StoredWallet['publicKeyOf']> {
    return this.#use((w) => w.publicKeyOf(kid));
  }
  sign(kid: string, data: Uint8Array): ReturnType<StoredWallet['sign']> {
    return this.#use((w) => w.sign(kid, data));
  }
  check(): ReturnType<StoredWallet['check']> {
    return this.#use((w) => w.check());
  }

  snapshot(): ReturnType<StoredWallet['snapshot']> {
    return this.#use((w) => w.snapshot());
  }

  /** Refuses new calls at once; the keys are forgotten when the last call under way has settled. */
  close(): void {
    void this.closed();
  }

  /** Closes (see `close`) and resolves once the keys are forgotten. Idempotent. */
  async closed(): Promise<void> {
    if (this.#closed !== undefined) return this.#closed;
    this.#isClosing = true;
    this.#closed = (async () => {
      if (this.#running > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      this.#inner.close();
    })();
    return this.#closed;
  }
}
