/**
 * Moving tenants between two pools: from a SQLite data folder into PostgreSQL, or back, or between
 * any two stores. Each tenant goes through an export and an import (records, keys, settings, routes
 * and creation time), sealed under a random key that never leaves this process, in a private
 * temporary folder. A passphrase tenant needs its passphrase (and stays a passphrase tenant under
 * it); a managed tenant gets a new managed secret in the target.
 *
 * Resumable: an import is all or nothing, so a run that was interrupted is run again and finds each
 * tenant copied or not. A tenant already in the target is not written again; it is verified.
 * Verified means: the target's tenant exports the same number of records and keys as the source's.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TenantPoolError } from './errors.js';
import type { TenantPool } from './pool.js';

export interface MigrateOptions {
  /** The passphrase of a passphrase tenant; `undefined` leaves the tenant out (reported as skipped). */
  passphraseOf?: (tenantId: string) => string | undefined | Promise<string | undefined>;
  /** Only these tenants. @default every tenant of the source, in id order */
  tenants?: readonly string[];
  /** Tenants moved at once. @default 4 */
  concurrency?: number;
  /** Told of each tenant as it is done. */
  onTenant?: (result: TenantResult) => void;
}

export type TenantResult =
  | { tenantId: string; outcome: 'copied' | 'verified'; records: number; keys: number }
  | { tenantId: string; outcome: 'skipped'; reason: string }
  | { tenantId: string; outcome: 'failed'; reason: string; code?: string };

export interface MigrateReport {
  copied: number;
  verified: number;
  skipped: number;
  failed: number;
  results: TenantResult[];
}

/** Copies every tenant of `source` into `target` (see the module's description). Never changes the source. */
export async function migrateTenants(source: TenantPool, target: TenantPool, options: MigrateOptions = {}): Promise<MigrateReport> {
  const dir = mkdtempSync(join(tmpdir(), 'tenant-pool-migrate-'));
  const report: MigrateReport = { copied: 0, verified: 0, skipped: 0, failed: 0, results: [] };
  try {
    const ids = options.tenants === undefined ? allTenantIds(source) : (async function* () { yield* options.tenants!; })();
    const next = async (): Promise<string | undefined> => (await ids.next()).value as string | undefined;
    let n = 0;
    const lane = async (): Promise<void> => {
      for (let tenantId = await next(); tenantId !== undefined; tenantId = await next()) {
        const result = await moveOne(source, target, tenantId, join(dir, String(n++)), options);
        report[result.outcome]++;
        report.results.push(result);
        options.onTenant?.(result);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, lane));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return report;
}

async function* allTenantIds(pool: TenantPool): AsyncGenerator<string> {
  for (let cursor: string | null | undefined; cursor !== null; ) {
    const page = await pool.tenants.page({ limit: 500, ...(cursor === undefined ? {} : { cursor }) });
    for (const t of page.tenants) yield t.tenantId;
    cursor = page.cursor;
  }
}

async function moveOne(source: TenantPool, target: TenantPool, tenantId: string, base: string, options: MigrateOptions): Promise<TenantResult> {
  const exportKey = randomBytes(32);
  try {
    const info = await source.tenants.get(tenantId);
    const passphrase = info.managed ? undefined : await options.passphraseOf?.(tenantId);
    if (!info.managed && passphrase === undefined) return { tenantId, outcome: 'skipped', reason: 'a passphrase tenant: its passphrase was not given' };
    const withPassphrase = passphrase === undefined ? {} : { passphrase };
    const from = await source.tenants.export(tenantId, { file: `${base}.source`, exportKey, ...withPassphrase });
    let outcome: 'copied' | 'verified' = 'verified';
    const isThere = await target.tenants.get(tenantId).then(
      () => true,
      (error: unknown) => {
        if (error instanceof TenantPoolError && error.code === 'ERR_TENANT_NOT_FOUND') return false;
        throw error;
      },
    );
    if (!isThere) {
      await target.tenants.import(from.file, { exportKey, tenantId, ...withPassphrase, ...(info.kdf === 'raw' && passphrase !== undefined ? {} : { kdf: info.kdf }) });
      outcome = 'copied';
    }
    const to = await target.tenants.export(tenantId, { file: `${base}.target`, exportKey, ...withPassphrase });
    if (to.records !== from.records || to.keys !== from.keys) {
      return { tenantId, outcome: 'failed', reason: `the target holds ${to.records} records and ${to.keys} keys, the source ${from.records} and ${from.keys}${isThere ? ' (it was there before this run: delete it from the target to copy it again)' : ''}` };
    }
    return { tenantId, outcome, records: from.records, keys: from.keys };
  } catch (error) {
    return { tenantId, outcome: 'failed', reason: (error as Error).message, ...(error instanceof TenantPoolError ? { code: error.code } : {}) };
  } finally {
    exportKey.fill(0);
    rmSync(`${base}.source`, { force: true });
    rmSync(`${base}.target`, { force: true });
  }
}
