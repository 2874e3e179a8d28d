import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CHANNEL_NAMES, EventHub, type EventName } from '../src/observability/diagnostics.js';
import { kWorkers } from '../src/pool.js';
import type { Logger } from '../src/observability/logging.js';
import { eventually, leaveHalfCreatedWallet, rejectsWith, rootKey, tempDir, usePool } from './helpers.js';

/** The documented payload keys of each event (README, src/observability/diagnostics.ts). */
const PAYLOAD_KEYS: Record<EventName, string[]> = {
  'tenant-pool:session:acquire': ['isCacheHit', 'queuedMs', 'tenantId', 'waitMs', 'worker'],
  'tenant-pool:session:release': ['holdMs', 'tenantId', 'worker'],
  'tenant-pool:session:timeout': ['queued', 'stage', 'tenantId', 'waitMs', 'weightInUse'],
  'tenant-pool:session:reject': ['code', 'tenantId', 'waitMs'],
  'tenant-pool:session:leak': ['heldMs', 'stack', 'tenantId'],
  'tenant-pool:session:revoke': ['heldMs', 'reason', 'tenantId'],
  'tenant-pool:wallet:open': ['deriveMs', 'kdf', 'openMs', 'tenantId', 'totalMs', 'waitMs', 'worker'],
  'tenant-pool:wallet:close': ['openForMs', 'reason', 'tenantId', 'worker'],
  'tenant-pool:wallet:evict': ['forTenantId', 'idleMs', 'tenantId'],
  'tenant-pool:worker:crash': ['crashes', 'message', 'walletsLost', 'worker'],
  'tenant-pool:worker:spawn': ['isReplacement', 'startMs', 'worker'],
  'tenant-pool:tenant:create': ['deriveMs', 'isKeptOpen', 'kdf', 'tenantId', 'totalMs', 'worker'],
  'tenant-pool:lease:take': ['epoch', 'takeMs', 'tenantId'],
  'tenant-pool:lease:release': ['epoch', 'heldMs', 'tenantId'],
  'tenant-pool:lease:lost': ['epoch', 'heldMs', 'reason', 'tenantId'],
  'tenant-pool:pool:sweep': ['dataDir', 'failed', 'removed'],
  'tenant-pool:schema:lost': ['instanceId', 'message', 'schema'],
};

/** Events of cluster mode (and of a lost PostgreSQL schema) only, which test/cluster.test.ts and test/ownership-fence.test.ts see fire. */
const isClusterEvent = (name: EventName): boolean => name.startsWith('tenant-pool:lease:') || name === 'tenant-pool:schema:lost';

interface Line {
  level: keyof Logger;
  context: Record<string, unknown>;
  message: string;
}

