/**
 * The wallet worker: piscina starts it and runs its default export once, as a lifeline task that
 * lasts as long as the worker serves its port. Every wallet call then travels over that port, not
 * through piscina's task queue, so calls for a tenant always reach the worker that holds its wallet.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { encodeError, poolError } from '../src/errors.js';
import { SHUTDOWN, type CallMessage, type LifelineTask, type ReplyMessage, type WalletKeyMaterial, type WorkerApi } from '../src/protocol.js';
import { deriveKey } from './kdf.js';
import { Wallet, verifySignature } from './wallet.js';

const wallets = new Map<string, Wallet>();
/** Tasks of the loaded worker modules, by name. */
const tasks = new Map<string, (tenantId: string) => unknown>();

/** The key check value kept in the registry: tells a wrong key from a damaged file without touching the file. */
function keyVerifier(key: Uint8Array): Buffer {
  return createHmac('sha256', key).update('tenant-pool key check v1').digest();
}

function walletOf(tenantId: string): Wallet {
  const wallet = wallets.get(tenantId);
  if (wallet === undefined) throw poolError('ERR_INTERNAL', 'the tenant has no open wallet on this worker');
  return wallet;
}

async function derive(req: WalletKeyMaterial): Promise<{ key: Buffer; deriveMs: number }> {
  const started = performance.now();
  const key = await deriveKey(req.kdf, req.secret, req.salt);
  return { key, deriveMs: performance.now() - started };
}

type Handlers = { [K in keyof WorkerApi]: (...args: Parameters<WorkerApi[K]>) => ReturnType<WorkerApi[K]> | Promise<ReturnType<WorkerApi[K]>> };

const handlers: Handlers = {
  async createWallet(req) {
    const { key, deriveMs } = await derive(req);
    const started = performance.now();
    try {
      Wallet.create(req.path, key);
      return { verifier: keyVerifier(key), deriveMs, openMs: performance.now() - started };
    } finally {
      key.fill(0);
    }
  },
  async openWallet(req) {
    if (wallets.has(req.tenantId)) throw poolError('ERR_INTERNAL', 'the wallet is already open on this worker');
    const { key, deriveMs } = await derive(req);
    try {
      const verifier = keyVerifier(key);
      if (verifier.length !== req.verifier.length || !timingSafeEqual(verifier, req.verifier)) {
        throw poolError('ERR_WALLET_KEY_INVALID', 'the key or passphrase does not open this wallet');
      }
      const started = performance.now();
      wallets.set(req.tenantId, Wallet.open(req.path, key));
      return { deriveMs, openMs: performance.now() - started };
    } finally {
      key.fill(0);
    }
  },
  closeWallet(tenantId) {
    wallets.get(tenantId)?.close();
    wallets.delete(tenantId);
  },
  recordsSave: (tenantId, category, id, valueJson, tags) => walletOf(tenantId).save(category, id, valueJson, tags),
  recordsGet: (tenantId, category, id) => walletOf(tenantId).get(category, id),
  recordsFind: (tenantId, category, tags, limit) => walletOf(tenantId).find(category, tags, limit),
  recordsDelete: (tenantId, category, id) => walletOf(tenantId).delete(category, id),
  keysCreate: (tenantId) => walletOf(tenantId).createKey(),
  keysSign: (tenantId, kid, data) => walletOf(tenantId).sign(kid, data),
  keysVerify: (publicKey, data, signature) => verifySignature(publicKey, data, signature),
  runTask(tenantId, task) {
    walletOf(tenantId);
    const handler = tasks.get(task);
    if (handler === undefined) throw poolError('ERR_TASK_NOT_FOUND', `no worker module defines the task ${JSON.stringify(task)}`);
    return handler(tenantId);
  },
  echo: (value) => value,
};

function closeAll(): void {
  for (const wallet of wallets.values()) wallet.close();
  wallets.clear();
}

export default async function lifeline({ port }: LifelineTask): Promise<void> {
  return new Promise((resolve) => {
    const reply = (message: ReplyMessage): void => port.postMessage(message);
    port.on('message', (message: CallMessage | typeof SHUTDOWN) => {
      if (message === SHUTDOWN) {
        closeAll();
        port.close();
        resolve();
        return;
      }
      const { id, method, args } = message;
      const handler = handlers[method] as ((...a: unknown[]) => unknown) | undefined;
      try {
        if (handler === undefined) throw poolError('ERR_INTERNAL', `unknown worker method ${String(method)}`);
        const value = handler(...args);
        if (value instanceof Promise) {
          value.then(
            (v: unknown) => reply({ id, ok: true, value: v }),
            (e: unknown) => reply({ id, ok: false, error: encodeError(e) }),
          );
        } else {
          reply({ id, ok: true, value });
        }
      } catch (error) {
        reply({ id, ok: false, error: encodeError(error) });
      }
    });
    // Tells the main thread the worker is loaded and listening.
    port.postMessage('ready');
  });
}
