import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPoolError } from '../common/errors.js';
import { Wallet } from '../workers/store/sqlite-wallet.js';
import { tempDir } from './helpers.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    assert.instance(error, TenantPoolError);
    return (error as TenantPoolError).code;
  }
  return undefined;
}

/** A fresh wallet in a temporary folder, closed and removed after `fn`. */
function withWallet(fn: (wallet: Wallet) => void): void {
  const dir = tempDir();
  const path = join(dir, 'w.sqlite');
  const key = randomBytes(32);
  Wallet.create(path, key);
  const wallet = Wallet.open(path, key);
  try {
    fn(wallet);
  } finally {
    wallet.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('find drives from the tag index and checks the other tags by primary key: no scan of the category', () => {
  withWallet((wallet) => {
    for (const plan of [wallet.findPlan(1), wallet.findPlan(3)]) {
      assert.ok(plan[0]?.includes('USING COVERING INDEX tags_by_value (category=? AND name=? AND value=?)'), plan.join(' | '));
      assert.not.ok(plan.some((step) => step.startsWith('SCAN')), plan.join(' | '));
      assert.not.ok(plan.some((step) => step.includes('TEMP B-TREE')), `no sort: ${plan.join(' | ')}`);
    }
    assert.ok(wallet.findPlan(0)[0]?.includes('records_by_category'), wallet.findPlan(0).join(' | '));
  });
});

test('find with several tags gives the same answer whichever tag is rarest, in insertion order', () => {
  withWallet((wallet) => {
    wallet.batch(() => {
      for (let i = 0; i < 3000; i++) wallet.save('c', `r${i}`, String(i), { common: 'yes', mod7: String(i % 7), rare: i % 1000 === 0 ? 'hit' : 'miss' });
      wallet.save('other', 'r0', '0', { common: 'yes', rare: 'hit' });
    });
    const ids = (tags: Record<string, string>): string[] => wallet.find('c', tags, -1).map((r) => r.id);
    assert.equal(ids({ rare: 'hit' }), ['r0', 'r1000', 'r2000']);
    assert.equal(ids({ common: 'yes', rare: 'hit' }), ['r0', 'r1000', 'r2000']);
    assert.equal(ids({ rare: 'hit', common: 'yes', mod7: '6' }), ['r1000']);
    assert.equal(ids({ rare: 'hit', common: 'no' }), []);
    assert.is(ids({ common: 'yes', mod7: '3' }).length, 429);
    assert.equal(wallet.find('c', { common: 'yes' }, 2).map((r) => r.id), ['r0', 'r1']);
  });
});

test('create is atomic and replaces an orphan file; a missing or foreign file is ERR_WALLET_CORRUPT', () => {
  const dir = tempDir();
  const path = join(dir, 'w.sqlite');
  writeFileSync(path, 'left over by a crash before the registry row was written');
  writeFileSync(`${path}-wal`, 'stale wal');
  const key = randomBytes(32);
  Wallet.create(path, key);
  assert.equal(readdirSync(dir), ['w.sqlite'], 'no temporary or stale file is left');
  Wallet.open(path, key).close();
  assert.is(codeOf(() => Wallet.open(join(dir, 'missing.sqlite'), key)), 'ERR_WALLET_CORRUPT');
  writeFileSync(join(dir, 'plain.sqlite'), 'not a database at all');
  assert.is(codeOf(() => Wallet.open(join(dir, 'plain.sqlite'), key)), 'ERR_WALLET_CORRUPT');
  assert.not.ok(existsSync(`${path}.creating`));
  rmSync(dir, { recursive: true, force: true });
});

test.run();
