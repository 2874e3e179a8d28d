/**
 * Moving tenants between stores: a SQLite data folder into PostgreSQL and back, with everything a
 * tenant has (records and tags, keys that still sign, routes, settings, creation time); passphrase
 * tenants under their passphrase; a run killed at random moments and run again copies the rest and
 * verifies what is there, with no tenant lost, doubled or half made.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { test } from 'uvu';
import { migrateTenants } from '../src/tenants/migrate.js';
import { TenantPool } from '../src/pool.js';
import { startChild } from './child.js';
import { pgQuery, rootKey, tempDir } from './helpers.js';
import { postgresUrl, testSchema, testWithPostgres } from './postgres.js';

/** What a tenant holds, as a host sees it: compared between source and target. */
async function contents(pool: TenantPool, tenantId: string, passphrase?: string): Promise<unknown> {
  const info = await pool.tenants.get(tenantId);
  return pool.withSession(
    tenantId,
    async (s) => {
      const keys = await s.keys.list();
      const data = new TextEncoder().encode(`signed by ${tenantId}`);
      const signs = await Promise.all(keys.map(async (k) => s.keys.verify(k.publicKey, data, await s.keys.sign(k.kid, data))));
      return { info, records: await s.records.find('c', {}), tagged: (await s.records.find('c', { even: 'yes' })).map((r) => r.id), keys, signs };
    },
    passphrase === undefined ? undefined : { passphrase },
  );
}

async function fill(pool: TenantPool, count: number): Promise<void> {
  for (let t = 0; t < count; t++) {
    const tenantId = `t${String(t).padStart(3, '0')}`;
    const isLocked = t % 5 === 4;
    await pool.tenants.create({ tenantId, label: `label ${t}`, metadata: { plan: t % 2 === 0 ? 'gold' : 'free', __proto__: 'kept' }, ...(isLocked ? { passphrase: `pass ${t}`, kdf: 'argon2i-int' as const } : {}), ...(t % 3 === 0 ? { maxSessions: 3 } : {}) });
    await pool.withSession(
      tenantId,
      async (s) => {
        for (let i = 0; i < 1 + (t % 7); i++) await s.records.save('c', `r${i}`, { t, i, text: 'é'.repeat(i) }, { even: i % 2 === 0 ? 'yes' : 'no' });
        await s.keys.create({ routing: t % 2 === 0 });
      },
      isLocked ? { passphrase: `pass ${t}` } : undefined,
    );
  }
}

testWithPostgres('SQLite → PostgreSQL → SQLite: every tenant arrives whole; passphrase tenants need their passphrase; a second run verifies and writes nothing', async () => {
  const schema = testSchema();
  const source = await TenantPool.open({ dataDir: tempDir(), rootKey: rootKey(), workers: 2 });
  const middle = await TenantPool.open({ dataDir: tempDir(), rootKey: rootKey(), workers: 2, postgres: { connectionString: postgresUrl!, schema } });
  const back = await TenantPool.open({ dataDir: tempDir(), rootKey: rootKey(), workers: 2 });
  const passphraseOf = (id: string): string | undefined => (Number(id.slice(1)) % 5 === 4 ? `pass ${Number(id.slice(1))}` : undefined);
  try {
    await fill(source, 12);
    const withoutPassphrases = await migrateTenants(source, middle);
    assert.equal([withoutPassphrases.copied, withoutPassphrases.skipped, withoutPassphrases.failed], [10, 2, 0]);
    const report = await migrateTenants(source, middle, { passphraseOf });
    assert.equal([report.copied, report.verified, report.skipped, report.failed], [2, 10, 0, 0]);
    const backReport = await migrateTenants(middle, back, { passphraseOf, concurrency: 3 });
    assert.equal([backReport.copied, backReport.failed], [12, 0]);
    for (const { tenantId } of await source.tenants.list()) {
      const passphrase = passphraseOf(tenantId);
      const expected = await contents(source, tenantId, passphrase);
      assert.equal(await contents(middle, tenantId, passphrase), expected, `${tenantId} in PostgreSQL`);
      assert.equal(await contents(back, tenantId, passphrase), expected, `${tenantId} back in SQLite`);
      for (const key of (await source.withSession(tenantId, async (s) => s.keys.list(), passphrase === undefined ? undefined : { passphrase })).filter((k) => k.routing)) {
        assert.is(await middle.tenants.byRoutingKey(key.publicKey), tenantId, 'routes move with their tenant');
      }
    }
    // A passphrase tenant stays one, under the same passphrase.
    assert.is((await middle.tenants.get('t004')).managed, false);
    await middle.withSession('t004', async () => {}, { passphrase: 'pass 4' });
    const again = await migrateTenants(source, middle, { passphraseOf });
    assert.equal([again.copied, again.verified], [0, 12]);
  } finally {
    await Promise.all([source.close(), middle.close(), back.close()]);
    await pgQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  }
});

