/**
 * Runs the `*.test.ts` files under test/ (all, or those whose names contain an argument) with uvu in
 * this one process; the workers inherit tsx through execArgv. Ends with uvu's totals and one plain
 * `N passed, N failed` line.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { run } from 'uvu/run';

const filters = process.argv.slice(2);
const dir = import.meta.dirname;
const suites = readdirSync(dir)
  .filter((f) => f.endsWith('.test.ts') && (filters.length === 0 || filters.some((o) => f.includes(o))))
  .sort()
  .map((name) => ({ name, file: join(dir, name) }));

// uvu prints its totals but does not return them: read them off its output.
let output = '';
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
  output += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  if (output.length > 1_000_000) output = output.slice(-100_000);
  return write(chunk, ...rest);
});

const started = performance.now();
await run(suites, { bail: false });
process.stdout.write = write;
// eslint-disable-next-line no-control-regex
const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const skipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
// uvu counts skipped tests apart from its total.
const failed = total - passed;
console.log(`\n${suites.length} files in ${((performance.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || (total === 0 && skipped === 0) || process.exitCode ? 1 : 0);
