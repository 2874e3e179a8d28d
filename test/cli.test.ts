/**
 * The operator's command line, run as an operator runs it (a child process) on real stores: every
 * command's help, its exit codes (0 done, 1 a problem found, 2 a usage error), one line on stderr
 * with no stack and no secret, `--json` documents, and the commands' effects.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TenantPool } from '../src/pool.js';
import { SCHEMA_FORMAT, STORE_FORMAT } from '../common/formats.js';
import { tempDir, walletPathOf } from './helpers.js';
import { dropSchema, postgresUrl, restoreFixture, testSchema, testWithPostgres } from './postgres.js';

const ROOT_KEY = '1f'.repeat(32);
const PASSPHRASE = 'fixture passphrase 1';
const main = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string | undefined> = {}): Run {
  const run = spawnSync(process.execPath, [...process.execArgv, main, ...args], { encoding: 'utf8', env: { ...process.env, TENANT_POOL_ROOT_KEY: undefined, TENANT_POOL_POSTGRES_URL: undefined, ...env }, timeout: 120_000 });
  // Never a stack trace, never more than one line of error.
  assert.not.match(run.stderr, /^\s+at /m, `no stack trace: ${run.stderr}`);
  if (run.status !== 0) assert.ok(run.stderr.trim().split('\n').length <= 2, `one clear line on stderr: ${run.stderr}`);
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

function json<T>(run: Run): T {
  assert.is(run.code, 0, run.stderr);
  return JSON.parse(run.stdout) as T;
}

/** A copy of the format-1 fixture folder, its root key in a file, and a passphrases file. */
function fixture(): { dataDir: string; keyFile: string; passphrases: string; dir: string } {
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  cpSync(new URL('./fixtures/formats/sqlite-1', import.meta.url), dataDir, { recursive: true });
  chmodSync(dataDir, 0o700);
  writeFileSync(join(dir, 'root.key'), `${ROOT_KEY}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'passphrases.json'), JSON.stringify({ secret: PASSPHRASE, strong: PASSPHRASE }), { mode: 0o600 });
  return { dataDir, keyFile: join(dir, 'root.key'), passphrases: join(dir, 'passphrases.json'), dir };
}

test('every command has --help (exit 0); no command, an unknown one, an unknown flag or a bad value is a usage error (exit 2, one line)', () => {
  const overview = cli(['--help']);
  assert.is(overview.code, 0);
  const names = [...overview.stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!);
  assert.equal(names, ['info', 'tenants', 'verify', 'export', 'import', 'rekey', 'delete', 'migrate', 'upgrade', 'rotate-root-key']);
  for (const name of names) {
    const help = cli([name, '--help']);
    assert.is(help.code, 0, name);
    assert.match(help.stdout, `usage: tenant-pool ${name}`);
  }
  assert.is(cli([]).code, 2);
  assert.is(cli(['frobnicate']).code, 2);
  const dir = tempDir();
  for (const args of [
    ['info', '--data-dir', dir, '--frob'],
    ['verify', '--data-dir', dir, '--concurrency', 'abc'],
    ['migrate', '--from', 'a.json', '--to', 'b.json', '--concurrency', 'abc'],
    ['info', '--data-dir', dir, '--postgres', 'postgres://x@h/db'],
    ['tenants', 'show', '../etc', '--data-dir', dir],
    ['delete', 'alice', '--data-dir', dir],
    ['import', '--data-dir', dir],
    ['info'],
  ]) {
    const run = cli(args);
    assert.is(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, /^tenant-pool /);
  }
});

test('info, upgrade and info again on a format-1 folder: the format before and after, the tenants, the holder; info writes nothing', () => {
  const { dataDir, keyFile } = fixture();
  const before = json<{ format: number; tenants: number; upgradeNeeded: boolean; holder: unknown }>(cli(['info', '--data-dir', dataDir, '--root-key-file', keyFile, '--json']));
  assert.equal([before.format, before.tenants, before.upgradeNeeded, before.holder], [1, 3, true, null]);
  const text = cli(['info', '--data-dir', dataDir, '--root-key-file', keyFile]);
  assert.match(text.stdout, 'run tenant-pool upgrade');
  const upgraded = json<{ from: number; to: number; upgraded: boolean }>(cli(['upgrade', '--data-dir', dataDir, '--root-key-file', keyFile, '--json']));
  assert.equal([upgraded.from, upgraded.to, upgraded.upgraded], [1, STORE_FORMAT, true]);
  const again = cli(['upgrade', '--data-dir', dataDir, '--root-key-file', keyFile]);
  assert.match(again.stdout, 'already');
  assert.is(json<{ format: number }>(cli(['info', '--data-dir', dataDir, '--root-key-file', keyFile, '--json'])).format, STORE_FORMAT);
});

test('the problems an operator meets are exit 1 with one line naming them: a missing root key, a wrong one, an older format, a folder a running pool holds (its pid)', async () => {
  const { dataDir, keyFile, dir } = fixture();
  const missing = cli(['tenants', 'list', '--data-dir', dataDir]);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, 'ERR_ROOT_KEY_MISSING');
  writeFileSync(join(dir, 'wrong.key'), '2a'.repeat(32));
  const wrong = cli(['tenants', 'list', '--data-dir', dataDir, '--root-key-file', join(dir, 'wrong.key')]);
  assert.is(wrong.code, 1);
  assert.match(wrong.stderr, 'ERR_WALLET_KEY_INVALID');
  assert.not.match(wrong.stderr, '2a2a2a');
  const old = cli(['tenants', 'list', '--data-dir', dataDir, '--root-key-file', keyFile]);
  assert.is(old.code, 1);
  assert.match(old.stderr, 'ERR_UPGRADE_REQUIRED');
  assert.match(old.stderr, 'tenant-pool upgrade');
  await using pool = await TenantPool.open({ dataDir, rootKey: ROOT_KEY, workers: 1 });
  const held = cli(['verify', '--data-dir', dataDir, '--root-key-file', keyFile]);
  assert.is(held.code, 1);
  assert.match(held.stderr, `pid ${process.pid}`);
  const info = json<{ holder: { pid: number } }>(cli(['info', '--data-dir', dataDir, '--root-key-file', keyFile, '--json']));
  assert.is(info.holder.pid, process.pid, 'info names the holder and still reads the folder');
  await pool.close();
});

test('tenants list and show, verify (ok, skipped without a passphrase, a damaged wallet named), export and import, rekey and delete', () => {
  const { dataDir, keyFile, passphrases, dir } = fixture();
  const store = ['--data-dir', dataDir, '--root-key-file', keyFile];
  assert.is(cli(['upgrade', ...store]).code, 0);
  const list = json<Array<{ tenantId: string; managed: boolean }>>(cli(['tenants', 'list', ...store, '--json']));
  assert.equal(list.map((t) => t.tenantId), ['managed', 'secret', 'strong']);
  const show = json<{ tenantId: string; kdf: string; kdfParams: { memoryKiB: number } }>(cli(['tenants', 'show', 'secret', ...store, '--json']));
  assert.equal([show.tenantId, show.kdf, show.kdfParams.memoryKiB], ['secret', 'argon2i-int', 32_768]);
  assert.is(cli(['tenants', 'show', 'nobody', ...store]).code, 1);

  const all = json<{ ok: number; damaged: unknown[]; skipped: string[]; records: number }>(cli(['verify', ...store, '--passphrases-file', passphrases, '--json']));
  assert.equal([all.ok, all.damaged, all.skipped, all.records], [3, [], [], 5]);
  const skipped = cli(['verify', ...store, '--json']);
  assert.is(skipped.code, 1, 'skipped tenants are not verified');
  assert.equal((JSON.parse(skipped.stdout) as { skipped: string[] }).skipped, ['secret', 'strong']);
  // Damage one wallet file in its middle: verify names that tenant, and only it.
  const path = walletPathOf(dataDir, 'strong');
  const bytes = readFileSync(path);
  for (let i = 8192; i < 8192 + 64; i++) bytes[i] = bytes[i]! ^ 0xff;
  writeFileSync(path, bytes);
  const damaged = cli(['verify', ...store, '--passphrases-file', passphrases]);
  assert.is(damaged.code, 1);
  assert.match(damaged.stdout, /^damaged strong: ERR_WALLET_CORRUPT/m);
  assert.not.match(damaged.stdout, /damaged (managed|secret)/);

  writeFileSync(join(dir, 'export.key'), '3d'.repeat(32));
  writeFileSync(join(dir, 'pass'), `${PASSPHRASE}\n`);
  const file = join(dir, 'secret.tpx');
  const exported = json<{ records: number; digest: string }>(cli(['export', 'secret', '--file', file, ...store, '--export-key-file', join(dir, 'export.key'), '--passphrase-file', join(dir, 'pass'), '--json']));
  assert.is(exported.records, 1);
  const imported = json<{ tenantId: string; records: number }>(cli(['import', file, '--tenant-id', 'copy', ...store, '--export-key-file', join(dir, 'export.key'), '--json']));
  assert.equal([imported.tenantId, imported.records], ['copy', 1]);
  assert.is(json<{ managed: boolean }>(cli(['tenants', 'show', 'copy', ...store, '--json'])).managed, true);

  assert.is(cli(['rekey', 'managed', ...store]).code, 0);
  writeFileSync(join(dir, 'new-pass'), 'a new passphrase');
  assert.is(cli(['rekey', 'secret', ...store, '--passphrase-file', join(dir, 'pass'), '--new-passphrase-file', join(dir, 'new-pass'), '--kdf', 'argon2id']).code, 0);
  assert.is(json<{ kdf: string }>(cli(['tenants', 'show', 'secret', ...store, '--json'])).kdf, 'argon2id');
  assert.is(cli(['delete', 'copy', ...store]).code, 2, 'no --yes');
  assert.is(cli(['delete', 'copy', ...store, '--yes']).code, 0);
  assert.is(cli(['tenants', 'show', 'copy', ...store]).code, 1);
});

test('rotate-root-key: the folder opens with the new key only afterwards; the new key comes from a file, never argv', () => {
  const { dataDir, keyFile, dir } = fixture();
  const store = ['--data-dir', dataDir, '--root-key-file', keyFile];
  assert.is(cli(['upgrade', ...store]).code, 0);
  assert.is(cli(['rotate-root-key', ...store]).code, 2, 'no new key given');
  writeFileSync(join(dir, 'new.key'), '5e'.repeat(32));
  const rotated = cli(['rotate-root-key', ...store, '--new-root-key-file', join(dir, 'new.key')]);
  assert.is(rotated.code, 0, rotated.stderr);
  assert.not.match(rotated.stdout + rotated.stderr, '5e5e5e');
  assert.is(cli(['tenants', 'list', ...store]).code, 1, 'the old key no longer opens it');
  const list = json<Array<{ tenantId: string }>>(cli(['tenants', 'list', '--data-dir', dataDir, '--root-key-file', join(dir, 'new.key'), '--json']));
  assert.equal(list.map((t) => t.tenantId), ['managed', 'secret', 'strong']);
});

test('a bad passphrases file is named with its line and column, and nothing of its content is printed', () => {
  const { dataDir, keyFile, dir } = fixture();
  const file = join(dir, 'bad.json');
  writeFileSync(file, '{\n  "secret": "hunter2-very-secret",\n  oops\n}');
  const run = cli(['verify', '--data-dir', dataDir, '--root-key-file', keyFile, '--passphrases-file', file]);
  assert.is(run.code, 2);
  assert.match(run.stderr, 'line 3');
  assert.not.match(run.stderr + run.stdout, 'hunter2');
});

testWithPostgres('on PostgreSQL: info and upgrade of a schema of format 1 (0.1.0), by --postgres and --schema or by TENANT_POOL_POSTGRES_URL; tenants list after', async () => {
  const schema = testSchema();
  await restoreFixture('postgres-0.1.0.sql', schema);
  const dir = tempDir();
  writeFileSync(join(dir, 'root.key'), '0f'.repeat(32));
  try {
    const env = { TENANT_POOL_POSTGRES_URL: postgresUrl! };
    const before = json<{ format: number; tenants: number; upgradeNeeded: boolean }>(cli(['info', '--schema', schema, '--json'], env));
    assert.equal([before.format, before.tenants, before.upgradeNeeded], [1, 2, true]);
    assert.is(cli(['tenants', 'list', '--schema', schema, '--root-key-file', join(dir, 'root.key')], env).code, 1, 'an older format is refused');
    const upgraded = json<{ from: number; to: number }>(cli(['upgrade', '--postgres', postgresUrl!, '--schema', schema, '--root-key-file', join(dir, 'root.key'), '--json']));
    assert.equal([upgraded.from, upgraded.to], [1, SCHEMA_FORMAT]);
    const list = json<Array<{ tenantId: string }>>(cli(['tenants', 'list', '--schema', schema, '--root-key-file', join(dir, 'root.key'), '--json'], env));
    assert.equal(list.map((t) => t.tenantId), ['managed', 'secret']);
    assert.is(json<{ format: number }>(cli(['info', '--schema', schema, '--json'], env)).format, SCHEMA_FORMAT);
  } finally {
    await dropSchema(schema);
  }
});

test.run();
