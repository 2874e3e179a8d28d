/**
 * Pool options resolved: the config file merged under the options given to `open()`, both checked
 * against the one definition of the options (`option-spec.ts`), the defaults applied, and the store
 * chosen (options first, then the environment).
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { availableParallelism, hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { poolError } from '../../common/errors.js';
import type { Logger } from '../observability/logging.js';
import { jsonSyntaxErrorAt } from './json-position.js';
import type { KdfMethod } from '../../common/protocol.js';
import type { UpgradeMode } from '../../common/formats.js';
import { CODE_ONLY_KEYS, describe, OptionChecker } from './check-options.js';
import { DEFAULTS, type PoolOptions, type WorkerResourceLimits } from './pool-options.js';
import type { PassphraseProvider } from './option-spec.js';

export { CODE_ONLY_KEYS, didYouMean, OPTION_KEYS } from './check-options.js';
export { MAX_UNITS, OPTIONS, type PassphraseProvider } from './option-spec.js';
export { DEFAULTS, type ClusterOptions, type PoolOptions, type PostgresOptions, type WorkerResourceLimits } from './pool-options.js';

/** Cluster mode's settings. */
export interface ResolvedClusterOptions {
  readonly instanceId: string;
  readonly address: string | null;
  readonly leaseTtlMs: number;
}

/** The PostgreSQL store's settings, without the connection string. */
export interface ResolvedPostgresOptions {
  readonly schema: string;
  readonly connectionsPerWorker: number;
  readonly registryConnections: number;
  readonly registryCacheSize: number;
  /** The most connections this pool opens: workers × connectionsPerWorker + registryConnections + 1 (the connection that holds the schema's ownership). */
  readonly connectionBudget: number;
}

/** Options after defaults and validation. The root key is not among them: no secret is kept on the pool or its options. */
export interface ResolvedOptions {
  readonly dataDir: string;
  /** The PostgreSQL store, or undefined for SQLite files in `dataDir`. */
  readonly postgres: ResolvedPostgresOptions | undefined;
  /**
   * What chose the store: the options (or config file) named `postgres` or `dataDir`, the environment
   * (`TENANT_POOL_POSTGRES_URL`, with neither named), or nothing (SQLite in the default folder).
   */
  readonly storeChosenBy: 'options' | 'environment' | 'default';
  /** Cluster mode, or undefined when one pool owns the schema (or the data folder). */
  readonly cluster: ResolvedClusterOptions | undefined;
  readonly upgrade: UpgradeMode;
  readonly workers: number;
  readonly capacity: number;
  readonly weights: { readonly wallet: number; readonly session: number };
  readonly maxSessionsPerTenant: number;
  readonly tenantLimit: 'queue' | 'reject';
  readonly acquireTimeoutMs: number;
  readonly maxQueue: number;
  readonly walletIdleTtlMs: number;
  readonly leakWarningMs: number;
  readonly maxSessionMs: number;
  readonly kdf: KdfMethod;
  readonly kdfConcurrency: number;
  readonly keyCache: { readonly maxEntries: number; readonly ttlMs: number; readonly passphrases: boolean };
  readonly modules: readonly string[];
  readonly maxValueBytes: number;
  readonly workerResourceLimits: Readonly<WorkerResourceLimits> | undefined;
  readonly workerStartTimeoutMs: number;
  readonly allowExitOnIdle: boolean;
  readonly logger: Logger | undefined;
  readonly passphraseProvider: PassphraseProvider | undefined;
}

function loadConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw poolError('ERR_INVALID_CONFIG', `Cannot read config file ${file}: ${(error as Error).message}`, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text near the fault, which may be a secret: say where, never what.
    const at = jsonSyntaxErrorAt(text);
    throw poolError('ERR_INVALID_CONFIG', `Config file ${file} is not valid JSON: syntax error at line ${at?.line ?? 1}, column ${at?.column ?? 1}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw poolError('ERR_INVALID_CONFIG', `Config file ${file} must hold a JSON object`);
  }
  const { $schema: _schema, ...rest } = parsed as Record<string, unknown>;
  for (const key of CODE_ONLY_KEYS) {
    if (Object.hasOwn(rest, key)) throw poolError('ERR_INVALID_CONFIG', `\`${key}\` cannot stand in config file ${file}: pass it to open()`);
  }
  return rest;
}

/**
 * Merges the config file (if any) under `options`, applies defaults and validates.
 * Never mutates its input.
 * @throws ERR_INVALID_CONFIG naming the key (and file) at fault.
 */
export function resolveOptions(options: PoolOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  return resolveConfig(options, env).options;
}

/**
 * {@link resolveOptions}, and the root key (from the options or the config file) kept apart from
 * them, so that it is passed to the registry and held nowhere else.
 */
