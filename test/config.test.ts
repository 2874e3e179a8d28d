import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CODE_ONLY_KEYS, DEFAULTS, OPTION_KEYS, resolveConfig, resolveOptions } from '../src/config/config.js';
import { OptionChecker } from '../src/config/check-options.js';
import { OPTIONS, type Option } from '../src/config/option-spec.js';
import { generated } from '../scripts/options.js';
import { TenantPoolError } from '../common/errors.js';
import { rejectsWith, rootKey, tempDir } from './helpers.js';
import { TenantPool } from '../src/pool.js';

function configError(fn: () => unknown): TenantPoolError {
  try {
    fn();
  } catch (error) {
    assert.instance(error, TenantPoolError);
    assert.is((error as TenantPoolError).code, 'ERR_INVALID_CONFIG');
    return error as TenantPoolError;
  }
  throw new Error('expected ERR_INVALID_CONFIG');
}

test('defaults apply and the input is not mutated', () => {
  const input = Object.freeze({ capacity: 50 });
  const options = resolveOptions(input, {});
  assert.is(options.capacity, 50);
  assert.is(options.acquireTimeoutMs, DEFAULTS.acquireTimeoutMs);
  assert.equal(options.weights, { wallet: 4, session: 1 });
  assert.is(options.walletIdleTtlMs, 30_000);
  assert.is(options.maxSessionsPerTenant, Infinity);
  assert.ok(Object.isFrozen(options));
});

test('null in a config file means no limit where Infinity is allowed, and is refused elsewhere', () => {
  const dir = tempDir();
  const file = join(dir, 'pool.json');
  writeFileSync(file, JSON.stringify({ maxSessionsPerTenant: null, acquireTimeoutMs: null, walletIdleTtlMs: null }));
  const options = resolveOptions({ configFile: file }, {});
  assert.is(options.maxSessionsPerTenant, Infinity);
  assert.is(options.acquireTimeoutMs, Infinity);
  assert.is(options.walletIdleTtlMs, Infinity);
  writeFileSync(file, JSON.stringify({ capacity: null }));
  assert.match(configError(() => resolveOptions({ configFile: file }, {})).message, '`capacity`');
});

test('zero stays zero (no `||` defaults)', () => {
  const options = resolveOptions({ walletIdleTtlMs: 0, leakWarningMs: 0, acquireTimeoutMs: 0 }, {});
  assert.is(options.walletIdleTtlMs, 0);
  assert.is(options.leakWarningMs, 0);
  assert.is(options.acquireTimeoutMs, 0);
});

test('unknown keys, wrong types and out-of-range values name the key', () => {
  assert.match(configError(() => resolveOptions({ capacty: 1 } as never, {})).message, 'capacty');
  assert.match(configError(() => resolveOptions({ capacity: -1 }, {})).message, '`capacity`');
  assert.match(configError(() => resolveOptions({ capacity: '10' as never }, {})).message, '`capacity`');
  assert.match(configError(() => resolveOptions({ kdf: 'md5' as never }, {})).message, '`kdf`');
  assert.match(configError(() => resolveOptions({ weights: { wallet: 4, sesion: 1 } as never }, {})).message, 'weights.sesion');
  assert.match(configError(() => resolveOptions({ workers: 0 }, {})).message, '`workers`');
  assert.match(configError(() => resolveOptions({ tenantLimit: 'drop' as never }, {})).message, '`tenantLimit`');
});

