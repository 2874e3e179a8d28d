/**
 * The worker threads and one typed channel to each.
 *
 * Each worker slot is a one-thread piscina pool (piscina starts the thread, applies resource limits
 * and reports its death). On it runs a single long-lived *lifeline* task that receives a
 * MessagePort; every wallet call then goes straight over that port. piscina's own task routing
 * cannot keep a tenant on one thread cheaply (once anything queues, everything queues), and a raw
 * port round trip costs about what a bare postMessage does.
 *
 * When a worker dies, every call pending on it rejects with `ERR_WORKER_CRASHED` (none may hang),
 * the pool hears of it through `onCrash`, and a fresh worker takes the slot.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { asPoolError, decodeError, poolError } from '../../common/errors.js';
import { Outbox, unbatch } from '../../common/outbox.js';
import { SHUTDOWN, type CallMessage, type LifelineTask, type ReplyMessage, type StartMessage, type StoreConfig, type WorkerApi, type WorkerMethod } from '../../common/protocol.js';
import { setLongTimeout } from '../engine/timers.js';
import { PendingCalls } from './pending-calls.js';

const WORKER_URL = new URL(`../../workers/wallet-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

/** Replacement workers that may die before serving, in a row, before the slot gives up. */
const MAX_FAILED_STARTS = 3;

interface Pending {
  method: WorkerMethod;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/**
 * Calls whose outcome is known when their worker dies before answering: they change nothing stored
 * (reads, signing), or what they write only counts once the main thread records it (an open, a
 * rekey's new wallet, an import before its registry row). Any other call cut off so may have
 * committed: its error says `outcome: 'unknown'`.
 */
const OUTCOME_KNOWN: ReadonlySet<WorkerMethod> = new Set<WorkerMethod>(['recordsGet', 'recordsFind', 'recordsQuery', 'recordsCount', 'keysList', 'keysPublicKey', 'keysSign', 'keysVerify', 'echo', 'openWallet', 'closeWallet', 'forgetKey', 'rekeyWallet', 'exportWallet', 'digestWallet', 'checkWallet', 'importWallet']);

/** Settles when the worker's lifeline task ends, with the reason it ended. */
type LifelineEnd = { kind: 'shutdown' } | { kind: 'crash'; error: Error };

export interface WorkerSlotOptions {
  index: number;
  /** Called once per death of this slot's worker, after its pending calls have been rejected. */
  onCrash: (index: number, error: Error) => void;
  /** Called each time a worker of this slot is ready to serve, with how long it took to start. */
  onSpawn?: (index: number, startMs: number, isReplacement: boolean) => void;
  resourceLimits?: { maxOldGenerationSizeMb?: number; maxYoungGenerationSizeMb?: number; stackSizeMb?: number };
  /** Worker module paths every worker imports before it serves. */
  modules: readonly string[];
  maxValueBytes: number;
  /** The wallet store the worker opens wallets in. @default SQLite files */
  store?: StoreConfig;
  /** The worker's key tier. @default off */
  keyCache?: LifelineTask['keyCache'];
  /** A worker that has not started (imported its modules) within this fails its start with `ERR_WORKER_START_TIMEOUT`. */
  startTimeoutMs?: number;
  /** Whether the worker lets the process exit while no call is in flight (as node-postgres's `allowExitOnIdle`). */
  allowExitOnIdle?: boolean;
}

/** One worker thread (replaced when it dies) and the channel to it. */
export class WorkerSlot {
  readonly index: number;
  #piscina: Piscina;
  readonly #resourceLimits: WorkerSlotOptions['resourceLimits'];
  readonly #onCrash: (index: number, error: Error) => void;
  readonly #onSpawn: WorkerSlotOptions['onSpawn'];
  readonly #modules: readonly string[];
  readonly #maxValueBytes: number;
  readonly #store: StoreConfig;
  readonly #keyCache: LifelineTask['keyCache'];
  readonly #startTimeoutMs: number;
  readonly #allowExitOnIdle: boolean;
  readonly #pending = new PendingCalls<Pending>();
  /** Threads of this slot that served and died: a late report of their end is not a new death. */
  readonly #deadThreads = new Set<number>();
  /** The worker module the starting worker is importing, as it last said. */
  #loadingModule: string | undefined;
  #nextId = 1;
  #port: MessagePort | null = null;
  #outbox: Outbox<CallMessage> | undefined;
  #ready: Promise<void>;
  #lifeline: Promise<LifelineEnd> = Promise.resolve({ kind: 'shutdown' });
  #isClosing = false;
  #crashes = 0;
  /** Whether any worker of this slot ever served, and how many starts in a row have failed since. */
  #hasServed = false;
  #failedStarts = 0;
  /** Why the worker could not start, as it said so itself. */
  #startError: Error | undefined;

