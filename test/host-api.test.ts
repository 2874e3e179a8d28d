/**
 * The host author's API: creation that leaves the wallet warm, structured errors, process lifetime,
 * routing for passphrase tenants, keys, cancellation.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { ErrorCodes, TenantPoolError } from '../common/errors.js';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { startChild } from './child.js';
import { rejectsWith, rootKey, tempDir, usePool } from './helpers.js';

const counterModule = join(import.meta.dirname, 'fixtures', 'counter-module.ts');

test('a freshly created wallet stays open when capacity allows: the first session derives nothing; without room it is closed, not leaked', async () => {
  const events: Array<{ tenantId: string; isKeptOpen: boolean }> = [];
  const acquires: Array<{ tenantId: string; isCacheHit: boolean }> = [];
  const onCreate = (m: unknown): void => void events.push(m as { tenantId: string; isKeptOpen: boolean });
  const onAcquire = (m: unknown): void => void acquires.push(m as { tenantId: string; isCacheHit: boolean });
  subscribe('tenant-pool:tenant:create', onCreate);
  subscribe('tenant-pool:session:acquire', onAcquire);
  await using pool = await usePool({ capacity: 6, walletIdleTtlMs: 60_000 });
  try {
    await pool.tenants.create({ tenantId: 'warm', kdf: 'argon2i-int' });
    assert.is(pool.stats().totals.keyDerivations, 1);
    assert.equal(pool.stats().wallets, { open: 0, idle: 1, opening: 0 });
    await pool.withSession('warm', async (s) => s.records.save('c', 'r', 1));
    assert.is(pool.stats().totals.keyDerivations, 1, 'the first session derived no key');
    // A passphrase tenant kept open still checks the passphrase of every acquire.
    await pool.closeIdleWallets();
    await pool.tenants.create({ tenantId: 'locked', passphrase: 'right one', kdf: 'argon2i-int' });
    await rejectsWith(pool.acquire('locked', { passphrase: 'wrong one' }), 'ERR_WALLET_KEY_INVALID');
    await pool.withSession('locked', async (s) => s.records.save('c', 'r', 2), { passphrase: 'right one' });
    assert.is(pool.stats().totals.keyDerivations, 2, 'one derivation each, at creation');
    // No room (capacity 6: locked's idle wallet holds 4): the new wallet is closed on its worker, and opens later as usual.
    await pool.tenants.create({ tenantId: 'cold' });
    assert.is(pool.stats().weightInUse, 4);
    await pool.withSession('cold', async (s) => s.records.save('c', 'r', 3));
    assert.equal(
      events.map((e) => [e.tenantId, e.isKeptOpen]),
      [
        ['warm', true],
        ['locked', true],
        ['cold', false],
      ],
    );
    assert.equal(
      acquires.map((a) => [a.tenantId, a.isCacheHit]),
      [
        ['warm', true],
        ['locked', true],
        ['cold', false],
      ],
    );
    // A kept wallet is a wallet like any other: deleted at once with its tenant.
    await pool.tenants.create({ tenantId: 'brief' });
    await pool.tenants.delete('brief');
    const st = pool.stats();
    assert.is(st.totals.walletOpens - st.totals.walletCloses, st.wallets.open + st.wallets.idle + st.wallets.opening);
  } finally {
    unsubscribe('tenant-pool:tenant:create', onCreate);
    unsubscribe('tenant-pool:session:acquire', onAcquire);
  }
});

test('wallets created and kept open are placed as opens are: 8 tenants of raw keys on 2 workers are 4 and 4', async () => {
  await using pool = await usePool({ workers: 2, capacity: 1000, walletIdleTtlMs: 600_000 });
  // Ids whose first-ranked worker is the same one for 6 of the 8: a raw key keeps nothing on a worker, so the less loaded one takes it.
  for (let i = 0; i < 8; i++) await pool.tenants.create({ tenantId: `t${i}` });
  assert.equal(pool.stats().workers.map((w) => w.tenants), [4, 4]);
});

test('errors carry tenantId and retryable; a timeout carries stage, waitMs, queued and weightInUse', async () => {
  await using pool = await usePool({ capacity: 5 });
  await pool.tenants.create({ tenantId: 'a' });
  await pool.tenants.create({ tenantId: 'b' });
  const held = await pool.acquire('a');
  const timeout = (await rejectsWith(pool.acquire('b', { timeoutMs: 10 }), 'ERR_ACQUIRE_TIMEOUT')) as TenantPoolError<'ERR_ACQUIRE_TIMEOUT'>;
  assert.equal({ tenantId: timeout.tenantId, stage: timeout.stage, queued: timeout.queued, weightInUse: timeout.weightInUse, retryable: timeout.retryable }, { tenantId: 'b', stage: 'admission', queued: 0, weightInUse: 5, retryable: true });
  assert.ok(typeof timeout.waitMs === 'number' && timeout.waitMs >= 10, `waitMs ${String(timeout.waitMs)}`);
  const notFound = (await rejectsWith(pool.acquire('nobody'), 'ERR_TENANT_NOT_FOUND')) as TenantPoolError;
  assert.equal([notFound.tenantId, notFound.retryable], ['nobody', false]);
  const invalid = (await rejectsWith(pool.tenants.create({ tenantId: '../x' }), 'ERR_INVALID_ARGUMENT')) as TenantPoolError;
  assert.is(invalid.retryable, false);
  await held.release();
  const released = (await rejectsWith(held.records.get('c', 'x'), 'ERR_SESSION_RELEASED')) as TenantPoolError;
  assert.is(released.tenantId, 'a');
  await pool.close();
  const closed = (await rejectsWith(pool.acquire('a'), 'ERR_POOL_CLOSED')) as TenantPoolError;
  assert.is(closed.retryable, true);
});

test('passphrase tenants get inbound messages: byRoutingKey, a passphraseProvider for acquire and dispatch, several recipient keys', async () => {
  const secrets = new Map([['alice', 'alice passphrase']]);
  const asked: string[] = [];
  let isStoreDown = false;
  await using pool = await usePool({
    modules: [counterModule],
    walletIdleTtlMs: 0,
    passphraseProvider: async (tenantId) => {
      asked.push(tenantId);
      if (isStoreDown) throw new Error('secret store unreachable');
      return secrets.get(tenantId);
    },
  });
  await pool.tenants.create({ tenantId: 'alice', passphrase: 'alice passphrase', kdf: 'argon2i-int' });
  await pool.tenants.create({ tenantId: 'bob', passphrase: 'bob passphrase', kdf: 'argon2i-int' });
  const { publicKey } = await pool.withSession('alice', async (s) => s.keys.create({ routing: true }));
  assert.is(await pool.tenants.byRoutingKey(publicKey), 'alice');
  assert.is(await pool.tenants.byRoutingKey('unknown-key'), undefined);
  // dispatch with no passphrase: the provider gives it; the first routed key of several wins.
  const answer = await pool.dispatch({ recipientKeys: ['not-routed', publicKey], body: { text: 'hi' } });
  assert.equal(answer, { tenantId: 'alice', text: 'hi' });
  await rejectsWith(pool.dispatch({ recipientKeys: ['x', 'y'], body: 1 }), 'ERR_ROUTE_NOT_FOUND');
  await rejectsWith(pool.dispatch({ recipientKeys: [], body: 1 }), 'ERR_INVALID_ARGUMENT');
  await rejectsWith(pool.dispatch({ recipientKey: publicKey, recipientKeys: [publicKey], body: 1 } as never), 'ERR_INVALID_ARGUMENT');
  // A passphrase given to acquire wins over the provider; the provider is not asked.
  const before = asked.length;
  await pool.withSession('alice', async () => {}, { passphrase: 'alice passphrase' });
  assert.is(asked.length, before);
  // No passphrase known for bob: the key is missing, as without a provider.
  await rejectsWith(pool.acquire('bob'), 'ERR_WALLET_KEY_INVALID');
  // A wrong one from the store is a wrong key.
  secrets.set('bob', 'not it');
  await rejectsWith(pool.acquire('bob'), 'ERR_WALLET_KEY_INVALID');
  isStoreDown = true;
  const down = (await rejectsWith(pool.acquire('alice'), 'ERR_PASSPHRASE_PROVIDER')) as TenantPoolError;
  assert.equal([down.tenantId, down.retryable], ['alice', true]);
  assert.is(pool.stats().weightInUse, 0, 'nothing held');
});

test('keys: list with routing, setRouting on and off, delete removes the route too', async () => {
  await using pool = await usePool({ modules: [counterModule] });
  await pool.tenants.create({ tenantId: 't' });
  await pool.withSession('t', async (s) => {
    const routed = await s.keys.create({ routing: true });
    const plain = await s.keys.create();
    const listed = await s.keys.list();
    assert.equal(
      listed.map((k) => [k.kid, k.publicKey, k.routing]),
      [
        [routed.kid, routed.publicKey, true],
        [plain.kid, plain.publicKey, false],
      ],
    );
    assert.ok(listed.every((k) => !Number.isNaN(Date.parse(k.createdAt))));
    await s.keys.setRouting(plain.kid, true);
    assert.is(await pool.tenants.byRoutingKey(plain.publicKey), 't');
    await s.keys.setRouting(routed.kid, false);
    assert.is(await pool.tenants.byRoutingKey(routed.publicKey), undefined);
    await rejectsWith(pool.dispatch({ recipientKey: routed.publicKey, body: 1 }), 'ERR_ROUTE_NOT_FOUND');
    await rejectsWith(s.keys.setRouting('no-such-kid', true), 'ERR_KEY_NOT_FOUND');
    assert.is(await s.keys.delete(plain.kid), true);
    assert.is(await s.keys.delete(plain.kid), false, 'already gone');
    assert.is(await pool.tenants.byRoutingKey(plain.publicKey), undefined, 'its route went with it');
    await rejectsWith(s.keys.sign(plain.kid, new Uint8Array(1)), 'ERR_KEY_NOT_FOUND');
    assert.equal((await s.keys.list()).map((k) => k.kid), [routed.kid]);
  });
});

test('run(task, args, { signal }): an abort settles the call at once with the reason, and the task sees ctx.signal abort', async () => {
  await using pool = await usePool({ modules: [counterModule] });
  await pool.tenants.create({ tenantId: 't' });
  await pool.withSession('t', async (s) => {
    const controller = new AbortController();
    const running = s.run('untilAborted', undefined, { signal: controller.signal });
    const reason = new Error('the client went away');
    controller.abort(reason);
    try {
      await running;
      assert.unreachable('the call settles with the reason');
    } catch (error) {
      assert.is(error, reason);
    }
    let seen: unknown;
    for (let i = 0; i < 1000 && seen === undefined; i++) {
      seen = (await s.records.get('abort', 'seen'))?.value;
      if (seen === undefined) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    assert.is(seen, 'AbortError');
    await rejectsWith(s.run('untilAborted', undefined, { signal: 'no' as never }), 'ERR_INVALID_ARGUMENT');
    const already = AbortSignal.abort(new Error('before'));
    try {
      await s.run('whoami', undefined, { signal: already });
      assert.unreachable('an aborted signal rejects at once');
    } catch (error) {
      assert.is((error as Error).message, 'before');
    }
    assert.is(await s.run('whoami', undefined, { signal: new AbortController().signal }), 't', 'a signal that never aborts changes nothing');
  });
});

test('allowExitOnIdle: an idle pool lets the process exit; by default an open pool keeps it alive until close()', async () => {
  for (const allow of [true, false]) {
    const dataDir = tempDir();
    const child = startChild('exit-on-idle.ts', [dataDir, rootKey(), String(allow)]);
    await child.waitFor((lines) => lines.includes('done'));
    // The exit (or its absence) is awaited: a process that ends by itself does so within this limit.
    const ended = await Promise.race([child.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5_000))]);
    child.kill('SIGKILL');
    const { code, signal } = await child.exited;
    assert.is(ended, allow, allow ? 'exited by itself' : 'kept alive');
    if (allow) assert.equal([code, signal], [0, null]);
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('the README error table lists every code, with the retryable flag each code has', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const rows = new Map([...readme.matchAll(/^\| `(ERR_[A-Z_]+)` \|.*\| (yes|no) \| [^|]+ \|$/gm)].map((m) => [m[1]!, m[2] === 'yes']));
  assert.equal([...rows.keys()].sort(), [...ErrorCodes].sort());
  for (const code of ErrorCodes) assert.is(new TenantPoolError(code, '').retryable, rows.get(code), `${code} retryable`);
});

test('examples/routing.ts runs: a passphrase tenant reached by dispatch through the passphraseProvider', () => {
  const run = spawnSync(process.execPath, [...process.execArgv, join(import.meta.dirname, '..', 'examples', 'routing.ts')], { encoding: 'utf8', timeout: 60_000 });
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stdout, 'owner of the key: alice');
  assert.match(run.stdout, "alice inbox: { stored: 1, sinceOpen: 1 }");
});

test.run();
