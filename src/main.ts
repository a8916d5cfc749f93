// The CLI: parse argv, run one command, return its exit status. Only the bin exits the process.
// buildParser() is the one definition of the command line: main() parses with it, the completion
// scripts ask it for their answers, and src/scripts/manpage.ts writes nocow(1) from it.
import type { Arguments, Argv, Options } from 'yargs';
import { UsageError, exitStatusOf } from './errors.js';
import { printable, processIo, type Io } from './io.js';
import { epilogueText, type CommandHelp } from './cli-options.js';
import { fastArgs } from './cli-fast.js';
import { checkOperands, recordDefinition, restoreOperands, scanArgv, yargsArgv, type Definition, type OptionSpec, type Scanned } from './cli-argv.js';
import generate from './commands/generate.js';
import statusCommand from './commands/status.js';
import apply from './commands/apply.js';
import migrate from './commands/migrate.js';
import revert from './commands/revert.js';
import convert from './commands/convert.js';
import defrag from './commands/defrag.js';
import lintCommand from './commands/lint.js';
import completion from './commands/completion.js';
import type { CommandModule } from './cli-command.js';

export type { CommandModule };

/** Every command, in the order --help, the man page and the error for an unknown command list them. */
export const COMMANDS: readonly CommandModule[] = [generate, statusCommand, apply, migrate, revert, convert, defrag, lintCommand, completion];

/** The commands that act on a declaration (their builder defines --profile): those the error for an unknown or missing command names. */
export const mainCommands = (): string[] => COMMANDS.filter((c) => definitionOf(c).options.has('profile')).map(commandName);

export const commandName = (c: Pick<CommandModule, 'command'>): string => c.command.split(' ')[0]!;

export const SUMMARY = 'Keep Btrfs directories NOCOW (+C) and subvolumes through every install path.';

/** The top level's --help epilogue, and the man page's description, examples and exit statuses. */
export const HELP: CommandHelp = {
  notes: [
    'nocow-kit generates, from one declaration of directories (built-in --profile names, or --config files), the artifacts that make them ' +
      'NOCOW subvolumes wherever the files land: an RPM %posttrans section, kickstart %post sections, tmpfiles.d snippets and a standalone script; ' +
      'and on this machine it inspects (status), applies (apply), rewrites existing files as NOCOW (migrate) and back as copy-on-write with checksums (revert), makes filled plain directories ' +
      'subvolumes by a verified copy (convert) and defragments copy-on-write files where +C is not used (defrag); lint finds nodatacow mount ' +
      'options that do nothing or cost checksums in fstab, kickstart, .mount, repart.d and mkosi files; generate prints the ' +
      'artifacts and completion the shell completion script.',
    "Run nocow COMMAND --help for a command's options, examples and exit statuses.",
    'The command line is read as GNU getopt reads it: options and operands in any order, -- ends the options (what follows is an operand, ' +
      'even a name beginning with -), and a flag (--dry-run, --json…) takes no value: --dry-run=yes is an error, and there is no --no-FLAG form. ' +
      'A mistake is one error line and exit status 2, nothing done.',
  ],
  examples: [
    ['nocow generate posttrans -p mariadb', 'A %posttrans section for /var/lib/mysql'],
    ['nocow status', 'Is the libvirt images directory a +C subvolume here?'],
    ['nocow apply --dry-run', 'What apply would change'],
  ],
  exitStatus: [
    [0, 'done (see each command)'],
    [1, 'the command failed, or found what it reports (a deviation, a change to make)'],
    [2, 'bad arguments or declaration; an unknown command, or none'],
  ],
};

const oneLine = (message: string): string =>
  message
    .split('\n')
    .map((part) => part.trim())
    .filter(Boolean)
    .join(' ');

/** The options every command has. */
export const GLOBAL_OPTIONS: ReadonlyMap<string, OptionSpec> = new Map([['debug', { type: 'boolean', describe: 'Show stack traces of errors', global: true }]]);

/** The options of the top level, besides the global ones: what the man page lists with them. */
export const TOP_OPTIONS: ReadonlyMap<string, OptionSpec> = new Map([
  ['help', { alias: 'h', type: 'boolean', describe: 'Show help' }],
  ['version', { alias: 'V', type: 'boolean', describe: 'Print the version and exit' }],
]);

