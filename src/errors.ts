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
  'ERR_WORKER_CRASHED',
  'ERR_TASK_NOT_FOUND',
  'ERR_ROUTE_NOT_FOUND',
  'ERR_KEY_NOT_FOUND',
  'ERR_INVALID_CONFIG',
  'ERR_INVALID_ARGUMENT',
  'ERR_INTERNAL',
] as const;

/** A code carried by a {@link TenantPoolError}. */
export type ErrorCode = (typeof ErrorCodes)[number];

const knownCodes: ReadonlySet<string> = new Set(ErrorCodes);

/**
 * The one error class the pool raises. Branch on `code`, never on `message`.
 *
 * @example
 * try { await pool.acquire(id) } catch (e) {
 *   if (e instanceof TenantPoolError && e.code === 'ERR_ACQUIRE_TIMEOUT') retryLater()
 * }
 */
export class TenantPoolError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TenantPoolError';
    this.code = code;
  }
}

/** Shorthand for `new TenantPoolError(...)`, so throw sites stay on one line. */
export function poolError(code: ErrorCode, message: string, cause?: unknown): TenantPoolError {
  return new TenantPoolError(code, message, cause === undefined ? undefined : { cause });
}

/** An error as it crosses a thread boundary: structured clone would drop its class, `name` and `code`. */
export interface EncodedError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  isPoolError: boolean;
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
    error = new TenantPoolError(encoded.code as ErrorCode, encoded.message);
  } else {
    error = new Error(encoded.message);
    error.name = encoded.name;
    if (encoded.code !== undefined) Object.defineProperty(error, 'code', { value: encoded.code, enumerable: true, writable: true, configurable: true });
  }
  if (encoded.stack !== undefined) error.stack = encoded.stack;
  return error;
}
