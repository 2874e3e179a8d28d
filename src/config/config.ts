/**
 * Pool options: the typed options object, one frozen set of defaults, and one `resolveOptions()`
 * that merges a config file under the options given to `open()`, validates every key and rejects
 * unknown ones (the usual config-file typo).
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { availableParallelism, hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { poolError } from '../../common/errors.js';
import { isLogger, type Logger } from '../observability/logging.js';
import { jsonSyntaxErrorAt } from './json-position.js';
import { KDF_METHODS, type KdfMethod } from '../../common/protocol.js';
import { SCHEMA_NAME } from '../../common/pg.js';

/** Options of {@link TenantPool.open}. Every key is optional; the same keys (minus `configFile` and `logger`) may stand in the config file. */
export interface PoolOptions {
  /** JSON file with any of the keys below; keys given to `open()` override it. @default env `TENANT_POOL_CONFIG`, else none */
  configFile?: string;
  /** Folder of the registry and wallet files, created if missing. @default './.tenant-pool' */
  dataDir?: string;
  /** Key of the registry: 64 hex chars (raw) or a passphrase (Argon2id). @default env `TENANT_POOL_ROOT_KEY`, else `<dataDir>/root.key` (SQLite store only) */
  rootKey?: string;
  /**
   * Keep the registry and every wallet in one PostgreSQL database instead of SQLite files in
   * `dataDir`. Wallets are encrypted record by record on the workers; the database sees ciphertext
   * only. Needs the `pg` package and a root key. @default env `TENANT_POOL_POSTGRES_URL` as the
   * connection string when neither `postgres` nor `dataDir` is given (in the options or the config
   * file), else none (SQLite files): an explicit option always wins over the environment
   */
  postgres?: PostgresOptions;
  /**
   * Several instances (hosts) on one PostgreSQL schema, each tenant open on one of them at a time
   * (a lease with fencing). Requires `postgres`. @default none: one pool owns the schema
   */
  cluster?: ClusterOptions;
  /** Worker threads holding wallets. @default os.availableParallelism() */
  workers?: number;
  /** Total weight units the pool may hold. @default 1000 */
  capacity?: number;
  /** Weight of an open wallet and of each session. @default { wallet: 4, session: 1 } */
  weights?: { wallet?: number; session?: number };
  /** Default per-tenant concurrent session limit. @default Infinity */
  maxSessionsPerTenant?: number;
  /** What an acquire beyond a tenant's limit gets: wait, or `ERR_TENANT_LIMIT`. @default 'queue' */
  tenantLimit?: 'queue' | 'reject';
  /** How long an acquire may wait for admission and wallet open. @default 1000 */
  acquireTimeoutMs?: number;
  /** Waiters beyond this are rejected at once with `ERR_QUEUE_FULL`. @default 10000 */
  maxQueue?: number;
  /** How long a wallet with no sessions stays open; 0 closes it at the last release. @default 30000 */
  walletIdleTtlMs?: number;
  /** A session held longer emits a leak warning; 0 turns warnings off. @default 60000 */
  leakWarningMs?: number;
  /** A session held longer is revoked; 0 turns revocation off. @default 0 */
  maxSessionMs?: number;
  /** Key derivation for new managed tenants (a random secret). Passphrase tenants always use Argon2 (`'argon2i-mod'` unless their create says otherwise). @default 'raw' */
  kdf?: KdfMethod;
  /** Most key derivations running at once, pool-wide. @default number of cores */
  kdfConcurrency?: number;
  /** Worker module paths, resolved against the config file's folder or the working directory. @default [] */
  modules?: string[];
  /** Largest record value, in bytes of JSON; larger saves get `ERR_INVALID_ARGUMENT`. @default 1048576 */
  maxValueBytes?: number;
  /** Heap limits of each worker thread (Node's `resourceLimits`); a worker over them dies and is replaced. @default Node's defaults */
  workerResourceLimits?: WorkerResourceLimits;
  /**
   * Let the process exit while the pool is idle (no call in flight on any worker), as node-postgres's
   * option of the same name; otherwise an open pool keeps the process alive until `close()`.
   * @default false
   */
  allowExitOnIdle?: boolean;
  /** How long a worker may take to start (import the worker modules); `open()` fails with `ERR_WORKER_START_TIMEOUT` naming the module after that. @default 30000 */
  workerStartTimeoutMs?: number;
  /**
   * Where passphrases come from when an `acquire` or `dispatch` of a passphrase tenant gives none:
   * the host's secret store. Called for every such acquire (cache in the provider if needed); its
   * answer is used for that open or check and never stored. `undefined` means "no passphrase"
   * (`ERR_WALLET_KEY_INVALID`); a throw or a non-string is `ERR_PASSPHRASE_PROVIDER`. Code only, not in
   * the config file. @default none
   */
  passphraseProvider?: PassphraseProvider;
  /** A pino-compatible logger (`debug/info/warn/error`, context object first) for the pool's events; code only, not in the config file. @default none: warnings go to `process.emitWarning()` */
  logger?: Logger;
}

