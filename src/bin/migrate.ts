#!/usr/bin/env node
/**
 * tenant-pool-migrate --from <config.json> --to <config.json> [--passphrases <file.json>] [--concurrency N] [tenantId...]
 *
 * Copies every tenant (or the ones named) of the pool the first config file describes into the
 * pool the second describes: a SQLite data folder into PostgreSQL (`"postgres": {...}`), or back.
 * Root keys and connection strings come from the files or the environment as for any pool
 * (`TENANT_POOL_ROOT_KEY` applies to both; give each file its own `rootKey` when they differ).
 * `--passphrases` names a JSON file `{ "tenantId": "passphrase" }` for passphrase tenants.
 * Prints one line per tenant and a summary; run it again after an interruption. Exit code 0 when
 * every tenant is copied or verified, 1 when one failed, 2 when one was skipped.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { migrateTenants } from '../migrate.js';
import { TenantPool } from '../pool.js';

const { values, positionals } = parseArgs({
  options: { from: { type: 'string' }, to: { type: 'string' }, passphrases: { type: 'string' }, concurrency: { type: 'string' }, help: { type: 'boolean' } },
  allowPositionals: true,
});
if (values.help === true || values.from === undefined || values.to === undefined) {
  process.stderr.write('usage: tenant-pool-migrate --from <config.json> --to <config.json> [--passphrases <file.json>] [--concurrency N] [tenantId...]\n');
  process.exit(values.help === true ? 0 : 64);
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
      passphraseOf: (tenantId) => {
        const p = Object.hasOwn(passphrases, tenantId) ? passphrases[tenantId] : undefined;
        return typeof p === 'string' ? p : undefined;
      },
      onTenant: (r) => process.stdout.write(`${r.outcome} ${r.tenantId}${'records' in r ? ` (${r.records} records, ${r.keys} keys)` : ` (${r.reason})`}\n`),
    });
    process.stdout.write(`${report.copied} copied, ${report.verified} verified, ${report.skipped} skipped, ${report.failed} failed\n`);
    code = report.failed > 0 ? 1 : report.skipped > 0 ? 2 : 0;
  } finally {
    await target.close();
  }
} finally {
  await source.close();
}
process.exit(code);
