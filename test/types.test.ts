import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = join(import.meta.dirname, '..');

test('types: records take interface types and refuse what JSON would change; run() is typed from the module (tsc over a fixture with @ts-expect-error lines)', () => {
  const run = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'test', 'types')], { encoding: 'utf8', timeout: 120_000 });
  assert.is(run.status, 0, `tsc found: ${run.stdout}${run.stderr}`);
});

test.run();
