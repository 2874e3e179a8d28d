/**
 * A session on one tenant: the handle host code uses to reach the tenant's wallet. Every call runs
 * on the worker that holds the wallet; after release or revocation every call rejects.
 */
import { asPoolError, poolError, type ErrorCode, type ErrorDetails, type TenantPoolError } from '../common/errors.js';
import type { JsonCompatible, JsonValue, RawRecord, RecordPage, StoredRecord, WorkerApi, WorkerMethod } from '../common/protocol.js';
import { checkRecordQuery, decodeCursor, encodeCursor, equalityTags, type TagQuery } from '../common/query.js';
import type { Grant } from './engine/scheduler.js';
import type { WorkerSlot } from './threads/worker-slot.js';
import type { Tracing } from './observability/tracing.js';
import type { TaskArgs, TaskName, TaskResult, WorkerModule } from '../common/module-api.js';
import { checkBytes, checkLimit, checkName, checkOptionalObject, checkRecord, invalid } from '../common/validate.js';
import type { LinkedList, ListNode, ValueNode } from './engine/linked-list.js';

/** Records of the tenant's wallet: JSON values with string tags, grouped by category. */
export interface SessionRecords {
  /** Inserts or replaces; durable when the promise resolves. `T` may be an interface: `tsc` rejects what JSON would change. @throws ERR_INVALID_ARGUMENT */
  save<T>(category: string, id: string, value: T & JsonCompatible<T>, tags?: Record<string, string>): Promise<void>;
  /** The record, its value typed as the caller says (`T` is not checked at run time). */
  get<T = JsonValue>(category: string, id: string): Promise<StoredRecord<T> | null>;
  /**
   * Records of `category` matching the query, oldest first: a plain object of strings is tag
   * equality (AND); `$and`, `$or`, `$not`, `$neq`, `$in`, `$like`, `$gt`, `$gte`, `$lt`, `$lte` as in
   * Askar's WQL. With a `cursor` (from {@link page}), the records after it.
   */
  find<T = JsonValue>(category: string, query?: TagQuery, options?: { limit?: number; cursor?: string }): Promise<StoredRecord<T>[]>;
  /**
   * One page of `find`: `limit` records and a cursor for the next page (null at the end). Paging
   * sees the records that existed when it began, each once, whatever is inserted or deleted meanwhile.
   */
  page<T = JsonValue>(category: string, query: TagQuery | undefined, options: { limit: number; cursor?: string | null }): Promise<RecordPage<T>>;
  /** How many records of `category` match the query. */
  count(category: string, query?: TagQuery): Promise<number>;
  /** Resolves `true` if a record was deleted; durable when the promise resolves. */
  delete(category: string, id: string): Promise<boolean>;
}

/** Ed25519 keys of the tenant's wallet. Private keys never leave the worker. */
export interface SessionKeys {
  /** Creates a key pair; `publicKey` is base58. `routing: true` registers it for `pool.dispatch()`. */
  create(options?: { routing?: boolean }): Promise<{ kid: string; publicKey: string }>;
  /** @throws ERR_KEY_NOT_FOUND for an unknown kid */
  sign(kid: string, data: Uint8Array): Promise<Uint8Array>;
  verify(publicKey: string, data: Uint8Array, signature: Uint8Array): Promise<boolean>;
  /** The wallet's keys, oldest first, with whether each routes inbound messages to this tenant. */
  list(): Promise<KeyInfo[]>;
  /** Deletes a key and its route; resolves `false` if the wallet had no such key. */
  delete(kid: string): Promise<boolean>;
  /** Routes `dispatch()` messages for this key's public key to this tenant (`true`), or stops (`false`). @throws ERR_KEY_NOT_FOUND */
  setRouting(kid: string, routing: boolean): Promise<void>;
}

/** A key as `keys.list()` gives it. */
export interface KeyInfo {
  kid: string;
  /** base58 Ed25519 public key. */
  publicKey: string;
  createdAt: string;
  /** Whether `dispatch()` delivers messages for this key to this tenant. */
  routing: boolean;
}

/** The arguments after a typed task's name: its `args` (optional when the task takes none) and the options. */
export type TaskRest<A> = unknown extends A ? [args?: A, options?: RunOptions] : undefined extends A ? [args?: A, options?: RunOptions] : [args: A, options?: RunOptions];

/** Options of `session.run()`. */
export interface RunOptions {
  /** Aborting settles the call at once with `signal.reason`, and aborts the task's `ctx.signal`. */
  signal?: AbortSignal;
}

