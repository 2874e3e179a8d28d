/**
 * The documentation holds: every ```ts block of the README and of `docs/` is written out as a module
 * of its own (in a folder inside the repository, so `tenant-pool` resolves as it does for the
 * examples) and type-checked with the project's `strict` settings, and every relative link of
 * them leads to a file that exists and a heading it has. A block or a link that drifts fails here.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
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

/** The README and the pages of `docs/`, relative to the root. */
const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

test('every TypeScript block of the README and docs/ type-checks under strict, as a module of its own', () => {
  const blocks = pages.flatMap((page) => typescriptBlocks(readFileSync(join(root, page), 'utf8')).map((b) => ({ ...b, page })));
  assert.ok(blocks.length >= 7, `the README has its TypeScript blocks (${blocks.length})`);
  const dir = join(root, 'test', `.readme-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    const files = blocks.map((block) => {
      const name = `${block.page.replaceAll(/[/.]/g, '_')}-line-${block.line}.ts`;
      // `export {}` makes each block a module (top-level await, no name clashes between blocks).
      writeFileSync(join(dir, name), `${block.code}\nexport {};\n`);
      return name;
    });
    // A worker module a block imports by its path, as the README's next block defines it.
    writeFileSync(join(dir, 'agent-module.ts'), "import { defineModule } from 'tenant-pool/worker';\nexport default defineModule({ tasks: { inboxSize: () => 0 } });\n");
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../tsconfig.json', compilerOptions: { noEmit: true, rootDir: '../..', noUnusedLocals: false }, include: files }));
    const run = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8', timeout: 120_000 });
    // tsc names the file, and so the README line, of each error.
    assert.is(
      run.status,
      0,
      `the documentation's code does not compile:\n${run.stdout.replaceAll(/test\/\.readme-\d+\/(\w+)_md-line-(\d+)\.ts\((\d+)/g, (_, page: string, start: string, at: string) => `${page.replace('_', '/')}.md(${Number(start) + Number(at) - 1}`)}${run.stderr}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A heading's anchor, as GitHub makes it. */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replaceAll(/[^\p{L}\p{N} _-]/gu, '')
    .replaceAll(' ', '-');
}

/** The anchors of a Markdown page's headings (outside code blocks). */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  let inCode = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const heading = inCode ? null : /^#{1,6} (.+)$/.exec(line);
    if (heading) out.add(slug(heading[1]!));
  }
  return out;
}

test('every relative link of the README and docs/ leads to a file that exists and to a heading it has', () => {
  const broken: string[] = [];
  let links = 0;
  for (const page of pages) {
    const text = readFileSync(join(root, page), 'utf8').replaceAll(/```[\s\S]*?```/g, '');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      links++;
      const [path, anchor] = target!.split('#') as [string, string | undefined];
      const file = path === '' ? join(root, page) : join(root, dirname(page), path);
      if (!existsSync(file)) broken.push(`${page}: ${target!} (no file ${relative(root, file)})`);
      else if (anchor !== undefined && file.endsWith('.md') && !anchors(readFileSync(file, 'utf8')).has(anchor)) broken.push(`${page}: ${target!} (no heading #${anchor})`);
    }
  }
  assert.ok(links > 50, `${links} links checked`);
  assert.equal(broken, [], broken.join('\n'));
});

test.run();
