import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { rootKey, tempDir, storeOptionsFor } from './helpers.js';

const TRIALS = 20;

/** Runs the save loop until it has reported `after` lines past "ready", then SIGKILLs it; returns what it reported. */
async function runAndKill(dataDir: string, key: string, trial: number, after: number): Promise<string[]> {
  const child = spawn(process.execPath, [...process.execArgv, join(import.meta.dirname, 'fixtures', 'save-loop.ts'), dataDir, key, String(trial)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buffered = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (lines.length === after + 1 && child.exitCode === null) child.kill('SIGKILL');
      }
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(lines);
      else reject(new Error(`the save loop ended by itself (${String(code)}): ${stderr}`));
    });
  });
}

test(`SIGKILL at ${TRIALS} random moments: every resolved save and create survives; no wallet or registry is left unreadable`, async () => {
  const dataDir = tempDir();
  const key = rootKey();
  const setup = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 1 });
  await setup.tenants.create({ tenantId: 'alpha' });
  await setup.tenants.create({ tenantId: 'beta', kdf: 'argon2i-int' });
  await setup.close();
  let seed = 12345;
  const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
  const saved = new Map<string, string[]>([['alpha', []], ['beta', []]]);
  const created: string[] = [];
  for (let trial = 0; trial < TRIALS; trial++) {
    const lines = await runAndKill(dataDir, key, trial, 1 + random(60));
    for (const line of lines) {
      const [kind, a, b] = line.split(' ');
      if (kind === 'saved') saved.get(a!)!.push(b!);
      if (kind === 'created') created.push(a!);
    }
  }
  await using pool = await TenantPool.open({ dataDir, ...storeOptionsFor(dataDir), rootKey: key, workers: 2 });
  const tenants = new Set((await pool.tenants.list()).map((t) => t.tenantId));
  for (const id of created) assert.ok(tenants.has(id), `created tenant ${id} survived`);
  // Every tenant in the registry opens: none was left half-written.
  for (const id of tenants) await pool.withSession(id, async (s) => s.records.find('c', {}, { limit: 1 }));
  for (const [tenantId, ids] of saved) {
    assert.ok(ids.length > 0, `${tenantId} saved something`);
    await pool.withSession(tenantId, async (s) => {
      for (const id of ids) {
        const record = await s.records.get('c', id);
        assert.ok(record !== null, `${tenantId}/${id} survived`);
        const [trial, i] = id.slice(1).split('-r').map(Number);
        assert.equal(record.value, { trial: String(trial), i, text: 'x'.repeat(i! % 200) });
      }
    });
  }
});

test.run();
