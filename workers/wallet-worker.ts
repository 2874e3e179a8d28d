/**
 * The wallet worker: piscina starts it and runs its default export once, as a lifeline task that
 * lasts as long as the worker serves its port. Every wallet call then travels over that port, not
 * through piscina's task queue, so calls for a tenant always reach the worker that holds its wallet.
 */
import { timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';
import { encodeError, poolError } from '../common/errors.js';
import { Outbox, unbatch } from '../common/outbox.js';
import { KeyTier } from './key-tier.js';
import { SHUTDOWN, type CallMessage, type LifelineTask, type LoadingMessage, type ReplyMessage, type StartMessage, type WalletKeyMaterial, type WorkerApi } from '../common/protocol.js';
import { deriveKey, keyVerifier } from '../common/kdf.js';
import { loadModules, TenantScope, type LoadedModules } from './modules.js';
import { readExport, walletDigest, writeExport } from '../common/export-format.js';
import { verifySignature } from './ed25519.js';
import { openBackend, type StoredWallet, type WalletBackend } from './store/backend.js';
import { GuardedWallet } from './store/guarded-wallet.js';

interface OpenWallet {
  wallet: GuardedWallet;
  scope: TenantScope;
}

const wallets = new Map<string, OpenWallet>();
/** Tasks that can be aborted, by the caller's token. */
const aborts = new Map<number, AbortController>();
let loaded: LoadedModules = { modules: [], tasks: new Map() };
let maxValueBytes = 1024 * 1024;
let keyTier = new KeyTier({ maxEntries: 0, ttlMs: 0, passphrases: false });
let backend: WalletBackend;


function openOf(tenantId: string): OpenWallet {
  const open = wallets.get(tenantId);
  if (open === undefined) throw poolError('ERR_INTERNAL', 'the tenant has no open wallet on this worker');
  return open;
}

const walletOf = (tenantId: string): StoredWallet => openOf(tenantId).wallet;
async function derive(req: WalletKeyMaterial): Promise<{ key: Buffer; deriveMs: number }> {
  const started = performance.now();
  const key = await deriveKey(req.kdf, req.secret, req.salt, req.params);
  return { key, deriveMs: performance.now() - started };
}

/** Ends a wallet: its modules' services are disposed, then its keys are forgotten once no call of it is under way. */
async function close(open: OpenWallet): Promise<void> {
  try {
    await open.scope.dispose();
  } finally {
    await open.wallet.closed();
  }
}

/** Makes an opened wallet the tenant's, with its module scope. */
function register(tenantId: string, opened: StoredWallet): void {
  const wallet = new GuardedWallet(opened, tenantId);
  try {
    wallets.set(tenantId, { wallet, scope: new TenantScope(tenantId, wallet, loaded, maxValueBytes) });
  } catch (error) {
    wallet.close();
    throw error;
  }
}

type Handlers = { [K in keyof WorkerApi]: (...args: Parameters<WorkerApi[K]>) => ReturnType<WorkerApi[K]> | Promise<ReturnType<WorkerApi[K]>> };

const handlers: Handlers = {
  async createWallet(req) {
    if (wallets.has(req.tenantId)) throw poolError('ERR_INTERNAL', 'the wallet is already open on this worker');
    const { key, deriveMs } = await derive(req);
    const started = performance.now();
    try {
      // Left open: the tenant's first session then derives nothing. The pool closes it if it cannot keep it.
      register(req.tenantId, await backend.create(req, key));
      const verifier = keyVerifier(key);
      if (req.kdf !== 'raw') keyTier.put(req.tenantId, key, verifier, typeof req.secret === 'string' ? req.secret : null);
      return { verifier, deriveMs, openMs: performance.now() - started };
    } finally {
      key.fill(0);
    }
  },
  async openWallet(req) {
    if (wallets.has(req.tenantId)) throw poolError('ERR_INTERNAL', 'the wallet is already open on this worker');
    const cached = keyTier.take(req.tenantId, req.verifier, req.secret);
    if (cached === undefined && req.keyTierOnly === true) return { deriveMs: 0, openMs: 0, missed: true };
    const { key, deriveMs } = cached === undefined ? await derive(req) : { key: cached, deriveMs: 0 };
    try {
      const verifier = keyVerifier(key);
      if (verifier.length !== req.verifier.length || !timingSafeEqual(verifier, req.verifier)) {
        throw poolError('ERR_WALLET_KEY_INVALID', 'the key or passphrase does not open this wallet');
      }
      const started = performance.now();
      register(req.tenantId, await backend.open(req, key, req.fence));
      if (cached === undefined && req.kdf !== 'raw') keyTier.put(req.tenantId, key, verifier, typeof req.secret === 'string' ? req.secret : null);
      return { deriveMs, openMs: performance.now() - started, ...(cached === undefined ? {} : { fromKeyTier: true }) };
    } finally {
      key.fill(0);
    }
  },
  async rekeyWallet(req) {
    if (wallets.has(req.tenantId)) throw poolError('ERR_INTERNAL', 'the wallet is open on this worker');
    keyTier.forget(req.tenantId);
    const old = await derive(req);
    try {
      const verifier = keyVerifier(old.key);
      if (verifier.length !== req.verifier.length || !timingSafeEqual(verifier, req.verifier)) {
        throw poolError('ERR_WALLET_KEY_INVALID', 'the key or passphrase does not open this wallet');
      }
      const fresh = await derive({ tenantId: req.tenantId, path: req.newPath, kdf: req.newKdf, ...(req.newParams === undefined ? {} : { params: req.newParams }), salt: req.newSalt, secret: req.newSecret });
      try {
        const started = performance.now();
        const { profileKey } = await backend.rekey(req, old.key, { tenantId: req.tenantId, path: req.newPath }, fresh.key, req.rotateDataKey);
        return { verifier: keyVerifier(fresh.key), deriveMs: old.deriveMs + fresh.deriveMs, openMs: performance.now() - started, ...(profileKey === undefined ? {} : { profileKey }) };
      } finally {
        fresh.key.fill(0);
      }
    } finally {
      old.key.fill(0);
    }
  },
  async exportWallet(tenantId, file, exportKey, tenant) {
    // One consistent read: synchronous on SQLite (no call of this worker writes in between), one repeatable-read transaction on PostgreSQL.
    const wallet = await walletOf(tenantId).snapshot();
    const { bytes } = await writeExport(file, exportKey, { tenant, wallet });
    return { bytes, ...walletDigest(wallet) };
  },
  digestWallet: async (tenantId) => walletDigest(await walletOf(tenantId).snapshot()),
  checkWallet: async (tenantId) => {
    const wallet = walletOf(tenantId);
    const { bytes } = await wallet.check();
    return { ...walletDigest(await wallet.snapshot()), bytes };
  },
  async importWallet(req) {
    if (wallets.has(req.tenantId)) throw poolError('ERR_INTERNAL', 'the wallet is already open on this worker');
    const payload = await readExport(req.file, req.exportKey);
    // An import routes only keys its wallet holds: an export naming another key (another tenant's) is refused before anything is written.
    const held = new Set(payload.wallet.keys.map((k) => k.publicKey));
    const routes: unknown = payload.tenant.routes;
    const foreign = Array.isArray(routes) ? routes.filter((r) => typeof r !== 'string' || !held.has(r)).length : 0;
    if (foreign > 0) throw poolError('ERR_INVALID_ARGUMENT', `the export routes ${foreign} public key(s) its wallet does not hold; nothing was imported`);
    const { key, deriveMs } = await derive(req);
    try {
      const started = performance.now();
      await backend.createFrom(req, key, payload.wallet);
      return { verifier: keyVerifier(key), deriveMs, openMs: performance.now() - started, tenant: payload.tenant, records: payload.wallet.records.length, keys: payload.wallet.keys.length };
    } finally {
      key.fill(0);
    }
  },
  forgetKey: (tenantId) => keyTier.forget(tenantId),
  async closeWallet(tenantId, forget) {
    if (forget === true) keyTier.forget(tenantId);
    const open = wallets.get(tenantId);
    wallets.delete(tenantId);
    if (open !== undefined) await close(open);
  },
  recordsSave: (tenantId, category, id, valueJson, tags) => walletOf(tenantId).save(category, id, valueJson, tags),
  recordsGet: (tenantId, category, id) => walletOf(tenantId).get(category, id),
  recordsFind: (tenantId, category, tags, limit) => walletOf(tenantId).find(category, tags, limit),
  recordsQuery: (tenantId, category, query, after, upTo, limit) => walletOf(tenantId).query(category, query, after, upTo, limit),
  recordsCount: (tenantId, category, query) => walletOf(tenantId).count(category, query),
  recordsDelete: (tenantId, category, id) => walletOf(tenantId).delete(category, id),
  keysCreate: (tenantId) => walletOf(tenantId).createKey(),
  keysList: (tenantId) => walletOf(tenantId).listKeys(),
  keysDelete: (tenantId, kid) => walletOf(tenantId).deleteKey(kid),
  keysPublicKey: (tenantId, kid) => walletOf(tenantId).publicKeyOf(kid),
  keysSign: (tenantId, kid, data) => walletOf(tenantId).sign(kid, data),
  keysVerify: (publicKey, data, signature) => verifySignature(publicKey, data, signature),
  runTask: async (tenantId, task, args, token, traceparent) => {
    if (token === 0) return openOf(tenantId).scope.runTask(loaded, task, args, undefined, traceparent);
    const controller = new AbortController();
    aborts.set(token, controller);
    try {
      return await openOf(tenantId).scope.runTask(loaded, task, args, controller.signal, traceparent);
    } finally {
      aborts.delete(token);
    }
  },
  abortTask: (token) => aborts.get(token)?.abort(Object.assign(new Error('the caller aborted this task'), { name: 'AbortError' })),
  runInbound: async (tenantId, message, traceparent) => openOf(tenantId).scope.runInbound(loaded, message, traceparent),
  echo: (value) => value,
};

async function closeAll(): Promise<void> {
  const open = [...wallets.values()];
  wallets.clear();
  await Promise.allSettled(open.map(close));
}

export default async function lifeline({ port, modules, maxValueBytes: maxBytes, store, keyCache }: LifelineTask): Promise<void> {
  maxValueBytes = maxBytes;
  keyTier = new KeyTier(keyCache);
  try {
    backend = await openBackend(store);
    loaded = await loadModules(modules, (path) => port.postMessage({ loading: path } satisfies LoadingMessage));
  } catch (error) {
    port.postMessage({ startFailed: encodeError(error) } satisfies StartMessage);
    port.close();
    return;
  }
  const outbox = new Outbox<ReplyMessage>(
    (m) => port.postMessage(m),
    // A value structured clone cannot carry (a function, a class instance with private state...).
    (message, error) => port.postMessage({ id: message.id, ok: false, error: encodeError(poolError('ERR_INVALID_ARGUMENT', `the result cannot be sent to the main thread: ${error.message}`)) }),
  );
  const reply = (message: ReplyMessage): void => outbox.push(message);
  const handle = ({ id, method, args }: CallMessage): void => {
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
  };
  // The task returns once the worker serves: the port's listener keeps the thread alive, and
  // piscina sees an idle worker (so it holds no reference that would keep the process alive).
  port.on('message', (message: CallMessage | CallMessage[] | typeof SHUTDOWN) => {
    if (message === SHUTDOWN) {
      keyTier.clear();
      outbox.flush();
      void closeAll()
        .then(async () => backend.close())
        .catch(() => {})
        .finally(() => port.close());
      return;
    }
    unbatch(message, handle);
  });
  port.postMessage({ ready: threadId } satisfies StartMessage);
}
