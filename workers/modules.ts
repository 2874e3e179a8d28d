/**
 * Worker modules inside a worker thread: loading them, one tsyringe child container per tenant with
 * an open wallet, and the wallet facade tasks and inbound handlers get.
 */
import 'reflect-metadata';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import { poolError } from '../common/errors.js';
import type { JsonValue, RawRecord, StoredRecord } from '../common/protocol.js';
import { checkRecordQuery, equalityTags } from '../common/query.js';
import { checkBytes, checkLimit, checkName, checkOptionalObject, checkRecord } from '../common/validate.js';
import { isWorkerModule, type InboundMessage, type TenantContext, type TenantWallet, type WorkerModule } from '../common/module-api.js';
import { verifySignature } from './ed25519.js';
import type { StoredWallet } from './store/backend.js';

type Task = (ctx: TenantContext, args: unknown) => unknown;

/**
 * Imports a module file. A TypeScript module run under tsx is the one exception to plain `import()`:
 * in a worker thread on Node 20, tsx's require hook is active but its import hook is not.
 */
async function importModule(path: string): Promise<{ default?: unknown }> {
  try {
    return (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw error;
    return createRequire(path)(path) as { default?: unknown };
  }
}

export interface LoadedModules {
  readonly modules: readonly WorkerModule[];
  readonly tasks: ReadonlyMap<string, Task>;
}

/**
 * Imports every module path. A path that fails to import, or whose default export is not a
 * `defineModule(...)`, or a task name two modules both define, fails with `ERR_INVALID_CONFIG`
 * naming the module.
 */
export async function loadModules(paths: readonly string[], onLoading: (path: string) => void = () => {}): Promise<LoadedModules> {
  const modules: WorkerModule[] = [];
  const tasks = new Map<string, Task>();
  const owners = new Map<string, string>();
  for (const path of paths) {
    let imported: { default?: unknown };
    onLoading(path);
    try {
      imported = await importModule(path);
    } catch (error) {
      throw poolError('ERR_INVALID_CONFIG', `worker module ${path} failed to load: ${(error as Error).message}`, error);
    }
    const definition = imported.default;
    if (!isWorkerModule(definition)) {
      throw poolError('ERR_INVALID_CONFIG', `worker module ${path} must export default defineModule({ ... }) from 'tenant-pool/worker'`);
    }
    for (const [name, task] of Object.entries(definition.tasks ?? {})) {
      if (typeof task !== 'function') throw poolError('ERR_INVALID_CONFIG', `task ${JSON.stringify(name)} of worker module ${path} is not a function`);
      const owner = owners.get(name);
      if (owner !== undefined) throw poolError('ERR_INVALID_CONFIG', `task ${JSON.stringify(name)} is defined by both ${owner} and ${path}`);
      owners.set(name, path);
      tasks.set(name, task);
    }
    modules.push(definition);
  }
  return { modules, tasks };
}

function parse(raw: RawRecord): StoredRecord {
  return { category: raw.category, id: raw.id, value: JSON.parse(raw.value) as JsonValue, tags: JSON.parse(raw.tags) as Record<string, string> };
}

/**
 * The wallet as modules see it: asynchronous on both stores (a PostgreSQL call is a round trip),
 * validated like the session API. A method's checks run before it returns, its failure is its
 * promise's rejection.
 */
function walletFacade(wallet: StoredWallet, maxValueBytes: number): TenantWallet {
  return {
    records: {
      save: async (category, id, value, tags) => {
        const record = checkRecord(category, id, value, tags, maxValueBytes);
        await wallet.save(record.category, record.id, record.json, record.tags);
      },
      get: async (category, id) => {
        const raw = await wallet.get(checkName(category, 'category'), checkName(id, 'id'));
        return raw === null ? null : parse(raw);
      },
      find: async (category, query, options) => {
        const cat = checkName(category, 'category');
        const node = checkRecordQuery(query);
        const limit = checkLimit(checkOptionalObject(options, 'options')['limit']);
        const tags = equalityTags(node);
        return (tags === undefined ? (await wallet.query(cat, node, 0, -1, limit)).rows : await wallet.find(cat, tags, limit)).map(parse);
      },
      count: async (category, query) => wallet.count(checkName(category, 'category'), checkRecordQuery(query)),
      delete: async (category, id) => wallet.delete(checkName(category, 'category'), checkName(id, 'id')),
    },
    keys: {
      create: async () => wallet.createKey(),
      sign: async (kid, data) => wallet.sign(checkName(kid, 'kid'), checkBytes(data, 'data')),
      verify: (publicKey, data, signature) => verifySignature(checkName(publicKey, 'publicKey'), checkBytes(data, 'data'), checkBytes(signature, 'signature')),
    },
  };
}

/** The signal of a task whose caller gave none. */
const NEVER_ABORTED = new AbortController().signal;

/** A tenant's module scope: its context (wallet facade, child container) while its wallet is open. */
export class TenantScope {
  readonly context: TenantContext;
  readonly #container: DependencyContainer;

  constructor(tenantId: string, wallet: StoredWallet, loaded: LoadedModules, maxValueBytes: number) {
    this.#container = rootContainer.createChildContainer();
    this.context = Object.freeze({ tenantId, wallet: walletFacade(wallet, maxValueBytes), container: this.#container, signal: NEVER_ABORTED });
    for (const module of loaded.modules) module.register?.(this.#container);
  }

  async runTask(loaded: LoadedModules, name: string, args: unknown, signal?: AbortSignal, traceparent?: string): Promise<unknown> {
    const task = loaded.tasks.get(name);
    if (task === undefined) throw poolError('ERR_TASK_NOT_FOUND', `no worker module defines the task ${JSON.stringify(name)}`);
    return task(signal === undefined && traceparent === undefined ? this.context : Object.freeze({ ...this.context, ...(signal === undefined ? {} : { signal }), ...(traceparent === undefined ? {} : { traceparent }) }), args);
  }

  /** Offers the message to each module's `inbound` handler in `modules` order; the first that returns something answers. */
  async runInbound(loaded: LoadedModules, message: InboundMessage, traceparent?: string): Promise<unknown> {
    const handlers = loaded.modules.filter((m) => m.inbound !== undefined);
    if (handlers.length === 0) throw poolError('ERR_TASK_NOT_FOUND', 'no worker module defines an inbound handler');
    const context = traceparent === undefined ? this.context : Object.freeze({ ...this.context, traceparent });
    for (const module of handlers) {
      const result: unknown = await module.inbound!(context, message);
      if (result !== undefined) return result;
    }
    return undefined;
  }

  /** Disposes the services the tenant's container made (those with a `dispose()`). */
  async dispose(): Promise<void> {
    await this.#container.dispose();
  }
}
