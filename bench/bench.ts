/**
 * tenant-pool benchmark: the pool side by side with the baselines it replaces and with what this
 * machine allows, all measured in one run (absolute times drift on a shared machine; ratios measured
 * together hold).
 *
 *   npm run bench                          every scenario
 *   npm run bench -- --scenario NAME       one scenario (repeatable)
 *   npm run bench -- --quick               every scenario at small sizes (a smoke test, under 90 s)
 *   npm run bench -- --json FILE           also write the results to FILE
 *   npm run bench -- --recommend           end with a suggested config for this machine
 *   npm run bench -- --scenario zipf-churn --live
 *                                          redraw a live panel of the pool once a second while it runs
 *
 * Always writes bench/results/latest.json. Each (scenario, system) pair runs in a process of its
 * own, so memory figures and leftovers of one never touch another.
 *
 * With a PostgreSQL server (TENANT_POOL_BENCH_POSTGRES_URL, else TENANT_POOL_TEST_POSTGRES_URL),
 * every scenario of the pool also runs with the pool on PostgreSQL: a `tenant-pool (postgres)` row
 * beside `tenant-pool (sqlite)`, and the server's own limits (a commit, a select by key) measured too.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { extraScenarios } from './extras.js';
import { startLiveView } from '../src/observability/live.js';
import { measureLimits, measurePostgresLimits, type Limits, type PostgresLimits } from './limits.js';
import { progressBar, round, table } from './measure.js';
import { recommend } from './recommend.js';
import { scenarios, type Figures, type Scenario } from './scenarios.js';
import { openCredoModel } from './systems/credo-model.js';
import { openNoAffinity } from './systems/no-affinity.js';
import { openTenantPool } from './systems/tenant-pool.js';
import { benchPostgresUrl, type System, type SystemName } from './systems/types.js';

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    recommend: { type: 'boolean', default: false },
    live: { type: 'boolean', default: false },
    child: { type: 'string' },
    system: { type: 'string' },
  },
});
const quick = args.quick === true;
const live = args.live === true;
const all: Scenario[] = [...scenarios, ...extraScenarios];

interface Target {
  name: string;
  ratio: number;
  met: boolean;
}

interface ScenarioResult {
  describe: string;
  tenantPool: Figures;
  /** The same pool on PostgreSQL, when the run had a server. */
  tenantPoolPostgres?: Figures;
  baselines: Partial<Record<'credo-model' | 'no-affinity', Figures>>;
  targets: Target[];
}

// ---- child: one scenario on one system ------------------------------------------------------------

async function runChild(name: string, systemName: SystemName): Promise<void> {
  const scenario = all.find((s) => s.name === name);
  if (scenario === undefined) throw new Error(`no scenario ${name}`);
  const options = scenario.options(quick);
  const dir = join(tmpdir(), `tp-bench-${name}-${systemName}-${randomBytes(4).toString('hex')}`);
  let system: System;
  let pool: Awaited<ReturnType<typeof openTenantPool>>['pool'] | undefined;
  if (systemName === 'tenant-pool' || systemName === 'tenant-pool-postgres') {
    const opened = await openTenantPool(dir, options, systemName === 'tenant-pool-postgres');
    system = opened;
    pool = opened.pool;
  } else if (systemName === 'credo-model') {
    system = await openCredoModel(dir, options);
  } else {
    system = await openNoAffinity(dir, options);
  }
  // The live panel goes to stderr, which the parent passes through to the terminal.
  const view = live && pool !== undefined ? startLiveView(pool, { title: `${name} × tenant-pool` }) : undefined;
  try {
    const figures = await scenario.run({ system, quick, store: systemName === 'tenant-pool-postgres' ? 'postgres' : 'sqlite', ...(pool === undefined ? {} : { pool }) });
    view?.refresh();
    process.stdout.write(`\nRESULT ${JSON.stringify(figures)}\n`);
  } finally {
    view?.stop();
    await system.close();
  }
}

async function child(name: string, system: SystemName): Promise<Figures> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const isLive = live && system === 'tenant-pool';
    const proc = spawn(process.execPath, [...process.execArgv, '--expose-gc', self, '--child', name, '--system', system, ...(quick ? ['--quick'] : []), ...(isLive ? ['--live'] : [])], {
      stdio: ['ignore', 'pipe', isLive ? 'inherit' : 'pipe'],
    });
    let out = '';
    let err = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    proc.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line !== undefined) resolve(JSON.parse(line.slice(7)) as Figures);
      else reject(new Error(`${name} on ${system} failed (exit ${String(code)}): ${err.trim().split('\n').slice(-5).join(' | ')}`));
    });
  });
}