test('explicit options win over TENANT_POOL_POSTGRES_URL: a dataDir given (to open() or in the config file) keeps the pool on SQLite files; the environment chooses only where no store is named, and the pool says so once (a warning, stats().store.chosenBy)', async () => {
  const url = 'postgres://app:S3CRET@db.internal:5432/agents';
  const env = { TENANT_POOL_POSTGRES_URL: url };
  const given = resolveConfig({ dataDir: tempDir() }, env);
  assert.equal([given.options.postgres, given.postgresUrl, given.options.storeChosenBy], [undefined, undefined, 'options']);
  const dir = tempDir();
  const file = join(dir, 'pool.json');
  writeFileSync(file, JSON.stringify({ dataDir: './data' }));
  const fromFile = resolveConfig({ configFile: file }, env);
  assert.equal([fromFile.options.postgres, fromFile.options.storeChosenBy], [undefined, 'options'], 'a dataDir in the config file is explicit too');
  const chosen = resolveConfig({}, env);
  assert.equal([chosen.options.postgres?.schema, chosen.postgresUrl, chosen.options.storeChosenBy], ['tenant_pool', url, 'environment']);
  assert.is(resolveConfig({}, {}).options.storeChosenBy, 'default');
  // A real pool: with the variable set and a dataDir given, it opens SQLite files there (the URL points nowhere).
  const saved = process.env['TENANT_POOL_POSTGRES_URL'];
  process.env['TENANT_POOL_POSTGRES_URL'] = 'postgres://nobody@127.0.0.1:1/none';
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }): void => void warnings.push(String(w.code));
  process.on('warning', onWarning);
  try {
    const dataDir = tempDir();
    const pool = await TenantPool.open({ dataDir, rootKey: rootKey(), workers: 1 });
    try {
      assert.equal(pool.stats().store, { kind: 'sqlite', chosenBy: 'options' });
      await pool.tenants.create({ tenantId: 't' });
      assert.ok(existsSync(join(dataDir, 'registry.json')) || readdirSync(dataDir).length > 0, 'the data folder holds the registry');
    } finally {
      await pool.close();
    }
    await new Promise((resolve) => setImmediate(resolve));
    assert.not.ok(warnings.includes('TENANT_POOL_STORE_FROM_ENV'), 'no word of the environment: it chose nothing');
    // With no store named, the environment chooses, and the pool says so (here the server is unreachable: the open fails, after saying it).
    await rejectsWith(TenantPool.open({ rootKey: rootKey(), workers: 1 }), 'ERR_STORAGE_UNAVAILABLE');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(warnings.filter((w) => w === 'TENANT_POOL_STORE_FROM_ENV'), ['TENANT_POOL_STORE_FROM_ENV']);
  } finally {
    process.off('warning', onWarning);
    if (saved === undefined) delete process.env['TENANT_POOL_POSTGRES_URL'];
    else process.env['TENANT_POOL_POSTGRES_URL'] = saved;
  }
});

test('postgres: defaults, the connection budget, the URL from the environment, kept off the options; bad values name the key and never echo the URL', () => {
  const url = 'postgres://app:S3CRET@db.internal:5432/agents';
  assert.is(resolveOptions({}, {}).postgres, undefined, 'SQLite files by default');
  const { options, postgresUrl } = resolveConfig({ workers: 3, postgres: { connectionString: url } }, {});
  assert.equal(options.postgres, { schema: 'tenant_pool', connectionsPerWorker: 2, registryConnections: 2, registryCacheSize: 10_000, connectionBudget: 3 * 2 + 2 + 1 });
  assert.is(postgresUrl, url);
  assert.not.ok(JSON.stringify(options).includes('S3CRET'), 'the connection string is not on the options');
  // The environment alone selects the store, as TENANT_POOL_ROOT_KEY gives the key.
  const fromEnv = resolveConfig({ workers: 1, postgres: { connectionsPerWorker: 4, schema: 'agents_eu' } }, { TENANT_POOL_POSTGRES_URL: url });
  assert.equal([fromEnv.postgresUrl, fromEnv.options.postgres?.schema, fromEnv.options.postgres?.connectionBudget], [url, 'agents_eu', 1 * 4 + 2 + 1]);
  assert.is(resolveConfig({ workers: 1 }, { TENANT_POOL_POSTGRES_URL: url }).options.postgres?.schema, 'tenant_pool');
  assert.match(configError(() => resolveOptions({ postgres: {} }, {})).message, 'TENANT_POOL_POSTGRES_URL');
  for (const [bad, key] of [
    [{ connectionString: 'mysql://app:S3CRET@db/agents' }, 'postgres.connectionString'],
    [{ connectionString: url, schema: 'Robert"; DROP TABLE x; --' }, 'postgres.schema'],
    [{ connectionString: url, schema: 'pg_catalog'.repeat(10) }, 'postgres.schema'],
    [{ connectionString: url, connectionsPerWorker: 0 }, 'postgres.connectionsPerWorker'],
    [{ connectionString: url, registryConnections: 1.5 }, 'postgres.registryConnections'],
    [{ connectionString: url, conectionsPerWorker: 2 }, 'postgres.conectionsPerWorker'],
  ] as const) {
    const error = configError(() => resolveOptions({ postgres: bad as never }, {}));
    assert.match(error.message, key);
    assert.not.ok(error.message.includes('S3CRET'), `${key}: the URL is not echoed`);
  }
  assert.match(configError(() => resolveOptions({ postgres: { connectionString: url, conectionsPerWorker: 2 } as never }, {})).message, 'Did you mean `postgres.connectionsPerWorker`');
  assert.match(configError(() => resolveOptions({ postgres: 'postgres://x' as never }, {})).message, '`postgres`');
});

