/**
 * The operator's commands. Each works on one store (see `args.ts`), prints its result — text, or
 * with `--json` one JSON document — and returns its exit code: 0 done, 1 it found a problem (damage,
 * a held folder, a missing key, a conflict). Every command but `upgrade` opens the store with
 * `upgrade: 'never'`: an operator's tool changes a format only when asked to.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { resolveConfig, type PoolOptions } from '../config/config.js';
import { TenantPoolError } from '../../common/errors.js';
import { RELEASE, SCHEMA_FORMAT, STORE_FORMAT } from '../../common/formats.js';
import { openPgPool } from '../../common/pg.js';
import { TenantPool } from '../pool.js';
import { DataDirLock } from '../store/data-dir.js';
import { inspectSchema } from '../store/pg-format.js';
import { PostgresRegistry } from '../store/postgres-registry.js';
import { inspectDataDir } from '../store/registry.js';
import { SqliteTenantStore } from '../store/sqlite-store.js';
import type { UpgradeProgress } from '../store/sqlite-format.js';
import type { TenantStore } from '../store/tenant-store.js';
import { migrateTenants } from '../tenants/migrate.js';
import { intFlag, kdfFlag, readPassphrases, secret, STORE_FLAGS, storeChoice, stringFlag, tenantIdArg, UsageError, type Flags, type StoreChoice } from './args.js';
import { progressBar } from './terminal.js';
import type { ParseArgsConfig } from 'node:util';

/** Where a command writes: its result on stdout (text or JSON), nothing else there. */
export interface Output {
  json: boolean;
  /** Prints the result: `value` as JSON with `--json`, else the text lines. */
  result(value: unknown, text: string | string[]): void;
}

export interface Command {
  name: string;
  usage: string;
  summary: string;
  /** More lines of help. */
  help: string;
  flags: NonNullable<ParseArgsConfig['options']>;
  run(flags: Flags, positionals: string[], out: Output): Promise<number>;
}

/** Set by the first Ctrl-C: long commands stop after the tenant under way, close the store and say how far they got. */
export const interrupt = { requested: false };

async function openPool(choice: StoreChoice, extra: PoolOptions = {}, rehash = true): Promise<TenantPool> {
  return TenantPool.open({ ...choice.options, upgrade: 'never', walletIdleTtlMs: 0, leakWarningMs: 0, ...extra }, { rehash });
}

/** Runs `fn` on a pool of the store the flags name, closed afterwards whatever happens. */
async function withPool<T>(flags: Flags, fn: (pool: TenantPool) => Promise<T>): Promise<T> {
  const pool = await openPool(storeChoice(flags));
  try {
    return await fn(pool);
  } finally {
    await pool.close();
  }
}