/** The PostgreSQL store. */
export interface PostgresOptions {
  /** `postgres://user:password@host:5432/db`. A secret (it may hold a password): never kept on `pool.options`. @default env `TENANT_POOL_POSTGRES_URL` */
  connectionString?: string;
  /** The schema holding the pool's tables, created if missing. @default 'tenant_pool' */
  schema?: string;
  /** Most connections each worker thread opens. @default 2 */
  connectionsPerWorker?: number;
  /** Most connections the main thread opens (the registry). @default 2 */
  registryConnections?: number;
  /** Most tenants the registry keeps in memory; the rest are read when needed. @default 10000 */
  registryCacheSize?: number;
}

/** Cluster mode. */
export interface ClusterOptions {
  /** This instance's name among the members, unique. @default `<hostname>-<pid>-<random>` */
  instanceId?: string;
  /** Where a router forwards a tenant's requests to this instance (`http://10.0.0.5:3000`); stored, not served. @default none */
  address?: string;
  /** How long a lease lasts unless renewed (renewed every third of it). @default 10000 */
  leaseTtlMs?: number;
}

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

/** A host's source of tenant passphrases (a secret store). */
export type PassphraseProvider = (tenantId: string) => Promise<string | undefined> | string | undefined;

/** Per-worker heap limits, in MiB. */
export interface WorkerResourceLimits {
  maxOldGenerationSizeMb?: number;
  maxYoungGenerationSizeMb?: number;
  stackSizeMb?: number;
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
  readonly modules: readonly string[];
  readonly maxValueBytes: number;
  readonly workerResourceLimits: Readonly<WorkerResourceLimits> | undefined;
  readonly workerStartTimeoutMs: number;
  readonly allowExitOnIdle: boolean;
  readonly logger: Logger | undefined;
  readonly passphraseProvider: PassphraseProvider | undefined;
}

/** Largest capacity, weight, queue length: sums of them stay exact integers. */
export const MAX_UNITS = 1_000_000_000;

/** The defaults, one place. `workers` and `kdfConcurrency` follow the machine. */
export const DEFAULTS = Object.freeze({
  dataDir: './.tenant-pool',
  capacity: 1000,
  weights: Object.freeze({ wallet: 4, session: 1 }),
  maxSessionsPerTenant: Number.POSITIVE_INFINITY,
  tenantLimit: 'queue' as const,
  acquireTimeoutMs: 1000,
  maxQueue: 10_000,
  walletIdleTtlMs: 30_000,
  leakWarningMs: 60_000,
  maxSessionMs: 0,
  kdf: 'raw' as const,
  modules: Object.freeze([] as string[]),
  maxValueBytes: 1024 * 1024,
  workerStartTimeoutMs: 30_000,
  allowExitOnIdle: false,
});

