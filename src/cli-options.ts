// Options several commands share, defined once.
import type { Argv } from 'yargs';

export interface DeclarationArgs {
  profile: string[];
  config: string[];
}

// Not `array: true`: an array option would swallow the paths that follow it.
const repeatable = (value: string | string[]): string[] => (Array.isArray(value) ? value : [value]);

/** --profile and --config: which declaration a command works from. */
export function declarationOptions<T>(yargs: Argv<T>): Argv<T & DeclarationArgs> {
  return yargs
    .option('profile', {
      alias: 'p',
      describe: 'Built-in profile (repeatable, or comma-separated): libvirt, machines, mariadb, postgresql, gnome-boxes, gnome-boxes-flatpak',
      type: 'string',
      coerce: (value: string | string[]) => repeatable(value).flatMap((p) => p.split(',')).filter(Boolean),
      default: [] as string[],
      defaultDescription: 'libvirt, when no --config is given either',
    })
    .option('config', {
      alias: 'c',
      describe: 'Declaration file, YAML or JSON; - reads it from stdin (repeatable; combines with --profile)',
      type: 'string',
      coerce: repeatable,
      default: [] as string[],
    }) as unknown as Argv<T & DeclarationArgs>;
}

/** The last --root wins, as for most tools; the shell artifacts take one root too. */
export const single = (value: string | string[]): string => (Array.isArray(value) ? value[value.length - 1]! : value);

export function rootOption<T>(yargs: Argv<T>, describe: string): Argv<T & { root: string }> {
  return yargs.option('root', { describe, type: 'string', default: '/', requiresArg: true, coerce: single }) as unknown as Argv<T & { root: string }>;
}