// ---- targets ---------------------------------------------------------------------------------------

function targetsFor(name: string, r: ScenarioResult, limits: Limits): Target[] {
  return [...sqliteTargets(name, r, limits), ...postgresTargets(name, r)];
}

const at = (target: string, ratio: number, met: boolean): Target => ({ name: target, ratio: round(ratio, 3), met });

/** What the pool on PostgreSQL must reach, against the same pool on SQLite files in the same run. */
function postgresTargets(name: string, r: ScenarioResult): Target[] {
  const p = r.tenantPoolPostgres;
  if (p === undefined || Object.keys(p).length === 0) return [];
  const s = r.tenantPool;
  switch (name) {
    case 'warm-ops':
      return [at('postgres: opsPerSec >= 0.5 x the SQLite store', p['opsPerSec']! / s['opsPerSec']!, p['opsPerSec']! >= 0.5 * s['opsPerSec']!)];
    case 'cold-open-raw':
      return [at('postgres: a cold open of a raw tenant p50 <= 3 ms', p['openP50Ms']! / 3, p['openP50Ms']! <= 3)];
    case 'many-tenants':
      return [
        at(`postgres: open() over ${p['tenants']} tenants < 1 s`, p['openMs']! / 1000, p['openMs']! < 1000),
        at('postgres: main-thread heap over an empty pool <= 50 MB', p['heapOverEmptyMb']! / 50, p['heapOverEmptyMb']! <= 50),
      ];
    default:
      return [];
  }
}

