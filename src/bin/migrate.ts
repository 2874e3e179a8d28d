#!/usr/bin/env node
/**
 * tenant-pool-migrate: the name `tenant-pool migrate` had before the operator's command line; the
 * same command, flags and exit codes (`tenant-pool migrate --help`).
 */
import { main } from '../cli/main.js';

process.exitCode = await main(['migrate', ...process.argv.slice(2)]);
setTimeout(() => process.exit(), 2000).unref();
