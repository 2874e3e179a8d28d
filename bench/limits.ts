/** What this machine allows, measured in the same run as the scenarios. */
import { availableParallelism } from 'node:os';
import { hashRaw } from '@node-rs/argon2';
import { ARGON2_PARAMS } from '../common/kdf.js';
import { echoWorker, median, percentile, round } from './measure.js';

export interface Limits {
  cores: number;
  kdfArgon2iModMs: number;
  /** argon2i-mod derivations per second at each concurrency tried. */
  kdfPerSecByConcurrency: Record<string, number>;
  kdfBestPerSec: number;
  kdfBestConcurrency: number;
  echoRttUs: number;
  echoPipelinedOpsPerSec: number;
}

const salt = Buffer.alloc(16, 7);
const derive = async (): Promise<Buffer> => hashRaw('limits', { ...ARGON2_PARAMS['argon2i-mod'], salt });

export async function measureLimits(quick: boolean): Promise<Limits> {
  const cores = availableParallelism();
  await derive(); // warm-up
  const single: number[] = [];
  for (let i = 0; i < (quick ? 2 : 4); i++) {
    const t = performance.now();
    await derive();
    single.push(performance.now() - t);
  }
  const perSec: Record<string, number> = {};
  let best = 0;
  let bestConcurrency = 1;
  for (let concurrency = 1; concurrency <= cores + (quick ? 1 : 2); concurrency++) {
    const rounds = quick ? 1 : 3;
    // An untimed round first: each libuv thread's first 128 MiB allocation is slower.
    await Promise.all(Array.from({ length: concurrency }, derive));
    const t = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async () => {
      for (let r = 0; r < rounds; r++) await derive();
    }));
    const rate = (concurrency * rounds) / ((performance.now() - t) / 1000);
    perSec[String(concurrency)] = round(rate);
    if (rate > best) {
      best = rate;
      bestConcurrency = concurrency;
    }
  }
  const echo = await echoWorker();
  try {
    const n = quick ? 2_000 : 20_000;
    for (let i = 0; i < 1000; i++) await echo.roundTrip(i);
    const rtts: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await echo.roundTrip(i);
      rtts.push(performance.now() - t);
    }
    const ops = quick ? 50_000 : 300_000;
    const pipelined = await echo.pipelined(ops, 64);
    return {
      cores,
      kdfArgon2iModMs: round(median(single)),
      kdfPerSecByConcurrency: perSec,
      kdfBestPerSec: round(best),
      kdfBestConcurrency: bestConcurrency,
      echoRttUs: round(percentile(rtts, 50) * 1000),
      echoPipelinedOpsPerSec: Math.round(pipelined),
    };
  } finally {
    await echo.close();
  }
}

/** What the PostgreSQL server allows here: one commit (a row inserted, synced as the server is set) and one select by key, each a round trip. */
export interface PostgresLimits {
  commitP50Us: number;
  selectByKeyP50Us: number;
  /** The server's fsync setting: a throwaway test server may run without it. */
  fsync: string;
}

export async function measurePostgresLimits(url: string, quick: boolean): Promise<PostgresLimits> {
  const pg = (await import('pg')).default;
  const client = new pg.Client(url);
  await client.connect();
  const table = `tp_bench_limits_${process.pid}`;
  try {
    await client.query(`CREATE TABLE ${table} (id BIGSERIAL PRIMARY KEY, v BYTEA NOT NULL)`);
    const value = Buffer.alloc(200, 1);
    const rounds = quick ? 200 : 2000;
    const time = async (fn: () => Promise<unknown>): Promise<number> => {
      for (let i = 0; i < rounds / 10; i++) await fn();
      const samples: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const t = performance.now();
        await fn();
        samples.push(performance.now() - t);
      }
      return round(percentile(samples, 50) * 1000);
    };
    const commitP50Us = await time(async () => client.query(`INSERT INTO ${table} (v) VALUES ($1)`, [value]));
    const selectByKeyP50Us = await time(async () => client.query({ name: 'limits-select', text: `SELECT v FROM ${table} WHERE id = $1`, values: [7] }));
    const fsync = (await client.query<{ fsync: string }>('SHOW fsync')).rows[0]!.fsync;
    return { commitP50Us, selectByKeyP50Us, fsync };
  } finally {
    await client.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await client.end();
  }
}
