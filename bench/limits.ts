/** What this machine allows, measured in the same run as the scenarios. */
import { availableParallelism } from 'node:os';
import { hashRaw } from '@node-rs/argon2';
import { ARGON2_PARAMS } from '../workers/kdf.js';
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
