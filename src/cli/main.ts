#!/usr/bin/env node
/**
 * `tenant-pool`: the operator's command line. `tenant-pool COMMAND --help` for each command.
 * Exit codes: 0 done; 1 it found a problem (damage, a held store, a missing or wrong key, a
 * conflict, data of another format); 2 a usage error (an unknown command or flag, a bad value).
 * Errors are one line on stderr — never a stack trace, never a secret.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TenantPoolError } from '../../common/errors.js';
import { RELEASE } from '../../common/formats.js';
import { parse, UsageError } from './args.js';
import { COMMANDS, interrupt, type Command, type Output } from './commands.js';

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `tenant-pool ${RELEASE}: the operator's command line of a tenant-pool store`,
    '',
    'usage: tenant-pool COMMAND [flags]   (tenant-pool COMMAND --help for its flags)',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'The store: --data-dir DIR (SQLite files), --postgres URL (or TENANT_POOL_POSTGRES_URL) with --schema S, or --config FILE.',
    'The root key: TENANT_POOL_ROOT_KEY, or --root-key-file F. Secrets come from files or a prompt, never from the command line.',
    '--json prints one JSON document. Exit 0 done, 1 a problem found, 2 a usage error.',
    '',
  ].join('\n');
}

function commandHelp(command: Command): string {
  return `usage: ${command.usage}\n\n${command.summary}.\n${command.help}\n`;
}

function output(json: boolean): Output {
  return {
    json,
    result(value, text) {
      process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${[text].flat().join('\n')}\n`);
    },
  };
}

/** One line on stderr, no stack: a TenantPoolError's message names what is wrong and never a secret. */
function fail(prefix: string, message: string): void {
  process.stderr.write(`${prefix}: ${message.split('\n')[0]}\n`);
}

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    fail('tenant-pool', 'expected a command (tenant-pool --help lists them)');
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(overview());
    return 0;
  }
  if (name === '--version') {
    process.stdout.write(`${RELEASE}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    fail('tenant-pool', `unknown command ${JSON.stringify(name.slice(0, 40))} (tenant-pool --help lists them)`);
    return 2;
  }
  const prefix = `tenant-pool ${command.name}`;
  try {
    const { flags, positionals } = parse(rest, command.flags);
    if (flags['help'] === true) {
      process.stdout.write(commandHelp(command));
      return 0;
    }
    return await command.run(flags, positionals, output(flags['json'] === true));
  } catch (error) {
    if (error instanceof UsageError) {
      fail(prefix, `${error.message} (tenant-pool ${command.name} --help)`);
      return 2;
    }
    if (error instanceof TenantPoolError) {
      fail(prefix, `${error.code}: ${error.message}`);
      return error.code === 'ERR_INVALID_CONFIG' ? 2 : 1;
    }
    fail(prefix, `unexpected failure: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

/** Whether this module is the process's entry (the bin), not imported by a test. */
function isEntry(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) {
  process.on('SIGINT', () => {
    if (interrupt.requested) process.exit(130);
    interrupt.requested = true;
    process.stderr.write('tenant-pool: stopping after the work under way (Ctrl-C again to quit at once; the store stays consistent either way)\n');
  });
  process.exitCode = await main(process.argv.slice(2));
  // Everything is closed by now; a handle a driver left behind must not keep an operator waiting.
  setTimeout(() => process.exit(), 2000).unref();
}
