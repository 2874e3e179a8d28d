/**
 * The PostgreSQL tests' server: `TENANT_POOL_TEST_POSTGRES_URL` (`.ci/run` starts one; so does
 * `source .ci/postgres; start_postgres`). Without one, these tests are skipped and counted as
 * skipped; with `CI=true` they must run, and fail when no server is given.
 */
import { randomBytes } from 'node:crypto';
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
