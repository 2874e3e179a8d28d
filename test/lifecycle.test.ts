import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EventHub } from '../src/observability/diagnostics.js';
import { WalletManager } from '../src/engine/wallet-manager.js';

test('kdfConcurrency caps Argon2 derivations pool-wide; raw ones are not held back', async () => {
  const manager = new WalletManager({ workers: [], walletPath: (t) => t.walletFile, kdfConcurrency: 2, now: () => 0, events: new EventHub(), onOpened: () => {} });
  let running = 0;
  let peak = 0;
  const gates: Array<() => void> = [];
  const job = async (): Promise<void> => {
    running++;
    peak = Math.max(peak, running);
    await new Promise<void>((resolve) => gates.push(resolve));
    running--;
  };
  const argon = Array.from({ length: 5 }, async () => manager.derive('argon2i-mod', job));
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.is(running, 2, 'two derivations run, three wait');
  const raw = manager.derive('raw', job);
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.is(running, 3, 'a raw derivation does not wait for Argon2 ones');
  while (gates.length > 0) {
    gates.shift()!();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await Promise.all([...argon, raw]);
  assert.is(peak, 3);
  assert.is(manager.counters.keyDerivations, 6);
});

test.run();
