/**
 * OpenTelemetry traces with the SDK's in-memory exporter: an acquire, its wait for admission, its
 * wallet open and key derivation, and each wallet call and task are spans under the host's active
 * span, and a worker module's task gets the trace context of its span.
 */
import { join } from 'node:path';
import { context, trace, type SpanContext } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { disposePool, openPool } from './helpers.js';

const traceModule = join(import.meta.dirname, 'fixtures', 'trace-module.ts');

test('spans for the acquire (admission, wallet open, key derivation), every wallet call and task, under the host\'s span; the task gets its span\'s traceparent', async () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(provider);
  const pool = await openPool({ workers: 1, walletIdleTtlMs: 0, modules: [traceModule], keyCache: { maxEntries: 0 } });
  try {
    await pool.tenants.create({ tenantId: 't', kdf: 'argon2i-int' });
    exporter.reset();
    const host = trace.getTracer('host');
    let fromTask: string | null = null;
    let fromInbound: unknown;
    let routingKey = '';
    const request = await host.startActiveSpan('request', async (span) => {
      await pool.withSession('t', async (s) => {
        await s.records.save('c', 'r', 1);
        await s.records.get('c', 'r');
        fromTask = await s.run<string | null>('traceparent');
        routingKey = (await s.keys.create({ routing: true })).publicKey;
      });
      fromInbound = await pool.dispatch({ recipientKey: routingKey, body: {} });
      span.end();
      return span.spanContext();
    });
    const spans = exporter.getFinishedSpans();
    const named = (name: string): ReadableSpan[] => spans.filter((s) => s.name === name);
    const one = (name: string): ReadableSpan => {
      const found = named(name);
      assert.ok(found.length >= 1, `a span ${name} (spans: ${spans.map((s) => s.name).join(', ')})`);
      return found[0]!;
    };
    const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;
    const idOf = (c: SpanContext | ReadableSpan): string => ('spanContext' in c ? c.spanContext() : c).spanId;
    const acquires = named('tenant-pool acquire');
    assert.is(acquires.length, 2, 'one acquire for the session, one for the dispatch');
    for (const acquire of acquires) {
      assert.is(acquire.spanContext().traceId, request.traceId, 'in the host\'s trace');
      assert.is(parentOf(acquire), request.spanId, 'under the host\'s span');
    }
    const [first] = acquires;
    assert.is(parentOf(named('tenant-pool admission').find((s) => parentOf(s) === idOf(first!))!), idOf(first!), 'admission under the acquire');
    const open = one('tenant-pool wallet.open');
    assert.is(parentOf(open), idOf(first!), 'the wallet open under the first acquire');
    assert.is(open.attributes['tenant_pool.kdf'], 'argon2i-int');
    const derivation = one('tenant-pool key derivation');
    assert.is(parentOf(derivation), idOf(open), 'the key derivation under the open');
    for (const name of ['tenant-pool recordsSave', 'tenant-pool recordsGet', 'tenant-pool runTask', 'tenant-pool keysCreate', 'tenant-pool runInbound']) {
      const call = one(name);
      assert.is(call.spanContext().traceId, request.traceId, `${name} in the host's trace`);
      assert.is(call.attributes['tenant_pool.tenant_id'], 't');
    }
    assert.is(parentOf(one('tenant-pool recordsSave')), request.spanId, 'a wallet call under the span active where the host called');
    const task = one('tenant-pool runTask');
    assert.is(fromTask, `00-${request.traceId}-${idOf(task)}-01`, 'the task in the worker got its span\'s traceparent');
    assert.equal(fromInbound, { traceparent: `00-${request.traceId}-${idOf(one('tenant-pool runInbound'))}-01` });
    // A failed call marks its span.
    await pool.withSession('t', async (s) => s.run('no-such-task').catch(() => {}));
    const failed = exporter.getFinishedSpans().filter((s) => s.name === 'tenant-pool runTask').at(-1)!;
    assert.is(failed.status.code, 2, 'ERROR');
    assert.is(failed.attributes['tenant_pool.error_code'], 'ERR_TASK_NOT_FOUND');
  } finally {
    await disposePool(pool);
    trace.disable();
    context.disable();
    await provider.shutdown();
  }
});

test.run();
