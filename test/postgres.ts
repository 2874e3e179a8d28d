/**
 * The PostgreSQL tests' server: `TENANT_POOL_TEST_POSTGRES_URL` (`.ci/run` starts one; so does
 * `source .ci/postgres; start_postgres`). Without one, these tests are skipped and counted as
 * skipped; with `CI=true` they must run, and fail when no server is given.
 */
import { pgQuery } from './store.js';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { postgresUrl, TEST_SCHEMA_PREFIX } from './store.js';

export { dropSchema, postgresUrl } from './store.js';

export function testWithPostgres(name: string, fn: () => Promise<void>): void {
  if (postgresUrl !== undefined) test(`[postgres] ${name}`, fn);
  else if (process.env['CI'] === 'true') test(`[postgres] ${name}`, () => assert.unreachable('CI=true: the PostgreSQL tests must run; set TENANT_POOL_TEST_POSTGRES_URL (.ci/run starts a server)'));
  else test.skip(`[postgres] ${name}`, fn);
}

/** A schema of its own for one test, so tests never see each other's rows. */
export function testSchema(): string {
  return `${TEST_SCHEMA_PREFIX}${randomBytes(6).toString('hex')}`;
}

/** pg_ctl of the tests' server, where `.ci/postgres` started it: the tests that restart the server need it. */
const postgresCtl = process.env['TENANT_POOL_TEST_POSTGRES_CTL'] || undefined;

/** A test that restarts the server: where it cannot be restarted from here (no pg_ctl given), skipped and counted; with CI=true it must run. */
export function testWithRestart(name: string, fn: () => Promise<void>): void {
  if (postgresCtl === undefined && process.env['CI'] !== 'true') test.skip(`[postgres] ${name}`, fn);
  else testWithPostgres(name, fn);
}

/** Restarts the tests' server (fast shutdown) and waits until it accepts connections again. */
export function restartPostgres(): void {
  assert.ok(postgresCtl !== undefined, 'CI=true: TENANT_POOL_TEST_POSTGRES_CTL names the server to restart (.ci/postgres)');
  // pg_ctl's output goes to a file: without `-l`, the restarted server inherits it and would hold a pipe open.
  const log = join(mkdtempSync(join(tmpdir(), 'tp-pgctl-')), 'pg_ctl.log');
  const fd = openSync(log, 'w');
  const restart = spawnSync('sh', ['-c', `${postgresCtl} restart -m fast -w -t 60`], { stdio: ['ignore', fd, fd], timeout: 90_000 });
  closeSync(fd);
  assert.is(restart.status, 0, readFileSync(log, 'utf8'));
}

/** Stops the tests' server (fast shutdown); `startPostgres()` brings it back. */
export function stopPostgres(): void {
  pgCtl('stop -m fast -w -t 60');
}

/** Starts the tests' server again and waits until it accepts connections. */
export function startPostgres(): void {
  pgCtl('start -w -t 60');
}

function pgCtl(command: string): void {
  assert.ok(postgresCtl !== undefined, 'CI=true: TENANT_POOL_TEST_POSTGRES_CTL names the server to stop and start (.ci/postgres)');
  const log = join(mkdtempSync(join(tmpdir(), 'tp-pgctl-')), 'pg_ctl.log');
  const fd = openSync(log, 'w');
  const run = spawnSync('sh', ['-c', `${postgresCtl} ${command}`], { stdio: ['ignore', fd, fd], timeout: 90_000 });
  closeSync(fd);
  assert.is(run.status, 0, readFileSync(log, 'utf8'));
}

/** Restores a pg_dump fixture of `test/fixtures/formats/` (psql's meta-commands left out: the dump is plain SQL otherwise) into a schema of its own. */
export async function restoreFixture(fixture: string, schema: string): Promise<void> {
  const sql = readFileSync(new URL(`./fixtures/formats/${fixture}`, import.meta.url), 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('\\'))
    .join('\n')
    .replaceAll('tp_fixture_010', schema);
  await pgQuery(sql);
}
