/**
 * Worker of the `no-affinity` baseline: a plain piscina task handler. Whatever worker a call lands
 * on opens the tenant's wallet there if it is not open yet (deriving the key again), and keeps it
 * until the last session that used it on this worker ends (announced on a BroadcastChannel).
 */
import { BroadcastChannel } from 'node:worker_threads';
import { deriveKey } from '../../common/kdf.js';
import { Wallet } from '../../workers/store/sqlite-wallet.js';
import type { TenantMaterial } from './fixtures.js';

export interface NoAffinityCall {
  tenant: TenantMaterial;
  sessionId: number;
  op: 'get' | 'save' | 'createKey' | 'sign' | 'ping';
  args: unknown[];
}

export const RELEASE_CHANNEL = 'tenant-pool-bench-no-affinity';

interface Held {
  wallet: Promise<Wallet>;
  sessions: Set<number>;
}

const held = new Map<string, Held>();
const releases = new BroadcastChannel(RELEASE_CHANNEL);
releases.onmessage = (event: unknown) => {
  const { tenantId, sessionId } = (event as { data: { tenantId: string; sessionId: number } }).data;
  const h = held.get(tenantId);
  if (h === undefined || !h.sessions.delete(sessionId) || h.sessions.size > 0) return;
  held.delete(tenantId);
  void h.wallet.then((w) => w.close());
};
// The channel must not keep an idle worker alive on its own.
(releases as unknown as { unref(): void }).unref();

export default async function call({ tenant, sessionId, op, args }: NoAffinityCall): Promise<{ value: unknown; opened: boolean }> {
  if (op === 'ping') return { value: undefined, opened: false };
  let h = held.get(tenant.tenantId);
  let opened = false;
  if (h === undefined) {
    opened = true;
    h = { wallet: deriveKey(tenant.kdf, tenant.secret, tenant.salt).then((key) => Wallet.open(tenant.path, key)), sessions: new Set() };
    held.set(tenant.tenantId, h);
  }
  h.sessions.add(sessionId);
  const wallet = await h.wallet;
  switch (op) {
    case 'get':
      return { value: wallet.get(args[0] as string, args[1] as string), opened };
    case 'save':
      wallet.save(args[0] as string, args[1] as string, JSON.stringify(args[2]), {});
      return { value: undefined, opened };
    case 'createKey':
      return { value: wallet.createKey().kid, opened };
    case 'sign':
      return { value: wallet.sign(args[0] as string, args[1] as Uint8Array), opened };
  }
  throw new Error(`unknown op ${String(op)}`);
}
