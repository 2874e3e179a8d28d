/**
 * What happens to a call that is running when its wallet ends: it completes under the wallet's
 * real key, or fails without committing, and its error says whether its outcome is known. Never a
 * row sealed under a key the close already zeroed, never an acknowledged write lost.
 */
import { createDecipheriv, createHmac } from 'node:crypto';
import { rmSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { PoolOptions } from '../src/config/config.js';
import { TenantPool } from '../src/pool.js';
import { dropSchema } from './store.js';
import { pgQuery, rootKey, storeOptionsFor, storeUnderTest, tempDir, testIf } from './helpers.js';

const TRIALS = 6;
const TENANTS = ['a', 'b', 'c'];
/** Save loops per tenant, each with one save in flight. */
const LOOPS = 6;

interface Failure {
  code?: string;
  outcome?: string;
}

/** What ends the wallets under the saves: the pool's close, or a rekey of every tenant. */
type Ending = (pool: TenantPool) => Promise<unknown>;

const closeNow: Ending = async (pool) => pool.close({ timeoutMs: 0 });
const rekeyAll: Ending = async (pool) => Promise.all(TENANTS.map(async (t) => pool.tenants.rekey(t)));

/**
 * Opens the pool, starts LOOPS save loops per tenant (each record written once, its id unique),
 * runs `end` once `acksBeforeEnd` saves were acknowledged, and returns what was acknowledged and
 * how the rest failed.
 */
async function saveThrough(options: PoolOptions, trial: number, acksBeforeEnd: number, end: Ending): Promise<{ acked: string[]; failures: Failure[] }> {
  const pool = await TenantPool.open(options);
  const acked: string[] = [];
  const failures: Failure[] = [];
  let ending: Promise<unknown> | undefined;
  const loops = TENANTS.flatMap((tenantId) =>
    Array.from({ length: LOOPS }, async (_, loop) => {
      const session = await pool.acquire(tenantId);
      for (let i = 0; ; i++) {
        const id = `t${trial}-l${loop}-${i}`;
        try {
          await session.records.save('c', id, { id, tenantId }, { loop: String(loop), seq: String(i) });
        } catch (error) {
          failures.push(error as Failure);
          return;
        }
        acked.push(`${tenantId}/${id}`);
        if (acked.length === acksBeforeEnd) ending = end(pool);
      }
    }),
  );
  await Promise.all(loops);
  await ending;
  await pool.close();
  return { acked, failures };
}

/**
 * Cells of the schema's wallet tables that open under an all-zero key, as a wallet whose keys were
 * zeroed would have sealed them: the searchable fields (their key zeroed), and values under the
 * key bound to a (category, id) the test wrote.
 */
async function sealedUnderZeroKey(schema: string, written: Array<[string, string]>): Promise<string[]> {
  const zero = Buffer.alloc(32);
  const opens = (key: Buffer, sealed: Buffer, aad: string): boolean => {
    if (sealed.length < 28) return false;
    try {
      const decipher = createDecipheriv('chacha20-poly1305', key, sealed.subarray(0, 12), { authTagLength: 16 });
      decipher.setAAD(Buffer.from(aad, 'utf8'), { plaintextLength: sealed.length - 28 });
      decipher.setAuthTag(sealed.subarray(sealed.length - 16));
      decipher.update(sealed.subarray(12, sealed.length - 16));
      decipher.final();
      return true;
    } catch {
      return false;
    }
  };
  const framed = (...parts: string[]): Buffer =>
    Buffer.concat(
      parts.flatMap((part) => {
        const bytes = Buffer.from(part, 'utf8');
        const length = Buffer.alloc(4);
        length.writeUInt32BE(bytes.length);
        return [length, bytes];
      }),
    );
  const valueKeys = written.map(([category, id]) => createHmac('sha256', zero).update(framed(category, id)).digest());
  const found: string[] = [];
  for (const row of await pgQuery<{ category: Buffer; name: Buffer; value: Buffer }>(`SELECT category, name, value FROM ${schema}.items`)) {
    if (opens(zero, row.category, 'category')) found.push('items.category');
    if (opens(zero, row.name, 'name')) found.push('items.name');
    if (valueKeys.some((key) => opens(key, row.value, 'value'))) found.push('items.value');
  }
  for (const row of await pgQuery<{ name: Buffer; value: Buffer }>(`SELECT name, value FROM ${schema}.item_tags`)) {
    if (opens(zero, row.name, 'tagName')) found.push('item_tags.name');
    if (opens(zero, row.value, 'tagValue')) found.push('item_tags.value');
  }
  for (const row of await pgQuery<{ kid: Buffer }>(`SELECT kid FROM ${schema}.wallet_keys`)) if (opens(zero, row.kid, 'kid')) found.push('wallet_keys.kid');
  return found;
}

async function endRacingSaves(extra: PoolOptions, end: Ending): Promise<void> {
  const dataDir = tempDir();
  const options: PoolOptions = { dataDir, rootKey: rootKey(), workers: 2, walletIdleTtlMs: 60_000, ...storeOptionsFor(dataDir), ...extra };
  const schema = options.postgres?.schema;
  try {
    {
      const pool = await TenantPool.open(options);
      for (const tenantId of TENANTS) await pool.tenants.create({ tenantId });
      await pool.close();
    }
    const acked: string[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      const run = await saveThrough(options, trial, 10 + 7 * trial, end);
      acked.push(...run.acked);
      for (const failure of run.failures) {
        // Refused (revoked, or the pool closing): nothing was written. Cut off while the worker was stopped: maybe written (outcome 'unknown').
        assert.ok(['ERR_SESSION_REVOKED', 'ERR_POOL_CLOSED'].includes(String(failure.code)), `a save cut off by the close fails with a known code, got ${String(failure.code)}`);
      }
      assert.ok(run.failures.length > 0, 'the close caught saves in flight');
    }
    const pool = await TenantPool.open(options);
    try {
      for (const entry of acked) {
        const [tenantId, id] = entry.split('/') as [string, string];
        const record = await pool.withSession(tenantId, async (s) => s.records.get('c', id));
        assert.equal(record?.value, { id, tenantId }, `acknowledged save ${entry} reads back`);
      }
      // Every record the store holds reads back whole (none half written, none unreadable).
      for (const tenantId of TENANTS) {
        await pool.withSession(tenantId, async (s) => {
          for (const r of await s.records.find('c')) assert.equal(r.value, { id: r.id, tenantId });
        });
      }
    } finally {
      await pool.close();
    }
    if (schema !== undefined) {
      const written = acked.map((e) => ['c', e.split('/')[1]!] as [string, string]);
      assert.equal(await sealedUnderZeroKey(schema, written), [], 'no cell of any wallet table opens under an all-zero key');
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    if (schema !== undefined) await dropSchema(schema);
  }
}

test('close({ timeoutMs: 0 }) racing streams of saves, six trials: every acknowledged save reads back, every other save failed with a known code, and no row was sealed under a zeroed key', async () => {
  await endRacingSaves({}, closeNow);
});

test('a rekey of every tenant racing streams of saves, six trials: the same', async () => {
  await endRacingSaves({}, rekeyAll);
});

testIf(storeUnderTest === 'postgres', 'the same in cluster mode: close racing saves under leases', async () => {
  await endRacingSaves({ cluster: { instanceId: 'shutdown-test', leaseTtlMs: 5000 } }, closeNow);
});

test.run();
