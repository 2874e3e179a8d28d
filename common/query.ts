/**
 * Record queries: the tag query language of Askar's WQL, as credo-ts repositories use it, checked
 * and turned into a small tree that the wallet compiles to SQL. A plain object of strings is tag
 * equality (AND), as before; operators and combinators extend it:
 *
 *   { type: 'invite', state: { $in: ['sent', 'received'] } }
 *   { $or: [{ role: 'holder' }, { $not: { role: { $neq: 'issuer' } } }] }
 *   { createdAt: { $gte: '2026-01-01' }, name: { $like: 'acme%' } }
 *
 * `$neq`, `$like`, `$gt`, `$gte`, `$lt` and `$lte` match a record only if it has the tag. Values
 * compare as strings (so zero-pad numbers); `$like` takes SQL patterns (`%`, `_`).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { poolError } from './errors.js';
import { checkName, isPlainObject, MAX_NAME_LENGTH } from './validate.js';

/** A condition on one tag's value. */
export interface TagCondition {
  $neq?: string;
  $in?: string[];
  $like?: string;
  $gt?: string;
  $gte?: string;
  $lt?: string;
  $lte?: string;
}

/** A query over a record's tags: tag name → value (equality) or condition, combined with `$and`, `$or`, `$not`. */
export interface TagQuery {
  $and?: TagQuery[];
  $or?: TagQuery[];
  $not?: TagQuery;
  [tagName: string]: string | TagCondition | TagQuery | TagQuery[] | undefined;
}

export type CompareOp = 'eq' | 'neq' | 'like' | 'gt' | 'gte' | 'lt' | 'lte';

/** A checked query, as the wallet compiles it. */
export type QueryNode =
  | { op: 'and' | 'or'; children: QueryNode[] }
  | { op: 'not'; child: QueryNode }
  | { op: CompareOp; name: string; value: string }
  | { op: 'in'; name: string; values: string[] };

/** Deepest nesting of `$and`, `$or` and `$not`. */
export const MAX_QUERY_DEPTH = 8;
/** Most tag conditions in one query (each `$in` value counts). */
export const MAX_QUERY_TERMS = 64;

const OPERATORS: Readonly<Record<string, CompareOp | 'in'>> = { $neq: 'neq', $in: 'in', $like: 'like', $gt: 'gt', $gte: 'gte', $lt: 'lt', $lte: 'lte' };

function bad(path: string, what: string): never {
  throw poolError('ERR_INVALID_ARGUMENT', `Invalid query at \`${path}\`: ${what}`);
}

function tagValue(value: unknown, path: string): string {
  if (typeof value !== 'string' || value.length > MAX_NAME_LENGTH) bad(path, `expected a string of at most ${MAX_NAME_LENGTH} characters`);
  if (!value.isWellFormed()) bad(path, 'a lone surrogate is not well-formed Unicode');
  return value;
}

/**
 * Checks a query and returns its tree (`null`: no query, every record of the category). A bad part
 * is `ERR_INVALID_ARGUMENT` naming its path, e.g. `query.$or[1].state.$in`.
 */
export function checkRecordQuery(query: unknown): QueryNode | null {
  if (query === undefined || query === null) return null;
  let terms = 0;
  const count = (n: number, path: string): void => {
    terms += n;
    if (terms > MAX_QUERY_TERMS) bad(path, `more than ${MAX_QUERY_TERMS} tag conditions in one query`);
  };
  const walk = (value: unknown, path: string, depth: number): QueryNode => {
    if (depth > MAX_QUERY_DEPTH) bad(path, `nested deeper than ${MAX_QUERY_DEPTH} levels`);
    if (!isPlainObject(value)) bad(path, 'expected an object of tag conditions');
    const children: QueryNode[] = [];
    // Sorted: the same conditions in another key order are the same query (and page under the same cursor).
    for (const [key, item] of Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const at = `${path}.${key}`;
      if (item === undefined) continue;
      if (key === '$and' || key === '$or') {
        if (!Array.isArray(item) || item.length > MAX_QUERY_TERMS) bad(at, `expected an array of at most ${MAX_QUERY_TERMS} queries`);
        children.push({ op: key === '$and' ? 'and' : 'or', children: item.map((q, i) => walk(q, `${at}[${i}]`, depth + 1)) });
      } else if (key === '$not') {
        children.push({ op: 'not', child: walk(item, at, depth + 1) });
      } else if (key.startsWith('$')) {
        bad(at, 'unknown operator; known: $and, $or, $not, and per tag $neq, $in, $like, $gt, $gte, $lt, $lte');
      } else {
        const name = checkName(key, `${at} (tag name)`);
        if (typeof item === 'string') {
          count(1, at);
          children.push({ op: 'eq', name, value: tagValue(item, at) });
          continue;
        }
        if (!isPlainObject(item) || Object.keys(item).length === 0) bad(at, 'expected a string or one condition such as { $neq: "x" }');
        for (const [opKey, operand] of Object.entries(item)) {
          const op = OPERATORS[opKey];
          if (op === undefined) bad(`${at}.${opKey}`, 'unknown condition; known: $neq, $in, $like, $gt, $gte, $lt, $lte');
          if (op === 'in') {
            if (!Array.isArray(operand) || operand.length === 0) bad(`${at}.$in`, 'expected a non-empty array of strings');
            count(operand.length, `${at}.$in`);
            children.push({ op: 'in', name, values: operand.map((v, i) => tagValue(v, `${at}.$in[${i}]`)) });
          } else {
            count(1, `${at}.${opKey}`);
            children.push({ op, name, value: tagValue(operand, `${at}.${opKey}`) });
          }
        }
      }
    }
    return children.length === 1 ? children[0]! : { op: 'and', children };
  };
  return walk(query, 'query', 0);
}

