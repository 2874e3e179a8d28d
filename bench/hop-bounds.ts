/**
 * What the warm-ops mix allows through a thread hop alone, with no pool: one thread per core holds
 * a wallet (`hop-worker.ts`) and the main thread keeps 64 calls in flight, awaiting each.
 *
 * - `port`: a MessagePort with the calls of one turn batched into one message each way by the
 *   pool's own outbox, and the pool's own table of pending calls. Any design on MessagePorts pays
 *   at least this.
 * - `ring`: two rings of fixed slots in shared memory per thread, with `Atomics.waitAsync` on both
 *   sides and a notify only when the other side waits: no structured clone, no message events.
 *
 * Against the bare bound (the mix on every core with no hop), these tell how much of the gap is
 * the hop itself and how much the pool's own work per call.
 */
import { randomBytes } from 'node:crypto';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { Outbox, unbatch } from '../common/outbox.js';
import { PendingCalls } from '../src/threads/pending-calls.js';
import { cpuPerOp, threadCpuSeconds } from './measure.js';

export const RING_SLOTS = 256;
export const RING_SLOT = 256;

export interface HopCall {
  id: number;
  get: boolean;
  data?: Uint8Array;
}

export interface HopReply {
  id: number;
  value: unknown;
}

export interface HopTask {
  transport: 'port' | 'ring';
  /** Batches of calls, and 'stop'; the worker says 'ready' on it first. */
  port: MessagePort;
  requests?: SharedArrayBuffer;
  replies?: SharedArrayBuffer;
}

/** A ring: head[0] slots written, head[2] 1 while its reader waits; then the slots (u32 id, u8 kind, u16 length, payload). */
export function ringView(buffer: SharedArrayBuffer): { head: Int32Array; bytes: Uint8Array; view: DataView } {
  return { head: new Int32Array(buffer, 0, 4), bytes: new Uint8Array(buffer, 16), view: new DataView(buffer, 16) };
}

/** `Atomics.waitAsync` (in Node since 16; its types come with lib es2024, which this project's tsconfig predates). */
export const waitAsync = (
  Atomics as unknown as { waitAsync(array: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> } }
).waitAsync.bind(Atomics);