/** The commands whose arguments are made without yargs (src/cli-fast.ts); the others always go through yargs. */
export const FAST_PATH: ReadonlySet<string> = new Set(['generate', 'status', 'apply']);

const VERSION_FLAGS = ['--version', '-V'];
const HELP_FLAGS = ['--help', '-h'];
const COMPLETION_KEY = '--get-yargs-completions';

export interface ParserOptions {
  io: Io;
  /** Receives the exit status of the command that ran. */
  setStatus?: (status: number) => void;
  /** The width --help is wrapped to; default: the terminal's, else $COLUMNS, else 80 (at most 100). */
  columns?: number;
  /** Called with each command's yargs instance once its builder has defined it (for the man page). */
  onCommand?: (name: string, yargs: Argv) => void;
  /** Runs a command with the arguments yargs parsed (default: its run); tests compare them with the fast path's. */
  runCommand?: (command: CommandModule, args: Arguments, io: Io) => Promise<number>;
  /** The command line as src/cli-argv.ts read it, when the argv to parse is the one yargsArgv() made of it. */
  scanned?: Scanned;
}

function terminalColumns(): number {
  const env = Number(process.env.COLUMNS);
  return process.stdout.columns || (Number.isInteger(env) && env > 0 ? env : 80);
}

/** The yargs parser of the whole command line: commands, options, help. */
export async function buildParser(opts: ParserOptions): Promise<Argv> {
  const { io, setStatus = () => {}, onCommand, runCommand = (c, args, io) => c.run(args, io), scanned } = opts;
  // yargs is most of the start-up time (about 55 ms of 110): --version does without it.
  const { default: yargs } = await import('yargs');
  let parser: Argv = yargs().scriptName('nocow').usage(`$0 <command> [options]\n\n${SUMMARY}`);
  for (const c of COMMANDS) {
    parser = parser.command(
      c.command,
      c.describe,
      (y: Argv) => {
        const built = c.builder(y).epilogue(epilogueText(c.help));
        onCommand?.(commandName(c), built);
        return built;
      },
      async (args) => {
        setStatus(await runCommand(c, args, io));
      },
    );
  }
  for (const [key, spec] of GLOBAL_OPTIONS) parser = parser.option(key, spec as Options);
  // Before yargs checks choices and counts operands: the operands themselves, for their stand-ins.
  if (scanned) parser = parser.middleware((args) => restoreOperands(args, scanned.operands), true);
  return parser
    .demandCommand(1, `no command given; commands: ${mainCommands().join(', ')}`)
    .strict()
    .help('help', TOP_OPTIONS.get('help')!.describe!)
    .alias('h', 'help')
    .version(false)
    .option('version', { ...(TOP_OPTIONS.get('version') as Options), global: false })
    .epilogue(epilogueText(HELP))
    .wrap(Math.min(100, opts.columns ?? terminalColumns()))
    .exitProcess(false)
    .fail((message, error) => {
      // yargs' own checks (an option missing its value, a coerce function's UsageError, which yargs
      // wraps in its YError) are usage errors; yargs lays some messages out on several lines
      // ("Invalid values:\n  Argument: …"): one line each. A command's own error passes as it is.
      if (error === undefined || error === null) throw new UsageError(oneLine(message));
      throw error.name === 'YError' ? new UsageError(oneLine(error.message)) : error;
    });
}

/**
 * yargs' completion answers as the command line reads them: after "--" is typed, yargs offers each
 * one-letter alias as "--p" too (zsh: "--p:description"), which is no option: it is -p.
 */
const offered = (answers: string): string =>
  answers
    .split('\n')
    .filter((answer) => !/^--[^-:](:|$)/.test(answer))
    .join('\n');

export interface MainOptions {
  /** Read a plain argv without yargs where the command allows it (default); false: always yargs. */
  fastPath?: boolean;
}

const definitions = new Map<CommandModule, Definition>();

/** What COMMAND's builder defines, as src/cli-argv.ts reads it. */
export function definitionOf(command: CommandModule): Definition {
  let definition = definitions.get(command);
  if (!definition) definitions.set(command, (definition = recordDefinition(command.command, command.builder)));
  return definition;
}

