/** The files of one SQLite wallet: the file itself, SQLite's journals, and a creation left half done. */
import { rmSync } from 'node:fs';

export function removeWalletFiles(path: string): void {
  for (const suffix of ['-wal', '-shm', '-journal', '.creating', '.creating-journal', '']) rmSync(path + suffix, { force: true });
}
