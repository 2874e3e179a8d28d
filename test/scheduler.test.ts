import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Scheduler, type Effects, type Grant, type Waiter, type Weights } from '../src/engine/scheduler.js';

const W: Weights = { wallet: 4, session: 1 };

function scheduler(overrides: Partial<ConstructorParameters<typeof Scheduler>[0]> = {}): Scheduler {
  return new Scheduler({ capacity: 10, maxQueue: 100, tenantLimit: 'queue', walletIdleTtlMs: 1000, ...overrides });
}

function granted(s: Scheduler, tenantId: string, extra: { weights?: Weights; maxSessions?: number; deadline?: number } = {}): Grant {
  const r = s.acquire({ tenantId, weights: extra.weights ?? W, maxSessions: extra.maxSessions ?? Infinity, deadline: extra.deadline ?? Infinity });
  if (r.kind !== 'granted') throw new Error(`expected a grant, got ${r.kind}`);
  return r.grant;
}

function queued(s: Scheduler, tenantId: string, extra: { weights?: Weights; maxSessions?: number; deadline?: number } = {}): Waiter {
  const r = s.acquire({ tenantId, weights: extra.weights ?? W, maxSessions: extra.maxSessions ?? Infinity, deadline: extra.deadline ?? Infinity });
  if (r.kind !== 'queued') throw new Error(`expected to queue, got ${r.kind}`);
  return r.waiter;
}

test('a first session costs wallet + session; further concurrent ones cost a session; the idle wallet keeps its weight', () => {
  const s = scheduler();
  const a = granted(s, 'a');
  assert.is(s.weightInUse, 5);
  const b = granted(s, 'a');
  assert.is(s.weightInUse, 6);
  s.release(a, 0);
  s.release(b, 0);
  assert.is(s.weightInUse, 4, 'the cached wallet holds 4');
  assert.is(s.idleWallets, 1);
  granted(s, 'a');
  assert.is(s.weightInUse, 5, 'a cache hit costs only the session');
});

test('waiters are granted in arrival order; a big head blocks smaller waiters behind it', () => {
  const s = scheduler({ capacity: 10, walletIdleTtlMs: Infinity });
  const a1 = granted(s, 'a'); // 5
  const a2 = granted(s, 'a'); // 6
  const w1 = queued(s, 'b'); // needs 5: 6 + 5 > 10
  const w2 = queued(s, 'a'); // needs 1: would fit, but waits behind w1
  assert.is(s.drain(0).granted.length, 0);
  s.release(a1, 0); // 5 in use: w1 fits, then w2 does not (11)
  assert.equal(s.drain(0).granted, [w1]);
  s.release(a2, 0); // 9 in use
  assert.equal(s.drain(0).granted, [w2]);
  assert.is(s.weightInUse, 10, 'wallet a (4) + session (1) + wallet b (4) + session (1)');
});

test('the head that does not fit closes the least frequent idle wallets, and only as many as it needs', () => {
  const s = scheduler({ capacity: 14, walletIdleTtlMs: Infinity });
  for (const t of ['a', 'a', 'a', 'b', 'c']) s.release(granted(s, t), 0); // three idle wallets hold 12; a is the frequent one
  const d = queued(s, 'd', { weights: { wallet: 6, session: 1 } }); // needs 7: 19 > 14, 5 missing
  const fx = s.drain(0);
  assert.equal(fx.close.map((c) => c.tenantId).sort(), ['b', 'c'], 'a, used three times, stays open though it is the least recently used');
  assert.ok(fx.close.every((c) => c.reason === 'capacity' && c.forTenantId === 'd' && c.idleSince === 0));
  assert.is(s.weightInUse, 12, 'closing wallets hold their weight until closed');
  s.closeDone('b');
  assert.equal(s.drain(0), { granted: [], expired: [], close: [] }, 'c is already closing: nothing more is evicted');
  s.closeDone('c');
  assert.equal(s.drain(0).granted, [d]);
  assert.is(s.weightInUse, 4 + 7);
  assert.equal(s.idleTenants(), ['a'], 'a is still cached');
});

test('idle wallets close after their TTL; TTL 0 closes at the last release', () => {
  const s = scheduler({ walletIdleTtlMs: 100 });
  s.release(granted(s, 'a'), 1000);
  assert.is(s.nextDeadline(), 1100);
  assert.equal(s.drain(1099).close, []);
  assert.equal(s.drain(1100).close, [{ tenantId: 'a', reason: 'idle', idleSince: 1000 }]);
  s.closeDone('a');
  assert.is(s.weightInUse, 0);
  const zero = scheduler({ walletIdleTtlMs: 0 });
  zero.release(granted(zero, 'a'), 5);
  assert.equal(zero.drain(5).close, [{ tenantId: 'a', reason: 'idle', idleSince: 5 }]);
});

