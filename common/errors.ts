/**
 * Every error code the pool raises. The codes are part of the public contract:
 * host applications branch on them, so they never change meaning.
 */
export const ErrorCodes = [
  'ERR_ACQUIRE_TIMEOUT',
  'ERR_QUEUE_FULL',
  'ERR_TENANT_LIMIT',
  'ERR_POOL_CLOSED',
  'ERR_TENANT_NOT_FOUND',
  'ERR_TENANT_EXISTS',
  'ERR_TENANT_DELETED',
  'ERR_WALLET_KEY_INVALID',
  'ERR_WALLET_CORRUPT',
  'ERR_SESSION_RELEASED',
  'ERR_SESSION_REVOKED',
  'ERR_WORKER_CRASHED',
  'ERR_WORKER_START_TIMEOUT',
  'ERR_TASK_NOT_FOUND',
  'ERR_ROUTE_NOT_FOUND',
  'ERR_ROUTE_CONFLICT',
  'ERR_KEY_NOT_FOUND',
  'ERR_INVALID_CONFIG',
  'ERR_INVALID_ARGUMENT',
  'ERR_PASSPHRASE_PROVIDER',
  'ERR_DATA_DIR_LOCKED',
  'ERR_ROOT_KEY_MISSING',
  'ERR_STORAGE_FULL',
  'ERR_STORAGE_READONLY',
  'ERR_STORAGE_IO',
  'ERR_STORAGE_UNAVAILABLE',
  'ERR_TENANT_ELSEWHERE',
  'ERR_LEASE_LOST',
  'ERR_OWNERSHIP_LOST',
  'ERR_UPGRADE_REQUIRED',
  'ERR_FORMAT_TOO_NEW',
  'ERR_INTERNAL',
] as const;

/** A code carried by a {@link TenantPoolError}. */
export type ErrorCode = (typeof ErrorCodes)[number];

const knownCodes: ReadonlySet<string> = new Set(ErrorCodes);

/**
 * The fields an error carries besides its code, by code: after `e.code === 'ERR_TENANT_ELSEWHERE'`
 * the type has `e.owner`, after `'ERR_ACQUIRE_TIMEOUT'` `e.stage`, `e.waitMs`, ... Every error may
 * carry `tenantId`.
 */
export interface ErrorFieldsByCode {
  ERR_ACQUIRE_TIMEOUT: {
    /** Whether the acquire waited for admission (capacity) or for its wallet to open. */
    readonly stage: 'admission' | 'open';
    /** How long the acquire waited, in ms. */
    readonly waitMs: number;
    /** Acquires still waiting when it gave up. */
    readonly queued: number;
    /** Weight in use when it gave up. */
    readonly weightInUse: number;
  };
  ERR_TENANT_ELSEWHERE: {
    /** The instance that holds the tenant's lease, where a host can forward the request; null when it gave up its lease meanwhile (try again). */
    readonly owner: LeaseOwner | null;
  };
  ERR_DATA_DIR_LOCKED: {
    /** The process that holds the data folder or schema, as it recorded itself (absent when it did not). */
    readonly holder?: DataDirHolder;
    /** The live cluster instances on the PostgreSQL schema that a pool without the cluster option would open. */
    readonly instances?: string[];
  };
  ERR_SESSION_REVOKED: {
    /** Why the pool ended the session. */
    readonly reason?: RevocationReason;
  };
  ERR_LEASE_LOST: { readonly reason?: RevocationReason };
  ERR_UPGRADE_REQUIRED: FormatFields;
  ERR_FORMAT_TOO_NEW: FormatFields;
  ERR_WORKER_CRASHED: OutcomeField;
  ERR_STORAGE_UNAVAILABLE: OutcomeField;
  ERR_POOL_CLOSED: OutcomeField;
}

interface FormatFields {
  /** The format version the data (a data folder, a schema, a wallet, an export file) is at. */
  readonly found?: number;
  /** The format version this release reads and writes. */
  readonly current?: number;
  /** Cluster mode: the live instances of an older release that hold an upgrade back. */
  readonly instances?: string[];
}

