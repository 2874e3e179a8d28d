/**
 * Argument checks for the public methods. Each failure is an `ERR_INVALID_ARGUMENT` whose message
 * says what was expected and what came, and never echoes a secret or a record value.
 */
import { poolError } from './errors.js';

/** A tenant id is used in file names, so only this shape is ever accepted. */
export const TENANT_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Longest category, record id or tag name/value, in UTF-16 code units. */
export const MAX_NAME_LENGTH = 1024;
/** Most tags on one record (and metadata entries on one tenant). */
export const MAX_TAGS_PER_RECORD = 256;
/** Deepest nesting of a record value (arrays and objects). */
export const MAX_VALUE_DEPTH = 512;

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

export function invalid(message: string): never {
  throw poolError('ERR_INVALID_ARGUMENT', message);
}

export function checkTenantId(value: unknown, name = 'tenantId'): string {
  if (typeof value !== 'string' || !TENANT_ID_PATTERN.test(value)) {
    invalid(`Expected \`${name}\` to match ${String(TENANT_ID_PATTERN)}, got ${typeof value === 'string' ? `a string of length ${value.length}` : kind(value)}`);
  }
  return value;
}

/**
 * A name (category, id, tag, label, kid...): 1 to 1,024 characters of well-formed Unicode. A lone
 * surrogate has no UTF-8 form: stored, it would turn into U+FFFD and no longer match itself.
 */
export function checkName(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH) {
    invalid(`Expected \`${name}\` to be a string of 1 to ${MAX_NAME_LENGTH} characters, got ${typeof value === 'string' ? `length ${value.length}` : kind(value)}`);
  }
  if (!value.isWellFormed()) invalid(`Expected \`${name}\` to be well-formed Unicode, got a string with a lone surrogate`);
  return value;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Tags (or metadata): a plain object of strings, at most `maxCount` of them. Every name counts as
 * written, `__proto__` and `constructor` included: the copy is built with own data properties, so
 * no name can be swallowed by a prototype setter.
 */
export function checkTags(value: unknown, name = 'tags', maxCount = MAX_TAGS_PER_RECORD): Record<string, string> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) invalid(`Expected \`${name}\` to be a plain object of strings, got ${kind(value)}`);
  const entries = Object.entries(value);
  if (entries.length > maxCount) invalid(`Expected \`${name}\` to have at most ${maxCount} entries, got ${entries.length}`);
  for (const [key, tag] of entries) {
    checkName(key, `${name} key`);
    if (typeof tag !== 'string' || tag.length > MAX_NAME_LENGTH) invalid(`Expected \`${name}.${key}\` to be a string of at most ${MAX_NAME_LENGTH} characters, got ${kind(tag)}`);
    if (!tag.isWellFormed()) invalid(`Expected \`${name}.${key}\` to be well-formed Unicode, got a string with a lone surrogate`);
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/**
 * A whole record, checked against `maxBytes`: the limit covers the value's JSON, the category, the
 * id and every tag name and value (UTF-8 bytes), so tags cannot carry what the value may not.
 * Returns the value's JSON and the checked tags.
 */
export function checkRecord(category: unknown, id: unknown, value: unknown, tags: unknown, maxBytes: number): { category: string; id: string; json: string; tags: Record<string, string> } {
  const cat = checkName(category, 'category');
  const rid = checkName(id, 'id');
  const checked = checkTags(tags);
  const json = toJson(value, Number.POSITIVE_INFINITY);
  let bytes = Buffer.byteLength(json, 'utf8') + Buffer.byteLength(cat, 'utf8') + Buffer.byteLength(rid, 'utf8');
  for (const [k, v] of Object.entries(checked)) bytes += Buffer.byteLength(k, 'utf8') + Buffer.byteLength(v, 'utf8');
  if (bytes > maxBytes) invalid(`Expected the record (value as JSON, category, id and tags) to be at most ${maxBytes} bytes (maxValueBytes), got ${bytes}`);
  return { category: cat, id: rid, json, tags: checked };
}

/**
 * Serialises a record value, refusing anything JSON would silently change: `undefined`, functions,
 * symbols, BigInt, non-finite numbers, cycles, and objects other than plain ones and arrays.
 */
export function toJson(value: unknown, maxBytes: number): string {
  const seen = new Set<object>();
  const walk = (v: unknown, path: string, depth = 0): void => {
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return;
      case 'number':
        if (!Number.isFinite(v)) invalid(`Expected \`${path}\` to be a finite number, got ${String(v)}`);
        return;
      case 'object':
        if (v === null) return;
        if (seen.has(v)) invalid(`Expected \`${path}\` to be JSON, got a cycle`);
        if (depth >= MAX_VALUE_DEPTH) invalid(`Expected \`value\` to nest at most ${MAX_VALUE_DEPTH} levels deep`);
        if (Array.isArray(v)) {
          seen.add(v);
          for (let i = 0; i < v.length; i++) walk(v[i], depth < 8 ? `${path}[${i}]` : path, depth + 1);
        } else if (isPlainObject(v)) {
          seen.add(v);
          for (const [k, child] of Object.entries(v)) walk(child, depth < 8 ? `${path}.${k}` : path, depth + 1);
        } else {
          invalid(`Expected \`${path}\` to be JSON, got an instance of ${(v).constructor?.name ?? 'an unknown class'}`);
        }
        seen.delete(v);
        return;
      default:
        invalid(`Expected \`${path}\` to be JSON, got ${typeof v}`);
    }
  };
  walk(value, 'value');
  const json = JSON.stringify(value);
  if (Buffer.byteLength(json, 'utf8') > maxBytes) invalid(`Expected \`value\` to be at most ${maxBytes} bytes as JSON, got ${Buffer.byteLength(json, 'utf8')}`);
  return json;
}

/**
 * Bytes to send to a worker. A view of part of a larger buffer (a small `Buffer` lives in Node's
 * shared 8 KB pool, with whatever else the process put there) is copied: structured clone would
 * carry the whole buffer across. So is a view of shared memory, which the caller could change
 * while the worker reads it.
 */
export function checkBytes(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) invalid(`Expected \`${name}\` to be a Uint8Array, got ${kind(value)}`);
  const whole = value.byteOffset === 0 && value.byteLength === value.buffer.byteLength && !(value.buffer instanceof SharedArrayBuffer);
  return whole ? value : new Uint8Array(value);
}

export function checkLimit(value: unknown): number {
  if (value === undefined) return -1;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) invalid(`Expected \`limit\` to be a positive integer, got ${typeof value === 'number' ? value : kind(value)}`);
  return value;
}

export function checkOptionalObject(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) invalid(`Expected \`${name}\` to be an object, got ${kind(value)}`);
  return value;
}