/** The tags of an equality-only query (the fast path through the tag index), or undefined. */
export function equalityTags(node: QueryNode | null): Record<string, string> | undefined {
  if (node === null) return {};
  const leaves = node.op === 'and' ? node.children : [node];
  const tags: Array<[string, string]> = [];
  for (const leaf of leaves) {
    if (leaf.op !== 'eq') return undefined;
    if (tags.some(([name]) => name === leaf.name)) return undefined;
    tags.push([leaf.name, leaf.value]);
  }
  return Object.fromEntries(tags);
}

/** Where a page ends: after the record `after`, among those with rid <= `upTo` (the records that existed when paging began). */
export interface PagePosition {
  after: number;
  upTo: number;
}

/**
 * What a cursor is bound to, as a MAC under a key of the pool: the tenant, the category, the query
 * and the position. A cursor of another tenant, category or query, or one changed by hand, does not
 * verify. The key is random per pool: a cursor serves the pool that gave it, until it closes.
 */
function cursorMac(key: Uint8Array, tenantId: string, category: string, node: QueryNode | null, position: PagePosition): string {
  return createHmac('sha256', key).update(JSON.stringify(['tenant-pool cursor v2', tenantId, category, node, position.after, position.upTo])).digest('base64url');
}

/** An opaque cursor for the next page of this tenant, category and query. */
export function encodeCursor(key: Uint8Array, tenantId: string, category: string, node: QueryNode | null, position: PagePosition): string {
  return Buffer.from(JSON.stringify({ v: 2, a: position.after, u: position.upTo, m: cursorMac(key, tenantId, category, node, position) }), 'utf8').toString('base64url');
}

/** Reads a cursor; one made for another tenant, category or query, by another pool, or damaged, is `ERR_INVALID_ARGUMENT`. */
export function decodeCursor(key: Uint8Array, cursor: unknown, tenantId: string, category: string, node: QueryNode | null): PagePosition {
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > 512) throw poolError('ERR_INVALID_ARGUMENT', 'Expected `cursor` to be a cursor string from an earlier page');
  let parsed: { v?: unknown; a?: unknown; u?: unknown; m?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as typeof parsed;
  } catch {
    throw poolError('ERR_INVALID_ARGUMENT', 'Expected `cursor` to be a cursor string from an earlier page');
  }
  if (parsed === null || typeof parsed !== 'object' || parsed.v !== 2 || !Number.isSafeInteger(parsed.a) || !Number.isSafeInteger(parsed.u) || typeof parsed.m !== 'string') {
    throw poolError('ERR_INVALID_ARGUMENT', 'Expected `cursor` to be a cursor string from an earlier page');
  }
  const position = { after: parsed.a as number, upTo: parsed.u as number };
  const expected = Buffer.from(cursorMac(key, tenantId, category, node, position), 'utf8');
  const given = Buffer.from(parsed.m, 'utf8');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw poolError('ERR_INVALID_ARGUMENT', 'This `cursor` was not given for this tenant, category and query (or by this pool)', undefined, { tenantId });
  }
  return position;
}

/** Whether every condition of the query compares for equality (`$eq`, `$neq`, `$in`): those run on deterministic ciphertext. */
export function isEqualityOnly(node: QueryNode | null): boolean {
  if (node === null) return true;
  switch (node.op) {
    case 'and':
    case 'or':
      return node.children.every(isEqualityOnly);
    case 'not':
      return isEqualityOnly(node.child);
    default:
      return node.op === 'eq' || node.op === 'neq' || node.op === 'in';
  }
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const asciiLower = (s: string): string => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** Compiled `$like` patterns, most recent last: a query tests one pattern against many values. */
const likePatterns = new Map<string, RegExp>();

/**
 * `$like` on both stores (SQLite runs it as a function of its own): `%` any run, `_` one character,
 * case-insensitive for ASCII letters only, as SQLite's LIKE; unlike it, every character of the value
 * counts, U+0000 included.
 */
export function like(value: string, pattern: string): boolean {
  let compiled = likePatterns.get(pattern);
  if (compiled === undefined) {
    const source = [...asciiLower(pattern)].map((c) => (c === '%' ? '.*' : c === '_' ? '.' : c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'))).join('');
    compiled = new RegExp(`^${source}$`, 'su');
    if (likePatterns.size >= 256) likePatterns.delete(likePatterns.keys().next().value!);
    likePatterns.set(pattern, compiled);
  }
  return compiled.test(asciiLower(value));
}

/**
 * Whether a record with these tags matches the query, as the SQLite wallet's SQL decides it: a
 * condition needs the tag; values compare as UTF-8 bytes (SQLite's BINARY collation). The
 * PostgreSQL wallet, which holds only ciphertext, filters with this what SQL cannot compare.
 */
export function matchesQuery(node: QueryNode | null, tags: Readonly<Record<string, string>>): boolean {
  if (node === null) return true;
  switch (node.op) {
    case 'and':
      return node.children.every((c) => matchesQuery(c, tags));
    case 'or':
      return node.children.some((c) => matchesQuery(c, tags));
    case 'not':
      return !matchesQuery(node.child, tags);
    case 'in':
      return Object.hasOwn(tags, node.name) && node.values.includes(tags[node.name]!);
    default: {
      if (!Object.hasOwn(tags, node.name)) return false;
      const value = tags[node.name]!;
      if (node.op === 'like') return like(value, node.value);
      const order = Buffer.compare(utf8(value), utf8(node.value));
      return { eq: order === 0, neq: order !== 0, gt: order > 0, gte: order >= 0, lt: order < 0, lte: order <= 0 }[node.op];
    }
  }
}