function captureLogger(lines: Line[]): Logger {
  const at =
    (level: keyof Logger) =>
    (context: object, message?: string): void => {
      lines.push({ level, context: { ...context }, message: message ?? '' });
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

test('every event fires with its documented payload under a scripted load, and is logged at its level with no secret', async () => {
  const key = rootKey();
  // A wallet no tenant owns (as a kill during a create leaves): swept at open. Made before anything listens.
  const dataDir = tempDir();
  const ghost = await leaveHalfCreatedWallet(dataDir, key);
  const events: Array<[EventName, Record<string, unknown>]> = [];
  const handlers = CHANNEL_NAMES.map((name) => {
    const handler = (message: unknown): void => {
      events.push([name, message as Record<string, unknown>]);
    };
    subscribe(name, handler);
    return [name, handler] as const;
  });
  const of = (name: EventName): Array<Record<string, unknown>> => events.filter(([n]) => n === name).map(([, p]) => p);
  const lines: Line[] = [];
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w);
  };
  process.on('warning', onWarning);
  const passphrase = 'PASSPHRASE-correct-horse-battery';
  const secretValue = 'RECORD-VALUE-d41d8cd98f';
  const secretTag = 'TAG-VALUE-9e107d9d372';
  let worker: number | undefined;
  await using pool = await usePool({ dataDir, rootKey: key, workers: 2, capacity: 11, walletIdleTtlMs: 300, leakWarningMs: 150, logger: captureLogger(lines), keyCache: { maxEntries: 0 } });
  try {
    for (const tenantId of ['a', 'b', 'c', 'd']) await pool.tenants.create({ tenantId });
    await pool.tenants.create({ tenantId: 'p', passphrase, kdf: 'argon2i-int' });

    // Capacity 11, a wallet weighs 4 and a session 1: with a and b in, d does not fit and times out waiting.
    const a = await pool.acquire('a');
    const b = await pool.acquire('b');
    await rejectsWith(pool.acquire('d', { timeoutMs: 20 }), 'ERR_ACQUIRE_TIMEOUT');
    // b goes idle; d needs 5 of the 2 free: b's idle wallet is evicted for it. d's second session fits in the last unit.
    await b.release();
    const d = await pool.acquire('d');
    const again = await pool.acquire('d');
    await again.release();
    await d.release();
    await eventually(() => of('tenant-pool:wallet:close').some((p) => p.tenantId === 'd' && p.reason === 'idle'), 'd closes after its idle TTL');

    // A passphrase tenant with Argon2: a wallet open with a derivation, a record with a secret value and tag.
    await pool.withSession('p', async (s) => s.records.save('notes', 'n1', { text: secretValue }, { topic: secretTag }), { passphrase });
    await rejectsWith(pool.acquire('p', { passphrase: 'not-the-passphrase' }), 'ERR_WALLET_KEY_INVALID');
    await rejectsWith(pool.acquire('nobody'), 'ERR_TENANT_NOT_FOUND');
    await rejectsWith(pool.acquire(42 as unknown as string), 'ERR_INVALID_ARGUMENT');
    const aborted = await pool.acquire('c', { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    assert.instance(aborted, DOMException);

    // a is held on: a leak warning, then its tenant is deleted under it.
    await eventually(() => of('tenant-pool:session:leak').length > 0, 'the leak warning');
    await pool.tenants.delete('a');
    await rejectsWith(a.records.get('x', 'y'), 'ERR_TENANT_DELETED');

    // c's worker dies with c's wallet open on it; a replacement starts.
    const c = await pool.acquire('c');
    worker = pool.stats().workers.find((w) => w.sessions === 1)!.index;
    await pool[kWorkers][worker]!.thread!.terminate();
    await rejectsWith(c.records.get('x', 'y'), 'ERR_WORKER_CRASHED');
    await c.release();
    await eventually(() => of('tenant-pool:worker:spawn').length === 3, 'the replacement worker is ready');

    // The pool closes with a session live: revoked, and its wallet closed with the pool.
    await pool.acquire('c');
    await pool.close({ timeoutMs: 0 });
  } finally {
    process.off('warning', onWarning);
    for (const [name, handler] of handlers) unsubscribe(name, handler);
  }

  // Every channel fired, each payload with exactly its documented keys.
  for (const name of CHANNEL_NAMES) {
    assert.ok(of(name).length > 0 || isClusterEvent(name), `${name} fired`);
    for (const payload of of(name)) assert.equal(Object.keys(payload).sort(), PAYLOAD_KEYS[name], `${name} payload keys`);
  }
  const acquires = of('tenant-pool:session:acquire');
  for (const p of acquires) {
    assert.ok((p.waitMs as number) >= (p.queuedMs as number) && (p.queuedMs as number) >= 0, 'wait includes the admission wait');
    assert.ok(p.worker === 0 || p.worker === 1);
  }
  assert.equal(acquires.filter((p) => p.tenantId === 'd').map((p) => p.isCacheHit), [false, true], 'd opened its wallet, then found it open');
  assert.is(of('tenant-pool:session:release').length, acquires.length, 'every session handed out ended');
  assert.equal(of('tenant-pool:session:timeout').map((p) => [p.tenantId, p.stage]), [['d', 'admission']]);
  assert.equal(
    of('tenant-pool:session:reject').map((p) => [p.tenantId, p.code]),
    [
      ['p', 'ERR_WALLET_KEY_INVALID'],
      ['nobody', 'ERR_TENANT_NOT_FOUND'],
      [null, 'ERR_INVALID_ARGUMENT'],
      ['c', 'ABORTED'],
    ],
  );
  assert.equal(of('tenant-pool:wallet:evict').map((p) => [p.tenantId, p.forTenantId]), [['b', 'd']]);
  assert.equal(of('tenant-pool:session:leak')[0]!.tenantId, 'a');
  assert.match(of('tenant-pool:session:leak')[0]!.stack as string, 'observability.test.ts', 'the stack points at the acquire');
  assert.equal(of('tenant-pool:session:revoke').map((p) => [p.tenantId, p.reason]), [['a', 'delete'], ['c', 'close']]);
  const closes = of('tenant-pool:wallet:close');
  assert.equal(new Set(closes.map((p) => p.reason)), new Set(['idle', 'capacity', 'delete', 'crash', 'close']));
  assert.ok(closes.some((p) => p.tenantId === 'b' && p.reason === 'capacity'));
  assert.ok(closes.some((p) => p.tenantId === 'c' && p.reason === 'crash'));
  const argon = of('tenant-pool:wallet:open').find((p) => p.tenantId === 'p')!;
  assert.is(argon.kdf, 'argon2i-int');
  assert.ok((argon.deriveMs as number) > 0 && (argon.totalMs as number) >= (argon.deriveMs as number), 'the derivation is timed within the open');
  assert.equal(of('tenant-pool:worker:crash').map((p) => [p.worker, p.crashes]), [[worker, 1]]);
  assert.is(of('tenant-pool:worker:crash')[0]!.walletsLost, closes.filter((p) => p.reason === 'crash').length, 'one crash close per wallet lost');
  assert.equal(of('tenant-pool:worker:spawn').map((p) => p.isReplacement), [false, false, true]);

  // The logger got each event at its level (and the pool's open and close), and took the place of process warnings.
  const levelOf = (event: string): string[] => [...new Set(lines.filter((l) => l.context['event'] === event).map((l) => l.level))];
  assert.equal(levelOf('tenant-pool:session:acquire'), ['debug']);
  assert.equal(levelOf('tenant-pool:wallet:open'), ['debug']);
  assert.equal(levelOf('tenant-pool:session:timeout'), ['info']);
  assert.equal(levelOf('tenant-pool:worker:spawn'), ['info']);
  assert.equal(levelOf('tenant-pool:session:leak'), ['warn']);
  assert.equal(levelOf('tenant-pool:pool:sweep'), ['warn']);
  assert.equal(of('tenant-pool:pool:sweep')[0]!.removed, [ghost]);
  assert.equal(levelOf('tenant-pool:worker:crash'), ['error']);
  assert.equal(levelOf('tenant-pool:pool:open'), ['info']);
  assert.equal(levelOf('tenant-pool:pool:close'), ['info']);
  assert.is(lines.filter((l) => l.context['event'] !== 'tenant-pool:pool:open' && l.context['event'] !== 'tenant-pool:pool:close').length, events.length, 'one log line per event');
  for (const line of lines) assert.match(line.message, /^tenant-pool: /);
  assert.equal(warnings, [], 'with a logger, no process warning');

  // No secret anywhere: not the passphrase, the root key, a record value or a tag value.
  const everything = JSON.stringify({ events, lines });
  for (const secret of [passphrase, key, secretValue, secretTag]) assert.not.ok(everything.includes(secret), `no ${secret.slice(0, 12)}… in events or logs`);
});

test('a payload is built only when someone listens: a channel subscriber or a pool listener', () => {
  const hub = new EventHub();
  let builds = 0;
  const build = (): { tenantId: string; worker: number; holdMs: number } => {
    builds++;
    return { tenantId: 't', worker: 0, holdMs: 1 };
  };
  hub.emit('tenant-pool:session:release', build);
  assert.is(builds, 0, 'no one listens');
  const seen: unknown[] = [];
  const onMessage = (m: unknown): void => void seen.push(m);
  subscribe('tenant-pool:session:release', onMessage);
  hub.emit('tenant-pool:session:release', build);
  unsubscribe('tenant-pool:session:release', onMessage);
  const off = hub.on((...event) => seen.push(event));
  hub.emit('tenant-pool:session:release', build);
  hub.emit('tenant-pool:session:acquire', () => ({ tenantId: 't', worker: 0, waitMs: 0, queuedMs: 0, isCacheHit: true }));
  off();
  hub.emit('tenant-pool:session:release', build);
  assert.is(builds, 2, 'built once per delivery, not after the listener is gone');
  assert.equal(seen, [
    { tenantId: 't', worker: 0, holdMs: 1 },
    ['tenant-pool:session:release', { tenantId: 't', worker: 0, holdMs: 1 }],
    ['tenant-pool:session:acquire', { tenantId: 't', worker: 0, waitMs: 0, queuedMs: 0, isCacheHit: true }],
  ]);
});

test('docs/observability.md lists every channel with its payload keys', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'docs', 'observability.md'), 'utf8');
  const rows = new Map([...readme.matchAll(/^\| `(tenant-pool:[a-z]+:[a-z]+)` \| `\{ ([^}]*) \}`/gm)].map((m) => [m[1]!, m[2]!]));
  assert.equal([...rows.keys()].sort(), [...CHANNEL_NAMES].sort());
  for (const [name, payload] of rows) {
    const keys = payload.split(',').map((k) => k.trim().split(':')[0]!);
    assert.equal(keys.sort(), PAYLOAD_KEYS[name as EventName], `${name} in docs/observability.md`);
  }
});