test('cluster: needs postgres; defaults; bad values name the key', () => {
  const postgres = { connectionString: 'postgres://app@db/agents' };
  assert.match(configError(() => resolveOptions({ cluster: {} }, {})).message, '`postgres`');
  const options = resolveOptions({ workers: 2, postgres, cluster: { address: 'http://10.0.0.5:3000' } }, {});
  assert.is(options.cluster?.leaseTtlMs, 10_000);
  assert.is(options.cluster?.address, 'http://10.0.0.5:3000');
  assert.match(options.cluster!.instanceId, /^[A-Za-z0-9._:-]+$/);
  assert.is(options.postgres?.connectionBudget, 2 * 2 + 2 + 2, 'two connections renew leases; no owner\'s connection (instances share the schema)');
  assert.match(configError(() => resolveOptions({ postgres, cluster: { leaseTtlMs: 10 } }, {})).message, 'cluster.leaseTtlMs');
  assert.match(configError(() => resolveOptions({ postgres, cluster: { instanceId: 'a b' } }, {})).message, 'cluster.instanceId');
  assert.match(configError(() => resolveOptions({ postgres, cluster: { leaseTTLMs: 5000 } as never }, {})).message, 'Did you mean `cluster.leaseTtlMs`');
});

test('logger: any object with the four level methods; anything else, or a logger in a config file, is refused', () => {
  const logger = { debug() {}, info() {}, warn() {}, error() {}, trace() {} };
  assert.is(resolveOptions({ logger }, {}).logger, logger, 'the same object, extra methods and all');
  assert.is(resolveOptions({}, {}).logger, undefined, 'none by default');
  assert.match(configError(() => resolveOptions({ logger: console.log as never }, {})).message, '`logger`');
  assert.match(configError(() => resolveOptions({ logger: { info() {}, warn() {}, error() {} } as never }, {})).message, 'debug, info, warn and error');
  const file = join(tempDir(), 'pool.json');
  writeFileSync(file, JSON.stringify({ logger: 'pino' }));
  assert.match(configError(() => resolveOptions({ configFile: file }, {})).message, /`logger` cannot stand in config file/);
});

test('a config file is read, overridden by options, and its paths resolve against its folder', () => {
  const dir = tempDir();
  const file = join(dir, 'pool.json');
  writeFileSync(file, JSON.stringify({ $schema: './tenant-pool.schema.json', capacity: 20, dataDir: 'data', acquireTimeoutMs: 5 }));
  const options = resolveOptions({ configFile: file, acquireTimeoutMs: 7 }, {});
  assert.is(options.capacity, 20);
  assert.is(options.acquireTimeoutMs, 7);
  assert.is(options.dataDir, join(dir, 'data'));
  const fromEnv = resolveOptions({}, { TENANT_POOL_CONFIG: file });
  assert.is(fromEnv.capacity, 20);
});

