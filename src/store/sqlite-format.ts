/**
 * The format of a data folder's registry (`registry.sqlite`) and its forward migrations. A registry
 * without a `format_history` table is format 1 (release 0.1.0). Each step runs in transactions of its
 * own and is written so that a kill at any moment leaves a registry that opens, in the old format or
 * the new: a step's change is additive (old readers ignore it), its row backfill is idempotent and in
 * batches, and the format is recorded last, in the step's final transaction. An interrupted upgrade
 * resumes at the next open.
 */
import type Database from 'better-sqlite3-multiple-ciphers';
import { KDF_PARAMS_V1, type Argon2Method } from '../../common/kdf.js';
import { RELEASE, STORE_FORMAT } from '../../common/formats.js';

type Db = Database.Database;

/** Rows rewritten per transaction by a step's backfill. */
const BATCH = 1000;

/** Progress of an upgrade: rows done out of rows to do, for a step. */
export type UpgradeProgress = (step: { version: number; name: string; done: number; total: number }) => void;

interface Step {
  version: number;
  name: string;
  run(db: Db, progress: UpgradeProgress): void;
}

/** The registry's format: the last one recorded, or 1 for a registry of 0.1.0 (no record). */
export function registryFormat(db: Db): number {
  const hasHistory = db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'format_history'").pluck().get() === 1;
  if (!hasHistory) return 1;
  return (db.prepare('SELECT max(version) FROM format_history').pluck().get() as number | null) ?? 1;
}

const STEPS: readonly Step[] = [
  {
    version: 2,
    name: 'kdf-params',
    // Each tenant records the Argon2 parameters its key was derived with: a registry of format 1 derived
    // every level with KDF_PARAMS_V1, so those are written into each row. A row not yet written reads
    // as KDF_PARAMS_V1 all the same, so a registry half through this step works.
    run(db, progress) {
      const columns = (db.prepare('PRAGMA table_info(tenants)').all() as { name: string }[]).map((c) => c.name);
      if (!columns.includes('kdf_params')) db.exec('ALTER TABLE tenants ADD COLUMN kdf_params TEXT');
      const total = db.prepare("SELECT count(*) FROM tenants WHERE kdf_params IS NULL AND kdf <> 'raw'").pluck().get() as number;
      const next = db.prepare(`SELECT tenant_id, kdf FROM tenants WHERE kdf_params IS NULL AND kdf <> 'raw' LIMIT ${BATCH}`);
      const write = db.prepare('UPDATE tenants SET kdf_params = ? WHERE tenant_id = ?');
      let done = 0;
      progress({ version: 2, name: 'kdf-params', done, total });
      for (;;) {
        const rows = next.all() as { tenant_id: string; kdf: Argon2Method }[];
        if (rows.length === 0) break;
        db.transaction(() => {
          for (const row of rows) write.run(JSON.stringify(KDF_PARAMS_V1[row.kdf] ?? KDF_PARAMS_V1['argon2i-mod']), row.tenant_id);
        })();
        done += rows.length;
        progress({ version: 2, name: 'kdf-params', done, total });
      }
    },
  },
];

/**
 * Brings the registry from its format to {@link STORE_FORMAT}, step by step. Returns the format it
 * started from. The caller has checked that the registry is not newer than this code.
 */
export function upgradeRegistry(db: Db, progress: UpgradeProgress = () => {}): number {
  const from = registryFormat(db);
  db.exec('CREATE TABLE IF NOT EXISTS format_history (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL, release TEXT NOT NULL)');
  for (const step of STEPS) {
    if (step.version <= from) continue;
    step.run(db, progress);
    // The commit point of the step: from here the registry is at its format.
    db.prepare('INSERT INTO format_history (version, name, applied_at, release) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING').run(step.version, step.name, new Date().toISOString(), RELEASE);
  }
  return from;
}

/** The steps this code knows end at its format (checked by a test: a step forgotten in the list is a format nobody reaches). */
export const LAST_STEP = STEPS.at(-1)?.version ?? 1;
if (LAST_STEP !== STORE_FORMAT) throw new Error(`the registry's migrations end at format ${LAST_STEP}, not ${STORE_FORMAT}`);
