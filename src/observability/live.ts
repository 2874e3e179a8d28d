/**
 * A live terminal view of a pool: a compact panel redrawn in place once a second (queue depth,
 * weight against capacity, sessions, opens/s, cache hit ratio, acquire wait p99, a bar per
 * worker). On a stream that is not a terminal it writes one panel per interval instead.
 */
import type { Writable } from 'node:stream';
import type { EventListener } from './diagnostics.js';
import { kEvents, type PoolStats, type TenantPool } from '../pool.js';

export interface LiveViewOptions {
  /** Where to draw. @default process.stderr */
  stream?: Writable & { isTTY?: boolean; columns?: number };
  /** Redraw period. @default 1000 */
  intervalMs?: number;
  /** Shown in the panel's first line. @default 'tenant-pool' */
  title?: string;
}

/** What one panel shows: a stats snapshot and the rates of the last interval. */
export interface LiveFrame {
  title: string;
  uptimeS: number;
  stats: PoolStats;
  acquiresPerSec: number;
  opensPerSec: number;
  timeoutsPerSec: number;
  /** Share of the interval's acquires that found the wallet open; null with no acquire. */
  hitRatio: number | null;
  /** Acquire wait percentiles over the interval, ms; null with no acquire. */
  waitP50Ms: number | null;
  waitP99Ms: number | null;
}

export interface LiveView extends Disposable {
  /** Draws a panel now (the timer does this every interval). */
  refresh(): void;
  /** Stops redrawing and listening. Idempotent. */
  stop(): void;
}

/** At most this many waits are kept per interval for the percentiles (a uniform sample beyond). */
const MAX_SAMPLES = 20_000;

function bar(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const full = Math.round(f * width);
  return `${'█'.repeat(full)}${'░'.repeat(width - full)}`;
}

function rate(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

function millis(value: number | null): string {
  return value === null ? '–' : `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`;
}

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The panel's text for one frame, `width` columns wide at most. Pure: the same frame draws the same text. */
export function renderLiveView(frame: LiveFrame, width = 80): string {
  const s = frame.stats;
  const barWidth = Math.max(10, Math.min(40, width - 56));
  const used = s.capacity === 0 ? 0 : s.weightInUse / s.capacity;
  const lines = [
    `${frame.title} · up ${Math.round(frame.uptimeS)} s`,
    `weight   ${bar(used, barWidth)} ${s.weightInUse} / ${s.capacity} (${Math.round(used * 100)}%)`,
    `queue    ${s.queued}   sessions ${s.sessions}   acquires/s ${rate(frame.acquiresPerSec)}   timeouts/s ${rate(frame.timeoutsPerSec)}`,
    `wallets  open ${s.wallets.open}   idle ${s.wallets.idle}   opening ${s.wallets.opening}   opens/s ${rate(frame.opensPerSec)}   hit ratio ${frame.hitRatio === null ? '–' : `${(frame.hitRatio * 100).toFixed(1)}%`}`,
    `wait     p50 ${millis(frame.waitP50Ms)}   p99 ${millis(frame.waitP99Ms)}`,
  ];
  // Each worker's bar is its weight against an even share of the capacity.
  const share = s.capacity / Math.max(1, s.workers.length);
  for (const w of s.workers) {
    lines.push(`worker ${String(w.index).padEnd(2)} ${bar(w.weight / share, barWidth)} weight ${w.weight}   sessions ${w.sessions}   wallets ${w.tenants}${w.alive ? '' : '   (down)'}`);
  }
  return lines.map((line) => (line.length > width ? line.slice(0, width) : line)).join('\n');
}

/**
 * Draws `pool`'s panel on `stream` every `intervalMs` until stopped. The timer does not keep the
 * process alive.
 * @example
 * using view = startLiveView(pool)
 */
export function startLiveView(pool: TenantPool, options: LiveViewOptions = {}): LiveView {
  const stream = options.stream ?? process.stderr;
  const intervalMs = options.intervalMs ?? 1000;
  const title = options.title ?? 'tenant-pool';
  const started = performance.now();
  let since = started;
  let acquires = 0;
  let hits = 0;
  let opens = 0;
  let timeouts = 0;
  let waits: number[] = [];
  let drawnLines = 0;
  let isStopped = false;

  const listener: EventListener = (...[event, p]) => {
    if (event === 'tenant-pool:session:acquire') {
      acquires++;
      if (p.isCacheHit) hits++;
      if (waits.length < MAX_SAMPLES) waits.push(p.waitMs);
      else {
        const i = Math.floor(Math.random() * acquires);
        if (i < MAX_SAMPLES) waits[i] = p.waitMs;
      }
    } else if (event === 'tenant-pool:wallet:open') {
      opens++;
    } else if (event === 'tenant-pool:session:timeout') {
      timeouts++;
    }
  };
  const off = pool[kEvents].on(listener);

  const refresh = (): void => {
    if (isStopped) return;
    const now = performance.now();
    const seconds = Math.max(0.001, (now - since) / 1000);
    const sorted = waits.sort((a, b) => a - b);
    const frame: LiveFrame = {
      title,
      uptimeS: (now - started) / 1000,
      stats: pool.stats(),
      acquiresPerSec: acquires / seconds,
      opensPerSec: opens / seconds,
      timeoutsPerSec: timeouts / seconds,
      hitRatio: acquires === 0 ? null : hits / acquires,
      waitP50Ms: percentile(sorted, 50),
      waitP99Ms: percentile(sorted, 99),
    };
    since = now;
    acquires = hits = opens = timeouts = 0;
    waits = [];
    const text = renderLiveView(frame, stream.columns ?? 100);
    if (stream.isTTY === true) {
      // Back to the first line of the last panel, clear below, draw.
      stream.write(`${drawnLines > 0 ? `\x1b[${drawnLines}F\x1b[J` : ''}${text}\n`);
      drawnLines = text.split('\n').length;
    } else {
      stream.write(`${text}\n\n`);
    }
  };
  const timer = setInterval(refresh, intervalMs);
  timer.unref();
  const stop = (): void => {
    if (isStopped) return;
    isStopped = true;
    clearInterval(timer);
    off();
  };
  return { refresh, stop, [Symbol.dispose]: stop };
}