/** Every option key, `configFile` included. */
export const OPTION_KEYS = [
  'configFile', 'dataDir', 'rootKey', 'postgres', 'cluster', 'workers', 'capacity', 'weights', 'maxSessionsPerTenant', 'tenantLimit',
  'acquireTimeoutMs', 'maxQueue', 'walletIdleTtlMs', 'leakWarningMs', 'maxSessionMs', 'kdf', 'kdfConcurrency', 'modules', 'maxValueBytes', 'workerResourceLimits', 'workerStartTimeoutMs', 'allowExitOnIdle', 'logger', 'passphraseProvider',
] as const satisfies readonly (keyof PoolOptions)[];

function describe(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number' || typeof value === 'boolean') return `\`${value}\` (${typeof value})`;
  return typeof value;
}

class Checker {
  readonly #where: string;
  constructor(where: string) {
    this.#where = where;
  }

  fail(key: string, expected: string, value: unknown): never {
    throw poolError('ERR_INVALID_CONFIG', `Expected \`${key}\` to be ${expected}, got ${describe(value)}${this.#where}`);
  }

  integer(key: string, value: unknown, min: number, allowInfinity = false, max = Number.MAX_SAFE_INTEGER): number {
    // JSON has no Infinity: a config file says "no limit" with null.
    if (allowInfinity && (value === Number.POSITIVE_INFINITY || value === null)) return Number.POSITIVE_INFINITY;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(key, `an integer from ${min} to ${max}${allowInfinity ? ', or Infinity (null in JSON)' : ''}`, value);
    }
    return value;
  }

  string(key: string, value: unknown): string {
    if (typeof value !== 'string' || value === '') this.fail(key, 'a non-empty string', value);
    return value;
  }

  oneOf<T extends string>(key: string, value: unknown, allowed: readonly T[]): T {
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      this.fail(key, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
    }
    return value as T;
  }

  weights(key: string, value: unknown): { wallet?: number; session?: number } {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(key, 'an object { wallet?, session? }', value);
    const out: { wallet?: number; session?: number } = {};
    for (const [k, v] of Object.entries(value)) {
      if (k !== 'wallet' && k !== 'session') {
        const guess = didYouMean(k, ['wallet', 'session']);
        throw poolError('ERR_INVALID_CONFIG', `Unknown option \`${key}.${k}\`${this.#where}.${guess === undefined ? '' : ` Did you mean \`${key}.${guess}\`?`} Known keys: wallet, session`);
      }
      out[k] = this.integer(`${key}.${k}`, v, k === 'session' ? 1 : 0, false, MAX_UNITS);
    }
    return out;
  }
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
  for (const key of ['configFile', 'logger', 'passphraseProvider']) {
    if (key in rest) throw poolError('ERR_INVALID_CONFIG', `\`${key}\` cannot stand in config file ${file}: pass it to open()`);
  }
  return rest;
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

function checkKeys(source: Record<string, unknown>, where: string): void {
  for (const key of Object.keys(source)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) {
      const guess = didYouMean(key, OPTION_KEYS);
      throw poolError('ERR_INVALID_CONFIG', `Unknown option \`${key}\`${where}.${guess === undefined ? '' : ` Did you mean \`${guess}\`?`} Known options: ${OPTION_KEYS.join(', ')}`);
    }
  }
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
  checkKeys(options as Record<string, unknown>, '');
  const configFile = options.configFile ?? (env['TENANT_POOL_CONFIG'] || undefined);
  let fromFile: OptionsPatch = {};
  if (configFile !== undefined) {
    const file = resolve(new Checker('').string('configFile', configFile));
    const raw = loadConfigFile(file);
    checkKeys(raw, ` in config file ${file}`);
    // Paths in the file resolve against its folder; those given to open(), against the working directory.
    fromFile = validate(raw, new Checker(` in config file ${file}`), dirname(file));
  }
  const given = validate(options as Record<string, unknown>, new Checker(''), process.cwd());
  // Where weights and capacity came from, so that an error about the two together names the file.
  const fileOf = (key: 'weights' | 'capacity'): string => (given[key] === undefined && fromFile[key] !== undefined && configFile !== undefined ? ` in config file ${resolve(configFile)}` : '');
  const merged: OptionsPatch = { ...fromFile, ...given };
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

/** Keys whose "no limit" (Infinity) is written null in JSON. */
const NULLABLE: ReadonlySet<string> = new Set(['maxSessionsPerTenant', 'acquireTimeoutMs', 'walletIdleTtlMs', 'workerStartTimeoutMs']);

type OptionsPatch = { -readonly [K in Exclude<keyof ResolvedOptions, 'postgres' | 'cluster'>]?: ResolvedOptions[K] } & { rootKey?: string; postgres?: PostgresOptions; cluster?: ClusterOptions };

function validate(source: Record<string, unknown>, c: Checker, base: string): OptionsPatch {
  const out: OptionsPatch = {};
  for (const [key, value] of Object.entries(source)) {
    // An explicit `undefined` in open()'s options means "not given".
    if (value === undefined) continue;
    if (value === null && !NULLABLE.has(key)) c.fail(key, 'a value (null means no limit only for maxSessionsPerTenant, acquireTimeoutMs, walletIdleTtlMs and workerStartTimeoutMs)', value);
    switch (key) {
      case 'configFile':
        break;
      case 'dataDir':
        out.dataDir = resolve(base, c.string(key, value));
        break;
      case 'rootKey':
        out.rootKey = c.string(key, value);
        break;
      case 'postgres':
        out.postgres = checkPostgres(c, value);
        break;
      case 'cluster':
        out.cluster = checkCluster(c, value);
        break;
      case 'workers':
        out.workers = c.integer(key, value, 1);
        if (out.workers > 256) c.fail(key, 'an integer from 1 to 256', value);
        break;
      case 'capacity':
        out.capacity = c.integer(key, value, 1, false, MAX_UNITS);
        break;
      case 'weights':
        out.weights = { ...DEFAULTS.weights, ...c.weights(key, value) };
        break;
      case 'maxSessionsPerTenant':
        out.maxSessionsPerTenant = c.integer(key, value, 1, true);
        break;
      case 'tenantLimit':
        out.tenantLimit = c.oneOf(key, value, ['queue', 'reject'] as const);
        break;
      case 'acquireTimeoutMs':
        out.acquireTimeoutMs = c.integer(key, value, 0, true);
        break;
      case 'maxQueue':
        out.maxQueue = c.integer(key, value, 0, false, MAX_UNITS);
        break;
      case 'walletIdleTtlMs':
        out.walletIdleTtlMs = c.integer(key, value, 0, true);
        break;
      case 'leakWarningMs':
        out.leakWarningMs = c.integer(key, value, 0);
        break;
      case 'maxSessionMs':
        out.maxSessionMs = c.integer(key, value, 0);
        break;
      case 'kdf':
        out.kdf = c.oneOf(key, value, KDF_METHODS);
        break;
      case 'kdfConcurrency':
        out.kdfConcurrency = c.integer(key, value, 1, false, 1024);
        break;
      case 'maxValueBytes':
        out.maxValueBytes = c.integer(key, value, 1, false, 2 ** 30);
        break;
      case 'workerResourceLimits': {
        if (typeof value !== 'object' || value === null || Array.isArray(value)) c.fail(key, 'an object of limits in MiB', value);
        const limits: WorkerResourceLimits = {};
        for (const [k, v] of Object.entries(value)) {
          if (k !== 'maxOldGenerationSizeMb' && k !== 'maxYoungGenerationSizeMb' && k !== 'stackSizeMb') unknownOption(key, k, ['maxOldGenerationSizeMb', 'maxYoungGenerationSizeMb', 'stackSizeMb']);
          limits[k] = c.integer(`${key}.${k}`, v, 1, false, 1 << 20);
        }
        out.workerResourceLimits = limits;
        break;
      }
      case 'workerStartTimeoutMs':
        out.workerStartTimeoutMs = c.integer(key, value, 1, true);
        break;
      case 'allowExitOnIdle':
        if (typeof value !== 'boolean') c.fail(key, 'a boolean', value);
        out.allowExitOnIdle = value;
        break;
      case 'passphraseProvider':
        if (typeof value !== 'function') c.fail(key, 'a function (tenantId) => Promise<string | undefined>', value);
        out.passphraseProvider = value as PassphraseProvider;
        break;
      case 'logger':
        if (!isLogger(value)) c.fail(key, 'a logger with debug, info, warn and error methods (pino-compatible)', value);
        out.logger = value;
        break;
      case 'modules':
        if (!Array.isArray(value)) c.fail(key, 'an array of module paths', value);
        out.modules = value.map((m: unknown, i) => resolve(base, c.string(`${key}[${i}]`, m)));
        break;
    }
  }
  return out;
}

/** An unknown key of a nested option (`postgres.conectionsPerWorker`), with a did-you-mean. */
function unknownOption(section: string, key: string, known: readonly string[]): never {
  const guess = didYouMean(key, known);
  throw poolError('ERR_INVALID_CONFIG', `Unknown option \`${section}.${key}\`.${guess === undefined ? '' : ` Did you mean \`${section}.${guess}\`?`}`);
}

const POSTGRES_KEYS = ['connectionString', 'schema', 'connectionsPerWorker', 'registryConnections', 'registryCacheSize'];

function checkPostgres(c: Checker, value: unknown): PostgresOptions {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) c.fail('postgres', 'an object { connectionString, schema?, connectionsPerWorker? }', value);
  const out: PostgresOptions = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    switch (k) {
      case 'connectionString':
        // Never echoed: it may hold a password.
        if (typeof v !== 'string' || !/^postgres(ql)?:\/\//.test(v)) throw poolError('ERR_INVALID_CONFIG', 'Expected `postgres.connectionString` to be a postgres:// or postgresql:// connection string');
        out.connectionString = v;
        break;
      case 'schema':
        if (typeof v !== 'string' || !SCHEMA_NAME.test(v)) c.fail('postgres.schema', `a schema name matching ${String(SCHEMA_NAME)}`, v);
        out.schema = v;
        break;
      case 'connectionsPerWorker':
      case 'registryConnections':
        out[k] = c.integer(`postgres.${k}`, v, 1, false, 100);
        break;
      case 'registryCacheSize':
        out.registryCacheSize = c.integer('postgres.registryCacheSize', v, 1, false, 10_000_000);
        break;
      default:
        unknownOption('postgres', k, POSTGRES_KEYS);
    }
  }
  return out;
}

const CLUSTER_KEYS = ['instanceId', 'address', 'leaseTtlMs'];

function checkCluster(c: Checker, value: unknown): ClusterOptions {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) c.fail('cluster', 'an object { instanceId?, address?, leaseTtlMs? }', value);
  const out: ClusterOptions = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    switch (k) {
      case 'instanceId':
        if (typeof v !== 'string' || !/^[A-Za-z0-9._:-]{1,128}$/.test(v)) c.fail('cluster.instanceId', 'a name of 1 to 128 letters, digits and ._:-', v);
        out.instanceId = v;
        break;
      case 'address':
        if (typeof v !== 'string' || v.length === 0 || v.length > 2048 || !v.isWellFormed()) c.fail('cluster.address', 'a well-formed string of 1 to 2048 characters (a URL)', v);
        out.address = v;
        break;
      case 'leaseTtlMs':
        out.leaseTtlMs = c.integer('cluster.leaseTtlMs', v, 1000, false, 3_600_000);
        break;
      default:
        unknownOption('cluster', k, CLUSTER_KEYS);
    }
  }
  return out;
}
