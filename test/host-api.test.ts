/**
 * The host author's API: creation that leaves the wallet warm, structured errors, process lifetime,
 * routing for passphrase tenants, keys, cancellation.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { disposePool, openPool, rejectsWith } from './helpers.js';

test('a freshly created wallet stays open when capacity allows: the first session derives nothing; without room it is closed, not leaked', async () => {
  const events: Array<{ tenantId: string; isKeptOpen: boolean }> = [];
  const acquires: Array<{ tenantId: string; isCacheHit: boolean }> = [];
  const onCreate = (m: unknown): void => void events.push(m as { tenantId: string; isKeptOpen: boolean });
  const onAcquire = (m: unknown): void => void acquires.push(m as { tenantId: string; isCacheHit: boolean });
  subscribe('tenant-pool:tenant:create', onCreate);
  subscribe('tenant-pool:session:acquire', onAcquire);
  const pool = await openPool({ capacity: 6, walletIdleTtlMs: 60_000 });
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
    await disposePool(pool);
  }
});

test.run();
