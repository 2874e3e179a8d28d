/**
 * Type test: compiled by `tsc -p test/types` (from `types.test.ts`). Each `@ts-expect-error` line must
 * fail to compile, and everything else must compile: a regression either way fails the test.
 */
import type { TenantSession } from '../../src/index.js';
import type agentModule from '../../examples/agent-module.js';
import { defineModule } from '../../src/worker.js';

interface Connection {
  state: 'active' | 'done';
  theirDid: string;
  since?: string;
  labels: string[];
  peer: { name: string; port: number | null };
}

declare const session: TenantSession;

export const typed = defineModule({
  tasks: {
    add: (_ctx, args: { a: number; b: number }) => args.a + args.b,
    hello: () => 'hi',
    later: async (_ctx, n: number) => n * 2,
    echo: (_ctx, args) => args,
  },
});

export async function records(): Promise<void> {
  const connection: Connection = { state: 'active', theirDid: 'did:example:1', labels: [], peer: { name: 'x', port: null } };
  // An interface type saves, with no index signature.
  await session.records.save('connection', 'c1', connection);
  const got = await session.records.get<Connection>('connection', 'c1');
  const _state: 'active' | 'done' | undefined = got?.value.state;
  const found = await session.records.find<Connection>('connection', { state: { $in: ['active', 'done'] } });
  const _dids: string[] = found.map((r) => r.value.theirDid);
  const page = await session.records.page<Connection>('connection', undefined, { limit: 10 });
  const _cursor: string | null = page.cursor;
  // @ts-expect-error a function does not survive JSON
  await session.records.save('c', 'x', { f: () => 1 });
  // @ts-expect-error a Date does not survive JSON either
  await session.records.save('c', 'x', { when: new Date() });
  // @ts-expect-error a bigint cannot be saved
  await session.records.save('c', 'x', 1n);
  // @ts-expect-error nor undefined
  await session.records.save('c', 'x', undefined);
  // @ts-expect-error a query condition takes strings
  await session.records.find('c', { state: { $gt: 5 } });
}

export async function tasks(): Promise<void> {
  const _sum: number = await session.run<typeof typed, 'add'>('add', { a: 1, b: 2 });
  // @ts-expect-error an argument is missing a field
  await session.run<typeof typed, 'add'>('add', { a: 1 });
  // @ts-expect-error args are required when the task types them
  await session.run<typeof typed, 'add'>('add');
  // @ts-expect-error the result is a number, not a string
  const _wrong: string = await session.run<typeof typed, 'add'>('add', { a: 1, b: 2 });
  // @ts-expect-error no such task
  await session.run<typeof typed, 'nope'>('nope');
  const _hi: string = await session.run<typeof typed, 'hello'>('hello');
  const _twice: number = await session.run<typeof typed, 'later'>('later', 2, { signal: AbortSignal.timeout(1000) });
  // @ts-expect-error later takes a number
  await session.run<typeof typed, 'later'>('later', 'two');
  const inbox = await session.run<typeof agentModule, 'inboxSize'>('inboxSize');
  const _stored: number = inbox.stored;
  const _untyped: number = await session.run<number>('anything', { any: 'args' });
}
