/**
 * Type test: compiled by `tsc -p test/types` (from `types.test.ts`). Each `@ts-expect-error` line must
 * fail to compile, and everything else must compile: a regression either way fails the test.
 */
import type { TenantSession } from '../../src/index.js';
import type agentModule from '../../examples/agent-module.js';
import { defineModule } from '../../common/module-api.js';

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

// ---- errors that narrow by code, pool.cluster typed by the options, internals out of reach ----
/* eslint-disable @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-call -- the lines under @ts-expect-error are type errors on purpose */
import type { ClusterOptions, ErrorDetails, ExportOptions, ImportOptions, LeaseOwner, PoolCluster, RekeyOptions } from '../../src/index.js';
import { TenantPool, TenantPoolError } from '../../src/index.js';

export function narrowing(e: unknown): string | number | null {
  if (!(e instanceof TenantPoolError)) return null;
  if (e.code === 'ERR_TENANT_ELSEWHERE') {
    const owner: LeaseOwner | null = e.owner;
    return owner?.address ?? null;
  }
  if (e.code === 'ERR_ACQUIRE_TIMEOUT') {
    const waited: number = e.waitMs;
    const stage: 'admission' | 'open' = e.stage;
    return stage === 'open' ? waited : e.queued + e.weightInUse;
  }
  if (e.code === 'ERR_DATA_DIR_LOCKED') return e.holder?.pid ?? e.instances?.length ?? null;
  if (e.code === 'ERR_WORKER_CRASHED') return e.outcome ?? null;
  if (e.code === 'ERR_QUEUE_FULL') {
    // @ts-expect-error only ERR_TENANT_ELSEWHERE carries an owner
    return e.owner;
  }
  // @ts-expect-error a field of one code is not on the union before the code is checked
  return e.waitMs;
}

export const made: TenantPoolError<'ERR_TENANT_ELSEWHERE'> = new TenantPoolError('ERR_TENANT_ELSEWHERE', 'elsewhere', { owner: null });

export async function clusterTyped(options: { postgres: { connectionString: string }; cluster: ClusterOptions }): Promise<void> {
  const clustered = await TenantPool.open(options);
  const cluster: PoolCluster = clustered.cluster;
  await cluster.ownerOf('t');
  const single = await TenantPool.open({ dataDir: './data' });
  // @ts-expect-error without the cluster option, pool.cluster may be undefined
  await single.cluster.ownerOf('t');
  await single.cluster?.ownerOf('t');
  // @ts-expect-error the pool's internals are not public
  single.workerCrashed(0, new Error('x'));
  // @ts-expect-error the pool's internals are not public
  single.leaseLost('t', 'expired');
  const rekey: RekeyOptions = { rotateDataKey: true };
  const exported: ExportOptions = { file: 'x', exportKey: 'k' };
  const imported: ImportOptions = { exportKey: 'k' };
  const details: ErrorDetails = { tenantId: 't' };
  void [rekey, exported, imported, details];
}
