import { Writable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { renderLiveView, startLiveView, type LiveFrame } from '../src/observability/live.js';
import { kEvents, type PoolStats } from '../src/pool.js';
import { usePool } from './helpers.js';

const stats: PoolStats = {
  capacity: 100,
  weightInUse: 50,
  sessions: 12,
  queued: 3,
  wallets: { open: 8, idle: 4, opening: 1 },
  workers: [
    { index: 0, tenants: 9, sessions: 12, weight: 50, alive: true },
    { index: 1, tenants: 0, sessions: 0, weight: 0, alive: false },
  ],
  totals: { acquired: 0, released: 0, timedOut: 0, rejected: 0, walletOpens: 0, walletCloses: 0, evictions: 0, revoked: 0, workerCrashes: 0, keyDerivations: 0, keyTierOpens: 0 },
  store: { kind: 'sqlite', chosenBy: 'options' },
};

test('the panel shows queue, weight against capacity, sessions, rates, hit ratio, wait p99 and a bar per worker', () => {
  const frame: LiveFrame = { title: 'zipf-churn', uptimeS: 12, stats, acquiresPerSec: 1520, opensPerSec: 12.5, timeoutsPerSec: 0, hitRatio: 0.962, waitP50Ms: 0.4, waitP99Ms: 12.3 };
  const lines = renderLiveView(frame, 80).split('\n');
  assert.is(lines.length, 5 + 2, 'five summary lines and one per worker');
  assert.is(lines[0], 'zipf-churn · up 12 s');
  // 80 columns: bars of 24 cells; half the capacity in use fills half of it.
  assert.is(lines[1], `weight   ${'█'.repeat(12)}${'░'.repeat(12)} 50 / 100 (50%)`);
  assert.match(lines[2]!, 'queue    3   sessions 12   acquires/s 1520   timeouts/s 0.0');
  assert.match(lines[3]!, 'open 8   idle 4   opening 1   opens/s 12.5   hit ratio 96.2%');
  assert.match(lines[4]!, 'p50 0.40 ms   p99 12 ms');
  // Worker 0 holds all 50 of the weight against an even share of 50: a full bar. Worker 1 is down.
  assert.match(lines[5]!, `worker 0  ${'█'.repeat(24)} weight 50   sessions 12   wallets 9`);
  assert.match(lines[6]!, `worker 1  ${'░'.repeat(24)} weight 0   sessions 0   wallets 0   (down)`);
  for (const line of lines) assert.ok(line.length <= 80, 'fits the width');
  const idle = renderLiveView({ ...frame, hitRatio: null, waitP50Ms: null, waitP99Ms: null }, 80);
  assert.match(idle, 'hit ratio –');
  assert.match(idle, 'p99 –');
});

test('startLiveView redraws the panel in place on a terminal, from the pool’s own events, until stopped', async () => {
  await using pool = await usePool({ workers: 2 });
  const writes: string[] = [];
  const stream = Object.assign(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        writes.push(chunk.toString('utf8'));
        done();
      },
    }),
    { isTTY: true, columns: 100 },
  );
  const view = startLiveView(pool, { stream, intervalMs: 60_000, title: 'test' });
  try {
    await pool.tenants.create({ tenantId: 't' });
    await pool.closeIdleWallets();
    for (let i = 0; i < 4; i++) await pool.withSession('t', () => undefined);
    view.refresh();
    await new Promise<void>((resolve) => setImmediate(resolve));
    const first = writes[0]!;
    assert.not.match(first, '\x1b[', 'the first panel is drawn where the cursor is');
    assert.match(first, 'hit ratio 75.0%', 'one open, then three cache hits');
    assert.match(first, /opens\/s \d/);
    view.refresh();
    await new Promise<void>((resolve) => setImmediate(resolve));
    const lines = first.trimEnd().split('\n').length;
    assert.ok(writes[1]!.startsWith(`\x1b[${lines}F\x1b[J`), 'the next panel goes back over the last one');
    assert.match(writes[1]!, 'hit ratio –', 'rates are per interval');
    view.stop();
    view.refresh();
    assert.is(writes.length, 2, 'nothing drawn after stop()');
    assert.not.ok(pool[kEvents].wants('tenant-pool:session:acquire'), 'and nothing listens any more');
  } finally {
    view.stop();
  }
});

test.run();