function sqliteTargets(name: string, r: ScenarioResult, limits: Limits): Target[] {
  const t = r.tenantPool;
  if (Object.keys(t).length === 0) return [];
  switch (name) {
    case 'cold-storm':
      return [
        // The raw best measured in the same process just before the storm (see rawBestPerSec), else the run's limit.
        at('opensPerSec >= 0.85 x best raw Argon2 throughput', t['opensPerSec']! / (t['rawBestPerSec'] ?? limits.kdfBestPerSec), t['opensPerSec']! >= 0.85 * (t['rawBestPerSec'] ?? limits.kdfBestPerSec)),
        at('main-loop delay p99 <= 10 ms', t['mainLoopP99Ms']! / 10, t['mainLoopP99Ms']! <= 10),
      ];
    case 'warm-ops':
      return [
        at('opsPerSec >= 0.5 x pipelined bare echo', t['opsPerSec']! / limits.echoPipelinedOpsPerSec, t['opsPerSec']! >= 0.5 * limits.echoPipelinedOpsPerSec),
        // What the work itself allows here: the same get/sign mix straight on a wallet, times the cores.
        at('opsPerSec >= 0.75 x the machine bound (the op mix run bare on every core)', t['opsPerSec']! / t['machineBoundOpsPerSec']!, t['opsPerSec']! >= 0.75 * t['machineBoundOpsPerSec']!),
      ];
    case 'zipf-churn': {
      const credo = r.baselines['credo-model']?.['walletOpens'];
      const targets = [at('walletOpens <= 1.1 x LRU of the same size', t['walletOpens']! / t['lruWalletOpens']!, t['walletOpens']! <= 1.1 * t['lruWalletOpens']!)];
      if (credo !== undefined) targets.push(at('>= 5x fewer opens than credo-model', credo / t['walletOpens']!, credo >= 5 * t['walletOpens']!));
      return targets;
    }
    case 'cache':
      return [
        at('opens <= 1.3 x OPT on every trace (worst)', t['worstVsOpt']! / 1.3, t['worstVsOpt']! <= 1.3),
        at('opens <= 1.1 x the static optimum A0 on every independent trace (worst)', t['worstVsA0']! / 1.1, t['worstVsA0']! <= 1.1),
        at('a sweep adds <= 10% opens beyond what it adds to OPT (worst)', t['worstSweepExcessPct']! / 10, t['worstSweepExcessPct']! <= 10),
      ];
    case 'key-tier':
      return [
        at('key derivations <= 1.05 x distinct tenants with the tier', t['derivationsPerTenantOn']! / 1.05, t['derivationsPerTenantOn']! <= 1.05),
        at('reopen of an argon2i-mod tenant from the tier <= 3 ms p50', t['reopenArgon2iModOnP50Ms']! / 3, t['reopenArgon2iModOnP50Ms']! <= 3),
        at('sessions/s >= 10 x without the tier', t['speedup']! / 10, t['speedup']! >= 10),
      ];
    case 'overload':
      return [
        at('100% of acquires settle by deadline + 50 ms', t['settledByDeadlinePct']! / 100, t['settledByDeadlinePct'] === 100),
        at('goodput >= 0.9 x what capacity allows', t['goodputRatio']!, t['goodputRatio']! >= 0.9),
        at('0 leaked weight', t['leakedWeight']!, t['leakedWeight'] === 0),
      ];
    case 'soak': {
      const drift = t['rssTrendPct']! / 100;
      const otherErrors = Object.keys(t).filter((k) => k.startsWith('errors_') && k !== 'errors_ERR_WORKER_CRASHED');
      return [
        at('RSS flat: trend over the run <= 10% of its start', Math.abs(drift), Math.abs(drift) <= 0.1),
        at('0 leaked weight', t['leakedWeight']!, t['leakedWeight'] === 0),
        at('no error but ERR_WORKER_CRASHED (calls in flight on a killed worker)', otherErrors.length, otherErrors.length === 0),
      ];
    }
    case 'cluster':
      return [
        at('cold acquire p50 in cluster mode <= 1.3 x without', t['coldAcquireLeasedP50Ms']! / (1.3 * t['coldAcquireP50Ms']!), t['coldAcquireLeasedP50Ms']! <= 1.3 * t['coldAcquireP50Ms']!),
        at("one instance's cold sessions/s >= 0.75 x a pool without cluster mode", t['coldSessionsPerSec1']! / t['coldSessionsPerSecSolo']!, t['coldSessionsPerSec1']! >= 0.75 * t['coldSessionsPerSecSolo']!),
        at(`takeover after SIGKILL p50 <= lease TTL + 1 s (max ${t['takeoverMaxMs']} ms)`, t['takeoverP50Ms']! / (t['leaseTtlMs']! + 1000), t['takeoverP50Ms']! <= t['leaseTtlMs']! + 1000),
        at('lease overhead per cold acquire <= 2 ms', t['leaseOverheadColdMs']! / 2, t['leaseOverheadColdMs']! <= 2),
        at('lease overhead per write <= 0.5 ms', t['leaseOverheadWriteMs']! / 0.5, t['leaseOverheadWriteMs']! <= 0.5),
      ];
    case 'cluster-scale': {
      const most = Math.max(...Object.keys(t).filter((k) => k.endsWith(' leases/rows per renewal')).map((k) => Number(k.split(' ')[0])));
      const fewest = Math.min(...Object.keys(t).filter((k) => k.endsWith(' leases/rows per renewal')).map((k) => Number(k.split(' ')[0])));
      const rows = t[`${most} leases/rows per renewal`]!;
      const targets = [at(`rows written per renewal at ${most} leases = 1 (the member row)`, rows, rows === 1)];
      const slow = t[`${most} leases/server ms per renewal`];
      const fast = t[`${fewest} leases/server ms per renewal`];
      if (slow !== undefined && fast !== undefined) targets.push(at(`server time per renewal flat: at ${most} leases <= 2 x at ${fewest}`, slow / Math.max(fast, 0.001), slow <= 2 * Math.max(fast, 0.001)));
      return targets;
    }
    case 'scheduler':
      return [at('ns/op at depth 10,000 <= 2 x ns/op at depth 0', t['nsPerOpDepth10k']! / t['nsPerOpDepth0']!, t['nsPerOpDepth10k']! <= 2 * t['nsPerOpDepth0']!)];
    default:
      return [];
  }
}

