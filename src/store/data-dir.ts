/**
 * The data folder as a whole: who owns it, how files in it are written so that a kill at any moment
 * leaves it readable, and how leftovers no registry row owns are swept.
 *
 * Ownership is one lock the operating system drops with its process: SQLite's exclusive locking
 * mode on `<dataDir>/pool.lock`, which is an fcntl (POSIX record) lock on Linux and macOS. A second
 * pool, in this process or another, cannot take it; a process killed by SIGKILL loses it at once,
 * so no stale lock ever needs a human. SQLite keeps its own table of locks per file inside one
 * process, so two pools in one process exclude each other too (a bare fcntl lock would not).
 * A pid file alone cannot tell a dead holder from a live one on another host or pid namespace.
 */
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3-multiple-ciphers';
import { asPoolError, poolError, type DataDirHolder } from '../../common/errors.js';
import { fsyncDir } from '../../common/fs.js';

const LOCK_FILE = 'pool.lock';
/** Who holds the lock, written by the holder once it has it; read only to name the holder in an error. */
const HOLDER_FILE = 'pool.lock.json';

/** Writes `data` to `path` so that a reader sees the old file or the whole new one: temp file, fsync, rename, fsync of the folder. */
export function writeFileAtomic(path: string, data: string, mode = 0o600): void {
  const temp = `${path}.tmp`;
  const fd = openSync(temp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
  fsyncDir(path.slice(0, path.lastIndexOf('/')) || '/');
}


/** The exclusive hold on one data folder, released by `release()` or by the process's death. */
export class DataDirLock {
  readonly #db: Database.Database;
  readonly #dataDir: string;

  private constructor(db: Database.Database, dataDir: string) {
    this.#db = db;
    this.#dataDir = dataDir;
  }

  /**
   * Takes the data folder's lock, without waiting.
   * @throws ERR_DATA_DIR_LOCKED naming the holder (pid, host) when another pool has it.
   */
  static acquire(dataDir: string): DataDirLock {
    let db: Database.Database | undefined;
    try {
      closeSync(openSync(join(dataDir, LOCK_FILE), 'a', 0o600));
      db = new Database(join(dataDir, LOCK_FILE), { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      // The first write transaction takes the exclusive lock; in this mode it is kept until close.
      db.exec('BEGIN EXCLUSIVE');
      db.exec('COMMIT');
    } catch (error) {
      db?.close();
      if ((error as { code?: unknown }).code === 'SQLITE_BUSY') {
        const holder = readHolder(dataDir);
        const who = holder === undefined ? 'another pool' : `pid ${holder.pid} on host ${holder.host} (open since ${holder.since})`;
        throw poolError('ERR_DATA_DIR_LOCKED', `the data folder ${dataDir} is in use by ${who}; one pool owns a data folder at a time`, error, holder === undefined ? undefined : { holder });
      }
      throw asPoolError(error, `cannot lock the data folder ${dataDir}`);
    }
    return new DataDirLock(db, dataDir);
  }

  /**
   * Records this process as the holder, for the error other openers get. Written once the pool has
   * opened, so an open that fails (a missing root key, say) changes no file.
   */
  recordHolder(): void {
    const holder: DataDirHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
    try {
      writeFileAtomic(join(this.#dataDir, HOLDER_FILE), `${JSON.stringify(holder)}\n`);
    } catch (error) {
      throw asPoolError(error, `cannot write ${HOLDER_FILE} in the data folder ${this.#dataDir}`);
    }
  }

  /** Gives the folder up. Idempotent. */
  release(): void {
    if (this.#db.open) this.#db.close();
  }
}

function readHolder(dataDir: string): DataDirHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(join(dataDir, HOLDER_FILE), 'utf8')) as Partial<DataDirHolder>;
    if (typeof parsed.pid === 'number' && typeof parsed.host === 'string' && typeof parsed.since === 'string') return { pid: parsed.pid, host: parsed.host, since: parsed.since };
  } catch {
    // Not written yet, or being replaced: the error then says "another pool".
  }
  return undefined;
}

/** A file of the wallet folder, by the tenant and wallet file it belongs to. */
const WALLET_FILE = /^([A-Za-z0-9_-]{1,64}(?:\.[0-9a-f]{16})?\.sqlite)(\.creating)?(-wal|-shm|-journal)?$/;

/** Whether a name is one of the pool's own wallet files (or their journals, or a wallet being created). */
export function isWalletFileName(name: string): boolean {
  return WALLET_FILE.test(name);
}

/**
 * Removes what no registry row owns from the wallet folder: wallets of deleted tenants whose removal
 * failed or was cut short, wallets still being created when a process died, and their journals.
 * Only names of the pool's own pattern are touched. Runs under the folder's lock, so nothing is being
 * created meanwhile. Returns the names removed, and those that could not be (left for the next sweep).
 */
export function sweepWallets(walletDir: string, owned: ReadonlySet<string>): { removed: string[]; failed: string[] } {
  const removed: string[] = [];
  const failed: string[] = [];
  for (const name of readdirSync(walletDir).sort()) {
    const match = WALLET_FILE.exec(name);
    if (match === null) continue;
    const isCreating = match[2] !== undefined;
    if (!isCreating && owned.has(match[1]!)) continue;
    try {
      rmSync(join(walletDir, name), { force: true });
      removed.push(name);
    } catch {
      failed.push(name);
    }
  }
  if (removed.length > 0) fsyncDir(walletDir);
  return { removed, failed };
}

/** Whether the wallet folder holds any wallet file (a folder with wallets is never re-initialised). */
export function hasWallets(walletDir: string): boolean {
  try {
    return readdirSync(walletDir).some((name) => {
      const match = WALLET_FILE.exec(name);
      return match !== null && match[2] === undefined && match[3] === undefined;
    });
  } catch {
    return false;
  }
}