/** A session on one tenant. Release it (idempotent), or hold it with `await using`. */
export interface TenantSession {
  readonly tenantId: string;
  readonly records: SessionRecords;
  readonly keys: SessionKeys;
  /**
   * Runs a task of a worker module on the tenant's worker, typed from the module:
   * `session.run<typeof agentModule, 'inboxSize'>('inboxSize', args)` checks `args` and types the
   * result; `session.run<T>(name, args)` is untyped. @throws ERR_TASK_NOT_FOUND
   */
  run<M extends WorkerModule, K extends TaskName<M>>(task: K, ...rest: TaskRest<TaskArgs<M, K>>): Promise<TaskResult<M, K>>;
  run<T = unknown>(task: string, args?: unknown, options?: RunOptions): Promise<T>;
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** What a session needs from the pool, kept narrow so the session holds no reference to pool internals beyond it. */
export interface SessionHost {
  readonly maxValueBytes: number;
  /** OpenTelemetry, when the host has it: a span per wallet call and task. */
  readonly tracing: Tracing | undefined;
  /** The pool's key for paging cursors (random per pool): a cursor is bound to its tenant, category and query. */
  readonly cursorKey: Uint8Array;
  release(session: Session): void;
  registerRoute(session: Session, publicKey: string): Promise<void>;
  /** Removes the route of `publicKey` if it goes to the session's tenant. */
  unregisterRoute(session: Session, publicKey: string): Promise<void>;
  /** The tenant a public key routes to. */
  routeOf(publicKey: string): Promise<string | undefined>;
  /** Without a cluster, always; in cluster mode, whether the tenant's lease is surely still this instance's (the monotonic clock). */
  isLeased(tenantId: string): boolean;
  /** Cluster mode: the session's tenant lost its lease (`fenced`: a write found it taken; `expired`: it ran out before this instance noticed). */
  leaseLost(tenantId: string, reason: 'fenced' | 'expired'): void;
  /** PostgreSQL: a write found the schema taken from this pool. */
  ownershipLost(error: TenantPoolError): void;
}

/** The wallet a session runs on, as the session sees it (the wallet manager's entry is one). */
export interface SessionWallet {
  readonly tenantId: string;
  readonly worker: WorkerSlot;
  /** Whether the worker holding the wallet died with it. */
  readonly isCrashed: boolean;
  /** The sessions on it (each keeps its node as `walletNode`). */
  readonly sessions: LinkedList<ValueNode<Session>>;
}

/** Tokens of abortable task calls: unique in this process, so a worker can tell them apart. */
let nextTaskToken = 1;

function parseRecord<T>(raw: RawRecord): StoredRecord<T> {
  return { category: raw.category, id: raw.id, value: JSON.parse(raw.value) as T, tags: JSON.parse(raw.tags) as Record<string, string> };
}

/** Most records one page may ask for. */
const MAX_PAGE_LIMIT = 10_000;

class Records implements SessionRecords {
  readonly #session: Session;
  constructor(session: Session) {
    this.#session = session;
  }

  async save<T>(category: string, id: string, value: T & JsonCompatible<T>, tags?: Record<string, string>): Promise<void> {
    const s = this.#session;
    s.assertUsable();
    const record = checkRecord(category, id, value, tags, s.host.maxValueBytes);
    await s.call('recordsSave', record.category, record.id, record.json, record.tags);
  }

  async get<T = JsonValue>(category: string, id: string): Promise<StoredRecord<T> | null> {
    const raw = await this.#session.call('recordsGet', checkName(category, 'category'), checkName(id, 'id'));
    return raw === null ? null : parseRecord<T>(raw);
  }

