/**
 * The command line's flags: strict parsing (an unknown flag or a bad value is a usage error, exit
 * 2), the store a command works on (`--data-dir`, `--postgres`/`--schema`, or `--config`), and
 * secrets read from files or a prompt — never from argv, where `ps` shows them.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { KDF_METHODS, type KdfMethod } from '../../common/protocol.js';
import type { PoolOptions } from '../config/config.js';
import { jsonSyntaxErrorAt } from '../config/json-position.js';
import { promptSecret } from './terminal.js';

/** A command line that cannot be run as written: exit 2, with the command's usage. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Flags every command that works on a store takes. */
export const STORE_FLAGS = {
  'data-dir': { type: 'string' },
  postgres: { type: 'string' },
  schema: { type: 'string' },
  config: { type: 'string' },
  'root-key-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export type Flags = Record<string, string | boolean | undefined>;

/** Parses `argv` with `options` (strict); unknown flags and missing values are usage errors. */
export function parse(argv: readonly string[], options: NonNullable<ParseArgsConfig['options']>): { flags: Flags; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
    return { flags: values as Flags, positionals };
  } catch (error) {
    // parseArgs names the flag, never a value.
    throw new UsageError((error as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

export function stringFlag(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  return typeof value === 'string' ? value : undefined;
}

/** An integer flag within bounds, or the default. */
export function intFlag(flags: Flags, name: string, min: number, max: number, fallback: number): number {
  const text = stringFlag(flags, name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text.slice(0, 40))}`);
  return value;
}

export function kdfFlag(flags: Flags): KdfMethod | undefined {
  const text = stringFlag(flags, 'kdf');
  if (text === undefined) return undefined;
  if (!(KDF_METHODS as readonly string[]).includes(text)) throw new UsageError(`--kdf must be one of ${KDF_METHODS.join(', ')}, got ${JSON.stringify(text.slice(0, 40))}`);
  return text as KdfMethod;
}

const TENANT_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function tenantIdArg(value: string | undefined, what = 'a tenant id'): string {
  if (value === undefined) throw new UsageError(`expected ${what}`);
  if (!TENANT_ID.test(value)) throw new UsageError(`${what} must match ${String(TENANT_ID)}`);
  return value;
}

/** A secret from a file (its content, without the trailing newline). */
export function readSecretFile(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read the ${what} file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new UsageError(`the ${what} file ${path} is empty`);
  return value;
}

/** A secret from `--<flag>` (a file), else a prompt on a terminal, else undefined. */
export async function secret(flags: Flags, flag: string, what: string, prompt: boolean): Promise<string | undefined> {
  const file = stringFlag(flags, flag);
  if (file !== undefined) return readSecretFile(file, what);
  if (!prompt) return undefined;
  return promptSecret(`${what}: `);
}

/** A JSON file of `{ "tenantId": "passphrase" }`; a syntax error names its line and column, never its content. */
export function readPassphrases(path: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read the passphrases file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    const at = jsonSyntaxErrorAt(text);
    throw new UsageError(`the passphrases file ${path} is not valid JSON: syntax error at line ${at?.line ?? 1}, column ${at?.column ?? 1}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`the passphrases file ${path} must hold an object { "tenantId": "passphrase" }`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== 'string') throw new UsageError(`the passphrases file ${path}: the value of ${JSON.stringify(k.slice(0, 64))} must be a string`);
    Object.defineProperty(out, k, { value: v, enumerable: true });
  }
  return out;
}

/** The store a command works on, as pool options; the root key apart (from `--root-key-file` or the environment). */
export interface StoreChoice {
  options: PoolOptions;
  rootKey: string | undefined;
  /** For messages: `the data folder X` or `the PostgreSQL schema Y`. */
  label: string;
  kind: 'sqlite' | 'postgres' | 'config';
  dataDir?: string;
  postgres?: { url: string; schema: string };
}

export function storeChoice(flags: Flags, env: NodeJS.ProcessEnv = process.env): StoreChoice {
  const dataDir = stringFlag(flags, 'data-dir');
  const configFile = stringFlag(flags, 'config');
  const schemaFlag = stringFlag(flags, 'schema');
  const urlFlag = stringFlag(flags, 'postgres');
  const url = urlFlag ?? (schemaFlag !== undefined ? env['TENANT_POOL_POSTGRES_URL'] || undefined : undefined);
  const named = [dataDir !== undefined, configFile !== undefined, url !== undefined || schemaFlag !== undefined].filter(Boolean).length;
  if (named > 1) throw new UsageError('name one store: --data-dir, --postgres (with --schema), or --config');
  const rootKeyFile = stringFlag(flags, 'root-key-file');
  const rootKey = rootKeyFile === undefined ? env['TENANT_POOL_ROOT_KEY'] || undefined : readSecretFile(rootKeyFile, 'root key');
  const base: PoolOptions = { workers: 1, ...(rootKey === undefined ? {} : { rootKey }) };
  if (dataDir !== undefined) return { options: { ...base, dataDir }, rootKey, label: `the data folder ${dataDir}`, kind: 'sqlite', dataDir };
  if (configFile !== undefined) return { options: { ...base, configFile }, rootKey, label: `the store of ${configFile}`, kind: 'config' };
  const envUrl = env['TENANT_POOL_POSTGRES_URL'] || undefined;
  const connectionString = url ?? envUrl;
  if (connectionString !== undefined) {
    if (urlFlag !== undefined && /^postgres(ql)?:\/\/[^/@:]*:[^/@]+@/.test(urlFlag)) {
      process.stderr.write('tenant-pool: warning: --postgres holds a password, which `ps` shows to anyone on this host; prefer TENANT_POOL_POSTGRES_URL\n');
    }
    const schema = schemaFlag ?? 'tenant_pool';
    return { options: { ...base, postgres: { connectionString, schema } }, rootKey, label: `the PostgreSQL schema ${schema}`, kind: 'postgres', postgres: { url: connectionString, schema } };
  }
  throw new UsageError('name the store: --data-dir DIR, --postgres URL (or TENANT_POOL_POSTGRES_URL) with --schema, or --config FILE');
}