testWithPostgres('the migration command killed at random moments, run again, ends with every tenant copied once and verified', async () => {
  const schema = testSchema();
  const dir = tempDir();
  const from = join(dir, 'from.json');
  const to = join(dir, 'to.json');
  const key = rootKey();
  writeFileSync(from, JSON.stringify({ dataDir: join(dir, 'sqlite'), rootKey: key, workers: 2 }));
  writeFileSync(to, JSON.stringify({ dataDir: join(dir, 'unused'), rootKey: key, workers: 2, postgres: { connectionString: postgresUrl!, schema } }));
  const source = await TenantPool.open({ configFile: from });
  await fill(source, 30);
  const expected = new Map<string, unknown>();
  for (const { tenantId, managed } of await source.tenants.list()) if (managed) expected.set(tenantId, await contents(source, tenantId));
  await source.close();
  let seed = 99;
  const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
  let killed = 0;
  try {
    for (let run = 0; run < 4; run++) {
      const child = startChild(join('..', '..', 'src', 'bin', 'migrate.ts'), ['--from', from, '--to', to, '--concurrency', '2']);
      const after = 1 + random(6);
      await child.waitFor((lines) => lines.filter((l) => l.startsWith('copied')).length >= after).catch(() => {});
      child.kill('SIGKILL');
      if ((await child.exited).signal === 'SIGKILL') killed++;
    }
    assert.ok(killed >= 2, `runs killed mid-way: ${killed}`);
    const last = startChild(join('..', '..', 'src', 'bin', 'migrate.ts'), ['--from', from, '--to', to]);
    const { code, stderr } = await last.exited;
    // Passphrase tenants were not given their passphrases: skipped (exit code 1: not everything moved), and nothing failed.
    assert.is(code, 1, stderr);
    const summary = last.lines.at(-1)!;
    assert.match(summary, / 0 conflicts, 6 skipped, 0 failed$/);
    await using target = await TenantPool.open({ configFile: to });
    const ids = (await target.tenants.list()).map((t) => t.tenantId);
    assert.equal(ids, [...expected.keys()].sort(), 'every managed tenant, once');
    for (const [tenantId, value] of expected) assert.equal(await contents(target, tenantId), value, tenantId);
    const [orphans] = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.wallets w WHERE NOT EXISTS (SELECT 1 FROM ${schema}.tenants t WHERE t.wallet_name = w.name)`);
    assert.is(orphans!.n, 0, 'no half-made wallet is left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await pgQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  }
});

/** A tenant `alice` with one record and one key, its content given by `value`. */
async function alice(pool: TenantPool, value: string): Promise<void> {
  await pool.tenants.create({ tenantId: 'alice' });
  await pool.withSession('alice', async (s) => {
    await s.records.save('c', 'r', { value }, { who: value });
    await s.keys.create();
  });
}

test('verification compares content: a target tenant with the same counts but other content is a conflict, reported by name and left untouched; overwrite replaces it; the same content is verified', async () => {
  const source = await TenantPool.open({ dataDir: tempDir(), rootKey: rootKey(), workers: 1 });
  const target = await TenantPool.open({ dataDir: tempDir(), rootKey: rootKey(), workers: 1 });
  try {
    await alice(source, 'from the source');
    await alice(target, 'already in the target');
    const before = await target.tenants.digest('alice');
    const report = await migrateTenants(source, target);
    assert.equal([report.copied, report.verified, report.conflict, report.failed], [0, 0, 1, 0]);
    const [result] = report.results;
    assert.is(result?.outcome, 'conflict');
    assert.match((result as { reason: string }).reason, /tenant alice with other content/);
    assert.equal(await target.tenants.digest('alice'), before, 'the target tenant is left untouched');
    assert.equal(await target.withSession('alice', async (s) => (await s.records.get('c', 'r'))?.value), { value: 'already in the target' });
    const replaced = await migrateTenants(source, target, { overwrite: true });
    assert.equal([replaced.replaced, replaced.conflict, replaced.failed], [1, 0, 0]);
    assert.equal(await target.withSession('alice', async (s) => (await s.records.get('c', 'r'))?.value), { value: 'from the source' });
    assert.is((await target.tenants.digest('alice')).digest, (await source.tenants.digest('alice')).digest);
    const again = await migrateTenants(source, target);
    assert.equal([again.verified, again.conflict], [1, 0], 'the same content is verified, not written again');
    // A passphrase tenant the target holds under another passphrase cannot be compared: a conflict too.
    await source.tenants.create({ tenantId: 'bob', passphrase: 'source pass', kdf: 'argon2i-int' });
    await target.tenants.create({ tenantId: 'bob', passphrase: 'other pass', kdf: 'argon2i-int' });
    const locked = await migrateTenants(source, target, { tenants: ['bob'], passphraseOf: () => 'source pass' });
    assert.equal([locked.conflict, locked.failed], [1, 0]);
  } finally {
    await Promise.all([source.close(), target.close()]);
  }
});

test('the digest is of content: equal for the same records and keys written in another order or on another store, different for one changed value or tag', async () => {
  const a = await TenantPool.open({ dataDir: tempDir(), rootKey: rootKey(), workers: 1 });
  const b = await TenantPool.open({ dataDir: tempDir(), rootKey: rootKey(), workers: 1 });
  try {
    for (const pool of [a, b]) await pool.tenants.create({ tenantId: 't' });
    await a.withSession('t', async (s) => {
      await s.records.save('c', 'x', { n: 1, m: [2] }, { p: '1', q: '2' });
      await s.records.save('d', 'y', 'text');
    });
    await b.withSession('t', async (s) => {
      await s.records.save('d', 'y', 'text');
      await s.records.save('c', 'x', { m: [2], n: 1 }, { q: '2', p: '1' });
    });
    const da = await a.tenants.digest('t');
    assert.equal(da, await b.tenants.digest('t'));
    assert.equal([da.records, da.keys], [2, 0]);
    await b.withSession('t', async (s) => s.records.save('c', 'x', { m: [2], n: 1 }, { q: '2', p: '3' }));
    assert.is.not((await b.tenants.digest('t')).digest, da.digest, 'a changed tag changes the digest');
    await b.withSession('t', async (s) => s.records.save('c', 'x', { m: [2], n: 2 }, { q: '2', p: '1' }));
    assert.is.not((await b.tenants.digest('t')).digest, da.digest, 'a changed value changes the digest');
    await b.withSession('t', async (s) => s.records.save('c', 'x', { m: [2], n: 1 }, { q: '2', p: '1' }));
    assert.is((await b.tenants.digest('t')).digest, da.digest, 'and back');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

testWithPostgres('the command into a non-empty PostgreSQL target: the conflicting tenant is named, left untouched, and the exit code is 1; with --overwrite it is replaced and verified by content', async () => {
  const schema = testSchema();
  const dir = tempDir();
  const from = join(dir, 'from.json');
  const to = join(dir, 'to.json');
  const key = rootKey();
  writeFileSync(from, JSON.stringify({ dataDir: join(dir, 'sqlite'), rootKey: key, workers: 1 }));
  writeFileSync(to, JSON.stringify({ dataDir: join(dir, 'unused'), rootKey: key, workers: 1, postgres: { connectionString: postgresUrl!, schema } }));
  try {
    for (const [file, value] of [[from, 'from the source'], [to, 'already in the target']] as const) {
      const pool = await TenantPool.open({ configFile: file });
      await alice(pool, value);
      await pool.close();
    }
    const run = startChild(join('..', '..', 'src', 'bin', 'migrate.ts'), ['--from', from, '--to', to]);
    const { code, stderr } = await run.exited;
    assert.is(code, 1, stderr);
    assert.ok(run.lines.some((l) => l.startsWith('conflict alice (')), run.lines.join('\n'));
    assert.ok(!run.lines.some((l) => l.startsWith('verified')), 'nothing is reported verified');
    const check = async (): Promise<unknown> => {
      await using pool = await TenantPool.open({ configFile: to });
      return await pool.withSession('alice', async (s) => (await s.records.get('c', 'r'))?.value);
    };
    assert.equal(await check(), { value: 'already in the target' });
    const overwrite = startChild(join('..', '..', 'src', 'bin', 'migrate.ts'), ['--from', from, '--to', to, '--overwrite']);
    assert.is((await overwrite.exited).code, 0);
    assert.ok(overwrite.lines.some((l) => l.startsWith('replaced alice (1 records, 1 keys)')), overwrite.lines.join('\n'));
    assert.equal(await check(), { value: 'from the source' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await pgQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  }
});

test.run();
