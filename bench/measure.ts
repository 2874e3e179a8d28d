/** Measuring helpers for the bench: percentiles, a bare echo worker, the main loop's delay, a text table. */
import { monitorEventLoopDelay } from 'node:perf_hooks';
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
export async function echoWorker(): Promise<{ roundTrip(value: unknown): Promise<unknown>; close(): Promise<void> }> {
  const worker = new Worker("require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m))", { eval: true, execArgv: [] });
  let waiting: ((value: unknown) => void) | undefined;
  worker.on('message', (m) => waiting?.(m));
  const roundTrip = async (value: unknown): Promise<unknown> =>
    new Promise((resolve) => {
      waiting = resolve;
      worker.postMessage(value);
    });
  await roundTrip(0);
  return { roundTrip, close: async () => void (await worker.terminate()) };
}

/** Samples the main loop's delay every millisecond until stopped. */
export function loopDelayMonitor(): { stop(): { maxMs: number; p99Ms: number; samples: number } } {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  return {
    stop() {
      histogram.disable();
      return { maxMs: histogram.max / 1e6, p99Ms: histogram.percentile(99) / 1e6, samples: histogram.count };
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
