/**
 * Inbound messages for passphrase tenants: the host keeps passphrases in its secret store and hands
 * them to the pool through `passphraseProvider`; `dispatch` finds the tenant by the message's
 * recipient keys and opens its wallet with the passphrase the provider gives.
 *
 *   node --import tsx examples/routing.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TenantPool } from 'tenant-pool';

/** Stands in for a real secret store (Vault, a KMS, a sealed database column...). */
const secretStore = new Map<string, string>();

const dataDir = mkdtempSync(join(tmpdir(), 'tenant-pool-routing-'));
const pool = await TenantPool.open({
  dataDir,
  rootKey: randomBytes(32).toString('hex'),
  modules: [join(import.meta.dirname, 'agent-module.ts')],
  // Asked when an acquire or dispatch of a passphrase tenant gives no passphrase; never stored by the pool.
  passphraseProvider: async (tenantId) => secretStore.get(tenantId),
});
try {
  for (const tenantId of ['alice', 'bob']) {
    const passphrase = randomBytes(18).toString('base64url');
    secretStore.set(tenantId, passphrase);
    await pool.tenants.create({ tenantId, passphrase, kdf: 'argon2i-int' });
    // The example module signs receipts with the key stored under config/routing.
    await pool.withSession(tenantId, async (s) => {
      const key = await s.keys.create({ routing: true });
      await s.records.save('config', 'routing', key);
    });
  }
  const [aliceKey] = await pool.withSession('alice', async (s) => (await s.keys.list()).filter((k) => k.routing).map((k) => k.publicKey));

  // An inbound envelope names several recipients; the first one a tenant routes wins.
  console.log('owner of the key:', await pool.tenants.byRoutingKey(aliceKey!));
  const receipt = await pool.dispatch({ recipientKeys: ['someone-elses-key', aliceKey!], body: { from: 'did:example:carol', text: 'hello alice' } });
  console.log('receipt:', receipt);
  const inbox = await pool.withSession('alice', async (s) => s.run('inboxSize'));
  console.log('alice inbox:', inbox);
} finally {
  await pool.close();
  rmSync(dataDir, { recursive: true, force: true });
}