test('deadlines: a waiter expires at its deadline, leaves the queue and holds nothing', () => {
  const s = scheduler({ capacity: 5 });
  const g = granted(s, 'a');
  const w = queued(s, 'b', { deadline: 50 });
  assert.is(s.queued, 1);
  assert.is(s.nextDeadline(), 50);
  assert.equal(s.drain(49).expired, []);
  assert.equal(s.drain(50).expired, [w]);
  assert.is(w.state, 'expired');
  assert.is(s.queued, 0);
  s.release(g, 60);
  assert.equal(s.drain(60).granted, []);
});

test('cancel takes a waiter out at once; a cancelled head no longer blocks', () => {
  const s = scheduler({ capacity: 6, walletIdleTtlMs: Infinity });
  granted(s, 'a'); // 5
  const big = queued(s, 'b'); // needs 5
  const small = queued(s, 'a'); // needs 1, behind big
  assert.ok(s.cancel(big));
  assert.not.ok(s.cancel(big));
  assert.equal(s.drain(0).granted, [small]);
});

test('maxQueue rejects at once; over-weight tenants are refused', () => {
  const s = scheduler({ capacity: 5, maxQueue: 1 });
  granted(s, 'a');
  queued(s, 'b');
  const r = s.acquire({ tenantId: 'c', weights: W, maxSessions: Infinity, deadline: Infinity });
  assert.is(r.kind === 'rejected' && r.code, 'ERR_QUEUE_FULL');
  const heavy = s.acquire({ tenantId: 'h', weights: { wallet: 5, session: 1 }, maxSessions: Infinity, deadline: Infinity });
  assert.is(heavy.kind === 'rejected' && heavy.code, 'ERR_INVALID_ARGUMENT');
});

test('a waiter held back by its own tenant limit never delays other tenants; in reject mode it is refused', () => {
  const s = scheduler({ capacity: 100 });
  const a1 = granted(s, 'a', { maxSessions: 1 });
  const a2 = queued(s, 'a', { maxSessions: 1 });
  const b = granted(s, 'b');
  void b;
  assert.is(a2.state, 'parked');
  assert.is(s.queued, 1);
  s.release(a1, 0);
  assert.equal(s.drain(0).granted, [a2]);
  const r = scheduler({ tenantLimit: 'reject' });
  granted(r, 'a', { maxSessions: 1 });
  const refused = r.acquire({ tenantId: 'a', weights: W, maxSessions: 1, deadline: Infinity });
  assert.is(refused.kind === 'rejected' && refused.code, 'ERR_TENANT_LIMIT');
});

test('a wallet lost while sessions hold it frees its weight when they end', () => {
  const s = scheduler({ walletIdleTtlMs: Infinity });
  const g = granted(s, 'a');
  s.walletLost('a');
  assert.is(s.weightInUse, 5);
  s.release(g, 0);
  assert.is(s.weightInUse, 0, 'not kept as an idle wallet');
  assert.is(s.idleWallets, 0);
  s.release(granted(s, 'b'), 0);
  s.walletLost('b');
  assert.is(s.weightInUse, 0, 'an idle wallet lost frees at once');
});

test('a scan of one-off tenants goes through the cache and leaves the frequent tenants open', () => {
  // Room for 5 wallets (4 each) and a session.
  const s = scheduler({ capacity: 21, walletIdleTtlMs: Infinity, maxQueue: 10 });
  const now = 0;
  const session = (t: string): void => {
    const r = s.acquire({ tenantId: t, weights: W, maxSessions: Infinity, deadline: Infinity });
    if (r.kind === 'granted') return s.release(r.grant, now);
    assert.is(r.kind, 'queued');
    for (let i = 0; i < 10 && (r as { waiter: Waiter }).waiter.state !== 'granted'; i++) {
      const fx = s.drain(now);
      for (const c of fx.close) s.closeDone(c.tenantId);
    }
    const waiter = (r as { waiter: Waiter }).waiter;
    assert.is(waiter.state, 'granted');
    s.release(waiter.grant!, now);
  };
  for (let round = 0; round < 5; round++) for (const t of ['h1', 'h2', 'h3', 'h4']) session(t);
  for (let i = 0; i < 50; i++) session(`scan${i}`);
  const open = s.idleTenants();
  for (const t of ['h1', 'h2', 'h3', 'h4']) assert.ok(open.includes(t), `${t} stays open through the scan (open: ${open.join(', ')})`);
  // An LRU of the same size would hold the last five of the scan instead.
  assert.is(open.length, 5);
  // Frequencies outlive the wallet: h1, closed and back, wins its place again over a one-off.
  assert.ok(s.closeIdle('h1'));
  s.closeDone('h1');
  session('h1');
  session('once');
  assert.ok(s.idleTenants().includes('h1'), 'h1 kept its count while closed');
});

