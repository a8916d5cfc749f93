// The built CLI with its fast path off (main's fastPath: false): every argv is read by yargs, so a
// test running a command line through this and through dist/bin/nocow.js checks both paths of
// src/main.ts as subprocesses. dist/main.js is tsc's per-module build, from the same sources.
import { main } from '../../dist/main.js';

process.exitCode = await main(process.argv.slice(2), undefined, { fastPath: false });