// ---- parent ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  // --quick is the smoke test of the side-by-side scenarios; the tenant-pool-only extras run in full runs or by name.
  const chosen = args.scenario === undefined ? (quick ? scenarios : all.filter((s) => s.onlyWhenNamed !== true)) : all.filter((s) => args.scenario!.includes(s.name));
  if (chosen.length === 0) {
    console.error(`No such scenario. Known: ${all.map((s) => s.name).join(', ')}`);
    process.exit(2);
  }
  console.log(`tenant-pool bench${quick ? ' (quick)' : ''} — Node ${process.version}\n`);
  // With --live the pool's panel has the terminal; the progress line stays out of its way.
  const bar = live ? { update: () => {}, done: () => {} } : progressBar(1 + chosen.reduce((n, s) => n + systemsOf(s).length, 0));
  let step = 0;
  bar.update(step, 'machine limits');
  const limits = await measureLimits(quick);
  step++;
  console.log('## limits: what this machine allows');
  console.log(
    table({
      machine: {
        cores: limits.cores,
        'argon2i-mod ms (1 core)': limits.kdfArgon2iModMs,
        'argon2i-mod/s best': `${limits.kdfBestPerSec} at ${limits.kdfBestConcurrency} at once`,
        'echo RTT µs': limits.echoRttUs,
        'echo ops/s (64 deep)': limits.echoPipelinedOpsPerSec,
      },
    }),
  );
  console.log(`argon2i-mod derivations/s by concurrency: ${Object.entries(limits.kdfPerSecByConcurrency).map(([k, v]) => `${k}: ${v}`).join(', ')}\n`);
  let postgresLimits: PostgresLimits | undefined;
  if (benchPostgresUrl !== undefined) {
    postgresLimits = await measurePostgresLimits(benchPostgresUrl, quick);
    console.log(table({ postgres: { ...postgresLimits } }));
  }

  const results: Record<string, ScenarioResult> = {};
  const failures: string[] = [];
  for (const scenario of chosen) {
    const result: ScenarioResult = { describe: scenario.describe, tenantPool: {}, baselines: {}, targets: [] };
    for (const system of systemsOf(scenario)) {
      bar.update(step, `${scenario.name} × ${system}`);
      try {
        const figures = await child(scenario.name, system);
        if (system === 'tenant-pool') result.tenantPool = figures;
        else if (system === 'tenant-pool-postgres') result.tenantPoolPostgres = figures;
        else result.baselines[system] = figures;
      } catch (error) {
        failures.push((error as Error).message);
      }
      step++;
    }
    bar.done();
    result.targets = targetsFor(scenario.name, result, limits);
    results[scenario.name] = result;
    console.log(`## ${scenario.name}: ${scenario.describe}`);
    const rows: Record<string, Figures> = result.tenantPoolPostgres === undefined ? { 'tenant-pool': result.tenantPool } : { 'tenant-pool (sqlite)': result.tenantPool, 'tenant-pool (postgres)': result.tenantPoolPostgres };
    // Figures named `row/column` (a scenario's per-case detail) print as a table of their own.
    const detail: Record<string, Figures> = {};
    const main: Record<string, Figures> = {};
    for (const [system, figures] of Object.entries({ ...rows, ...result.baselines })) {
      main[system] = {};
      for (const [key, value] of Object.entries(figures)) {
        const [row, column] = key.split('/');
        if (column === undefined) main[system][key] = value;
        else (detail[row!] ??= {})[column] = value;
      }
    }
    console.log(table(main));
    if (Object.keys(detail).length > 0) console.log(table(detail));
    for (const target of result.targets) console.log(`  ${target.met ? 'met    ' : 'NOT MET'}  ${target.name} (ratio ${target.ratio})`);
    if (result.targets.length > 0) console.log('');
  }
  bar.done();
  for (const failure of failures) console.log(`FAILED: ${failure}`);

  const report = { date: new Date().toISOString(), node: process.version, quick, limits, ...(postgresLimits === undefined ? {} : { postgresLimits }), scenarios: results };
  const text = `${JSON.stringify(report, null, 2)}\n`;
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(join(import.meta.dirname, 'results', 'latest.json'), text);
  if (args.json !== undefined) writeFileSync(args.json, text);
  if (args.recommend === true) console.log(recommend(limits, results, totalmem()));
  if (failures.length > 0) process.exitCode = 1;
}

/** The systems a scenario runs on in this run: its own, and the pool on PostgreSQL beside the pool on SQLite when a server is given. */
function systemsOf(scenario: Scenario): SystemName[] {
  const systems = [...scenario.systems];
  const at = systems.indexOf('tenant-pool');
  if (benchPostgresUrl !== undefined && at >= 0 && scenario.onPostgres !== false) systems.splice(at + 1, 0, 'tenant-pool-postgres');
  return systems;
}

if (args.child !== undefined) await runChild(args.child, args.system as SystemName);
else await main();
