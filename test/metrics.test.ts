import { Counter, Registry } from 'prom-client';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectMetrics } from '../src/observability/metrics.js';
import { disposePool, openPool, rejectsWith, usePool } from './helpers.js';

/** The samples of a Prometheus text exposition: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

test('the metrics text after a known sequence of acquires has the expected names, labels and values', async () => {
  const pool = await openPool({ workers: 2, capacity: 20, walletIdleTtlMs: 60_000 });
  const registry = new Registry();
  const metrics = collectMetrics(pool, registry, { labels: { pool: 'main' } });
  try {
    for (const tenantId of ['a', 'b']) await pool.tenants.create({ tenantId });
    await pool.tenants.create({ tenantId: 'heavy', weights: { wallet: 15 } });
    // a and b were kept open by their creation (heavy did not fit); closed, so the acquires below open them.
    assert.is(await pool.closeIdleWallets(), 2);
    // a twice (one open, one cache hit), b once and released: 3 acquires, 2 opens, 1 release.
    const a1 = await pool.acquire('a');
    await pool.acquire('a');
    await (await pool.acquire('b')).release();
    // heavy needs 16 of the 10 free: with no time to wait it times out; an unknown tenant is rejected.
    await rejectsWith(pool.acquire('heavy', { timeoutMs: 0 }), 'ERR_ACQUIRE_TIMEOUT');
    await rejectsWith(pool.acquire('nobody'), 'ERR_TENANT_NOT_FOUND');

    const text = await registry.metrics();
    const m = samples(text);
    const get = (key: string): number | undefined => m.get(key);
    const L = 'pool="main"';
    assert.is(get(`tenant_pool_capacity{${L}}`), 20);
    assert.is(get(`tenant_pool_sessions{${L}}`), 2);
    assert.is(get(`tenant_pool_queued{${L}}`), 0);
    assert.is(get(`tenant_pool_weight_in_use{${L}}`), 4 + 2 + 4, "a's wallet and two sessions, b's idle wallet");
    assert.is(get(`tenant_pool_wallets{${L},state="open"}`), 1);
    assert.is(get(`tenant_pool_wallets{${L},state="idle"}`), 1);
    assert.is(get(`tenant_pool_wallets{${L},state="opening"}`), 0);
    assert.is(get(`tenant_pool_sessions_acquired_total{${L}}`), 3);
    assert.is(get(`tenant_pool_sessions_released_total{${L}}`), 1);
    assert.is(get(`tenant_pool_acquire_timeouts_total{${L}}`), 1);
    assert.is(get(`tenant_pool_acquire_rejections_total{${L}}`), 1);
    assert.is(get(`tenant_pool_wallet_opens_total{${L}}`), 2 + 2, 'two kept at creation, two opened by acquires');
    assert.is(get(`tenant_pool_wallet_closes_total{${L}}`), 2);
    assert.is(get(`tenant_pool_key_derivations_total{${L}}`), 3 + 2, 'three tenant creations, two opens');
    assert.is(get(`tenant_pool_worker_crashes_total{${L}}`), 0);
    // Histograms: two acquires opened a wallet, one found it cached; one session ended; two raw opens.
    assert.is(get(`tenant_pool_acquire_wait_seconds_count{${L},wallet="opened"}`), 2);
    assert.is(get(`tenant_pool_acquire_wait_seconds_count{${L},wallet="cached"}`), 1);
    assert.is(get(`tenant_pool_acquire_wait_seconds_bucket{le="+Inf",${L},wallet="opened"}`), 2);
    assert.is(get(`tenant_pool_session_hold_seconds_count{${L}}`), 1);
    assert.is(get(`tenant_pool_wallet_open_seconds_count{${L},kdf="raw"}`), 2);
    assert.is(get(`tenant_pool_key_derivation_seconds_count{${L},kdf="raw"}`), 3 + 2, 'every derivation counted, creations too');
    // Per worker: both up, and between them a's two sessions and the two wallets.
    const workerSum = (metric: string): number => [0, 1].reduce((n, w) => n + (get(`tenant_pool_${metric}{${L},worker="${w}"}`) ?? NaN), 0);
    assert.is(workerSum('worker_up'), 2);
    assert.is(workerSum('worker_sessions'), 2);
    assert.is(workerSum('worker_tenants'), 2);
    assert.is(workerSum('worker_weight'), 10);
    assert.match(text, '# TYPE tenant_pool_sessions gauge');
    assert.match(text, '# TYPE tenant_pool_sessions_acquired_total counter');
    assert.match(text, '# TYPE tenant_pool_acquire_wait_seconds histogram');
    assert.is(metrics.names.length, new Set(metrics.names).size);

    // The values follow the pool: a later scrape sees the release.
    await a1.release();
    const later = samples(await registry.metrics());
    assert.is(later.get(`tenant_pool_sessions{${L}}`), 1);
    assert.is(later.get(`tenant_pool_sessions_released_total{${L}}`), 2);
    assert.is(later.get(`tenant_pool_session_hold_seconds_count{${L}}`), 2);
  } finally {
    metrics.close();
    await disposePool(pool);
  }
  assert.is((await registry.metrics()).trim(), '', 'close() removes every metric');
});

test('two pools in one registry are told apart by their labels; a second registration of the same names fails loudly', async () => {
  await using one = await usePool({ workers: 1 });
  await using two = await usePool({ workers: 1 });
  const registry = new Registry();
  using first = collectMetrics(one, registry, { labels: { pool: 'one' } });
  assert.throws(() => collectMetrics(two, registry, { labels: { pool: 'two' } }), /already been registered/);
  // A clash half-way (on a counter, after the gauges) leaves nothing of the failed registration behind.
  new Counter({ name: 'clash_sessions_acquired_total', help: 'taken', registers: [registry] });
  const before = registry.getMetricsAsArray().length;
  assert.throws(() => collectMetrics(two, registry, { prefix: 'clash_' }), /already been registered/);
  assert.is(registry.getMetricsAsArray().length, before);
  registry.removeSingleMetric('clash_sessions_acquired_total');
  using second = collectMetrics(two, registry, { prefix: 'tenant_pool_two_', labels: { pool: 'two' } });
  await one.tenants.create({ tenantId: 'x' });
  await one.withSession('x', () => undefined);
  const m = samples(await registry.metrics());
  assert.is(m.get('tenant_pool_sessions_acquired_total{pool="one"}'), 1);
  assert.is(m.get('tenant_pool_two_sessions_acquired_total{pool="two"}'), 0);
  assert.ok(first.names.length > 0 && second.names.length === first.names.length);
});

test.run();