interface OutcomeField {
  /**
   * `'unknown'` when a write was sent and could not be answered (its worker died or was stopped,
   * or the database connection was lost at commit): it may or may not have committed. Read it
   * back before retrying. Absent: the call did not commit.
   */
  readonly outcome?: 'unknown';
}

/**
 * The error the pool raises, typed by its code: a union that narrows on `code`. Branch on `code`,
 * never on `message`. `TenantPoolError<'ERR_TENANT_ELSEWHERE'>` is one member.
 *
 * @example
 * try { await pool.acquire(id) } catch (e) {
 *   if (e instanceof TenantPoolError && e.code === 'ERR_TENANT_ELSEWHERE') forwardTo(e.owner?.address)
 * }
 */
export type TenantPoolError<C extends ErrorCode = ErrorCode> = C extends ErrorCode
  ? Error & {
      readonly name: 'TenantPoolError';
      readonly code: C;
      /**
       * Whether the same call, made again a little later (or on another instance), may succeed: true
       * for timeouts, a full queue, a tenant at its limit, a closing pool and a crashed worker.
       */
      readonly retryable: boolean;
      /** The tenant the error is about, where there is one. */
      readonly tenantId?: string;
    } & (C extends keyof ErrorFieldsByCode ? ErrorFieldsByCode[C] : unknown)
  : never;

/** The constructor: `new TenantPoolError(code, message, options)`, and `instanceof TenantPoolError` narrows to the union. */
export interface TenantPoolErrorConstructor {
  new <C extends ErrorCode>(code: C, message: string, options?: { cause?: unknown } & ErrorDetails): TenantPoolError<C>;
  readonly prototype: TenantPoolError;
}

/** The one error class the pool raises (see the {@link TenantPoolError} type). */
class PoolError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown } & ErrorDetails) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TenantPoolError';
    this.code = code;
    this.retryable = RETRYABLE.has(code);
    if (options !== undefined) {
      for (const key of DETAIL_KEYS) if (options[key] !== undefined) Object.defineProperty(this, key, { value: options[key], enumerable: true, configurable: true });
    }
  }
}

Object.defineProperty(PoolError, 'name', { value: 'TenantPoolError' });

export const TenantPoolError = PoolError as unknown as TenantPoolErrorConstructor;

const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['ERR_ACQUIRE_TIMEOUT', 'ERR_QUEUE_FULL', 'ERR_TENANT_LIMIT', 'ERR_POOL_CLOSED', 'ERR_WORKER_CRASHED', 'ERR_PASSPHRASE_PROVIDER', 'ERR_STORAGE_UNAVAILABLE', 'ERR_TENANT_ELSEWHERE', 'ERR_LEASE_LOST', 'ERR_OWNERSHIP_LOST']);

/** Why the pool revoked a session (`ERR_SESSION_REVOKED`). */
export type RevocationReason = 'maxSessionMs' | 'rekey' | 'close' | 'lease' | 'ownership';

/** An instance of a cluster, as `ERR_TENANT_ELSEWHERE` and `pool.cluster` name it. */
export interface LeaseOwner {
  instanceId: string;
  /** Where a router forwards to (the `cluster.address` option), or null when the instance gave none. */
  address: string | null;
}

/** Who holds a data folder. */
export interface DataDirHolder {
  pid: number;
  host: string;
  since: string;
}

/** Structured fields an error may carry besides its code (which of them, by code: {@link ErrorFieldsByCode}). */
export interface ErrorDetails {
  tenantId?: string;
  reason?: RevocationReason;
  outcome?: 'unknown';
  holder?: DataDirHolder;
  owner?: LeaseOwner | null;
  instances?: string[];
  stage?: 'admission' | 'open';
  waitMs?: number;
  queued?: number;
  weightInUse?: number;
  found?: number;
  current?: number;
}

const DETAIL_KEYS = ['tenantId', 'reason', 'outcome', 'holder', 'owner', 'instances', 'stage', 'waitMs', 'queued', 'weightInUse', 'found', 'current'] as const satisfies readonly (keyof ErrorDetails)[];

