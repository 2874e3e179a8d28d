/**
 * Moving tenants between two pools: from a SQLite data folder into PostgreSQL, or back, or between
 * any two stores. Each tenant goes through an export and an import (records, keys, settings, routes
 * and creation time), sealed under a random key that never leaves this process, in a private
 * temporary folder. A passphrase tenant needs its passphrase (and stays a passphrase tenant under
 * it); a managed tenant gets a new managed secret in the target.
 *
 * Resumable: an import is all or nothing, so a run that was interrupted is run again and finds each
 * tenant copied or not. Verified means the same content: a digest over every record (category, id,
 * value, tags) and every key of the tenant, computed on each side by its own pool
 * (`tenants.digest`), is equal. A tenant already in the target with the same content is verified
 * and not written again; one with other content (or that the source's passphrase does not open) is
 * a conflict: reported by name and left untouched, unless `overwrite` replaces it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TenantPoolError } from '../../common/errors.js';
import type { TenantPool } from '../pool.js';

export interface MigrateOptions {
  /** The passphrase of a passphrase tenant; `undefined` leaves the tenant out (reported as skipped). */
  passphraseOf?: (tenantId: string) => string | undefined | Promise<string | undefined>;
  /** Only these tenants. @default every tenant of the source, in id order */
  tenants?: readonly string[];
  /** Tenants moved at once. @default 4 */
  concurrency?: number;
  /** Told of each tenant as it is done. */
  onTenant?: (result: TenantResult) => void;
  /** A tenant the target holds with other content is deleted there and copied again (`replaced`), instead of reported as a conflict. @default false */
  overwrite?: boolean;
}

export type TenantResult =
  | { tenantId: string; outcome: 'copied' | 'verified' | 'replaced'; records: number; keys: number; digest: string }
  | { tenantId: string; outcome: 'skipped' | 'conflict'; reason: string }
  | { tenantId: string; outcome: 'failed'; reason: string; code?: string };

export interface MigrateReport {
  copied: number;
  verified: number;
  replaced: number;
  conflict: number;
  skipped: number;
  failed: number;
  results: TenantResult[];
}

/** Copies every tenant of `source` into `target` (see the module's description). Never changes the source. */
export async function migrateTenants(source: TenantPool, target: TenantPool, options: MigrateOptions = {}): Promise<MigrateReport> {
  const dir = mkdtempSync(join(tmpdir(), 'tenant-pool-migrate-'));
  const report: MigrateReport = { copied: 0, verified: 0, replaced: 0, conflict: 0, skipped: 0, failed: 0, results: [] };
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
    let outcome: 'copied' | 'replaced' = 'copied';
    const there = await digestOf(target, tenantId, info.managed, withPassphrase);
    if (there !== null) {
      if (there !== 'unopenable' && there.digest === from.digest) return { tenantId, outcome: 'verified', records: from.records, keys: from.keys, digest: from.digest };
      const differs =
        there === 'unopenable'
          ? 'it does not open as the source\'s does: another passphrase, or one of the two is managed'
          : `it holds ${there.records} records and ${there.keys} keys, the source ${from.records} and ${from.keys}, and their digests differ`;
      if (options.overwrite !== true) return { tenantId, outcome: 'conflict', reason: `the target already has a tenant ${tenantId} with other content (${differs}); it was left untouched: overwrite replaces it` };
      await target.tenants.delete(tenantId);
      outcome = 'replaced';
    }
    await target.tenants.import(from.file, { exportKey, tenantId, ...withPassphrase, ...(info.kdf === 'raw' && passphrase !== undefined ? {} : { kdf: info.kdf }) });
    const to = await target.tenants.digest(tenantId, withPassphrase);
    if (to.digest !== from.digest) return { tenantId, outcome: 'failed', reason: `after the copy, the target's content differs from the source's (${to.records} records and ${to.keys} keys against ${from.records} and ${from.keys})` };
    return { tenantId, outcome, records: from.records, keys: from.keys, digest: from.digest };
  } catch (error) {
    return { tenantId, outcome: 'failed', reason: (error as Error).message, ...(error instanceof TenantPoolError ? { code: error.code } : {}) };
  } finally {
    exportKey.fill(0);
    rmSync(`${base}.source`, { force: true });
  }
}

/** The target's digest of the tenant: null when it has no such tenant, 'unopenable' when it is not opened as the source's is (another passphrase, or managed where the source's is not). */
async function digestOf(pool: TenantPool, tenantId: string, isManaged: boolean, withPassphrase: { passphrase?: string }): Promise<{ digest: string; records: number; keys: number } | 'unopenable' | null> {
  try {
    if ((await pool.tenants.get(tenantId)).managed !== isManaged) return 'unopenable';
    return await pool.tenants.digest(tenantId, withPassphrase);
  } catch (error) {
    if (error instanceof TenantPoolError && error.code === 'ERR_TENANT_NOT_FOUND') return null;
    if (error instanceof TenantPoolError && error.code === 'ERR_WALLET_KEY_INVALID') return 'unopenable';
    throw error;
  }
}
