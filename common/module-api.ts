/**
 * `tenant-pool/worker`: what a worker module imports. A worker module is a file listed in the pool's
 * `modules` option; every worker thread imports it, and its default export is a `defineModule({...})`.
 *
 * @example
 * import { defineModule } from 'tenant-pool/worker'
 * export default defineModule({
 *   register(container) { container.registerSingleton('Greeter', Greeter) },
 *   tasks: { greet: (ctx, name) => ctx.container.resolve<Greeter>('Greeter').greet(String(name)) },
 *   inbound: (ctx, message) => ctx.wallet.records.save('inbox', crypto.randomUUID(), message.body),
 * })
 */
import type { DependencyContainer } from 'tsyringe';
import type { JsonValue, StoredRecord } from './protocol.js';
import type { TagQuery } from './query.js';

export type { DependencyContainer } from 'tsyringe';
export type { JsonValue, StoredRecord } from './protocol.js';

/** The tenant's wallet inside a worker: synchronous, this tenant's records and keys only. */
export interface TenantWallet {
  readonly records: {
    /** Resolves once the record is durable (committed), on either store. */
    save(category: string, id: string, value: JsonValue, tags?: Record<string, string>): Promise<void>;
    get(category: string, id: string): Promise<StoredRecord | null>;
    /** As `session.records.find` (tag equality or the full query language), without cursors. */
    find(category: string, query?: TagQuery, options?: { limit?: number }): Promise<StoredRecord[]>;
    count(category: string, query?: TagQuery): Promise<number>;
    delete(category: string, id: string): Promise<boolean>;
  };
  readonly keys: {
    create(): Promise<{ kid: string; publicKey: string }>;
    sign(kid: string, data: Uint8Array): Promise<Uint8Array>;
    /** Needs no wallet: synchronous. */
    verify(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean;
  };
}

/** What a task or inbound handler gets: the tenant, its wallet, and its own DI container. */
export interface TenantContext {
  readonly tenantId: string;
  readonly wallet: TenantWallet;
  /** A tsyringe child container of this tenant, made when its wallet opened and disposed when it closes. */
  readonly container: DependencyContainer;
  /** Aborted when the caller of `session.run(task, args, { signal })` aborts; a task that can stop early should listen. Never aborted for inbound messages or calls without a signal. */
  readonly signal: AbortSignal;
  /**
   * The W3C trace context (`traceparent`) of the pool's span for this task or inbound message,
   * when the host traces with OpenTelemetry: continue the trace in the module's own spans with it.
   */
  readonly traceparent?: string;
}

/** A message given to `pool.dispatch()`. */
export interface InboundMessage {
  /** The recipient key the message was routed by (for `recipientKeys`, the first one a tenant routes). */
  recipientKey: string;
  body: JsonValue;
}

export interface WorkerModule {
  /** Runs on each tenant's child container when its wallet opens. */
  register?(container: DependencyContainer): void;
  /** Tasks run by `session.run(name, args)`, on the tenant's worker. A task may type its `args`; `session.run<typeof module, 'name'>` then checks them. */
  tasks?: Record<string, Task>;
  /** Handles `pool.dispatch()` messages addressed to a routing key of the tenant. */
  inbound?(ctx: TenantContext, message: InboundMessage): unknown;
}

/**
 * A task: `(ctx, args) => result`. Declared through a method so that a task may narrow its `args`
 * (`(ctx, args: { limit: number }) => ...`) and still be a task; unannotated `args` are `unknown`.
 */
export type Task = { task(ctx: TenantContext, args: unknown): unknown }['task'];

/** The tasks of a module type (`typeof myModule`). */
export type TasksOf<M> = M extends { tasks?: infer T } ? NonNullable<T> : never;
/** The task names of a module type. */
export type TaskName<M> = Extract<keyof TasksOf<M>, string>;
/** What a task of a module takes as `args`. */
export type TaskArgs<M, K extends TaskName<M>> = TasksOf<M>[K] extends (ctx: TenantContext, args: infer A) => unknown ? A : never;
/** What a task of a module resolves to. */
export type TaskResult<M, K extends TaskName<M>> = TasksOf<M>[K] extends (...args: never[]) => infer R ? Awaited<R> : never;

const kModule = Symbol.for('tenant-pool.worker-module');

/** Declares a worker module; returns the definition, marked so the worker can tell it from a stray default export. */
export function defineModule<M extends WorkerModule>(definition: M): M {
  return Object.assign(definition, { [kModule]: true });
}

/** @internal True for what `defineModule` returned (from any copy of this package). */
export function isWorkerModule(value: unknown): value is WorkerModule {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kModule] === true;
}
