import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { kWorkers, type TenantPool } from '../src/pool.js';
import type { TenantSession } from '../src/session.js';
import { until, usePool } from './helpers.js';

/** What the pool should hold, kept by the test alongside the real pool. */
interface Model {
  tenants: Set<string>;
  /** Live sessions by tenant, in acquire order. */
  sessions: Map<string, TenantSession[]>;
  /** Records whose save resolved, by tenant: id → value. */
  records: Map<string, Map<string, number>>;
  /** Sessions whose worker died: their calls must reject ERR_WORKER_CRASHED until released. */
  broken: Set<TenantSession>;
  nextId: number;
}

interface Real {
  pool: TenantPool;
}

const CAPACITY = 60;
const MAX_TENANTS = 5;
const codeOf = async (p: Promise<unknown>): Promise<string | undefined> => {
  try {
    await p;
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
};

function liveCount(m: Model): number {
  let n = 0;
  for (const list of m.sessions.values()) n += list.length;
  return n;
}

function checkInvariants(m: Model, r: Real): void {
  const st = r.pool.stats();
  assert.is(st.sessions, liveCount(m), 'sessions match the model');
  assert.ok(st.weightInUse <= st.capacity, 'weight within capacity');
  assert.ok(st.weightInUse >= st.sessions, 'every session holds weight');
  assert.is(st.queued, 0, 'nothing is left waiting between commands');
}

class CreateTenant implements fc.AsyncCommand<Model, Real> {
  check = (m: Readonly<Model>): boolean => m.tenants.size < MAX_TENANTS;
  async run(m: Model, r: Real): Promise<void> {
    const id = `m${m.nextId++}`;
    await r.pool.tenants.create({ tenantId: id });
    m.tenants.add(id);
    m.sessions.set(id, []);
    m.records.set(id, new Map());
    checkInvariants(m, r);
  }
  toString = (): string => 'create';
}

class Acquire implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  // Only while the session surely fits (every tenant's wallet open, plus one more first session): no timing in the test.
  check = (m: Readonly<Model>): boolean => m.tenants.size > 0 && liveCount(m) + 4 * m.tenants.size + 5 <= CAPACITY;
  async run(m: Model, r: Real): Promise<void> {
    const id = [...m.tenants][this.pick % m.tenants.size]!;
    const s = await r.pool.acquire(id, { timeoutMs: 60_000 });
    m.sessions.get(id)!.push(s);
    checkInvariants(m, r);
  }
  toString = (): string => `acquire(${this.pick})`;
}

class Release implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  check = (m: Readonly<Model>): boolean => liveCount(m) > 0;
  async run(m: Model, r: Real): Promise<void> {
    const all = [...m.sessions.entries()].flatMap(([id, list]) => list.map((s) => [id, s] as const));
    const [id, s] = all[this.pick % all.length]!;
    await s.release();
    m.sessions.set(id, m.sessions.get(id)!.filter((x) => x !== s));
    m.broken.delete(s);
    assert.is(await codeOf(s.records.get('c', 'x')), 'ERR_SESSION_RELEASED');
    checkInvariants(m, r);
  }
  toString = (): string => `release(${this.pick})`;
}

class Save implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly pick: number,
    readonly value: number,
  ) {}
  check = (m: Readonly<Model>): boolean => liveCount(m) > 0;
  async run(m: Model, r: Real): Promise<void> {
    const all = [...m.sessions.entries()].flatMap(([id, list]) => list.map((s) => [id, s] as const));
    const [id, s] = all[this.pick % all.length]!;
    const code = await codeOf(s.records.save('c', `k${this.value % 5}`, this.value));
    if (m.broken.has(s)) assert.is(code, 'ERR_WORKER_CRASHED');
    else {
      assert.is(code, undefined);
      m.records.get(id)!.set(`k${this.value % 5}`, this.value);
      // Read back through every live session of the tenant: they share one wallet.
      for (const other of m.sessions.get(id)!) if (!m.broken.has(other)) assert.is((await other.records.get('c', `k${this.value % 5}`))?.value, this.value);
    }
    checkInvariants(m, r);
  }
  toString = (): string => `save(${this.pick}, ${this.value})`;
}

