/**
 * The package as a user gets it: `npm pack` (its `prepack` builds `dist/`) on this checkout, the
 * tarball installed from the file into a fresh project with its dependencies from the registry, and
 * there, under plain `node` with no loader: every subpath export imported, a pool opened, a
 * session run through a worker module, metrics scraped, and every bin the package declares run
 * with `--help`. Slow (it builds the native SQLite module as a user's install does): one test.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rootKey, tempDir } from './helpers.js';

const root = join(import.meta.dirname, '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

interface PackageJson {
  name: string;
  version: string;
  bin: Record<string, string>;
  exports: Record<string, unknown>;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  allowScripts?: Record<string, boolean>;
}

test('npm pack, then install the tarball into a fresh project: every subpath export imports under plain node, a pool runs a session through a worker module, and every bin answers --help', () => {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as PackageJson;
  const out = tempDir('tp-pack-');
  const app = tempDir('tp-app-');
  try {
    // prepack builds dist/ first: a clean clone packs a package with code in it.
    execFileSync(npm, ['pack', '--pack-destination', out, '--silent'], { cwd: root, stdio: 'pipe', timeout: 300_000 });
    const [tarball] = readdirSync(out).filter((f) => f.endsWith('.tgz'));
    assert.ok(tarball !== undefined, 'npm pack wrote a tarball');
    const listing = execFileSync('tar', ['-tzf', join(out, tarball)], { encoding: 'utf8' }).split('\n');
    assert.ok(listing.includes('package/dist/src/index.js'), 'the tarball holds the built code');
    assert.ok(listing.includes('package/dist/workers/wallet-worker.js'), 'and the worker');
    assert.not.ok(listing.some((f) => f.startsWith('package/src/') || f.startsWith('package/test/')), 'and no sources or tests');

    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'tp-user-app', private: true, type: 'module', allowScripts: manifest.allowScripts ?? {} }, null, 2),
    );
    // The optional peers too, so that tenant-pool/metrics and tenant-pool/router can be imported.
    const peers = Object.keys(manifest.peerDependencies).map((name) => `${name}@${manifest.peerDependencies[name]!}`);
    const install = spawnSync(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', join(out, tarball), ...peers], { cwd: app, encoding: 'utf8', timeout: 600_000 });
    assert.is(install.status, 0, `npm install of the tarball failed: ${install.stderr.slice(-3000)}`);

    writeFileSync(
      join(app, 'greeter.js'),
      `import { defineModule } from 'tenant-pool/worker';
export default defineModule({ tasks: { hello: (ctx, name) => 'hello ' + name + ' from ' + ctx.tenantId } });
`,
    );
    const subpaths = Object.keys(manifest.exports).filter((k) => !k.endsWith('.json'));
    writeFileSync(
      join(app, 'app.js'),
      `import { readFileSync } from 'node:fs';
import { TenantPool, TenantPoolError } from 'tenant-pool';
import { collectMetrics } from 'tenant-pool/metrics';
const subpaths = ${JSON.stringify(subpaths)};
const exported = {};
for (const sub of subpaths) exported[sub] = Object.keys(await import(sub === '.' ? 'tenant-pool' : 'tenant-pool/' + sub.slice(2))).sort();
const schema = (await import('tenant-pool/tenant-pool.schema.json', { with: { type: 'json' } })).default;
const pkg = (await import('tenant-pool/package.json', { with: { type: 'json' } })).default;
const pool = await TenantPool.open({ dataDir: './data', rootKey: process.env.KEY, workers: 1, modules: ['./greeter.js'] });
const metrics = collectMetrics(pool);
const { tenantId } = await pool.tenants.create({ tenantId: 'packed' });
const result = await pool.withSession(tenantId, async (s) => {
  await s.records.save('c', 'x', { a: 1 }, { t: 'v' });
  return { record: await s.records.get('c', 'x'), hello: await s.run('hello', 'node') };
});
let code;
try { await pool.acquire('nobody'); } catch (e) { code = e instanceof TenantPoolError ? e.code : 'not a TenantPoolError'; }
const scrape = (await metrics.registry.metrics()).split('\\n').find((l) => l.startsWith('tenant_pool_sessions_acquired_total '));
metrics.close();
await pool.close();
const map = JSON.parse(readFileSync(new URL('./node_modules/tenant-pool/dist/src/pool.js.map', import.meta.url), 'utf8'));
console.log(JSON.stringify({ exported, schemaTitle: typeof schema.$schema, version: pkg.version, ...result, code, scrape, execArgv: process.execArgv, mapHasSources: map.sourcesContent?.length === map.sources.length }));
`,
    );
    const run = spawnSync(process.execPath, ['app.js'], { cwd: app, encoding: 'utf8', env: { ...process.env, KEY: rootKey(), NODE_OPTIONS: '' }, timeout: 120_000 });
    assert.is(run.status, 0, `app exited with ${String(run.status)}: ${run.stderr}`);
    const result = JSON.parse(run.stdout.trim()) as {
      exported: Record<string, string[]>;
      schemaTitle: string;
      version: string;
      record: unknown;
      hello: string;
      code: string;
      scrape: string;
      execArgv: string[];
      mapHasSources: boolean;
    };
    assert.equal(result.execArgv, [], 'plain node, no loader');
    assert.equal(Object.keys(result.exported).sort(), subpaths.sort(), 'every subpath export imports');
    for (const [sub, names] of Object.entries(result.exported)) assert.ok(names.length > 0, `${sub} exports something`);
    assert.ok(result.exported['.']!.includes('TenantPool') && result.exported['./worker']!.includes('defineModule'));
    assert.ok(result.exported['./router']!.includes('createRouter') && result.exported['./live']!.includes('renderLiveView'));
    assert.is(result.schemaTitle, 'string', 'the JSON schema ships');
    assert.is(result.version, manifest.version);
    assert.equal(result.record, { category: 'c', id: 'x', value: { a: 1 }, tags: { t: 'v' } });
    assert.is(result.hello, 'hello node from packed', 'a worker module of the user, run in the installed package\'s worker');
    assert.is(result.code, 'ERR_TENANT_NOT_FOUND');
    assert.is(result.scrape, 'tenant_pool_sessions_acquired_total 1');
    assert.ok(result.mapHasSources, 'the source maps carry their sources');
    // Every bin, as npm linked it.
    for (const name of Object.keys(manifest.bin)) {
      const help = spawnSync(join(app, 'node_modules', '.bin', name), ['--help'], { cwd: app, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 });
      assert.is(help.status, 0, `${name} --help: ${help.stderr}`);
      assert.match(help.stdout, /usage/i, `${name} --help prints its usage`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(app, { recursive: true, force: true });
  }
});

test.run();
