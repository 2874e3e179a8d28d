/**
 * What the command line draws and asks on a terminal: a progress bar on stderr (counts and rate;
 * nothing when stderr is not a TTY, so a pipe gets only the result), and a prompt for a secret
 * that does not echo it.
 */
import { emitKeypressEvents } from 'node:readline';

export interface Progress {
  /** `done` of `total` (total unknown: null). */
  update(done: number, total: number | null): void;
  /** Clears the bar. */
  end(): void;
}

/** A progress bar on stderr when it is a terminal; otherwise one that draws nothing. */
export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY !== true) return { update: () => {}, end: () => {} };
  const started = performance.now();
  let last = 0;
  let drawn = false;
  return {
    update(done, total) {
      const now = performance.now();
      if (now - last < 100 && done !== total) return;
      last = now;
      const rate = done / Math.max((now - started) / 1000, 0.001);
      const width = 30;
      const filled = total === null || total === 0 ? 0 : Math.round((done / total) * width);
      const bar = total === null ? '' : `[${'='.repeat(filled)}${' '.repeat(width - filled)}] `;
      stream.write(`\r${label} ${bar}${done}${total === null ? '' : `/${total}`} ${rate.toFixed(rate < 10 ? 1 : 0)}/s\x1b[K`);
      drawn = true;
    },
    end() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}

/** Asks for a secret on the terminal without echoing it; undefined when stdin is not a terminal. */
export async function promptSecret(question: string): Promise<string | undefined> {
  const input = process.stdin;
  if (input.isTTY !== true || process.stderr.isTTY !== true) return undefined;
  process.stderr.write(question);
  emitKeypressEvents(input);
  input.setRawMode(true);
  input.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const done = (result: string | undefined, error?: Error): void => {
      input.off('keypress', onKey);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      if (error !== undefined) reject(error);
      else resolve(result);
    };
    const onKey = (text: string | undefined, key: { name?: string; ctrl?: boolean } | undefined): void => {
      if (key?.ctrl === true && key.name === 'c') done(undefined, Object.assign(new Error('interrupted'), { code: 'INTERRUPTED' }));
      else if (key?.name === 'return' || key?.name === 'enter') done(value);
      else if (key?.name === 'backspace') value = value.slice(0, -1);
      else if (text !== undefined && text.length > 0 && key?.ctrl !== true) value += text;
    };
    input.on('keypress', onKey);
  });
}