const WORKER_URL = new URL(`./hop-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

/** One thread serving the task until stopped (a piscina pool of one, as the pool's own workers are). */
async function startWorker(task: Omit<HopTask, 'port'>): Promise<{ port: MessagePort; stop(): Promise<void> }> {
  const piscina = new Piscina({ filename: WORKER_URL, minThreads: 1, maxThreads: 1, idleTimeout: Number.POSITIVE_INFINITY, atomics: 'disabled' });
  const { port1, port2 } = new MessageChannel();
  piscina.run({ ...task, port: port2 } satisfies HopTask, { transferList: [port2] }).catch(() => {});
  await new Promise((resolve) => port1.once('message', resolve));
  return {
    port: port1,
    async stop() {
      port1.postMessage('stop');
      port1.close();
      await piscina.destroy();
    },
  };
}

interface Channel {
  call(get: boolean, data: Uint8Array): Promise<unknown>;
  stop(): Promise<void>;
}

/** The pool's own hop machinery (its outbox and its pending calls), with nothing of the pool around it. */
async function portChannel(): Promise<Channel> {
  const worker = await startWorker({ transport: 'port' });
  const pending = new PendingCalls<(value: unknown) => void>();
  const outbox = new Outbox<HopCall>(
    (message) => worker.port.postMessage(message),
    () => {},
  );
  let nextId = 0;
  worker.port.on('message', (replies: HopReply | HopReply[]) => unbatch(replies, ({ id, value }) => pending.take(id)?.(value)));
  return {
    async call(get, data) {
      const id = nextId++;
      outbox.push(get ? { id, get } : { id, get, data: new Uint8Array(data) });
      return new Promise((resolve) => pending.set(id, resolve));
    },
    stop: async () => worker.stop(),
  };
}

async function ringChannel(): Promise<Channel> {
  const requestBuffer = new SharedArrayBuffer(16 + RING_SLOTS * RING_SLOT);
  const replyBuffer = new SharedArrayBuffer(16 + RING_SLOTS * RING_SLOT);
  const worker = await startWorker({ transport: 'ring', requests: requestBuffer, replies: replyBuffer });
  const requests = ringView(requestBuffer);
  const replies = ringView(replyBuffer);
  const decoder = new TextDecoder();
  // 64 calls in flight at most, so a slot is free again long before the ring comes round.
  const pending = new Array<((value: unknown) => void) | undefined>(RING_SLOTS);
  let nextId = 0;
  let read = 0;
  let isStopped = false;
  const drain = (): void => {
    if (isStopped) return;
    const written = Atomics.load(replies.head, 0);
    for (; read < written; read++) {
      const at = (read % RING_SLOTS) * RING_SLOT;
      const id = replies.view.getUint32(at);
      const payload = replies.bytes.slice(at + 7, at + 7 + replies.view.getUint16(at + 5));
      const value: unknown = replies.bytes[at + 4] === 0 ? JSON.parse(decoder.decode(payload)) : payload;
      const resolve = pending[id % RING_SLOTS]!;
      pending[id % RING_SLOTS] = undefined;
      resolve(value);
    }
    const wait = waitAsync(replies.head, 0, written);
    if (wait.async) void wait.value.then(drain);
    else queueMicrotask(drain);
  };
  drain();
  return {
    async call(get, data) {
      const id = nextId++;
      const written = Atomics.load(requests.head, 0);
      const at = (written % RING_SLOTS) * RING_SLOT;
      requests.view.setUint32(at, id);
      requests.bytes[at + 4] = get ? 0 : 1;
      if (!get) requests.bytes.set(data, at + 7);
      requests.view.setUint16(at + 5, get ? 0 : data.length);
      Atomics.store(requests.head, 0, written + 1);
      if (Atomics.load(requests.head, 2) === 1) Atomics.notify(requests.head, 0);
      return new Promise((resolve) => (pending[id % RING_SLOTS] = resolve));
    },
    async stop() {
      isStopped = true;
      await worker.stop();
    },
  };
}

/**
 * Ops/s of the warm-ops mix through the hop alone: `threads` threads, 64 calls in flight, the best
 * of three rounds, with the CPU per call of that round (Linux).
 */
export async function hopOpsPerSec(transport: 'port' | 'ring', threads: number, callsPerLane: number): Promise<{ opsPerSec: number; mainCpuUs?: number; otherCpuUs?: number }> {
  const channels = await Promise.all(Array.from({ length: threads }, async () => (transport === 'port' ? portChannel() : ringChannel())));
  const data = randomBytes(64);
  const lanes = async (perLane: number): Promise<void> => {
    await Promise.all(
      Array.from({ length: 64 }, async (_, lane) => {
        const channel = channels[lane % threads]!;
        for (let i = 0; i < perLane; i++) await channel.call(i % 2 === 0, data);
      }),
    );
  };
  try {
    await lanes(callsPerLane / 10);
    let best: { opsPerSec: number; mainCpuUs?: number; otherCpuUs?: number } = { opsPerSec: 0 };
    for (let round = 0; round < 3; round++) {
      const cpuBefore = threadCpuSeconds();
      const started = performance.now();
      await lanes(callsPerLane);
      const opsPerSec = (64 * callsPerLane) / ((performance.now() - started) / 1000);
      const cpu = cpuPerOp(cpuBefore, threadCpuSeconds(), 64 * callsPerLane);
      if (opsPerSec > best.opsPerSec) best = { opsPerSec, ...(cpu === null ? {} : { mainCpuUs: cpu.mainUs, otherCpuUs: cpu.othersUs }) };
    }
    return best;
  } finally {
    await Promise.all(channels.map(async (c) => c.stop()));
  }
}
