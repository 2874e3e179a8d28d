/** Measuring helpers for the bench: percentiles, a bare echo worker, the main loop's delay, CPU by thread, a text table. */
import { readdirSync, readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** A plain worker_threads Worker that posts back what it gets: the floor for any cross-thread call. */
export async function echoWorker(): Promise<{ roundTrip(value: unknown): Promise<unknown>; pipelined(ops: number, depth: number): Promise<number>; close(): Promise<void> }> {
  const worker = new Worker("require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m))", { eval: true, execArgv: [] });
  // Replies come back in order: a FIFO of waiting resolvers matches them.
  const waiting: Array<(value: unknown) => void> = [];
  let head = 0;
  worker.on('message', (m) => waiting[head++]?.(m));
  const roundTrip = async (value: unknown): Promise<unknown> =>
    new Promise((resolve) => {
      waiting.push(resolve);
      if (head > 4096) {
        waiting.splice(0, head);
        head = 0;
      }
      worker.postMessage(value);
    });
  /** Round trips per second with `depth` in flight. */
  const pipelined = async (ops: number, depth: number): Promise<number> => {
    let sent = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: depth }, async () => {
        while (sent < ops) {
          sent++;
          await roundTrip(sent);
        }
      }),
    );
    return ops / ((performance.now() - started) / 1000);
  };
  await roundTrip(0);
  return { roundTrip, pipelined, close: async () => void (await worker.terminate()) };
}

/**
 * Measures the main loop's delay: a 1 ms interval records how late each tick comes. `stop()` waits
 * for one more tick, so a loop blocked until the very end is measured too.
 */
/**
 * CPU seconds each thread of this process has spent so far, by thread id (the main thread's is the
 * pid; the others are workers and V8's and libuv's helpers), read from Linux's
 * `/proc/self/task/<tid>/stat`; null elsewhere.
 */
export function threadCpuSeconds(): Map<string, number> | null {
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return null;
  }
  const byThread = new Map<string, number>();
  for (const tid of tasks) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // After the command name in parentheses: utime and stime are the 12th and 13th fields, in clock ticks (100 a second).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byThread.set(tid, (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // The thread ended while we read.
    }
  }
  return byThread;
}

/** CPU microseconds per operation on the main thread and on the others between two readings (a thread that ended in between is not counted). */
export function cpuPerOp(before: ReturnType<typeof threadCpuSeconds>, after: ReturnType<typeof threadCpuSeconds>, ops: number): { mainUs: number; othersUs: number } | null {
  if (before === null || after === null) return null;
  let main = 0;
  let others = 0;
  for (const [tid, seconds] of after) {
    const spent = seconds - (before.get(tid) ?? 0);
    if (tid === String(process.pid)) main += spent;
    else others += spent;
  }
  return { mainUs: round((main * 1e6) / ops), othersUs: round((others * 1e6) / ops) };
}

export function loopDelayMonitor(): { stop(): Promise<{ maxMs: number; p99Ms: number; samples: number }> } {
  const delays: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    delays.push(Math.max(0, now - last - 1));
    last = now;
  }, 1);
  return {
    async stop() {
      await new Promise((resolve) => setTimeout(resolve, 2));
      clearInterval(timer);
      return { maxMs: delays.length === 0 ? 0 : Math.max(...delays), p99Ms: percentile(delays, 99), samples: delays.length };
    },
  };
}

/** Rows of figures as an aligned text table. */
export function table(rows: Record<string, Record<string, number | string>>): string {
  const columns = [...new Set(Object.values(rows).flatMap((r) => Object.keys(r)))];
  const header = ['', ...columns];
  const body = Object.entries(rows).map(([name, r]) => [name, ...columns.map((c) => String(r[c] ?? ''))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line), ''].join('\n');
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Samples the process RSS every 5 ms until stopped; returns the peak in MiB. */
export function rssSampler(): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
  return {
    stop() {
      clearInterval(timer);
      return round(Math.max(peak, process.memoryUsage.rss()) / 2 ** 20);
    },
  };
}

/** Draws ranks 0..n-1 with Zipf(s) probabilities (rank 0 most popular), from a seeded generator. */
export function zipfSampler(n: number, s: number, seed: number): () => number {
  const cumulative = new Float64Array(n);
  let total = 0;
  for (let k = 0; k < n; k++) cumulative[k] = total += 1 / (k + 1) ** s;
  let state = seed;
  return () => {
    state = (state * 48271) % 2147483647;
    const u = (state / 2147483647) * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** A one-line progress bar redrawn in place on a terminal; silent otherwise. */
export function progressBar(total: number): { update(done: number, label: string): void; done(): void } {
  const isTty = process.stderr.isTTY === true;
  const started = performance.now();
  return {
    update(done, label) {
      if (!isTty) return;
      const width = 24;
      const filled = Math.round((done / total) * width);
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${seconds}s  ${label}`.padEnd(100).slice(0, 100));
    },
    done() {
      if (isTty) process.stderr.write(`\r${' '.repeat(100)}\r`);
    },
  };
}