test('with no logger the pool writes nothing but its warnings', async () => {
  let written = '';
  const stdout = process.stdout.write.bind(process.stdout);
  const stderr = process.stderr.write.bind(process.stderr);
  const capture = (chunk: string | Uint8Array): boolean => {
    written += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  };
  const warnings: Array<Error & { code?: string }> = [];
  const onWarning = (w: Error): void => {
    warnings.push(w);
  };
  process.on('warning', onWarning);
  process.stdout.write = capture;
  process.stderr.write = capture;
  try {
    await using pool = await usePool({ leakWarningMs: 20, walletIdleTtlMs: 0 });
    await pool.tenants.create({ tenantId: 'quiet' });
    await pool.withSession('quiet', async (s) => s.records.save('c', 'x', 1));
    await rejectsWith(pool.acquire('nobody'), 'ERR_TENANT_NOT_FOUND');
    const held = await pool.acquire('quiet');
    await eventually(() => warnings.length > 0, 'the leak warning');
    await held.release();
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
    process.off('warning', onWarning);
  }
  assert.equal(warnings.map((w) => w.code), ['TENANT_POOL_SESSION_LEAK']);
  // Node prints the warning itself (its own listener); no other line of the pool's reaches the console.
  // The pool's own words ("tenant-pool: ...", "tenant-pool generated ..."), not a path that happens to contain the name.
  const poolLines = written.split('\n').filter((line) => /tenant-pool[: ]/.test(line) && !line.includes('TENANT_POOL_SESSION_LEAK'));
  assert.equal(poolLines, []);
});

test.run();