test('property: a wallet with sessions is never evicted, and the policy holds exactly the wallets held', () => {
  // Many tenants, little room, long sessions: eviction under pressure with pinned wallets everywhere.
  fc.assert(
    fc.property(
      fc.array(fc.record({ tenant: fc.nat(40), hold: fc.boolean(), releasePick: fc.nat(), weight: fc.constantFrom(0, 1, 4, 7) }), { maxLength: 400 }),
      fc.integer({ min: 8, max: 60 }),
      (ops, capacity) => {
        const s = new Scheduler({ capacity, maxQueue: 1000, tenantLimit: 'queue', walletIdleTtlMs: Infinity, random: seeded(7) });
        const held: Grant[] = [];
        const waiting: Waiter[] = [];
        const closing: string[] = [];
        const settle = (): void => {
          for (let fx = s.drain(0); ; fx = s.drain(0)) {
            for (const c of fx.close) {
              assert.ok(!held.some((g) => g.tenantId === c.tenantId), `${c.tenantId} evicted while pinned`);
              closing.push(c.tenantId);
            }
            for (const w of fx.granted) {
              held.push(w.grant!);
              waiting.splice(waiting.indexOf(w), 1);
            }
            if (fx.close.length === 0 && fx.granted.length === 0) break;
          }
          const shape = s.cacheShape();
          assert.is(shape.policyHeld, shape.heldWallets);
          assert.is(shape.listedWeight, shape.idleWeight);
          assert.ok(s.weightInUse <= capacity);
        };
        for (const op of ops) {
          const r = s.acquire({ tenantId: `t${op.tenant}`, weights: { wallet: Math.min(op.weight, capacity - 1), session: 1 }, maxSessions: Infinity, deadline: Infinity });
          if (r.kind === 'granted') held.push(r.grant);
          else if (r.kind === 'queued') waiting.push(r.waiter);
          settle();
          if (!op.hold && held.length > 0) s.release(held.splice(op.releasePick % held.length, 1)[0]!, 0);
          if (closing.length > 0 && op.releasePick % 3 === 0) s.closeDone(closing.shift()!);
          settle();
        }
        while (held.length > 0 || closing.length > 0 || waiting.length > 0) {
          while (closing.length > 0) s.closeDone(closing.shift()!);
          if (held.length > 0) s.release(held.shift()!, 0);
          settle();
        }
        assert.is(s.sessions, 0);
      },
    ),
    { numRuns: 300 },
  );
});

function seeded(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 48271) % 2147483647) / 2147483647;
}

// ---- property tests -------------------------------------------------------------------------

type Command =
  | { op: 'acquire'; tenant: number; timeout: number; limited: boolean; heavy: boolean }
  | { op: 'release'; pick: number }
  | { op: 'cancel'; pick: number }
  | { op: 'advance'; ms: number }
  | { op: 'closeDone'; pick: number }
  | { op: 'walletLost'; tenant: number };

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('acquire' as const), tenant: fc.nat(5), timeout: fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 300 })), limited: fc.boolean(), heavy: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('cancel' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 200 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('closeDone' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('walletLost' as const), tenant: fc.nat(5) }) },
);

interface Run {
  s: Scheduler;
  now: number;
  held: Grant[];
  waiting: Waiter[];
  closing: string[];
  grantOrder: Waiter[];
  all: Waiter[];
}

function apply(run: Run, fx: Effects): void {
  for (const c of fx.close) {
    // Never a pinned wallet: a wallet with a session is not closed for room (nor for its TTL). (A
    // waiter granted in the same drain may open the tenant's next wallet, after this one's close.)
    assert.ok(!run.held.some((g) => g.tenantId === c.tenantId), `${c.tenantId} is closed while a session holds it`);
    if (c.reason === 'capacity') assert.ok(c.tenantId !== c.forTenantId, 'a waiter never evicts its own wallet');
    run.closing.push(c.tenantId);
  }
  for (const w of fx.granted) {
    run.held.push(w.grant!);
    run.grantOrder.push(w);
  }
  for (const w of [...fx.granted, ...fx.expired]) run.waiting.splice(run.waiting.indexOf(w), 1);
}

