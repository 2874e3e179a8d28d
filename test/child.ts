/**
 * Child processes for the tests that need a second process or a SIGKILL: a fixture under
 * test/fixtures, run with this process's Node and loader flags, its stdout read line by line.
 */
import { spawn, type ChildProcessWithoutNullStreams, type SpawnOptionsWithoutStdio } from 'node:child_process';
import { join } from 'node:path';

export interface Child {
  readonly process: ChildProcessWithoutNullStreams;
  /** Every complete stdout line so far. */
  readonly lines: string[];
  /** Resolves with the lines once `predicate` holds for them (checked on each new line); rejects if the child exits first. */
  waitFor(predicate: (lines: string[]) => boolean): Promise<string[]>;
  /** Settles when the child has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  kill(signal?: NodeJS.Signals): void;
}

export function startChild(fixture: string, args: string[], options: SpawnOptionsWithoutStdio = {}): Child {
  const child = spawn(process.execPath, [...process.execArgv, join(import.meta.dirname, 'fixtures', fixture), ...args], { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buffered = '';
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    buffered += d.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    lines.push(...parts);
    for (const w of [...waiters]) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  return {
    process: child,
    lines,
    exited,
    kill: (signal = 'SIGKILL') => void child.kill(signal),
    waitFor: async (predicate) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (!predicate(lines)) return;
          waiters.splice(waiters.indexOf(check), 1);
          resolve(lines);
        };
        waiters.push(check);
        check();
        void exited.then(({ code, signal }) => {
          if (waiters.includes(check)) reject(new Error(`${fixture} exited (${String(code ?? signal)}) before the awaited output: ${stderr.slice(-2000)}`));
        });
      }),
  };
}