/** The one tenant id a command takes, and nothing more. */
function oneTenant(positionals: string[]): string {
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1]!.slice(0, 40))}`);
  return tenantIdArg(positionals[0]);
}

/** The store itself (no pool, no workers), for the commands that change it whole: `upgrade`, `rotate-root-key`. */
async function openStore(choice: StoreChoice, upgrade: 'auto' | 'never', progress?: UpgradeProgress): Promise<TenantStore> {
  if (choice.kind === 'postgres') {
    if (choice.rootKey === undefined) throw new TenantPoolError('ERR_ROOT_KEY_MISSING', 'the PostgreSQL store needs its root key: TENANT_POOL_ROOT_KEY or --root-key-file');
    // Beside live instances (a rolling upgrade, a rotation under a running cluster): no ownership taken.
    return PostgresRegistry.open({ connectionString: choice.postgres!.url, schema: choice.postgres!.schema, rootKey: choice.rootKey, cacheSize: 16, maxConnections: 2, connectionsPerWorker: 1, exclusive: false, upgrade, ...(progress === undefined ? {} : { progress }), warn: () => {} });
  }
  return SqliteTenantStore.open({ dataDir: resolve(choice.dataDir!), rootKey: choice.rootKey, warn: () => {}, onSwept: () => {}, upgrade, ...(progress === undefined ? {} : { progress }) });
}

/** Where a `--config` file puts the store. */
function resolved(choice: StoreChoice): StoreChoice {
  if (choice.kind !== 'config') return choice;
  const { options, rootKey, postgresUrl } = resolveConfig(choice.options);
  const key = choice.rootKey ?? rootKey;
  if (options.postgres !== undefined && postgresUrl !== undefined) return { ...choice, kind: 'postgres', rootKey: key, postgres: { url: postgresUrl, schema: options.postgres.schema }, label: `the PostgreSQL schema ${options.postgres.schema}` };
  return { ...choice, kind: 'sqlite', rootKey: key, dataDir: options.dataDir, label: `the data folder ${options.dataDir}` };
}

const info: Command = {
  name: 'info',
  usage: 'tenant-pool info (--data-dir DIR | --postgres URL --schema S | --config FILE) [--root-key-file F] [--json]',
  summary: 'the store: format, tenants, sizes, who holds it, cluster members',
  help: 'Reads without taking the store: a pool may hold it meanwhile. A SQLite folder needs its root key (TENANT_POOL_ROOT_KEY or --root-key-file).',
  flags: STORE_FLAGS,
  async run(flags, _positionals, out) {
    const choice = resolved(storeChoice(flags));
    if (choice.kind === 'postgres') {
      const pool = await openPgPool(choice.postgres!.url, choice.postgres!.schema, 1);
      try {
        const found = await inspectSchema(pool, choice.postgres!.schema);
        const doc = { store: 'postgres', schema: choice.postgres!.schema, release: RELEASE, currentFormat: SCHEMA_FORMAT, ...found, upgradeNeeded: found.format !== null && found.format < SCHEMA_FORMAT };
        out.result(doc, [
          `store      PostgreSQL schema ${choice.postgres!.schema}${found.exists ? '' : ' (not created yet)'}`,
          `format     ${found.format ?? '-'} (this release, ${RELEASE}, uses ${SCHEMA_FORMAT}${doc.upgradeNeeded ? ': run tenant-pool upgrade' : ''})`,
          `tenants    ${found.tenants ?? '-'}${Object.keys(found.byKdf).length > 0 ? ` (${Object.entries(found.byKdf).map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`,
          `size       ${(found.bytes / 1048576).toFixed(1)} MiB`,
          `owner      ${found.ownership === null ? '-' : `${found.ownership.mode} (epoch ${found.ownership.epoch})`}${found.holder === null ? '' : `, last holder ${JSON.stringify(found.holder)}`}`,
          `members    ${found.members.length === 0 ? 'none live' : found.members.map((m) => `${m.instanceId} (format ${m.format}, ${m.leases} leases)`).join(', ')}`,
        ]);
        return found.format !== null && found.format > SCHEMA_FORMAT ? 1 : 0;
      } finally {
        await pool.end();
      }
    }
    const dataDir = resolve(choice.dataDir!);
    if (!existsSync(dataDir)) throw new TenantPoolError('ERR_STORAGE_IO', `there is no data folder ${dataDir}`);
    let holder: unknown = null;
    // Only a folder a pool has opened has a lock file; info creates none.
    if (existsSync(join(dataDir, 'pool.lock'))) {
      try {
        DataDirLock.acquire(dataDir).release();
      } catch (error) {
        if (!(error instanceof TenantPoolError) || error.code !== 'ERR_DATA_DIR_LOCKED') throw error;
        holder = (error as { holder?: unknown }).holder ?? 'another pool';
      }
    }
    const found = await inspectDataDir(dataDir, choice.rootKey);
    const doc = { store: 'sqlite', dataDir, release: RELEASE, currentFormat: STORE_FORMAT, ...found, holder, upgradeNeeded: found.format !== null && found.format < STORE_FORMAT };
    out.result(doc, [
      `store      data folder ${dataDir}${found.initialised ? '' : ' (not initialised)'}`,
      `format     ${found.format ?? '-'} (this release, ${RELEASE}, uses ${STORE_FORMAT}${doc.upgradeNeeded ? ': run tenant-pool upgrade' : ''})`,
      `tenants    ${found.tenants ?? '-'}${found.passphraseTenants === null ? '' : `, ${found.passphraseTenants} with a passphrase`}${Object.keys(found.byKdf).length > 0 ? ` (${Object.entries(found.byKdf).map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}`,
      `size       registry ${(found.bytes.registry / 1048576).toFixed(1)} MiB, ${found.bytes.walletFiles} wallet files ${(found.bytes.wallets / 1048576).toFixed(1)} MiB`,
      `holder     ${holder === null ? 'none (no pool has it open)' : JSON.stringify(holder)}`,
    ]);
    return found.format !== null && found.format > STORE_FORMAT ? 1 : 0;
  },
};

const tenants: Command = {
  name: 'tenants',
  usage: 'tenant-pool tenants (list [--label L] | show ID) (--data-dir DIR | --postgres URL --schema S | --config FILE) [--json]',
  summary: 'list the tenants, or show one',
  help: '`list --json` prints an array of tenants (tenantId, label, kdf, kdfParams, managed, limits, metadata, createdAt); `show ID` one of them.',
  flags: { ...STORE_FLAGS, label: { type: 'string' } },
  async run(flags, positionals, out) {
    const [sub, id, ...rest] = positionals;
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0]!.slice(0, 40))}`);
    if (sub === 'show') {
      const tenantId = tenantIdArg(id);
      return withPool(flags, async (pool) => {
        const t = await pool.tenants.get(tenantId);
        out.result(t, Object.entries(t).map(([k, v]) => `${k.padEnd(12)} ${typeof v === 'string' ? v : JSON.stringify(v)}`));
        return 0;
      });
    }
    if (sub !== 'list') throw new UsageError('expected `tenants list` or `tenants show ID`');
    if (id !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(id.slice(0, 40))}`);
    const label = stringFlag(flags, 'label');
    return withPool(flags, async (pool) => {
      const all = [];
      let cursor: string | null = null;
      do {
        const page: Awaited<ReturnType<TenantPool['tenants']['page']>> = await pool.tenants.page({ limit: 1000, cursor, ...(label === undefined ? {} : { label }) });
        all.push(...page.tenants);
        cursor = page.cursor;
      } while (cursor !== null);
      out.result(all, all.map((t) => `${t.tenantId}\t${t.managed ? 'managed' : 'passphrase'}\t${t.kdf}\t${t.label ?? ''}`));
      return 0;
    });
  },
};

const verify: Command = {
  name: 'verify',
  usage: 'tenant-pool verify [ID...] (--data-dir DIR | --postgres URL --schema S | --config FILE) [--passphrases-file F] [--concurrency N] [--json]',
  summary: 'open every wallet and read all of it: names each damaged tenant',
  help:
    'Opens each wallet with its key (the key check), reads every record and key (each decrypts and passes its integrity check), and changes nothing. ' +
    'Passphrase tenants need their passphrase from --passphrases-file (a JSON object { "tenantId": "passphrase" }); without it they are reported skipped. ' +
    'Exit 1 when a tenant is damaged, its key does not open it, or it was skipped.',
  flags: { ...STORE_FLAGS, 'passphrases-file': { type: 'string' }, concurrency: { type: 'string' } },
  async run(flags, positionals, out) {
    const ids = positionals.map((p) => tenantIdArg(p));
    const concurrency = intFlag(flags, 'concurrency', 1, 64, 2);
    const file = stringFlag(flags, 'passphrases-file');
    const passphrases = file === undefined ? {} : readPassphrases(file);
    const pool = await openPool(storeChoice(flags), { workers: Math.min(concurrency, 8) }, false);
    const started = performance.now();
    const damaged: Array<{ tenantId: string; code: string; message: string }> = [];
    const skipped: string[] = [];
    let ok = 0;
    let records = 0;
    let bytes = 0;
    let done = 0;
    const bar = progressBar('verify');
    try {
      const list = ids.length > 0 ? ids : (await pool.tenants.list()).map((t) => t.tenantId).sort();
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < list.length && !interrupt.requested) {
          const tenantId = list[next++]!;
          try {
            const t = await pool.tenants.get(tenantId);
            const passphrase = Object.hasOwn(passphrases, tenantId) ? passphrases[tenantId] : undefined;
            if (!t.managed && passphrase === undefined) skipped.push(tenantId);
            else {
              const d = await pool.tenants.verify(tenantId, passphrase === undefined ? {} : { passphrase });
              records += d.records;
              bytes += d.bytes;
              ok++;
            }
          } catch (error) {
            damaged.push({ tenantId, code: (error as { code?: string }).code ?? 'ERR_INTERNAL', message: (error as Error).message });
          }
          bar.update(++done, list.length);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(list.length, 1)) }, worker));
      bar.end();
      const seconds = (performance.now() - started) / 1000;
      damaged.sort((a, b) => a.tenantId.localeCompare(b.tenantId));
      skipped.sort();
      const doc = {
        tenants: list.length,
        checked: done,
        ok,
        damaged,
        skipped,
        records,
        bytes,
        seconds: Math.round(seconds * 1000) / 1000,
        tenantsPerSecond: Math.round(done / Math.max(seconds, 0.001)),
        megabytesPerSecond: Math.round((bytes / 1048576 / Math.max(seconds, 0.001)) * 100) / 100,
        interrupted: interrupt.requested,
      };
      out.result(doc, [
        ...damaged.map((d) => `damaged ${d.tenantId}: ${d.code} ${d.message}`),
        ...skipped.map((s) => `skipped ${s}: a passphrase tenant, and no passphrase for it in --passphrases-file`),
        `${ok} ok, ${damaged.length} damaged, ${skipped.length} skipped of ${list.length} tenants (${records} records, ${(bytes / 1048576).toFixed(1)} MiB; ${doc.tenantsPerSecond} tenants/s, ${doc.megabytesPerSecond} MiB/s)${interrupt.requested ? `; interrupted after ${done}: run again to check the rest` : ''}`,
      ]);
      return damaged.length + skipped.length > 0 || interrupt.requested ? 1 : 0;
    } finally {
      bar.end();
      await pool.close();
    }
  },
};

/** An export key from its file: 64 hex characters are 32 raw bytes; anything else is a passphrase. */
async function exportKey(flags: Flags): Promise<Uint8Array | string> {
  const key = await secret(flags, 'export-key-file', 'export key', true);
  if (key === undefined) throw new UsageError('give the export key: --export-key-file FILE (or type it on a terminal)');
  return /^[0-9a-fA-F]{64}$/.test(key) ? Buffer.from(key, 'hex') : key;
}

const exportCommand: Command = {
  name: 'export',
  usage: 'tenant-pool export ID --file F (--data-dir DIR | --postgres URL --schema S | --config FILE) [--export-key-file K] [--passphrase-file P] [--json]',
  summary: 'write one tenant to a sealed export file',
  help: 'The export key comes from --export-key-file (64 hex characters: a 32-byte key; else a passphrase) or a prompt; a passphrase tenant needs --passphrase-file (or a prompt).',
  flags: { ...STORE_FLAGS, file: { type: 'string' }, 'export-key-file': { type: 'string' }, 'passphrase-file': { type: 'string' } },
  async run(flags, positionals, out) {
    const tenantId = oneTenant(positionals);
    const file = stringFlag(flags, 'file');
    if (file === undefined) throw new UsageError('give the file to write: --file F');
    return withPool(flags, async (pool) => {
      const managed = (await pool.tenants.get(tenantId)).managed;
      const passphrase = managed ? undefined : await secret(flags, 'passphrase-file', `passphrase of ${tenantId}`, true);
      const key = await exportKey(flags);
      const result = await pool.tenants.export(tenantId, { file, exportKey: key, ...(passphrase === undefined ? {} : { passphrase }) });
      out.result({ tenantId, ...result }, `exported ${tenantId} to ${result.file} (${result.records} records, ${result.keys} keys, ${result.bytes} bytes; digest ${result.digest})`);
      return 0;
    });
  },
};

const importCommand: Command = {
  name: 'import',
  usage: 'tenant-pool import F (--data-dir DIR | --postgres URL --schema S | --config FILE) [--tenant-id ID] [--export-key-file K] [--passphrase-file P] [--kdf K] [--json]',
  summary: 'recreate a tenant from an export file',
  help: 'With --passphrase-file the tenant becomes a passphrase tenant under that passphrase; otherwise a managed one.',
  flags: { ...STORE_FLAGS, 'tenant-id': { type: 'string' }, 'export-key-file': { type: 'string' }, 'passphrase-file': { type: 'string' }, kdf: { type: 'string' } },
  async run(flags, positionals, out) {
    const file = positionals[0];
    if (file === undefined || positionals.length > 1) throw new UsageError('expected one export file');
    const id = stringFlag(flags, 'tenant-id');
    const tenantId = id === undefined ? undefined : tenantIdArg(id, '--tenant-id');
    const kdf = kdfFlag(flags);
    const passphrase = await secret(flags, 'passphrase-file', 'passphrase', false);
    return withPool(flags, async (pool) => {
      const key = await exportKey(flags);
      const t = await pool.tenants.import(file, { exportKey: key, ...(tenantId === undefined ? {} : { tenantId }), ...(passphrase === undefined ? {} : { passphrase }), ...(kdf === undefined ? {} : { kdf }) });
      out.result(t, `imported ${t.tenantId} (${t.records} records, ${t.keys} keys)`);
      return 0;
    });
  },
};

const rekey: Command = {
  name: 'rekey',
  usage: 'tenant-pool rekey ID (--data-dir DIR | --postgres URL --schema S | --config FILE) [--passphrase-file P] [--new-passphrase-file N] [--kdf K] [--rotate-data-key] [--json]',
  summary: "change a tenant's key (a new passphrase, another KDF, a rotated secret)",
  help: 'A managed tenant gets a new secret; a passphrase tenant needs its passphrase (--passphrase-file or a prompt) and keeps it unless --new-passphrase-file gives another.',
  flags: { ...STORE_FLAGS, 'passphrase-file': { type: 'string' }, 'new-passphrase-file': { type: 'string' }, kdf: { type: 'string' }, 'rotate-data-key': { type: 'boolean' } },
  async run(flags, positionals, out) {
    const tenantId = oneTenant(positionals);
    const kdf = kdfFlag(flags);
    return withPool(flags, async (pool) => {
      const managed = (await pool.tenants.get(tenantId)).managed;
      const passphrase = managed ? undefined : await secret(flags, 'passphrase-file', `passphrase of ${tenantId}`, true);
      const newPassphrase = await secret(flags, 'new-passphrase-file', 'new passphrase', false);
      const t = await pool.tenants.rekey(tenantId, { ...(passphrase === undefined ? {} : { passphrase }), ...(newPassphrase === undefined ? {} : { newPassphrase }), ...(kdf === undefined ? {} : { kdf }), ...(flags['rotate-data-key'] === true ? { rotateDataKey: true } : {}) });
      out.result(t, `rekeyed ${t.tenantId} (${t.kdf})`);
      return 0;
    });
  },
};

const deleteCommand: Command = {
  name: 'delete',
  usage: 'tenant-pool delete ID --yes (--data-dir DIR | --postgres URL --schema S | --config FILE) [--json]',
  summary: 'delete a tenant and its wallet (no undo)',
  help: 'Asks for --yes: a deleted wallet cannot be brought back except from an export or a backup.',
  flags: { ...STORE_FLAGS, yes: { type: 'boolean' } },
  async run(flags, positionals, out) {
    const tenantId = oneTenant(positionals);
    if (flags['yes'] !== true) throw new UsageError(`deleting ${tenantId} cannot be undone: add --yes`);
    return withPool(flags, async (pool) => {
      await pool.tenants.delete(tenantId);
      out.result({ tenantId, deleted: true }, `deleted ${tenantId}`);
      return 0;
    });
  },
};

const migrate: Command = {
  name: 'migrate',
  usage: 'tenant-pool migrate --from CONFIG --to CONFIG [--passphrases-file F] [--concurrency N] [--overwrite] [ID...] [--json]',
  summary: 'copy every tenant between two stores (SQLite files and PostgreSQL), verified',
  help:
    'Each config file describes a pool (dataDir, or postgres, and rootKey unless it comes from the environment). Resumable: run it again after an interruption. ' +
    'Exit 1 when a tenant failed, was a conflict (other content in the target: --overwrite replaces it) or was skipped (a passphrase tenant without its passphrase).',
  flags: { from: { type: 'string' }, to: { type: 'string' }, 'passphrases-file': { type: 'string' }, passphrases: { type: 'string' }, concurrency: { type: 'string' }, overwrite: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  async run(flags, positionals, out) {
    const from = stringFlag(flags, 'from');
    const to = stringFlag(flags, 'to');
    if (from === undefined || to === undefined) throw new UsageError('give both stores: --from CONFIG --to CONFIG');
    const ids = positionals.map((p) => tenantIdArg(p));
    const concurrency = intFlag(flags, 'concurrency', 1, 64, 4);
    const file = stringFlag(flags, 'passphrases-file') ?? stringFlag(flags, 'passphrases');
    const passphrases = file === undefined ? {} : readPassphrases(file);
    const source = await TenantPool.open({ configFile: from, upgrade: 'never', leakWarningMs: 0 });
    try {
      const target = await TenantPool.open({ configFile: to, upgrade: 'never', leakWarningMs: 0 });
      try {
        const results: unknown[] = [];
        const total = ids.length > 0 ? ids.length : (await source.tenants.list()).length;
        const bar = progressBar('migrate');
        const report = await migrateTenants(source, target, {
          ...(ids.length > 0 ? { tenants: ids } : {}),
          concurrency,
          overwrite: flags['overwrite'] === true,
          passphraseOf: (tenantId) => (Object.hasOwn(passphrases, tenantId) ? passphrases[tenantId] : undefined),
          onTenant: (r) => {
            results.push(r);
            if (!out.json) process.stdout.write(`${r.outcome} ${r.tenantId}${'records' in r ? ` (${r.records} records, ${r.keys} keys)` : ` (${r.reason})`}\n`);
            bar.update(results.length, total);
          },
        });
        bar.end();
        out.result({ ...report, tenants: results }, `${report.copied} copied, ${report.replaced} replaced, ${report.verified} verified, ${report.conflict} conflicts, ${report.skipped} skipped, ${report.failed} failed`);
        return report.failed + report.conflict + report.skipped > 0 ? 1 : 0;
      } finally {
        await target.close();
      }
    } finally {
      await source.close();
    }
  },
};

const upgrade: Command = {
  name: 'upgrade',
  usage: 'tenant-pool upgrade (--data-dir DIR | --postgres URL --schema S | --config FILE) [--root-key-file F] [--json]',
  summary: "bring the store to this release's format (crash-safe, resumable)",
  help:
    'Back the store up first. Safe to interrupt (Ctrl-C, a kill): the store opens in the old format or the new, and the next run resumes. ' +
    'On PostgreSQL it runs beside live instances of the previous release (a rolling upgrade): the change is additive.',
  flags: STORE_FLAGS,
  async run(flags, _positionals, out) {
    const choice = resolved(storeChoice(flags));
    const bar = progressBar('upgrade');
    const progress = ({ done, total }: { done: number; total: number }): void => bar.update(done, total);
    let from: number | null;
    try {
      if (choice.kind === 'postgres') {
        const pg = await openPgPool(choice.postgres!.url, choice.postgres!.schema, 1);
        try {
          from = (await inspectSchema(pg, choice.postgres!.schema)).format;
        } finally {
          await pg.end();
        }
      } else {
        from = (await inspectDataDir(resolve(choice.dataDir!), choice.rootKey)).format;
      }
      await (await openStore(choice, 'auto', progress)).close();
    } finally {
      bar.end();
    }
    const to = choice.postgres === undefined ? STORE_FORMAT : SCHEMA_FORMAT;
    const doc = { store: choice.label, from, to, upgraded: from !== null && from < to };
    out.result(doc, doc.upgraded ? `upgraded ${choice.label} from format ${from} to format ${to}` : `${choice.label} is at format ${to} already`);
    return 0;
  },
};

const rotateRootKey: Command = {
  name: 'rotate-root-key',
  usage: 'tenant-pool rotate-root-key --new-root-key-file F (--data-dir DIR | --postgres URL --schema S | --config FILE) [--root-key-file F] [--json]',
  summary: 're-seal every tenant secret under a new root key (crash-safe)',
  help:
    'The current key from TENANT_POOL_ROOT_KEY or --root-key-file, the new one from --new-root-key-file (64 hex characters, or a passphrase). ' +
    'Killed at any moment, the store opens with the old key or the new, never neither; run it again to complete it. ' +
    'A SQLite folder must not be open in a pool; on PostgreSQL it runs beside live instances, which then refuse registry writes until restarted with the new key.',
  flags: { ...STORE_FLAGS, 'new-root-key-file': { type: 'string' } },
  async run(flags, positionals, out) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0]!.slice(0, 40))}`);
    const file = stringFlag(flags, 'new-root-key-file');
    if (file === undefined) throw new UsageError('give the new root key: --new-root-key-file F');
    const newKey = (await secret(flags, 'new-root-key-file', 'new root key', false))!;
    const choice = resolved(storeChoice(flags));
    if (choice.rootKey === undefined) throw new TenantPoolError('ERR_ROOT_KEY_MISSING', 'give the current root key: TENANT_POOL_ROOT_KEY or --root-key-file');
    const bar = progressBar('rotate-root-key');
    const progress = (done: number, total: number): void => bar.update(done, total);
    const store = await openStore(choice, 'never');
    try {
      await store.rotateRootKey(newKey, progress);
    } finally {
      bar.end();
      await store.close();
    }
    out.result({ store: choice.label, rotated: true }, `rotated the root key of ${choice.label}: open it with the new key from now on`);
    return 0;
  },
};

export const COMMANDS: readonly Command[] = [info, tenants, verify, exportCommand, importCommand, rekey, deleteCommand, migrate, upgrade, rotateRootKey];