export function resolveConfig(options: PoolOptions = {}, env: NodeJS.ProcessEnv = process.env): { options: ResolvedOptions; rootKey: string | undefined; postgresUrl: string | undefined } {
  if (typeof options !== 'object' || options === null) throw poolError('ERR_INVALID_CONFIG', `Expected options to be an object, got ${describe(options)}`);
  // Paths in the file resolve against its folder; those given to open(), against the working directory.
  const given = new OptionChecker('', process.cwd()).check(options as Record<string, unknown>);
  const configFile = given.configFile ?? (env['TENANT_POOL_CONFIG'] ? (new OptionChecker(' (env TENANT_POOL_CONFIG)', process.cwd()).value('configFile', env['TENANT_POOL_CONFIG']) as string) : undefined);
  let fromFile: PoolOptions = {};
  if (configFile !== undefined) fromFile = new OptionChecker(` in config file ${configFile}`, dirname(configFile)).check(loadConfigFile(configFile));
  // Where weights and capacity came from, so that an error about the two together names the file.
  const fileOf = (key: 'weights' | 'capacity'): string => (given[key] === undefined && fromFile[key] !== undefined && configFile !== undefined ? ` in config file ${resolve(configFile)}` : '');
  const merged: PoolOptions = { ...fromFile, ...given };
  const cores = availableParallelism();
  const weights = { ...DEFAULTS.weights, ...merged.weights };
  const capacity = merged.capacity ?? DEFAULTS.capacity;
  if (weights.wallet + weights.session > capacity) {
    throw poolError(
      'ERR_INVALID_CONFIG',
      `Expected \`weights\`${fileOf('weights')} (wallet ${weights.wallet} + session ${weights.session}) to fit in \`capacity\`${fileOf('capacity')} ${capacity}: no first session could ever be admitted`,
    );
  }
  const workers = merged.workers ?? cores;
  // Explicit options win: the environment chooses PostgreSQL only for a pool that named no store at all.
  const isNamed = merged.postgres !== undefined || merged.dataDir !== undefined;
  const isFromEnv = !isNamed && Boolean(env['TENANT_POOL_POSTGRES_URL']);
  const pg = merged.postgres ?? (isFromEnv ? {} : undefined);
  const postgresUrl = pg === undefined ? undefined : (pg.connectionString ?? (env['TENANT_POOL_POSTGRES_URL'] || undefined));
  if (pg !== undefined && postgresUrl === undefined) throw poolError('ERR_INVALID_CONFIG', 'Expected `postgres.connectionString` (or env TENANT_POOL_POSTGRES_URL) to be a PostgreSQL connection string');
  const postgres: ResolvedPostgresOptions | undefined =
    pg === undefined
      ? undefined
      : Object.freeze({
          schema: pg.schema ?? 'tenant_pool',
          connectionsPerWorker: pg.connectionsPerWorker ?? 2,
          registryConnections: pg.registryConnections ?? 2,
          registryCacheSize: pg.registryCacheSize ?? 10_000,
          // The +1 holds the schema's ownership; in cluster mode two more renew leases and serve pool.cluster.
          // The owner's connection (one pool per schema), or in cluster mode the two that renew leases and answer pool.cluster.
          connectionBudget: workers * (pg.connectionsPerWorker ?? 2) + (pg.registryConnections ?? 2) + (merged.cluster === undefined ? 1 : 2),
        });
  if (merged.cluster !== undefined && postgres === undefined) throw poolError('ERR_INVALID_CONFIG', 'Expected `postgres` with `cluster`: the instances of a cluster share one PostgreSQL schema');
  const cluster: ResolvedClusterOptions | undefined =
    merged.cluster === undefined
      ? undefined
      : Object.freeze({
          instanceId: merged.cluster.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
          address: merged.cluster.address ?? null,
          leaseTtlMs: merged.cluster.leaseTtlMs ?? 10_000,
        });
  const resolved: ResolvedOptions = Object.freeze({
    dataDir: merged.dataDir ?? resolve(DEFAULTS.dataDir),
    postgres,
    storeChosenBy: isNamed ? 'options' : isFromEnv ? 'environment' : 'default',
    cluster,
    upgrade: merged.upgrade ?? DEFAULTS.upgrade,
    workers,
    capacity,
    weights: Object.freeze(weights),
    maxSessionsPerTenant: merged.maxSessionsPerTenant ?? DEFAULTS.maxSessionsPerTenant,
    tenantLimit: merged.tenantLimit ?? DEFAULTS.tenantLimit,
    acquireTimeoutMs: merged.acquireTimeoutMs ?? DEFAULTS.acquireTimeoutMs,
    maxQueue: merged.maxQueue ?? DEFAULTS.maxQueue,
    walletIdleTtlMs: merged.walletIdleTtlMs ?? DEFAULTS.walletIdleTtlMs,
    leakWarningMs: merged.leakWarningMs ?? DEFAULTS.leakWarningMs,
    maxSessionMs: merged.maxSessionMs ?? DEFAULTS.maxSessionMs,
    kdf: merged.kdf ?? DEFAULTS.kdf,
    kdfConcurrency: merged.kdfConcurrency ?? cores,
    keyCache: Object.freeze({ ...DEFAULTS.keyCache, ...merged.keyCache }),
    modules: Object.freeze([...(merged.modules ?? DEFAULTS.modules)]),
    maxValueBytes: merged.maxValueBytes ?? DEFAULTS.maxValueBytes,
    workerResourceLimits: merged.workerResourceLimits === undefined ? undefined : Object.freeze({ ...merged.workerResourceLimits }),
    workerStartTimeoutMs: merged.workerStartTimeoutMs ?? DEFAULTS.workerStartTimeoutMs,
    allowExitOnIdle: merged.allowExitOnIdle ?? DEFAULTS.allowExitOnIdle,
    logger: merged.logger,
    passphraseProvider: merged.passphraseProvider,
  });
  return { options: resolved, rootKey: merged.rootKey, postgresUrl };
}

