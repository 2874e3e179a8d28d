/**
 * The import graph's rules, checked by `npm run lint`: no import cycle among the package's modules
 * (type-only imports included: a cycle of types is a cycle of concepts), and each layer imports
 * only what it may (see docs/architecture.md). Prints each violation and exits 1; 0 when clean.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');

/** Which folders a folder's modules may import (relative imports only; packages are not checked here). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  // The main thread: its own code and the contract both threads share.
  src: ['src', 'common'],
  // The worker threads: their own code and the contract.
  workers: ['workers', 'common'],
  // The contract: nothing of either side.
  common: ['common'],
};

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2]!;
    out.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  return out;
}

const layers = Object.keys(MAY_IMPORT).filter((layer) => {
  try {
    return statSync(join(root, layer)).isDirectory();
  } catch {
    return false;
  }
});
const files = layers.flatMap((layer) => filesUnder(join(root, layer)));
const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => t.startsWith(root))]));
const problems: string[] = [];
const layerOf = (file: string): string => relative(root, file).split('/')[0]!;

for (const [file, targets] of graph) {
  for (const target of targets) {
    const from = layerOf(file);
    const to = layerOf(target);
    if (!MAY_IMPORT[from]!.includes(to)) problems.push(`${relative(root, file)} imports ${relative(root, target)}: ${from}/ may import only ${MAY_IMPORT[from]!.join(', ')}`);
  }
}

// Cycles: Tarjan's strongly connected components.
let index = 0;
const indices = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const visit = (v: string): void => {
  indices.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue;
    if (!indices.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) {
      low.set(v, Math.min(low.get(v)!, indices.get(w)!));
    }
  }
  if (low.get(v) === indices.get(v)) {
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) problems.push(`import cycle: ${component.map((f) => relative(root, f)).sort().join(' ↔ ')}`);
  }
};
for (const file of graph.keys()) if (!indices.has(file)) visit(file);

for (const p of problems) process.stderr.write(`${p}\n`);
process.stdout.write(`${files.length} modules, ${[...graph.values()].reduce((n, t) => n + t.length, 0)} imports: ${problems.length === 0 ? 'no cycle, every layer in bounds' : `${problems.length} problem(s)`}\n`);
process.exit(problems.length === 0 ? 0 : 1);
