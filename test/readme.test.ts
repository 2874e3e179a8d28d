/**
 * The README's code compiles: every ```ts block is written out as a module of its own (in a folder
 * inside the repository, so `tenant-pool` resolves as it does for the examples) and type-checked
 * with the project's `strict` settings. A block that drifts from the API fails here.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = join(import.meta.dirname, '..');

/** The ```ts blocks of a Markdown text, with the line each starts on. */
export function typescriptBlocks(markdown: string): Array<{ line: number; code: string }> {
  const blocks: Array<{ line: number; code: string }> = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end] !== '```') end++;
    blocks.push({ line: start + 1, code: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

test('every TypeScript block of the README type-checks under strict, as a module of its own', () => {
  const blocks = typescriptBlocks(readFileSync(join(root, 'README.md'), 'utf8'));
  assert.ok(blocks.length >= 7, `the README has its TypeScript blocks (${blocks.length})`);
  const dir = join(root, 'test', `.readme-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    const files = blocks.map((block) => {
      const name = `readme-line-${block.line}.ts`;
      // `export {}` makes each block a module (top-level await, no name clashes between blocks).
      writeFileSync(join(dir, name), `${block.code}\nexport {};\n`);
      return name;
    });
    // A worker module a block imports by its path, as the README's next block defines it.
    writeFileSync(join(dir, 'agent-module.ts'), "import { defineModule } from 'tenant-pool/worker';\nexport default defineModule({ tasks: { inboxSize: () => 0 } });\n");
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../tsconfig.json', compilerOptions: { noEmit: true, rootDir: '../..', noUnusedLocals: false }, include: files }));
    const run = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8', timeout: 120_000 });
    // tsc names the file, and so the README line, of each error.
    assert.is(run.status, 0, `the README's code does not compile:\n${run.stdout.replaceAll(/test\/\.readme-\d+\/readme-line-(\d+)\.ts\((\d+)/g, (_, start: string, at: string) => `README.md(${Number(start) + Number(at) - 1}`)}${run.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