  async find<T = JsonValue>(category: string, query?: TagQuery, options?: { limit?: number; cursor?: string }): Promise<StoredRecord<T>[]> {
    const opts = checkOptionalObject(options, 'options');
    const limit = checkLimit(opts['limit']);
    const cat = checkName(category, 'category');
    const node = checkRecordQuery(query);
    if (opts['cursor'] === undefined) {
      // Tag equality alone drives from the tag index (rarest tag first); anything else is compiled.
      const tags = equalityTags(node);
      const rows = tags === undefined ? (await this.#session.call('recordsQuery', cat, node, 0, -1, limit)).rows : await this.#session.call('recordsFind', cat, tags, limit);
      return rows.map((r) => parseRecord<T>(r));
    }
    const at = decodeCursor(this.#session.host.cursorKey, opts['cursor'], this.#session.tenantId, cat, node);
    return (await this.#session.call('recordsQuery', cat, node, at.after, at.upTo, limit)).rows.map((r) => parseRecord<T>(r));
  }

  async page<T = JsonValue>(category: string, query: TagQuery | undefined, options: { limit: number; cursor?: string | null }): Promise<RecordPage<T>> {
    const opts = checkOptionalObject(options, 'options');
    const limit = checkLimit(opts['limit']);
    if (limit < 0 || limit > MAX_PAGE_LIMIT) invalid(`Expected \`limit\` to be an integer from 1 to ${MAX_PAGE_LIMIT}`);
    const cat = checkName(category, 'category');
    const node = checkRecordQuery(query);
    const s = this.#session;
    const at = opts['cursor'] === undefined || opts['cursor'] === null ? { after: 0, upTo: -1 } : decodeCursor(s.host.cursorKey, opts['cursor'], s.tenantId, cat, node);
    const page = await s.call('recordsQuery', cat, node, at.after, at.upTo, limit);
    return { records: page.rows.map((r) => parseRecord<T>(r)), cursor: page.hasMore ? encodeCursor(s.host.cursorKey, s.tenantId, cat, node, { after: page.lastRid, upTo: page.upTo }) : null };
  }

  async count(category: string, query?: TagQuery): Promise<number> {
    return this.#session.call('recordsCount', checkName(category, 'category'), checkRecordQuery(query));
  }

  async delete(category: string, id: string): Promise<boolean> {
    return this.#session.call('recordsDelete', checkName(category, 'category'), checkName(id, 'id'));
  }
}

class Keys implements SessionKeys {
  readonly #session: Session;
  constructor(session: Session) {
    this.#session = session;
  }

  async create(options?: { routing?: boolean }): Promise<{ kid: string; publicKey: string }> {
    const routing = checkOptionalObject(options, 'options')['routing'];
    if (routing !== undefined && typeof routing !== 'boolean') invalid('Expected `options.routing` to be a boolean');
    const key = await this.#session.call('keysCreate');
    if (routing === true) {
      this.#session.assertUsable();
      await this.#session.host.registerRoute(this.#session, key.publicKey);
    }
    return key;
  }

  async sign(kid: string, data: Uint8Array): Promise<Uint8Array> {
    return this.#session.call('keysSign', checkName(kid, 'kid'), checkBytes(data, 'data'));
  }

  async verify(publicKey: string, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
    this.#session.assertUsable();
    checkName(publicKey, 'publicKey');
    return this.#session.entry.worker.call('keysVerify', publicKey, checkBytes(data, 'data'), checkBytes(signature, 'signature'));
  }

  async list(): Promise<KeyInfo[]> {
    const s = this.#session;
    const keys = await s.call('keysList');
    const routes = await Promise.all(keys.map(async (k) => s.host.routeOf(k.publicKey)));
    return keys.map((k, i) => ({ ...k, routing: routes[i] === s.tenantId }));
  }

  async delete(kid: string): Promise<boolean> {
    const s = this.#session;
    checkName(kid, 'kid');
    // The route goes first: a failure in between leaves a key that routes nowhere, never a route to no key.
    let publicKey: string;
    try {
      publicKey = await s.call('keysPublicKey', kid);
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_KEY_NOT_FOUND') return false;
      throw error;
    }
    s.assertUsable();
    await s.host.unregisterRoute(s, publicKey);
    return (await s.call('keysDelete', kid)) !== null;
  }

  async setRouting(kid: string, routing: boolean): Promise<void> {
    const s = this.#session;
    checkName(kid, 'kid');
    if (typeof routing !== 'boolean') invalid('Expected `routing` to be a boolean');
    const publicKey = await s.call('keysPublicKey', kid);
    s.assertUsable();
    if (routing) await s.host.registerRoute(s, publicKey);
    else await s.host.unregisterRoute(s, publicKey);
  }
}

type TenantArgs<M extends WorkerMethod> = Parameters<WorkerApi[M]> extends [string, ...infer Rest] ? Rest : never;

export class Session implements TenantSession {
  readonly tenantId: string;
  readonly records: SessionRecords;
  readonly keys: SessionKeys;
  readonly entry: SessionWallet;
  readonly host: SessionHost;
  /** The session's hold on the pool's capacity. */
  readonly grant: Grant;
  /** When the session began (pool clock). */
  readonly acquiredAt: number;
  /** Its place among its wallet's sessions and among the pool's live sessions, kept by those lists. */
  walletNode: ValueNode<Session> | undefined;
  ledgerNode: ListNode | undefined;
  #endedWith: ErrorCode | null = null;
  #endMessage = '';
  #endDetails: ErrorDetails | undefined;

  constructor(entry: SessionWallet, host: SessionHost, grant: Grant, acquiredAt: number) {
    this.tenantId = entry.tenantId;
    this.entry = entry;
    this.host = host;
    this.grant = grant;
    this.acquiredAt = acquiredAt;
    this.records = new Records(this);
    this.keys = new Keys(this);
  }

  /** True once released or revoked. */
  get isEnded(): boolean {
    return this.#endedWith !== null;
  }

  /** @throws the session's end reason, or `ERR_WORKER_CRASHED` if the wallet's worker died. */
  assertUsable(): void {
    if (this.#endedWith !== null) throw poolError(this.#endedWith, this.#endMessage, undefined, this.#endDetails);
    if (this.entry.isCrashed) throw poolError('ERR_WORKER_CRASHED', 'the worker holding this tenant died; acquire a new session', undefined, { tenantId: this.tenantId });
  }

  /** Calls a tenant-scoped worker method on this session's wallet. */
  async call<M extends WorkerMethod>(method: M, ...args: TenantArgs<M>): Promise<ReturnType<WorkerApi[M]>> {
    this.assertUsable();
    if (!this.host.isLeased(this.tenantId)) {
      // The lease ran out while this instance could not notice (its event loop held up): another
      // instance may serve the tenant now, so not even a read is served here. This revokes the session.
      this.host.leaseLost(this.tenantId, 'expired');
      this.assertUsable();
    }
    const worker = this.entry.worker as { index: number; call(m: M, ...a: unknown[]): Promise<ReturnType<WorkerApi[M]>> };
    const span = this.host.tracing?.start(`tenant-pool ${method}`, { 'tenant_pool.tenant_id': this.tenantId, 'tenant_pool.worker': worker.index });
    const isTask = method === 'runTask' || method === 'runInbound';
    try {
      // A task or inbound handler gets the span's trace context, to continue the trace in the worker.
      const result = await worker.call(method, this.tenantId, ...(span === undefined || !isTask ? args : [...args, span.traceparent]));
      span?.end();
      return result;
    } catch (error) {
      span?.end(error);
      if (isTask) throw error;
      // A storage failure from the wallet (a full disk, say) comes as the error SQLite raised: give it its code.
      const failure = asPoolError(error, `${method} on the wallet of tenant ${this.tenantId}`, { tenantId: this.tenantId });
      if (failure.code === 'ERR_LEASE_LOST') this.host.leaseLost(this.tenantId, 'fenced');
      if (failure.code === 'ERR_OWNERSHIP_LOST') this.host.ownershipLost(failure);
      // The wallet closed under the call before it ran (the session was revoked meanwhile): the session's own end says why.
      if (failure.code === 'ERR_SESSION_REVOKED') this.assertUsable();
      throw failure;
    }
  }

  /** Runs the worker modules' inbound handler for a dispatched message. */
  async inbound(message: { recipientKey: string; body: JsonValue }): Promise<unknown> {
    return this.call('runInbound', message);
  }

  async run<T = unknown>(task: string, args?: unknown, options?: RunOptions): Promise<T> {
    const signal = checkOptionalObject(options, 'options')['signal'];
    if (signal === undefined) return (await this.call('runTask', checkName(task, 'task'), args, 0)) as T;
    if (!(signal instanceof AbortSignal)) invalid('Expected `signal` to be an AbortSignal');
    signal.throwIfAborted();
    const token = nextTaskToken++;
    const call = this.call('runTask', checkName(task, 'task'), args, token);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        // Settled at once, whatever the task does; the task sees its ctx.signal abort.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        reject(signal.reason);
        this.entry.worker.call('abortTask', token).catch(() => {});
      };
      signal.addEventListener('abort', onAbort, { once: true });
      call.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value as T);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
          reject(error);
        },
      );
    });
  }

  /** Ends the session for the pool's own reasons (tenant deleted, held too long, pool closed); release() stays a no-op after. */
  revoke(code: ErrorCode, message: string, details?: ErrorDetails): void {
    if (this.#endedWith !== null) return;
    this.#endedWith = code;
    this.#endMessage = message;
    this.#endDetails = { tenantId: this.tenantId, ...details };
    this.host.release(this);
  }

  async release(): Promise<void> {
    if (this.#endedWith !== null) return;
    this.#endedWith = 'ERR_SESSION_RELEASED';
    this.#endMessage = 'this session was released';
    this.#endDetails = { tenantId: this.tenantId };
    this.host.release(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
