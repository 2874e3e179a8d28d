import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rootKey, tempDir } from './helpers.js';

const root = join(import.meta.dirname, '..');

test('the built package runs a session, a worker module, metrics and the live panel under plain node, with no tsx', () => {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'pipe' });
  const app = tempDir('tp-app-');
  try {
    mkdirSync(join(app, 'node_modules'));
    symlinkSync(root, join(app, 'node_modules', 'tenant-pool'), 'dir');
    writeFileSync(join(app, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    writeFileSync(
      join(app, 'greeter.js'),
      `import { defineModule } from 'tenant-pool/worker';
export default defineModule({ tasks: { hello: (ctx, name) => 'hello ' + name + ' from ' + ctx.tenantId } });
`,
    );
    writeFileSync(
      join(app, 'app.js'),
      `import { TenantPool, TenantPoolError } from 'tenant-pool';
import { collectMetrics } from 'tenant-pool/metrics';
import { renderLiveView } from 'tenant-pool/live';
const pool = await TenantPool.open({ dataDir: './data', rootKey: process.env.KEY, workers: 1, modules: ['./greeter.js'] });
const metrics = collectMetrics(pool);
const { tenantId } = await pool.tenants.create({ tenantId: 'built' });
const result = await pool.withSession(tenantId, async (s) => {
  await s.records.save('c', 'x', { a: 1 }, { t: 'v' });
  return { record: await s.records.get('c', 'x'), hello: await s.run('hello', 'node') };
});
let code;
try { await pool.acquire('nobody'); } catch (e) { code = e instanceof TenantPoolError ? e.code : 'not a TenantPoolError'; }
const scrape = (await metrics.registry.metrics()).split('\\n').find((l) => l.startsWith('tenant_pool_sessions_acquired_total '));
const panel = renderLiveView({ title: 'built', uptimeS: 1, stats: pool.stats(), acquiresPerSec: 0, opensPerSec: 0, timeoutsPerSec: 0, hitRatio: null, waitP50Ms: null, waitP99Ms: null }).split('\\n')[0];
metrics.close();
await pool.close();
console.log(JSON.stringify({ ...result, code, scrape, panel, execArgv: process.execArgv }));
`,
    );
    const run = spawnSync(process.execPath, ['app.js'], { cwd: app, encoding: 'utf8', env: { ...process.env, KEY: rootKey(), NODE_OPTIONS: '' }, timeout: 60_000 });
    assert.is(run.status, 0, `app exited with ${String(run.status)}: ${run.stderr}`);
    const out = JSON.parse(run.stdout.trim()) as { record: unknown; hello: string; code: string; scrape: string; panel: string; execArgv: string[] };
    assert.equal(out.execArgv, [], 'plain node, no loader');
    assert.equal(out.record, { category: 'c', id: 'x', value: { a: 1 }, tags: { t: 'v' } });
    assert.is(out.hello, 'hello node from built');
    assert.is(out.code, 'ERR_TENANT_NOT_FOUND');
    assert.is(out.scrape, 'tenant_pool_sessions_acquired_total 1', 'tenant-pool/metrics loads prom-client and counts');
    assert.is(out.panel, 'built · up 1 s', 'tenant-pool/live');
    // The package ships dist/ only: every source map carries its sources, so stack traces map to readable code.
    for (const file of ['src/pool.js.map', 'workers/wallet-worker.js.map']) {
      const map = JSON.parse(readFileSync(join(root, 'dist', file), 'utf8')) as { sources: string[]; sourcesContent?: string[] };
      assert.is(map.sourcesContent?.length, map.sources.length, `${file} has its sources inline`);
      assert.ok(map.sourcesContent!.every((text) => text.length > 0));
    }
  } finally {
    rmSync(app, { recursive: true, force: true });
  }
});

test.run();
