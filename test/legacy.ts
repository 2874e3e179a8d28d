/**
 * A data folder as an earlier version left it: a passphrase tenant `legacy` whose wallet key came
 * from `raw` (HKDF alone) and whose wallet file carries no incarnation.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { TenantPool } from '../src/pool.js';
import { DataDirLock } from '../src/store/data-dir.js';
import { Registry } from '../src/store/registry.js';
import { deriveKey, keyVerifier } from '../common/kdf.js';
import { Wallet } from '../workers/store/sqlite-wallet.js';

export async function legacyRawTenant(dataDir: string, rootKey: string, passphrase: string): Promise<void> {
  await (await TenantPool.open({ dataDir, rootKey, workers: 1 })).close();
  const lock = DataDirLock.acquire(dataDir);
  try {
    const registry = await Registry.open(dataDir, rootKey);
    const salt = randomBytes(16);
    const walletKey = await deriveKey('raw', passphrase, salt);
    Wallet.create(join(dataDir, 'wallets', 'legacy.sqlite'), walletKey);
    registry.insert({ tenantId: 'legacy', kdf: 'raw', salt, secret: null, verifier: keyVerifier(walletKey), walletFile: 'legacy.sqlite', metadata: {}, createdAt: new Date().toISOString() });
    registry.close();
  } finally {
    lock.release();
  }
}
