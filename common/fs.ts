/** File-system helpers both threads use. */
import { closeSync, fsyncSync, openSync } from 'node:fs';

/** Makes a folder's entries (a rename, a new or removed file) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
