/**
 * The messages between the main thread and a wallet worker. Both sides import this file, so the
 * method table below is the single definition of what a worker answers.
 */
import type { MessagePort } from 'node:worker_threads';
import type { EncodedError } from './errors.js';

/** Key derivation methods: `raw` (no stretching, for high-entropy secrets), Askar's two Argon2i levels, and Argon2id. */
export type KdfMethod = 'raw' | 'argon2i-int' | 'argon2i-mod' | 'argon2id';
export const KDF_METHODS: readonly KdfMethod[] = ['raw', 'argon2i-int', 'argon2i-mod', 'argon2id'];

/** A JSON value, as a record's value must be. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A record as stored in a wallet. */
export interface StoredRecord {
  category: string;
  id: string;
  value: JsonValue;
  tags: Record<string, string>;
}

/** A record as the worker sends it: value and tags stay JSON text until the main thread parses them. */
export interface RawRecord {
  category: string;
  id: string;
  value: string;
  tags: string;
}

/** What a worker needs to derive a tenant's wallet key and open (or create) its file. */
export interface WalletKeyMaterial {
  tenantId: string;
  /** Absolute path of the wallet file. */
  path: string;
  kdf: KdfMethod;
  salt: Uint8Array;
  /** The managed secret (32 bytes) or the tenant's passphrase. */
  secret: Uint8Array | string;
}

export interface OpenWalletRequest extends WalletKeyMaterial {
  /** Key check value stored at creation; a derived key that does not match it is the wrong key. */
  verifier: Uint8Array;
}

export interface WalletTimings {
  deriveMs: number;
  openMs: number;
}

export interface CreateWalletResult extends WalletTimings {
  verifier: Uint8Array;
}

/** The worker's method table: name → (arguments) → result. */
export interface WorkerApi {
  /** Creates the wallet file and leaves it open on this worker (close it with `closeWallet` if it is not kept). */
  createWallet(req: WalletKeyMaterial): CreateWalletResult;
  openWallet(req: OpenWalletRequest): WalletTimings;
  closeWallet(tenantId: string): void;
  recordsSave(tenantId: string, category: string, id: string, valueJson: string, tags: Record<string, string>): void;
  recordsGet(tenantId: string, category: string, id: string): RawRecord | null;
  recordsFind(tenantId: string, category: string, tags: Record<string, string>, limit: number): RawRecord[];
  recordsDelete(tenantId: string, category: string, id: string): boolean;
  keysCreate(tenantId: string): { kid: string; publicKey: string };
  keysList(tenantId: string): Array<{ kid: string; publicKey: string; createdAt: string }>;
  /** Deletes the key; its public key, or null if there was none. */
  keysDelete(tenantId: string, kid: string): string | null;
  /** The key's public key. @throws ERR_KEY_NOT_FOUND */
  keysPublicKey(tenantId: string, kid: string): string;
  keysSign(tenantId: string, kid: string, data: Uint8Array): Uint8Array;
  keysVerify(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean;
  /** Runs a module task; with a `token` (not 0), `abortTask(token)` aborts the task's `ctx.signal`. */
  runTask(tenantId: string, task: string, args: unknown, token: number): unknown;
  abortTask(token: number): void;
  runInbound(tenantId: string, message: { recipientKey: string; body: JsonValue }): unknown;
  echo(value: unknown): unknown;
}

export type WorkerMethod = keyof WorkerApi;

export interface CallMessage {
  id: number;
  method: WorkerMethod;
  args: unknown[];
}

export type ReplyMessage = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: EncodedError };

/** The one task each worker runs under piscina: it lives as long as the worker serves its port. */
export interface LifelineTask {
  port: MessagePort;
  /** Absolute paths of the worker modules to import before serving. */
  modules: readonly string[];
  maxValueBytes: number;
}

/**
 * The worker's start-up messages on its port: before each module import, the module it imports
 * (`{ loading }`); then that it is serving, or why it could not start (a module failed to load).
 */
export type StartMessage = 'ready' | { startFailed: EncodedError };
export interface LoadingMessage {
  loading: string;
}

/** Sent on the port to ask the worker to close its wallets and end its lifeline task. */
export const SHUTDOWN = 'shutdown';