class AbortQueued implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  check = (m: Readonly<Model>): boolean => m.tenants.size > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = [...m.tenants][this.pick % m.tenants.size]!;
    const reason = new Error('aborted by the model');
    const code = await r.pool.acquire(id, { signal: AbortSignal.abort(reason) }).then(
      () => 'granted',
      (e: unknown) => (e === reason ? 'aborted' : 'other'),
    );
    assert.is(code, 'aborted');
    checkInvariants(m, r);
  }
  toString = (): string => `abort(${this.pick})`;
}

class TimeoutAtLimit implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  // A tenant with live sessions is limited to what it holds: one more acquire must wait, and time out, holding nothing.
  check = (m: Readonly<Model>): boolean => [...m.sessions.values()].some((list) => list.length > 0);
  async run(m: Model, r: Real): Promise<void> {
    const busy = [...m.sessions.entries()].filter(([, list]) => list.length > 0);
    const [id, list] = busy[this.pick % busy.length]!;
    await r.pool.tenants.update(id, { maxSessions: list.length });
    assert.is(await codeOf(r.pool.acquire(id, { timeoutMs: 1 })), 'ERR_ACQUIRE_TIMEOUT');
    await r.pool.tenants.update(id, { maxSessions: null });
    checkInvariants(m, r);
  }
  toString = (): string => `timeout(${this.pick})`;
}

class DeleteTenant implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}
  check = (m: Readonly<Model>): boolean => m.tenants.size > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = [...m.tenants][this.pick % m.tenants.size]!;
    const held = m.sessions.get(id)!;
    await r.pool.tenants.delete(id);
    // Every session of a deleted tenant is ended, also one whose worker had died.
    for (const s of held) {
      assert.is(await codeOf(s.records.get('c', 'x')), 'ERR_TENANT_DELETED');
      m.broken.delete(s);
    }
    m.tenants.delete(id);
    m.sessions.delete(id);
    m.records.delete(id);
    assert.is(await codeOf(r.pool.acquire(id)), 'ERR_TENANT_NOT_FOUND');
    checkInvariants(m, r);
  }
  toString = (): string => `delete(${this.pick})`;
}

class KillWorker implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const slot = r.pool[kWorkers][this.index % 2]!;
    await slot.ready();
    const crashes = r.pool.stats().totals.workerCrashes;
    await slot.thread!.terminate();
    await until(() => r.pool.stats().totals.workerCrashes === crashes + 1, 'the crash is noticed');
    await slot.ready();
    // Sessions whose wallet was on the dead worker are broken until released.
    for (const s of [...m.sessions.values()].flat()) if ((s as unknown as { entry: { state: string } }).entry.state === 'crashed') m.broken.add(s);
    checkInvariants(m, r);
  }
  toString = (): string => `kill(${this.index % 2})`;
}

test('model-based: random commands on the real pool agree with a reference model, and the invariants hold', async () => {
  const commands = [
    fc.constant(new CreateTenant()),
    fc.nat().map((n) => new Acquire(n)),
    fc.nat().map((n) => new Release(n)),
    fc.tuple(fc.nat(), fc.nat(1000)).map(([p, v]) => new Save(p, v)),
    fc.nat().map((n) => new AbortQueued(n)),
    fc.nat().map((n) => new TimeoutAtLimit(n)),
    fc.nat().map((n) => new DeleteTenant(n)),
    fc.nat(1).map((n) => new KillWorker(n)),
  ];
  await fc.assert(
    fc.asyncProperty(fc.commands(commands, { maxCommands: 25 }), async (cmds) => {
      await using pool = await usePool({ workers: 2, capacity: CAPACITY, walletIdleTtlMs: 60_000, leakWarningMs: 0 });
      const model: Model = { tenants: new Set(), sessions: new Map(), records: new Map(), broken: new Set(), nextId: 0 };
      await fc.asyncModelRun(() => ({ model, real: { pool } }), cmds);
      // Everything released: only cached wallets hold weight, and every resolved save is still there.
      for (const list of model.sessions.values()) for (const s of list) await s.release();
      for (const [id, records] of model.records) {
        await pool.withSession(id, async (s) => {
          for (const [key, value] of records) assert.is((await s.records.get('c', key))?.value, value, `${id}/${key}`);
        });
      }
      const st = pool.stats();
      assert.is(st.sessions, 0);
      assert.is(st.weightInUse, 4 * (st.wallets.idle + st.wallets.open + st.wallets.opening));
    }),
    { numRuns: 12 },
  );
});

test.run();
