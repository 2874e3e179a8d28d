import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { TenantSession } from '../src/session.js';
import { usePool } from './helpers.js';

type Case = [what: string, call: () => Promise<unknown>, code: string];

async function codeOf(call: () => Promise<unknown>): Promise<string> {
  try {
    await call();
    return 'resolved';
  } catch (error) {
    return (error as { code?: string }).code ?? `uncoded ${String(error)}`;
  }
}

test('every public method refuses bad input with its code; no worker crashes, no weight leaks, no unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  await using pool = await usePool({ maxValueBytes: 4096, modules: [join(import.meta.dirname, 'fixtures', 'counter-module.ts')], leakWarningMs: 0 });
  try {
    const { tenantId } = await pool.tenants.create({ tenantId: 'hostile' });
    const s: TenantSession = await pool.acquire(tenantId);
    const { kid, publicKey } = await s.keys.create();
    const cyclic: Record<string, unknown> = {};
    cyclic['me'] = cyclic;
    const long = 'x'.repeat(5000);
    const INVALID = 'ERR_INVALID_ARGUMENT';
    const cases: Case[] = [
      ['tenants.create: unicode id', async () => pool.tenants.create({ tenantId: 'tenänt' }), INVALID],
      ['tenants.create: id of 65 characters', async () => pool.tenants.create({ tenantId: 'a'.repeat(65) }), INVALID],
      ['tenants.create: empty id', async () => pool.tenants.create({ tenantId: '' }), INVALID],
      ['tenants.create: empty label', async () => pool.tenants.create({ label: '' }), INVALID],
      ['tenants.create: oversized label', async () => pool.tenants.create({ label: long }), INVALID],
      ['tenants.create: options not an object', async () => pool.tenants.create('x' as never), INVALID],
      ['tenants.create: passphrase not a string', async () => pool.tenants.create({ passphrase: 42 as never }), INVALID],
      ['tenants.create: weights heavier than the pool', async () => pool.tenants.create({ weights: { wallet: 5000 } }), INVALID],
      ['tenants.get: null id', async () => pool.tenants.get(null as never), INVALID],
      ['tenants.get: path id', async () => pool.tenants.get('../../etc'), INVALID],
      ['tenants.update: unknown key', async () => pool.tenants.update(tenantId, { owner: 'x' } as never), INVALID],
      ['tenants.update: maxSessions 0', async () => pool.tenants.update(tenantId, { maxSessions: 0 }), INVALID],
      ['tenants.update: metadata with a number', async () => pool.tenants.update(tenantId, { metadata: { a: 1 } as never }), INVALID],
      ['tenants.delete: unicode id', async () => pool.tenants.delete('ünïcode'), INVALID],
      ['tenants.delete: unknown tenant', async () => pool.tenants.delete('nobody'), 'ERR_TENANT_NOT_FOUND'],
      ['acquire: negative timeout', async () => pool.acquire(tenantId, { timeoutMs: -1 }), INVALID],
      ['acquire: NaN timeout', async () => pool.acquire(tenantId, { timeoutMs: NaN }), INVALID],
      ['acquire: signal not an AbortSignal', async () => pool.acquire(tenantId, { signal: {} as never }), INVALID],
      ['acquire: unknown option', async () => pool.acquire(tenantId, { priority: 1 } as never), INVALID],
      ['acquire: passphrase for a managed tenant', async () => pool.acquire(tenantId, { passphrase: 'x' }), INVALID],
      ['withSession: fn not a function', async () => pool.withSession(tenantId, 'fn' as never), INVALID],
      ['dispatch: message not an object', async () => pool.dispatch(null as never), INVALID],
      ['dispatch: no recipientKey', async () => pool.dispatch({ body: 1 } as never), INVALID],
      ['dispatch: BigInt body', async () => pool.dispatch({ recipientKey: publicKey, body: 1n as never }), INVALID],
      ['dispatch: unknown key', async () => pool.dispatch({ recipientKey: 'NotAKey', body: null }), 'ERR_ROUTE_NOT_FOUND'],
      ['records.save: value over maxValueBytes', async () => s.records.save('c', 'id', long), INVALID],
      ['records.save: BigInt value', async () => s.records.save('c', 'id', 1n as never), INVALID],
      ['records.save: undefined value', async () => s.records.save('c', 'id', undefined as never), INVALID],
      ['records.save: a function inside', async () => s.records.save('c', 'id', { f: () => 1 } as never), INVALID],
      ['records.save: a cycle', async () => s.records.save('c', 'id', cyclic as never), INVALID],
      ['records.save: tag not a string', async () => s.records.save('c', 'id', 1, { t: 1 } as never), INVALID],
      ['records.save: empty category', async () => s.records.save('', 'id', 1), INVALID],
      ['records.save: oversized id', async () => s.records.save('c', long, 1), INVALID],
      ['records.get: category not a string', async () => s.records.get(1 as never, 'id'), INVALID],
      ['records.find: limit 0', async () => s.records.find('c', {}, { limit: 0 }), INVALID],
      ['records.find: options not an object', async () => s.records.find('c', {}, 5 as never), INVALID],
      ['records.find: tags an array', async () => s.records.find('c', ['a'] as never), INVALID],
      ['records.delete: empty id', async () => s.records.delete('c', ''), INVALID],
      ['keys.create: routing not a boolean', async () => s.keys.create({ routing: 'yes' } as never), INVALID],
      ['keys.sign: unknown kid', async () => s.keys.sign('not-a-kid', new Uint8Array(4)), 'ERR_KEY_NOT_FOUND'],
      ['keys.sign: data a string', async () => s.keys.sign(kid, 'text' as never), INVALID],
      ['keys.verify: key not base58', async () => s.keys.verify('0OIl', new Uint8Array(4), new Uint8Array(64)), INVALID],
      ['keys.verify: key of the wrong length', async () => s.keys.verify('abc', new Uint8Array(4), new Uint8Array(64)), INVALID],
      ['keys.verify: signature not bytes', async () => s.keys.verify(publicKey, new Uint8Array(4), 'sig' as never), INVALID],
      ['run: unknown task', async () => s.run('no-such-task'), 'ERR_TASK_NOT_FOUND'],
      ['run: empty task name', async () => s.run(''), INVALID],
      ['run: a function as arguments', async () => s.run('whoami', () => 1), INVALID],
    ];
    for (const [what, call, code] of cases) assert.is(await codeOf(call), code, what);
    // The session is still good after all of that.
    await s.records.save('c', 'ok', { fine: true });
    assert.is(await s.keys.verify(publicKey, new Uint8Array([1]), await s.keys.sign(kid, new Uint8Array([1]))), true);

    await s.release();
    await s.release();
    const released: Case[] = [
      ['records.save', async () => s.records.save('c', 'x', 1), 'ERR_SESSION_RELEASED'],
      ['records.get', async () => s.records.get('c', 'x'), 'ERR_SESSION_RELEASED'],
      ['records.find', async () => s.records.find('c'), 'ERR_SESSION_RELEASED'],
      ['records.delete', async () => s.records.delete('c', 'x'), 'ERR_SESSION_RELEASED'],
      ['keys.create', async () => s.keys.create(), 'ERR_SESSION_RELEASED'],
      ['keys.sign', async () => s.keys.sign(kid, new Uint8Array(1)), 'ERR_SESSION_RELEASED'],
      ['keys.verify', async () => s.keys.verify(publicKey, new Uint8Array(1), new Uint8Array(64)), 'ERR_SESSION_RELEASED'],
      ['run', async () => s.run('whoami'), 'ERR_SESSION_RELEASED'],
    ];
    for (const [what, call, code] of released) assert.is(await codeOf(call), code, `${what} after release`);

    const st = pool.stats();
    assert.is(st.totals.workerCrashes, 0);
    assert.is(st.sessions, 0);
    assert.is(st.weightInUse, 4, 'only the cached wallet');

    const live = await pool.acquire(tenantId);
    const closing = pool.close({ timeoutMs: 0 });
    assert.is(await codeOf(async () => pool.acquire(tenantId)), 'ERR_POOL_CLOSED', 'acquire during close');
    await closing;
    await pool.close();
    assert.is(await codeOf(async () => pool.acquire(tenantId)), 'ERR_POOL_CLOSED', 'acquire after close');
    assert.is(await codeOf(async () => pool.tenants.create()), 'ERR_POOL_CLOSED', 'create after close');
    assert.is(await codeOf(async () => live.records.get('c', 'ok')), 'ERR_SESSION_REVOKED', 'a session revoked by close');
    await live.release();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(unhandled, [], 'no unhandled rejection');
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test.run();
