/**
 * The validation of pool options, by walking their one definition (`option-spec.ts`): every key
 * known or refused with a did-you-mean, every value of its kind and in its range, or
 * `ERR_INVALID_CONFIG` naming the key (and the config file), never echoing a secret.
 */
import { resolve } from 'node:path';
import { poolError } from '../../common/errors.js';
import { OPTIONS, type Option } from './option-spec.js';
import type { PoolOptions } from './pool-options.js';

const TOP: Readonly<Record<string, Option>> = OPTIONS;

/** Every option key, `configFile` included. */
export const OPTION_KEYS = Object.keys(TOP) as readonly (keyof PoolOptions)[];

/** Keys only code can give: refused in a config file. */
export const CODE_ONLY_KEYS: readonly string[] = OPTION_KEYS.filter((key) => TOP[key]!.inFile === false);

/** A value for a message: short, and its type. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)} (string)`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number' || typeof value === 'boolean') return `\`${value}\` (${typeof value})`;
  return typeof value;
}

/** Edit distance, for did-you-mean suggestions on misspelt keys. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The known key closest to `key`, if it is close enough to be a typo. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of known) {
    const d = distance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** What a value of `spec` must be, in words. */
function expected(spec: Option): string {
  switch (spec.kind) {
    case 'integer':
      return `an integer from ${spec.min} to ${spec.max ?? Number.MAX_SAFE_INTEGER}${spec.noLimit ? ', or Infinity (null in JSON)' : ''}`;
    case 'string':
      return spec.expected ?? 'a non-empty string';
    case 'enum':
      return `one of ${spec.values.map((v) => `'${v}'`).join(', ')}`;
    case 'boolean':
      return 'a boolean';
    case 'paths':
      return 'an array of paths';
    case 'object':
      return spec.expected ?? `an object { ${Object.keys(spec.fields).map((k) => `${k}?`).join(', ')} }`;
    case 'code':
      return spec.expected;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks options from one source: `open()`'s argument (`where` empty) or a config file. */
export class OptionChecker {
  readonly #where: string;
  readonly #base: string;

  /**
   * @param where ` in config file <path>` or empty, for messages.
   * @param base The folder relative paths resolve against.
   */
  constructor(where: string, base: string) {
    this.#where = where;
    this.#base = base;
  }

  /** Every key known and every value valid; `undefined` means "not given". Paths come back absolute. */
  check(source: Record<string, unknown>): PoolOptions {
    return this.#fields('', TOP, source, 'Known options');
  }

  /** One option's value, checked (`configFile` before the file is read). */
  value(key: keyof PoolOptions, value: unknown): unknown {
    return this.#value(key, TOP[key]!, value);
  }

  #fields(prefix: string, fields: Readonly<Record<string, Option>>, source: Record<string, unknown>, knownLabel: string): Record<string, unknown> {
    const known = Object.keys(fields);
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(source)) {
      const spec = Object.hasOwn(fields, key) ? fields[key] : undefined;
      if (spec === undefined) {
        const guess = didYouMean(key, known);
        throw poolError(
          'ERR_INVALID_CONFIG',
          `Unknown option \`${prefix}${key}\`${this.#where}.${guess === undefined ? '' : ` Did you mean \`${prefix}${guess}\`?`} ${knownLabel}: ${known.join(', ')}`,
        );
      }
      if (value === undefined) continue;
      out[key] = this.#value(`${prefix}${key}`, spec, value);
    }
    return out;
  }

  #fail(key: string, spec: Option, value: unknown): never {
    // A secret is never echoed, not even its type's details.
    const got = spec.kind === 'string' && spec.secret ? '' : `, got ${describe(value)}`;
    throw poolError('ERR_INVALID_CONFIG', `Expected \`${key}\` to be ${expected(spec)}${got}${this.#where}`);
  }

  #value(key: string, spec: Option, value: unknown): unknown {
    switch (spec.kind) {
      case 'integer':
        // JSON has no Infinity: a config file says "no limit" with null.
        if (spec.noLimit && (value === Number.POSITIVE_INFINITY || value === null)) return Number.POSITIVE_INFINITY;
        if (typeof value !== 'number' || !Number.isInteger(value) || value < spec.min || value > (spec.max ?? Number.MAX_SAFE_INTEGER)) this.#fail(key, spec, value);
        return value;
      case 'string': {
        const ok =
          typeof value === 'string' &&
          value !== '' &&
          (spec.pattern === undefined || spec.pattern.test(value)) &&
          (spec.maxLength === undefined || value.length <= spec.maxLength) &&
          (!spec.wellFormed || value.isWellFormed());
        if (!ok) this.#fail(key, spec, value);
        return spec.path ? resolve(this.#base, value) : value;
      }
      case 'enum':
        if (typeof value !== 'string' || !spec.values.includes(value)) this.#fail(key, spec, value);
        return value;
      case 'boolean':
        if (typeof value !== 'boolean') this.#fail(key, spec, value);
        return value;
      case 'paths':
        if (!Array.isArray(value)) this.#fail(key, spec, value);
        return value.map((item: unknown, i) => this.#value(`${key}[${i}]`, { kind: 'string', path: true, doc: '' }, item));
      case 'object':
        if (!isRecord(value)) this.#fail(key, spec, value);
        return this.#fields(`${key}.`, spec.fields, value, 'Known keys');
      case 'code':
        if (!spec.check(value)) this.#fail(key, spec, value);
        return value;
    }
  }
}
