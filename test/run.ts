/**
 * Runs the `*.test.ts` files under test/ (all, or those whose names contain an argument) with uvu in
 * this one process; the workers inherit tsx through execArgv. Then runs the behaviour suites a
 * second time with the pools on PostgreSQL (a child process with `TENANT_POOL_TEST_STORE=postgres`),
 * where `TENANT_POOL_TEST_POSTGRES_URL` names a server; without one they are counted as skipped
 * (with `CI=true` that is a failure). Ends with uvu's totals and one plain `N passed, N failed` line.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from 'uvu/run';
import { postgresUrl, storeUnderTest, TEST_SCHEMA_PREFIX } from './store.js';

/** Suites about the pool's behaviour, which hold on either store; the others test one store, or no store at all. */
const BOTH_STORES = [
  'admission', 'crash', 'host-api', 'hostile', 'input', 'kill', 'lifecycle', 'limits', 'metrics', 'model', 'modules',
  'observability', 'ownership', 'queries', 'rekey', 'reliability', 'secrets', 'sessions', 'shutdown', 'storm', 'transfer', 'wallet',
];

const filters = process.argv.slice(2);
const dir = import.meta.dirname;
const isPostgresPass = storeUnderTest === 'postgres';
const suites = readdirSync(dir)
  .filter((f) => f.endsWith('.test.ts') && (filters.length === 0 || filters.some((o) => f.includes(o))))
  .filter((f) => !isPostgresPass || BOTH_STORES.includes(f.slice(0, -'.test.ts'.length)))
  .sort()
  .map((name) => ({ name, file: join(dir, name) }));

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

// uvu prints its totals but does not return them: read them off its output.
let output = '';
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
  output += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  if (output.length > 1_000_000) output = output.slice(-100_000);
  return write(chunk, ...rest);
});

const started = performance.now();
let ran = 0;
if (suites.length > 0) {
  await run(suites, { bail: false });
  ran = Number(/Total:\s+(\d+)/.exec(output.replace(/\x1b\[[0-9;]*m/g, ''))?.[1] ?? 0); // eslint-disable-line no-control-regex
}
process.stdout.write = write;
// eslint-disable-next-line no-control-regex
const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
const counts: Counts = {
  passed: Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0),
  // uvu counts skipped tests apart from its total.
  skipped: Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0),
  failed: 0,
};
counts.failed = ran - counts.passed;

if (isPostgresPass) {
  await dropTestSchemas();
} else {
  const second = suites.filter((s) => BOTH_STORES.includes(s.name.slice(0, -'.test.ts'.length)));
  if (second.length > 0) {
    const pass = await postgresPass(second.map((s) => s.name));
    counts.passed += pass.passed;
    counts.failed += pass.failed;
    counts.skipped += pass.skipped;
  }
}

console.log(`\n${suites.length} files${isPostgresPass ? ' on PostgreSQL' : ''} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
console.log(`${counts.passed} passed, ${counts.failed} failed${counts.skipped > 0 ? `, ${counts.skipped} skipped` : ''}`);
process.exit(counts.failed > 0 || (ran === 0 && counts.skipped === 0) || process.exitCode ? 1 : 0);

/** The behaviour suites again, with every pool on PostgreSQL: a child process, its counts read off its last line. */
async function postgresPass(names: string[]): Promise<Counts> {
  if (postgresUrl === undefined) {
    // As many tests as the suites declare, counted as skipped where they could not run.
    const declared = names.reduce((n, name) => n + (readFileSync(join(dir, name), 'utf8').match(/^(test|testIf|testSqliteFiles)(\.skip)?\(/gm)?.length ?? 0), 0);
    if (process.env['CI'] === 'true') {
      console.log('\nCI=true: the PostgreSQL pass must run; set TENANT_POOL_TEST_POSTGRES_URL (.ci/run starts a server)');
      return { passed: 0, failed: 1, skipped: declared };
    }
    console.log(`\nThe PostgreSQL pass: ${declared} tests of ${names.length} suites skipped (no server: set TENANT_POOL_TEST_POSTGRES_URL; source .ci/postgres; start_postgres starts one)`);
    return { passed: 0, failed: 0, skipped: declared };
  }
  console.log(`\nThe same ${names.length} behaviour suites with the pools on PostgreSQL:\n`);
  const child = spawn(process.execPath, [...process.execArgv, join(dir, 'run.ts'), ...names], {
    env: { ...process.env, TENANT_POOL_TEST_STORE: 'postgres' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let text = '';
  child.stdout.on('data', (d: Buffer) => {
    text += d.toString();
    if (text.length > 100_000) text = text.slice(-10_000);
    process.stdout.write(d);
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const last = /(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$/.exec(text);
  if (last === null) return { passed: 0, failed: 1, skipped: 0 };
  const pass = { passed: Number(last[1]), failed: Number(last[2]), skipped: Number(last[3] ?? 0) };
  if (code !== 0 && pass.failed === 0) pass.failed = 1;
  return pass;
}

/** The PostgreSQL pass leaves no schema behind, also of tests that failed before cleaning up. */
async function dropTestSchemas(): Promise<void> {
  const pg = (await import('pg')).default;
  const client = new pg.Client(postgresUrl);
  try {
    await client.connect();
    const { rows } = await client.query<{ name: string }>('SELECT nspname AS name FROM pg_namespace WHERE starts_with(nspname, $1)', [TEST_SCHEMA_PREFIX]);
    for (const { name } of rows) await client.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
  } catch {
    // Best effort: a throwaway server.
  } finally {
    await client.end().catch(() => {});
  }
}
