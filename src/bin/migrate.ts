#!/usr/bin/env node
/**
 * tenant-pool-migrate --from <config.json> --to <config.json> [--passphrases <file.json>] [--concurrency N] [--overwrite] [tenantId...]
 *
 * Copies every tenant (or the ones named) of the pool the first config file describes into the
 * pool the second describes: a SQLite data folder into PostgreSQL (`"postgres": {...}`), or back.
 * Root keys and connection strings come from the files or the environment as for any pool
 * (`TENANT_POOL_ROOT_KEY` applies to both; give each file its own `rootKey` when they differ).
 * `--passphrases` names a JSON file `{ "tenantId": "passphrase" }` for passphrase tenants.
 * Prints one line per tenant and a summary; run it again after an interruption. Each tenant is
 * verified by a digest of its content on both sides; a tenant the target already holds with other
 * content is a conflict, left untouched (`--overwrite` replaces it). Exit code 0 when every tenant
 * is copied, replaced or verified; 1 when one failed, was a conflict or was skipped; 2 for a usage error.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { migrateTenants } from '../tenants/migrate.js';
import { TenantPool } from '../pool.js';

const { values, positionals } = parseArgs({
  options: { from: { type: 'string' }, to: { type: 'string' }, passphrases: { type: 'string' }, concurrency: { type: 'string' }, overwrite: { type: 'boolean' }, help: { type: 'boolean' } },
  allowPositionals: true,
});
const USAGE = 'usage: tenant-pool-migrate --from <config.json> --to <config.json> [--passphrases <file.json>] [--concurrency N] [--overwrite] [tenantId...]\n';
if (values.help === true) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (values.from === undefined || values.to === undefined) {
  process.stderr.write(USAGE);
  process.exit(2);
}
const passphrases = values.passphrases === undefined ? {} : (JSON.parse(readFileSync(values.passphrases, 'utf8')) as Record<string, unknown>);
const source = await TenantPool.open({ configFile: values.from });
let code: number;
try {
  const target = await TenantPool.open({ configFile: values.to });
  try {
    const report = await migrateTenants(source, target, {
      ...(positionals.length > 0 ? { tenants: positionals } : {}),
      concurrency: values.concurrency === undefined ? 4 : Number(values.concurrency),
      overwrite: values.overwrite === true,
      passphraseOf: (tenantId) => {
        const p = Object.hasOwn(passphrases, tenantId) ? passphrases[tenantId] : undefined;
        return typeof p === 'string' ? p : undefined;
      },
      onTenant: (r) => process.stdout.write(`${r.outcome} ${r.tenantId}${'records' in r ? ` (${r.records} records, ${r.keys} keys)` : ` (${r.reason})`}\n`),
    });
    process.stdout.write(`${report.copied} copied, ${report.replaced} replaced, ${report.verified} verified, ${report.conflict} conflicts, ${report.skipped} skipped, ${report.failed} failed\n`);
    code = report.failed + report.conflict + report.skipped > 0 ? 1 : 0;
  } finally {
    await target.close();
  }
} finally {
  await source.close();
}
process.exit(code);
