/**
 * The key-tier scenario: Argon2 tenants through a cache too small for them, with the workers'
 * key tier on and off. 400 `argon2i-int` managed tenants, room for 56 open wallets, a Zipf(1.0)
 * trace of sessions with one sweep over every tenant halfway: key derivations per distinct tenant
 * and sessions/s each way; and the reopen of an evicted `argon2i-mod` tenant from the tier.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TenantPool } from '../src/pool.js';
import { KeyTier } from '../workers/key-tier.js';
import { percentile, round, zipfSampler } from './measure.js';
import type { Figures } from './scenarios.js';

const ROOT_KEY = '6b'.repeat(32);

async function run(keyCache: boolean, tenants: number, sessions: number): Promise<{ derivationsPerTenant: number; sessionsPerSec: number; tierOpens: number }> {
  const dataDir = join(tmpdir(), `tp-bench-keytier-${process.pid}-${keyCache ? 'on' : 'off'}`);
  rmSync(dataDir, { recursive: true, force: true });
  // Room for 56 open wallets (weight 4 each) and the sessions on them.
  const pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 2, capacity: 56 * 4 + 8, walletIdleTtlMs: 600_000, acquireTimeoutMs: 120_000, leakWarningMs: 0, keyCache: { maxEntries: keyCache ? 100_000 : 0 } });
  try {
    const ids: string[] = [];
    for (let i = 0; i < tenants; i++) ids.push((await pool.tenants.create({ tenantId: `k${i}`, kdf: 'argon2i-int' })).tenantId);
    await pool.closeIdleWallets();
    const pick = zipfSampler(tenants, 1.0, 42);
    const trace: number[] = [];
    for (let i = 0; i < sessions; i++) {
      if (i === Math.floor(sessions / 2)) for (let t = 0; t < tenants; t++) trace.push(t);
      trace.push(pick());
    }
    const before = pool.stats().totals;
    const started = performance.now();
    let next = 0;
    await Promise.all(
      [0, 1, 2, 3].map(async () => {
        while (next < trace.length) await pool.withSession(ids[trace[next++]!]!, async (s) => s.records.get('c', 'none'));
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const after = pool.stats().totals;
    return {
      derivationsPerTenant: round((after.keyDerivations - before.keyDerivations) / new Set(trace).size, 3),
      sessionsPerSec: Math.round(trace.length / seconds),
      tierOpens: after.keyTierOpens - before.keyTierOpens,
    };
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Reopen of an evicted argon2i-mod tenant: from the tier, against a derivation. */
async function reopen(keyCache: boolean, rounds: number): Promise<number> {
  const dataDir = join(tmpdir(), `tp-bench-keytier-reopen-${process.pid}`);
  rmSync(dataDir, { recursive: true, force: true });
  const pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1, walletIdleTtlMs: 0, leakWarningMs: 0, keyCache: { maxEntries: keyCache ? 1000 : 0 } });
  try {
    await pool.tenants.create({ tenantId: 'mod', passphrase: 'a passphrase', kdf: 'argon2i-mod' });
    await pool.withSession('mod', async () => {}, { passphrase: 'a passphrase' });
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      await pool.withSession('mod', async () => {}, { passphrase: 'a passphrase' });
      times.push(performance.now() - t0);
    }
    return round(percentile(times, 50), 3);
  } finally {
    await pool.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Memory per kept key: 100,000 entries put into a tier (ids of 20 characters, half of them passphrase tenants), heap before and after. */
function bytesPerEntry(count: number): number {
  // Full collections until the heap settles, before and after: one pass leaves garbage of its own and undercounts.
  const settle = (): void => {
    for (let i = 0; i < 4; i++) (globalThis as { gc?: () => void }).gc?.();
  };
  settle();
  const before = process.memoryUsage();
  const tier = new KeyTier({ maxEntries: count, ttlMs: 3_600_000, passphrases: true });
  const key = randomBytes(32);
  const verifier = randomBytes(32);
  for (let i = 0; i < count; i++) tier.put(`tenant-${String(i).padStart(13, '0')}`, key, verifier, i % 2 === 0 ? 'a passphrase' : null);
  settle();
  const after = process.memoryUsage();
  const bytes = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers;
  tier.clear();
  return Math.round(bytes / count);
}

export async function keyTier(quick: boolean): Promise<Figures> {
  const tenants = quick ? 80 : 400;
  const sessions = quick ? 400 : 3000;
  const off = await run(false, tenants, sessions);
  const on = await run(true, tenants, sessions);
  const reopenOffMs = await reopen(false, quick ? 3 : 10);
  const reopenOnMs = await reopen(true, quick ? 20 : 200);
  return {
    tenants,
    derivationsPerTenantOff: off.derivationsPerTenant,
    derivationsPerTenantOn: on.derivationsPerTenant,
    sessionsPerSecOff: off.sessionsPerSec,
    sessionsPerSecOn: on.sessionsPerSec,
    speedup: round(on.sessionsPerSec / Math.max(off.sessionsPerSec, 1), 2),
    reopenArgon2iModOffP50Ms: reopenOffMs,
    reopenArgon2iModOnP50Ms: reopenOnMs,
    bytesPerEntry: bytesPerEntry(quick ? 10_000 : 100_000),
  };
}
