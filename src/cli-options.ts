// Options several commands share, defined once.
import type { Argv } from 'yargs';
import { UsageError, exactPath, showArg } from './errors.js';
import { BUILTIN_PROFILES, DEFAULT_PROFILE } from './declaration/profiles.js';

// Not `array: true`: an array option would swallow the paths that follow it.
const repeatable = (value: string | string[]): string[] => (Array.isArray(value) ? value : [value]);

/** Each --profile value split at commas, each name trimmed; an empty name is a mistake, never "the default". */
export function profileNames(value: string | string[]): string[] {
  return repeatable(value).flatMap((given) => {
    const names = given.split(',').map((name) => name.trim());
    if (names.some((name) => name === '')) {
      const what = given.trim() === '' ? 'no profile name' : 'an empty profile name between commas';
      throw new UsageError(`--profile ${showArg(given)}: ${what}; expected one of: ${Object.keys(BUILTIN_PROFILES).join(', ')} (comma-separated, or --profile repeated)`);
    }
    return names;
  });
}

/** --config values: a file name each; `-` (stdin) at most once, since stdin can be read only once. */
export function configFiles(value: string | string[]): string[] {
  const files = repeatable(value);
  for (const file of files) if (file === '') throw new UsageError(`--config "": no file name; expected a YAML or JSON file, or - for stdin`);
  if (files.filter((file) => file === '-').length > 1) throw new UsageError('--config - given twice: stdin can be read once');
  return files;
}

/** --profile and --config: which declaration a command works from. */
export function declarationOptions<T>(yargs: Argv<T>) {
  return yargs
    .option('profile', {
      alias: 'p',
      describe: `Built-in profile (repeatable, or comma-separated): ${Object.keys(BUILTIN_PROFILES).join(', ')}`,
      type: 'string',
      requiresArg: true,
      coerce: profileNames,
      default: [] as string[],
      defaultDescription: `${DEFAULT_PROFILE}, when no --config is given either`,
    })
    .option('config', {
      alias: 'c',
      describe: 'Declaration file, YAML or JSON; - reads it from stdin (repeatable; combines with --profile)',
      type: 'string',
      requiresArg: true,
      coerce: configFiles,
      default: [] as string[],
      defaultDescription: 'none',
    });
}

/** The last --root wins, as for most tools; the shell artifacts take one root too. */
export const single = (value: string | string[]): string => (Array.isArray(value) ? value[value.length - 1]! : value);

/**
 * -o DIR: one directory. Given twice is refused rather than "last wins": files written
 * to a directory the user did not mean are worse than a --root looked at twice.
 */
export function outputDir(value: string | string[]): string {
  if (Array.isArray(value)) {
    if (value.length > 1) throw new UsageError(`-o given twice (${value.map(showArg).join(', ')}): name one output directory`);
    value = value[0]!;
  }
  if (value === '') throw new UsageError('-o "": no directory name; for the current directory write -o .');
  return exactPath('-o', value);
}

export function rootOption<T>(yargs: Argv<T>, describe: string) {
  return yargs.option('root', { describe, type: 'string', default: '/', requiresArg: true, coerce: (value: string | string[]) => exactPath('--root', single(value)) });
}

/**
 * What the commands on a declaration's targets or on PATH operands share: the `paths` operands
 * (none: WHEN_NONE, e.g. every declared target), --profile, --config and --root (ROOT: its description).
 */
export function pathsOptions(yargs: Argv, paths: { describe: string; whenNone: string }, root: string) {
  const withPaths = yargs.positional('paths', { describe: paths.describe, type: 'string', array: true, default: [] as string[], defaultDescription: paths.whenNone });
  return rootOption(declarationOptions(withPaths), root);
}

/** --dry-run (-n): change nothing, say what would be done. */
export function dryRunOption<T>(yargs: Argv<T>, describe: string) {
  return yargs.option('dry-run', { alias: 'n', type: 'boolean', default: false, describe });
}

/** --force-nocow: +C even on a redundant data profile, where it gives up the checksums self-healing needs. */
export function forceNocowOption<T>(yargs: Argv<T>, describe: string) {
  return yargs.option('force-nocow', { type: 'boolean', default: false, describe });
}

/** --json: one JSON document on stdout instead of the lines for people. */
export function jsonOption<T>(yargs: Argv<T>, describe: string) {
  return yargs.option('json', { describe, type: 'boolean', default: false });
}

/** The word the man page and the error for a missing value show for an option's value. */
const VALUE_NAMES: Readonly<Record<string, string>> = {
  profile: 'P',
  config: 'FILE',
  root: 'DIR',
  home: 'DIR',
  output: 'DIR',
  'kickstart-log': 'FILE',
  'if-redundant': 'PATH',
  'min-extents': 'N',
};

/** The word for the value of the option KEY: its VALUE_NAMES entry, else the key in capitals. */
export const valueName = (key: string): string => VALUE_NAMES[key] ?? key.toUpperCase();

/** What a command's --help and the man page say after its options: one definition for both. */
export interface CommandHelp {
  /** Paragraphs, each one line of text (wrapped to the terminal). */
  notes: string[];
  /** [command line, what it does]; each command line fits one 80-column line. */
  examples: [string, string][];
  /** [exit status, what it means], every status the command can exit with. */
  exitStatus: [number, string][];
}

/**
 * The epilogue of a command's --help: notes, examples, exit statuses. Examples are laid out
 * by this text rather than by yargs' two-column .example(), which at 80 columns breaks a long
 * command line in the middle: here each command has a line of its own, its description below it.
 */
export function epilogueText(help: CommandHelp): string {
  const parts = [...help.notes];
  if (help.examples.length > 0) parts.push(['Examples:', ...help.examples.flatMap(([cmd, what]) => [`  ${cmd}`, `      ${what}`])].join('\n'));
  parts.push(['Exit status:', ...help.exitStatus.map(([code, what]) => `  ${code}  \t${what}`)].join('\n'));
  return parts.join('\n\n');
}
