// The shape of a command (one per file in src/commands/), declared once: a command is defined by
// defineCommand(), which types its arguments from its own builder, so no command writes its
// arguments' type a second time (nor casts yargs' to it).
import type { ArgumentsCamelCase, Argv } from 'yargs';
import type { Io } from './io.js';
import type { CommandHelp } from './cli-options.js';

/**
 * A command with arguments A, as its builder defines them: its run gets each under its key and the
 * key's camelCase form (`dry-run` and `dryRun`), as yargs and the fast path (src/cli-fast.ts) give them.
 */
export interface Command<A> {
  /** yargs' command string: the name, then at most one positional (`status [paths..]`). */
  command: string;
  describe: string;
  help: CommandHelp;
  builder(yargs: Argv): Argv<A>;
  run(args: ArgumentsCamelCase<A>, io: Io): Promise<number>;
}

/** Any command, whatever its arguments: what main.ts lists, the parser and the man page read. */
export type CommandModule = Command<unknown>;

/** COMMAND, its arguments' type inferred from its builder. */
export const defineCommand = <A>(command: Command<A>): Command<A> => command;

/** The arguments of the command BUILDER defines, as its run gets them. */
export type ArgsOf<B> = B extends (yargs: Argv) => Argv<infer A> ? ArgumentsCamelCase<A> : never;