function step(run: Run, cmd: Command, options: { limits: boolean }): void {
  const { s } = run;
  switch (cmd.op) {
    case 'acquire': {
      const weights = cmd.heavy ? { wallet: 6, session: 2 } : W;
      const r = s.acquire({ tenantId: `t${cmd.tenant}`, weights, maxSessions: options.limits && cmd.limited ? 2 : Infinity, deadline: run.now + cmd.timeout });
      if (r.kind === 'granted') {
        // Granting at once ahead of someone already waiting would break arrival order.
        if (!options.limits) assert.is(run.waiting.length, 0, 'no grant jumps the queue');
        run.held.push(r.grant);
      }
      else if (r.kind === 'queued') {
        run.waiting.push(r.waiter);
        run.all.push(r.waiter);
      }
      break;
    }
    case 'release':
      if (run.held.length > 0) s.release(run.held.splice(cmd.pick % run.held.length, 1)[0]!, run.now);
      break;
    case 'cancel':
      if (run.waiting.length > 0) {
        const w = run.waiting.splice(cmd.pick % run.waiting.length, 1)[0]!;
        assert.ok(s.cancel(w), 'a waiting waiter can be cancelled');
      }
      break;
    case 'advance':
      run.now += cmd.ms;
      break;
    case 'closeDone':
      if (run.closing.length > 0) s.closeDone(run.closing.splice(cmd.pick % run.closing.length, 1)[0]!);
      break;
    case 'walletLost':
      s.walletLost(`t${cmd.tenant}`);
      break;
  }
  apply(run, s.drain(run.now));
}

function checkInvariants(run: Run): void {
  const { s } = run;
  assert.ok(s.weightInUse <= s.capacity, `weight ${s.weightInUse} within capacity ${s.capacity}`);
  assert.ok(s.weightInUse >= 0);
  assert.is(s.queued, run.waiting.length, 'the queue holds exactly the waiting waiters');
  assert.is(s.sessions, run.held.length);
  for (const w of run.waiting) assert.ok(w.deadline > run.now, 'no waiter is left waiting past its deadline');
  const cache = s.cacheShape();
  assert.is(cache.policyHeld, cache.heldWallets, 'the cache policy tracks exactly the wallets held');
  assert.is(cache.listedWeight, cache.idleWeight, 'exactly the idle wallets are evictable');
}

function finish(run: Run): void {
  // Release everything, let every close finish and every TTL pass; the queue must drain to nothing.
  for (let round = 0; round < 1000 && (round === 0 || run.held.length > 0 || run.waiting.length > 0 || run.closing.length > 0); round++) {
    while (run.closing.length > 0) run.s.closeDone(run.closing.pop()!);
    while (run.held.length > 0) run.s.release(run.held.pop()!, run.now);
    apply(run, run.s.drain(run.now));
    run.now += 10_000;
    apply(run, run.s.drain(run.now));
    checkInvariants(run);
  }
  while (run.closing.length > 0) run.s.closeDone(run.closing.pop()!);
  apply(run, run.s.drain(run.now));
  assert.is(run.s.weightInUse, 0, 'nothing is held after everything is released and every TTL has passed');
  assert.is(run.s.queued, 0);
  assert.is(run.s.tenantCount, 0, 'no per-tenant state is left behind');
  for (const w of run.all) assert.ok(['granted', 'expired', 'cancelled'].includes(w.state), `waiter ${w.seq} settled`);
}

test('property: weight never exceeds capacity, grants follow arrival order, every waiter settles, nothing leaks', () => {
  fc.assert(
    fc.property(fc.array(commandArb, { maxLength: 200 }), fc.integer({ min: 8, max: 30 }), fc.constantFrom(0, 50, 1000), (cmds, capacity, ttl) => {
      const run: Run = { s: scheduler({ capacity, walletIdleTtlMs: ttl, maxQueue: 50 }), now: 0, held: [], waiting: [], closing: [], grantOrder: [], all: [] };
      for (const cmd of cmds) {
        step(run, cmd, { limits: false });
        checkInvariants(run);
      }
      for (let i = 1; i < run.grantOrder.length; i++) assert.ok(run.grantOrder[i - 1]!.seq < run.grantOrder[i]!.seq, 'queued waiters are granted in arrival order');
      finish(run);
    }),
    { numRuns: 300 },
  );
});

test('property: with tenant limits, each tenant’s waiters are granted in its arrival order and limits hold', () => {
  fc.assert(
    fc.property(fc.array(commandArb, { maxLength: 200 }), fc.integer({ min: 8, max: 30 }), (cmds, capacity) => {
      const run: Run = { s: scheduler({ capacity, walletIdleTtlMs: 100, maxQueue: 50 }), now: 0, held: [], waiting: [], closing: [], grantOrder: [], all: [] };
      for (const cmd of cmds) {
        step(run, cmd, { limits: true });
        checkInvariants(run);
      }
      const byTenant = new Map<string, number>();
      for (const w of run.grantOrder) {
        assert.ok((byTenant.get(w.tenantId) ?? -1) < w.seq, 'per-tenant arrival order');
        byTenant.set(w.tenantId, w.seq);
      }
      finish(run);
    }),
    { numRuns: 300 },
  );
});

test.run();