/**
 * Adds fields to an error already made (no second error, so no second stack capture on a hot path
 * such as an acquire timeout under overload). Returns the same error.
 */
export function withDetails<E extends TenantPoolError>(error: E, details: ErrorDetails): E {
  for (const key of DETAIL_KEYS) if (details[key] !== undefined) Object.defineProperty(error, key, { value: details[key], enumerable: true, configurable: true });
  return error;
}

/** Every field the error carries besides its code, whatever the code. */
export function detailsOf(error: TenantPoolError): ErrorDetails {
  const fields = error as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of DETAIL_KEYS) if (fields[key] !== undefined) out[key] = fields[key];
  return out;
}

/** Shorthand for `new TenantPoolError(...)`, so throw sites stay on one line. */
export function poolError<C extends ErrorCode>(code: C, message: string, cause?: unknown, details?: ErrorDetails): TenantPoolError<C> {
  return new TenantPoolError(code, message, cause === undefined && details === undefined ? undefined : { cause, ...details });
}

const FULL = new Set(['SQLITE_FULL', 'ENOSPC', 'EDQUOT', 'EFBIG']);
const READONLY = new Set(['SQLITE_PERM', 'SQLITE_AUTH', 'EACCES', 'EPERM', 'EROFS']);

/**
 * The code a storage failure gets: a full disk, a folder or mount the process may not write, a
 * damaged file, or another I/O failure. Each tells an operator something different to do, so a full
 * disk is never reported as a damaged wallet.
 */
export function storageCode(code: unknown): ErrorCode | undefined {
  if (typeof code !== 'string') return undefined;
  if (FULL.has(code)) return 'ERR_STORAGE_FULL';
  if (READONLY.has(code) || code.startsWith('SQLITE_READONLY')) return 'ERR_STORAGE_READONLY';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return 'ERR_WALLET_CORRUPT';
  if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_BUSY') || /^E[A-Z0-9]+$/.test(code)) return 'ERR_STORAGE_IO';
  return undefined;
}

/**
 * Anything thrown, as a `TenantPoolError`: a pool error as it is; a SQLite or file-system error by
 * its storage code; anything else as `ERR_INTERNAL`. `what` says what was being done.
 */
export function asPoolError(error: unknown, what: string, details?: ErrorDetails): TenantPoolError {
  if (error instanceof TenantPoolError) return error;
  const code = storageCode((error as { code?: unknown } | null)?.code) ?? 'ERR_INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  return poolError(code, `${what}: ${message}`, error, details);
}

/** An error as it crosses a thread boundary: structured clone would drop its class, `name` and `code`. */
export interface EncodedError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  isPoolError: boolean;
  /** A `TenantPoolError`'s structured fields (plain values). */
  details?: ErrorDetails;
}

/** Encodes anything thrown so that {@link decodeError} can rebuild it on the other side. */
export function encodeError(error: unknown): EncodedError {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      name: error.name,
      message: error.message,
      stack: error.stack,
      code: typeof code === 'string' ? code : undefined,
      isPoolError: error instanceof TenantPoolError,
      ...(error instanceof TenantPoolError ? { details: detailsOf(error) } : {}),
    };
  }
  return { name: 'Error', message: String(error), isPoolError: false };
}

/**
 * Rebuilds an encoded error: a `TenantPoolError` comes back as one; anything else comes back as an
 * `Error` with the original `name`, `code`, `message` and `stack`.
 */
export function decodeError(encoded: EncodedError): Error {
  let error: Error;
  if (encoded.isPoolError && encoded.code !== undefined && knownCodes.has(encoded.code)) {
    const rebuilt = new TenantPoolError(encoded.code as ErrorCode, encoded.message);
    if (encoded.details !== undefined) withDetails(rebuilt, encoded.details);
    error = rebuilt;
  } else {
    error = new Error(encoded.message);
    error.name = encoded.name;
    if (encoded.code !== undefined) Object.defineProperty(error, 'code', { value: encoded.code, enumerable: true, writable: true, configurable: true });
  }
  if (encoded.stack !== undefined) error.stack = encoded.stack;
  return error;
}
