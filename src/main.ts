// The CLI: parse argv, run one command, return its exit status. Only the bin exits the process.
import { UsageError } from './errors.js';
import { PlanError } from './plan.js';
import { processIo, type Io } from './io.js';
import * as generate from './commands/generate.js';
import * as statusCommand from './commands/status.js';
import * as apply from './commands/apply.js';
import * as migrate from './commands/migrate.js';

/** Exit statuses: 0 done, 1 failed, 2 bad usage or declaration. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let status = 0;
  const debug = argv.includes('--debug');
  const fail = (error: unknown): number => {
    // Bad usage or declaration: exit 2. YError: yargs' own checks that reach here as errors,
    // e.g. an option missing its value, or a coerce function's UsageError, which yargs wraps.
    // A PlanError (an artifact named that the declaration cannot produce) is a usage error too.
    // DeclarationError by name: its module is loaded only with a declaration.
    const name = (error as { name?: string } | undefined)?.name;
    const usage = error instanceof UsageError || error instanceof PlanError || name === 'DeclarationError' || name === 'YError';
    const problems = (error as { problems?: string[] } | undefined)?.problems ?? [(error as Error | undefined)?.message ?? String(error)];
    for (const problem of problems) io.err(`nocow: error: ${problem}\n`);
    if (debug && error instanceof Error && error.stack) io.err(`${error.stack}\n`);
    return usage ? 2 : 1;
  };
  if (argv.length === 1 && argv[0] === '--version') {
    const { packageVersion } = await import('./templates.js');
    io.out(`${await packageVersion()}\n`);
    return 0;
  }
  // yargs is most of the start-up time (about 55 ms of 110): --version does without it.
  const { default: yargs } = await import('yargs');
  const parser = yargs()
    .scriptName('nocow')
    .usage('$0 <command> [options]\n\nKeep Btrfs directories NOCOW (+C) and subvolumes through every install path.')
    .command(generate.command, generate.describe, generate.builder, async (args) => {
      status = await generate.run(args, io);
    })
    .command(statusCommand.command, statusCommand.describe, statusCommand.builder, async (args) => {
      status = await statusCommand.run(args, io);
    })
    .command(apply.command, apply.describe, apply.builder, async (args) => {
      status = await apply.run(args, io);
    })
    .command(migrate.command, migrate.describe, migrate.builder, async (args) => {
      status = await migrate.run(args, io);
    })
    .option('debug', { type: 'boolean', describe: 'Show stack traces of errors', global: true })
    .demandCommand(1, 'Name a command: generate, status, apply, migrate')
    .strict()
    .help()
    .alias('h', 'help')
    .version(false)
    .option('version', { type: 'boolean', describe: 'Show the version' })
    .wrap(Math.min(100, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new UsageError(message);
    });
  try {
    let shown = '';
    await parser.parseAsync(argv, {}, (_err, _args, output) => {
      shown = output;
    });
    if (shown) io.out(`${shown}\n`);
    return status;
  } catch (error) {
    return fail(error);
  }
}