test('a broken, unreadable or wrong config file is refused naming the file', () => {
  const dir = tempDir();
  const broken = join(dir, 'broken.json');
  writeFileSync(broken, '{ "capacity": ');
  assert.match(configError(() => resolveOptions({ configFile: broken }, {})).message, broken);
  assert.match(configError(() => resolveOptions({ configFile: join(dir, 'missing.json') }, {})).message, 'missing.json');
  const typo = join(dir, 'typo.json');
  writeFileSync(typo, JSON.stringify({ maxQeue: 3 }));
  const error = configError(() => resolveOptions({ configFile: typo }, {}));
  assert.match(error.message, 'maxQeue');
  assert.match(error.message, typo);
});

test('a near miss gets a did-you-mean; a wrong type in the file names the key and the file', () => {
  assert.match(configError(() => resolveOptions({ capacty: 1 } as never, {})).message, 'Did you mean `capacity`?');
  assert.match(configError(() => resolveOptions({ walletIdleTTLms: 1 } as never, {})).message, 'Did you mean `walletIdleTtlMs`?');
  assert.match(configError(() => resolveOptions({ weights: { wallett: 1 } } as never, {})).message, 'Did you mean `weights.wallet`?');
  assert.not.match(configError(() => resolveOptions({ frobnicate: 1 } as never, {})).message, 'Did you mean');
  const dir = tempDir();
  const file = join(dir, 'pool.json');
  writeFileSync(file, JSON.stringify({ maxQueue: 'many' }));
  const error = configError(() => resolveOptions({ configFile: file }, {}));
  assert.match(error.message, '`maxQueue`');
  assert.match(error.message, file);
});

test('the PoolOptions types, tenant-pool.schema.json and the README’s option table are what src/config/option-spec.ts gives', () => {
  for (const { path, text } of generated()) assert.ok(readFileSync(join(import.meta.dirname, '..', path), 'utf8') === text, `${path} is stale: run npm run options`);
  const schema = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'tenant-pool.schema.json'), 'utf8')) as JsonSchema;
  const inSchema = Object.keys(schema.properties!).filter((k) => k !== '$schema').sort();
  assert.equal(inSchema, OPTION_KEYS.filter((k) => !CODE_ONLY_KEYS.includes(k)).sort(), 'every option a file may hold, and nothing else');
  for (const [key, value] of Object.entries(DEFAULTS)) {
    // Infinity has no JSON form: the file says "no limit" with null.
    assert.equal(schema.properties![key]?.default, value === Infinity ? null : value, `default of ${key}`);
  }
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { files: string[] };
  assert.ok(pkg.files.includes('tenant-pool.schema.json'), 'the schema ships with the package');
});

interface JsonSchema {
  type?: string | string[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean;
  items?: JsonSchema;
}

/** The part of JSON Schema the generated schema uses, as an editor applies it. */
function schemaAccepts(schema: JsonSchema, value: unknown): boolean {
  const kind = value === null ? 'null' : Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value === 'number' ? 'number' : typeof value;
  const types = schema.type === undefined ? undefined : [schema.type].flat();
  if (types !== undefined && !types.includes(kind)) return false;
  if (schema.enum !== undefined && !schema.enum.includes(value)) return false;
  if (typeof value === 'number' && ((schema.minimum !== undefined && value < schema.minimum) || (schema.maximum !== undefined && value > schema.maximum))) return false;
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && [...value].length < schema.minLength) return false;
    if (schema.maxLength !== undefined && [...value].length > schema.maxLength) return false;
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) return false;
  }
  if (Array.isArray(value) && schema.items !== undefined) return value.every((item) => schemaAccepts(schema.items!, item));
  if (kind === 'object' && schema.properties !== undefined) {
    return Object.entries(value as Record<string, unknown>).every(([k, v]) => (Object.hasOwn(schema.properties!, k) ? schemaAccepts(schema.properties![k]!, v) : schema.additionalProperties !== false));
  }
  return true;
}