/** What every command's command line may hold besides its own options: the global ones, and --help. */
const READ_GLOBALS: ReadonlyMap<string, OptionSpec> = new Map([...GLOBAL_OPTIONS, ['help', { alias: 'h', type: 'boolean' }]]);

/**
 * COMMAND's command line, read by src/cli-argv.ts as both ways of running it read it; a UsageError
 * for an unknown option, a flag given a value, an option without its value, a wrong operand.
 */
export function readCommandLine(command: CommandModule, argv: readonly string[]): Scanned {
  const name = commandName(command);
  const definition = definitionOf(command);
  const scanned = scanArgv(name, definition, READ_GLOBALS, argv);
  const word = scanned.operands[0];
  if (word !== name) throw new UsageError(`unknown command ${JSON.stringify(word ?? '')}; commands: ${mainCommands().join(', ')}`);
  if (!scanned.options.has('help')) checkOperands(name, definition.positional, scanned.operands.slice(1));
  return scanned;
}

/** The arguments yargs would give COMMAND's handler for what was read, without yargs; undefined where yargs must make them. */
export function fastPathArgs(command: CommandModule, scanned: Scanned): Arguments | undefined {
  return fastArgs(commandName(command), definitionOf(command), GLOBAL_OPTIONS, scanned);
}

/** Exit statuses: 0 done, 1 failed, 2 bad usage or declaration. */
export async function main(argv: string[], io: Io = processIo, options: MainOptions = {}): Promise<number> {
  let status = 0;
  const debug = argv.includes('--debug');
  const fail = (error: unknown): number => {
    const problems = (error as { problems?: string[] } | undefined)?.problems ?? [(error as Error | undefined)?.message ?? String(error)];
    for (const problem of problems) io.err(`nocow: error: ${printable(problem)}\n`);
    if (debug && error instanceof Error && error.stack) io.err(`${error.stack}\n`);
    return exitStatusOf(error);
  };
  const given = argv.filter((a) => a !== '--debug');
  if (given.length === 1 && VERSION_FLAGS.includes(given[0]!)) {
    const { packageVersion } = await import('./templates.js');
    io.out(`${await packageVersion()}\n`);
    return 0;
  }
  let scanned: Scanned | undefined;
  // A completion request is a command line being typed: yargs answers it as it stands.
  if (!argv.includes(COMPLETION_KEY)) {
    // The command is the first word that is not an option (the top level takes no option values).
    const word = argv.find((a) => !a.startsWith('-'));
    const names = COMMANDS.map(commandName);
    if (word !== undefined && !names.includes(word)) {
      return fail(new UsageError(`unknown command ${JSON.stringify(word)}; commands: ${mainCommands().join(', ')}`));
    }
    if (word === undefined && !argv.some((a) => HELP_FLAGS.includes(a))) {
      const code = fail(new UsageError(`no command given; commands: ${mainCommands().join(', ')}`));
      io.err('nocow: hint: nocow --help says what each command does; nocow COMMAND --help gives its options and examples\n');
      return code;
    }
    const command = COMMANDS.find((c) => commandName(c) === word);
    if (command) {
      try {
        scanned = readCommandLine(command, argv);
      } catch (error) {
        return fail(error);
      }
      // --help: yargs prints it, from the command line as given.
      if (scanned.options.has('help')) scanned = undefined;
      const args = scanned && options.fastPath !== false && FAST_PATH.has(word!) ? fastPathArgs(command, scanned) : undefined;
      if (args) {
        try {
          return await command.run(args, io);
        } catch (error) {
          return fail(error);
        }
      }
    }
  }
  const parser = await buildParser({ io, setStatus: (s) => (status = s), ...(scanned ? { scanned } : {}) });
  try {
    let shown = '';
    await parser.parseAsync(scanned ? yargsArgv(scanned) : argv, {}, (_err, _args, output) => {
      shown = output;
    });
    if (shown) io.out(`${argv.includes(COMPLETION_KEY) ? offered(shown) : shown}\n`);
    return status;
  } catch (error) {
    return fail(error);
  }
}
