/**
 * OpenTelemetry traces, when the host has `@opentelemetry/api` installed (an optional peer, like
 * `pg` and `prom-client`): spans for an acquire (its wait for admission, the wallet's open and its
 * key derivation) and for each wallet call and module task, children of whatever span is active
 * where the host called. The trace context travels with each call into the worker, where a worker
 * module reads it as `ctx.traceparent` to continue the trace in its own spans.
 *
 * Without the package nothing is loaded and nothing is paid: the pool holds no tracer, and every
 * hook below is skipped by one `undefined` check.
 */
import type { Context, Span, Tracer } from '@opentelemetry/api';

/** The parts of `@opentelemetry/api` the pool uses. */
interface OtelApi {
  trace: {
    getTracer(name: string, version?: string): Tracer;
    setSpan(context: Context, span: Span): Context;
    getSpanContext(context: Context): { traceId: string } | undefined;
  };
  context: { active(): Context; with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(context: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> };
  SpanStatusCode: { ERROR: number };
}

/** A span the pool started, and how to end it. */
export interface PoolSpan {
  /** The W3C `traceparent` of this span, carried into the worker with the call. */
  readonly traceparent: string;
  /** Ends the span; an error marks it failed with the error's code. */
  end(error?: unknown): void;
}

/** The pool's tracer: spans as children of the host's active span. */
export class Tracing {
  readonly #api: OtelApi;
  readonly #tracer: Tracer;

  private constructor(api: OtelApi, version: string | undefined) {
    this.#api = api;
    this.#tracer = api.trace.getTracer('tenant-pool', version);
  }

  /** The tracer, if `@opentelemetry/api` can be imported; otherwise undefined (and nothing was loaded but the failed import). */
  static async load(version?: string): Promise<Tracing | undefined> {
    try {
      const api = (await import('@opentelemetry/api')) as unknown as OtelApi;
      return new Tracing(api, version);
    } catch {
      return undefined;
    }
  }

  /** The context active where the host called (capture it before any await of the pool). */
  active(): Context {
    return this.#api.context.active();
  }

  /** Starts a span, child of `parent` (default: the active context), optionally back-dated to `startTime` (epoch ms). */
  start(name: string, attributes: Record<string, string | number | boolean>, parent: Context = this.active(), startTime?: number): (PoolSpan & { context: Context }) | undefined {
    const span = this.#tracer.startSpan(name, { attributes, ...(startTime === undefined ? {} : { startTime }) }, parent);
    // No SDK registered and no trace to continue: nothing to record or carry, so nothing more is paid.
    if (!span.isRecording() && this.#api.trace.getSpanContext(parent) === undefined) return undefined;
    const { traceId, spanId, traceFlags } = span.spanContext();
    return {
      traceparent: `00-${traceId}-${spanId}-${traceFlags.toString(16).padStart(2, '0')}`,
      context: this.#api.trace.setSpan(parent, span),
      end: (error?: unknown, endTime?: number) => {
        if (error !== undefined) {
          const code = (error as { code?: unknown }).code;
          span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message: typeof code === 'string' ? code : error instanceof Error ? error.name : 'error' });
          if (typeof code === 'string') span.setAttribute('tenant_pool.error_code', code);
        }
        span.end(endTime);
      },
    };
  }

  /** A span that already happened (from timings the pool measured), child of `parent`. */
  record(name: string, attributes: Record<string, string | number | boolean>, parent: Context, startTime: number, endTime: number): void {
    this.#tracer.startSpan(name, { attributes, startTime }, parent).end(endTime);
  }
}