/** Values worth trying against an option: its edges, one step past them, and the wrong kinds. */
function samples(spec: Option): unknown[] {
  const wrong = [null, true, 'x', 1, 1.5, [], {}, { unknown: 1 }];
  switch (spec.kind) {
    case 'integer': {
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      return [...wrong, spec.min - 1, spec.min, spec.min + 1, max - 1, max, max + 1, 2 ** 31, 2 ** 53, String(spec.min)];
    }
    case 'string':
      return [...wrong, '', 'a', 'a b', 'postgres://u@h/db', 'postgresql://h', 'mysql://h', 'Tenant_1', 'tenant_pool', '_x', '9x', 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(128), 'x'.repeat(129), 'x'.repeat(2048), 'x'.repeat(2049), '__proto__'];
    case 'enum':
      return [...wrong, ...spec.values, `${spec.values[0]!} `, spec.values[0]!.toUpperCase()];
    case 'boolean':
      return [...wrong, false, 'true', 0];
    case 'paths':
      return [...wrong, ['a'], ['a', 'b/c'], [''], [1], ['a', null]];
    case 'object':
      return [...wrong, ...Object.entries(spec.fields).flatMap(([k, f]) => samples(f).map((v) => ({ [k]: v })))];
    case 'code':
      return [];
  }
}

test('the schema an editor checks a config file with and the checks of open() accept the same values, option by option and at every edge', () => {
  const schema = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'tenant-pool.schema.json'), 'utf8')) as JsonSchema;
  const checker = new OptionChecker(' in config file test.json', tempDir());
  let tried = 0;
  for (const [key, spec] of Object.entries(OPTIONS as Record<string, Option>)) {
    if (spec.inFile === false) continue;
    for (const value of samples(spec)) {
      const doc = { [key]: value };
      let opened = true;
      try {
        checker.check(doc);
      } catch (error) {
        assert.is((error as TenantPoolError).code, 'ERR_INVALID_CONFIG');
        assert.match((error as Error).message, key, 'the message names the option');
        opened = false;
      }
      assert.is(opened, schemaAccepts(schema, doc), `${key} = ${JSON.stringify(value)}: open() ${opened ? 'accepts' : 'refuses'} it, the schema does not agree`);
      tried++;
    }
  }
  assert.ok(tried > 500, `${tried} values tried`);
  // The one check JSON Schema cannot say: a lone surrogate (a JSON file may hold one as "\ud800").
  assert.match(configError(() => checker.check({ cluster: { address: 'http://h/\ud800' } })).message, 'cluster.address');
});

test('a secret given wrong is never echoed, and code-only options are refused in a file by name', () => {
  for (const rootKey of [12345678, '', { key: 'S3CRET' }]) assert.not.match(configError(() => resolveOptions({ rootKey: rootKey as never }, {})).message, /12345678|S3CRET/);
  assert.not.match(configError(() => resolveOptions({ postgres: { connectionString: 'mysql://u:S3CRET@h/db' } }, {})).message, 'S3CRET');
  const dir = tempDir();
  for (const key of CODE_ONLY_KEYS) {
    const file = join(dir, `${key}.json`);
    writeFileSync(file, JSON.stringify({ [key]: 'x' }));
    assert.match(configError(() => resolveOptions({ configFile: file }, {})).message, `\`${key}\` cannot stand in config file`);
  }
  // A hostile key is an unknown option, never a prototype write.
  const file = join(dir, 'proto.json');
  writeFileSync(file, '{ "__proto__": { "capacity": 1 }, "constructor": 1 }');
  assert.match(configError(() => resolveOptions({ configFile: file }, {})).message, 'Unknown option `__proto__`');
  assert.match(configError(() => resolveOptions({ weights: JSON.parse('{ "__proto__": 1 }') as never }, {})).message, 'Unknown option `weights.__proto__`');
});

test('the README’s example config is valid and lists every option but the secret and configFile', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const block = /### Options and the config file[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README has the example');
  const example = JSON.parse(block) as Record<string, unknown>;
  const dir = tempDir();
  const file = join(dir, 'pool.json');
  writeFileSync(file, block);
  const options = resolveOptions({ configFile: file }, {});
  assert.is(options.capacity, DEFAULTS.capacity);
  // `postgres` holds a connection string (a secret, like the root key), and `cluster` needs it: the README shows both in their own sections.
  assert.equal(Object.keys(example).filter((k) => k !== '$schema').sort(), OPTION_KEYS.filter((k) => !CODE_ONLY_KEYS.includes(k) && k !== 'rootKey' && k !== 'postgres' && k !== 'cluster').sort());
});

test.run();