  constructor(options: WorkerSlotOptions) {
    this.index = options.index;
    this.#onCrash = options.onCrash;
    this.#onSpawn = options.onSpawn;
    this.#modules = options.modules;
    this.#maxValueBytes = options.maxValueBytes;
    this.#store = options.store ?? { kind: 'sqlite' };
    this.#keyCache = options.keyCache ?? { maxEntries: 0, ttlMs: 0, passphrases: false };
    this.#startTimeoutMs = options.startTimeoutMs ?? Number.POSITIVE_INFINITY;
    this.#allowExitOnIdle = options.allowExitOnIdle ?? false;
    this.#resourceLimits = options.resourceLimits;
    this.#piscina = this.#newPiscina();
    this.#ready = this.#connect();
  }

  /** Ends the current lifeline when its thread is gone (set while a lifeline runs). */
  #onThreadGone: ((end: LifelineEnd) => void) | undefined;

  #newPiscina(): Piscina {
    const piscina = new Piscina({
      filename: WORKER_URL,
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      // A comlink-style 'sync' wait would block the worker's event loop between tasks; ours must stay free.
      atomics: 'disabled',
      ...(this.#resourceLimits === undefined ? {} : { resourceLimits: this.#resourceLimits }),
    });
    // Deaths are reported through the lifeline; this keeps piscina's own 'error' event from going unhandled.
    piscina.on('error', () => {});
    piscina.on('workerDestroy', (worker: { id: number }) => {
      // A thread whose death was already handled (through its port) may be reported after its replacement started.
      if (this.#deadThreads.has(worker.id)) return;
      if (piscina === this.#piscina && !this.#isClosing) this.#onThreadGone?.({ kind: 'crash', error: new Error('the worker thread exited') });
    });
    return piscina;
  }

  /** True while a worker is serving this slot. */
  get isAlive(): boolean {
    return this.#port !== null;
  }

  /** How many times this slot's worker has died. */
  get crashes(): number {
    return this.#crashes;
  }

  /** Resolves once the worker has loaded and answers calls. */
  async ready(): Promise<void> {
    return this.#ready;
  }

  /** The piscina-managed thread, for tests that need to kill it. */
  get thread(): Worker | undefined {
    return this.#piscina.threads[0];
  }

  /** Calls a worker method. Rejects `ERR_WORKER_CRASHED` if the worker dies before answering. */
  async call<M extends WorkerMethod>(method: M, ...args: Parameters<WorkerApi[M]>): Promise<ReturnType<WorkerApi[M]>> {
    if (this.#isClosing) throw poolError('ERR_POOL_CLOSED', 'the pool is closing');
    if (this.#port === null) {
      try {
        await this.#ready;
      } catch (error) {
        throw asPoolError(error, `worker ${this.index} could not start`);
      }
    }
    const port = this.#port;
    if (this.#isClosing) throw poolError('ERR_POOL_CLOSED', 'the pool is closing');
    if (port === null) throw poolError('ERR_WORKER_CRASHED', `worker ${this.index} is not running`);
    const id = this.#nextId++;
    // While a call is in flight the channel keeps the process alive, whatever allowExitOnIdle says.
    if (this.#allowExitOnIdle && this.#pending.size === 0) port.ref();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { method, resolve, reject });
      this.#outbox!.push({ id, method, args } satisfies CallMessage);
    });
  }

  /** Arguments structured clone cannot carry (a function, a symbol...): that call was not sent. */
  #unsendable(call: CallMessage, error: Error): void {
    this.#pending.take(call.id)?.reject(poolError('ERR_INVALID_ARGUMENT', `the arguments cannot be sent to the worker: ${error.message}`, error));
  }

  async #connect(): Promise<void> {
    const startedAt = performance.now();
    const { port1, port2 } = new MessageChannel();
    const task: LifelineTask = { port: port2, modules: this.#modules, maxValueBytes: this.#maxValueBytes, store: this.#store, keyCache: this.#keyCache };
    let markReady!: () => void;
    let failStart!: (error: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failStart = reject;
    });
    // The worker's first message says it is listening, or why it cannot; everything after is a reply.
    // The port and piscina's task channel are not ordered with each other, so a lifeline that ends
    // early waits for this first message (or the port's close) before telling why.
    this.#loadingModule = undefined;
    let servingThread: number | undefined;
    const started = new Promise<StartMessage | null>((resolve) => {
      const onStart = (message: StartMessage | { loading: string }): void => {
        if (typeof message === 'object' && 'loading' in message) {
          this.#loadingModule = message.loading;
          return;
        }
        port1.off('message', onStart);
        resolve(message);
      };
      port1.on('message', onStart);
      port1.once('close', () => resolve(null));
    });
    // A worker module whose import never settles would hold open() forever: past the start timeout
    // the thread is terminated, and the start fails naming the module it was importing.
    const startTimer = setLongTimeout(() => {
      if (this.#port === port1 || this.#isClosing) return;
      const module = this.#loadingModule;
      this.#startError = poolError(
        'ERR_WORKER_START_TIMEOUT',
        `worker ${this.index} did not start within ${this.#startTimeoutMs} ms${module === undefined ? '' : `: the import of worker module ${module} did not finish`}`,
      );
      this.#piscina.destroy().catch(() => {});
    }, this.#startTimeoutMs);
    void started.then(() => startTimer.cancel());
    void started.then((start) => {
      if (start === null || !('ready' in start)) return;
      servingThread = start.ready;
      this.#port = port1;
      const isReplacement = this.#hasServed;
      this.#hasServed = true;
      this.#failedStarts = 0;
      this.#outbox = new Outbox<CallMessage>((m) => port1.postMessage(m), (call, error) => this.#unsendable(call, error));
      port1.on('message', (replies: ReplyMessage | ReplyMessage[]) => unbatch(replies, (reply) => this.#settle(reply)));
      if (this.#allowExitOnIdle) port1.unref();
      this.#onSpawn?.(this.index, performance.now() - startedAt, isReplacement);
      markReady();
    });
    // A thread that dies before it is ready never gets the lifeline task, so piscina never fails it:
    // the thread's own end (piscina's workerDestroy) ends this lifeline too, whichever comes first.
    let onThreadGone!: (end: LifelineEnd) => void;
    const threadGone = new Promise<LifelineEnd>((resolve) => (onThreadGone = resolve));
    this.#onThreadGone = onThreadGone;
    // The task returns once the worker serves (that is not an end); it fails if the thread dies first.
    const run = this.#piscina.run(task, { transferList: [port2] }).then(
      async (): Promise<LifelineEnd> => new Promise<never>(() => {}),
      (error: unknown): LifelineEnd => ({ kind: 'crash', error: error instanceof Error ? error : new Error(String(error)) }),
    );
    // The worker closes its end when asked to shut down. Its end also goes with its thread, but a
    // death is taken from piscina's report (threadGone): only then is piscina done with the thread,
    // so the replacement's task cannot land on it.
    const portClosed = new Promise<LifelineEnd>((resolve) =>
      port1.once('close', () => {
        if (this.#isClosing) resolve({ kind: 'shutdown' });
      }),
    );
    // A worker that cannot start (a module failed to load) says why, closes its port and stays idle.
    const startFailed = started.then(async (start): Promise<LifelineEnd> => {
      if (start === null || !('startFailed' in start)) return new Promise<never>(() => {});
      this.#startError ??= decodeError(start.startFailed);
      return { kind: 'crash', error: this.#startError };
    });
    this.#lifeline = Promise.race([run, threadGone, portClosed, startFailed]);
    void this.#lifeline.then(async (end) => {
      startTimer.cancel();
      this.#onThreadGone = undefined;
      if (servingThread !== undefined) this.#deadThreads.add(servingThread);
      port1.close();
      if (end.kind === 'shutdown' && this.#isClosing) return;
      const error = end.kind === 'crash' ? end.error : (this.#startError ?? new Error('worker ended its lifeline unexpectedly'));
      failStart(this.#startError ?? poolError('ERR_WORKER_CRASHED', `worker ${this.index} failed to start: ${error.message}`, error));
      this.#handleDeath(error);
    });
    return ready;
  }

  #settle(reply: ReplyMessage): void {
    const pending = this.#pending.take(reply.id);
    if (pending === undefined) return;
    if (this.#allowExitOnIdle && this.#pending.size === 0) this.#port?.unref();
    if (reply.ok) pending.resolve(reply.value);
    else pending.reject(decodeError(reply.error));
  }

  #handleDeath(error: Error): void {
    const wasServing = this.#port !== null;
    this.#port = null;
    this.#crashes++;
    for (const p of this.#pending.takeAll()) {
      // A write whose worker died may have committed before it could answer: its outcome is unknown.
      p.reject(
        OUTCOME_KNOWN.has(p.method)
          ? poolError('ERR_WORKER_CRASHED', `worker ${this.index} died during the call: ${error.message}`, error)
          : poolError('ERR_WORKER_CRASHED', `worker ${this.index} died during the call (${p.method}); its outcome is unknown: it may have committed. Read back before retrying: ${error.message}`, error, { outcome: 'unknown' }),
      );
    }
    if (this.#isClosing) return;
    this.#onCrash(this.index, error);
    // A replacement that died before serving (killed while starting, say) gets a few more tries; one
    // that never came up at all, or keeps failing to, would fail the same way again: no respawn loop,
    // and calls get the start error.
    if (!wasServing) {
      this.#failedStarts++;
      if (!this.#hasServed || this.#failedStarts >= MAX_FAILED_STARTS) return;
      // piscina starts no more threads once one died before it was ready: start over with a fresh pool.
      // The old pool only holds a dead thread and a task that will never run; its end reports nothing.
      this.#piscina.destroy().catch(() => {});
      this.#piscina = this.#newPiscina();
    }
    this.#ready = this.#connect();
    // Callers waiting on a restart see its failure through call(); nothing else awaits it.
    this.#ready.catch(() => {});
  }

  /** Asks the worker to close its wallets and stop; forces it after `timeoutMs`. Idempotent. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.#isClosing) return;
    this.#isClosing = true;
    const port = this.#port;
    if (port !== null) {
      this.#outbox?.flush();
      port.postMessage(SHUTDOWN);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#lifeline, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    }
    this.#port = null;
    // The worker did not finish in time and was stopped: a write it had begun may have committed.
    for (const p of this.#pending.takeAll()) {
      p.reject(
        OUTCOME_KNOWN.has(p.method)
          ? poolError('ERR_POOL_CLOSED', 'the pool closed before the call finished')
          : poolError('ERR_POOL_CLOSED', `the pool closed before the call (${p.method}) finished; its outcome is unknown: it may have committed. Read back before retrying`, undefined, { outcome: 'unknown' }),
      );
    }
    await this.#piscina.destroy();
  }
}
