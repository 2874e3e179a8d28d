import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { PoolOptions } from '../src/config/config.js';
import { TenantPool } from '../src/pool.js';
import { dropSchema, storeOptionsFor, storeUnderTest } from './store.js';

export { damageWallet, dumpSchema, leaveHalfCreatedWallet, pgQuery, placesHolding, storeOptionsFor, storeUnderTest, walletNames } from './store.js';

/** Runs the test only where `condition` holds (root, a mount); elsewhere it is counted as skipped. */
export function testIf(condition: boolean, name: string, fn: () => Promise<void>): void {
  if (condition) test(name, fn);
  else test.skip(name, fn);
}

/** A test of the SQLite files themselves (names, modes, the folder's lock): skipped, and counted, in the PostgreSQL pass. */
export function testSqliteFiles(name: string, fn: () => Promise<void>): void {
  testIf(storeUnderTest === 'sqlite', name, fn);
}


/** A fresh data folder under the OS temp dir; remove it with `rmSync(dir, { recursive: true })`. */
export function tempDir(prefix = 'tp-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function rootKey(): string {
  return randomBytes(32).toString('hex');
}

/** Opens a small pool on its own data folder. Two workers unless told otherwise. */
export async function openPool(options: PoolOptions = {}): Promise<TenantPool> {
  const dataDir = options.dataDir ?? tempDir();
  return TenantPool.open({ dataDir, rootKey: rootKey(), workers: 2, ...storeOptionsFor(dataDir), ...options });
}

/** {@link openPool} for `await using`: leaving the scope closes the pool and removes its data folder (its schema, on PostgreSQL). */
export async function usePool(options: PoolOptions = {}): Promise<TenantPool & AsyncDisposable> {
  const pool = await openPool(options);
  return Object.assign(pool, { [Symbol.asyncDispose]: async () => disposePool(pool) });
}

/** Closes the pool and removes its data folder (its schema, on PostgreSQL). */
export async function disposePool(pool: TenantPool): Promise<void> {
  await pool.close();
  rmSync(pool.options.dataDir, { recursive: true, force: true });
  if (pool.options.postgres !== undefined) await dropSchema(pool.options.postgres.schema);
}

/** Asserts the promise rejects with a `TenantPoolError` of `code`; returns the error. */
export async function rejectsWith(promise: Promise<unknown>, code: string, what = code): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as Error & { code?: string };
    assert.is(e.code, code, `${what}: expected ${code}, got ${String(e.code)} (${e.message})`);
    assert.is(e.name, 'TenantPoolError', `${what}: error name`);
    return e;
  }
  assert.unreachable(`${what}: expected a rejection with ${code}`);
  throw new Error('unreachable');
}

/** Every file below `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

/** Files under `dir` whose bytes contain `marker` (as UTF-8). */
export function filesContaining(dir: string, marker: string): string[] {
  const needle = Buffer.from(marker, 'utf8');
  return filesUnder(dir).filter((file) => readFileSync(file).includes(needle));
}

/** The path of a tenant's wallet file (its name carries the tenant id and an incarnation). */
export function walletPathOf(dataDir: string, tenantId: string): string {
  const names = readdirSync(join(dataDir, 'wallets')).filter((n) => n.startsWith(`${tenantId}.`) && n.endsWith('.sqlite'));
  assert.is(names.length, 1, `one wallet file of ${tenantId}: ${names.join(', ')}`);
  return join(dataDir, 'wallets', names[0]!);
}

export function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

/**
 * Yields to the event loop until `condition()` holds: for state the pool reaches through its own
 * promise chains (no timer involved). Fails after `turns` turns rather than hanging.
 */
export async function until(condition: () => boolean, what: string, turns = 10_000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (condition()) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  assert.unreachable(`never reached: ${what}`);
}

/**
 * Waits for a condition that a pool timer (TTL, deadline) brings about: checks on every turn of
 * the loop and after every millisecond, up to `limitMs` (a limit for failure, not a guess at timing).
 */
export async function eventually(condition: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > limitMs) assert.unreachable(`never reached within ${limitMs} ms: ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 1));
  }
}
