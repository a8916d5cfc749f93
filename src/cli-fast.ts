// The fast path from argv to a command's options, without loading yargs (about a third of the
// start-up time). It reads the same definitions yargs does: each command's builder is run against a
// recorder that keeps what it declares (.option, .positional), and argv is read by those declarations.
// It takes only the plain forms (`--name VALUE`, `--name=VALUE`, `-x VALUE`, `--flag`, positionals):
// anything else (help, errors, `--`, `--no-…`, `-xVALUE`, a repeated flag, a value that starts with
// "-", an unknown option, a coerce that refuses its value…) returns undefined and goes to yargs, which
// answers as it always does. test/cli-fast.test.ts proves the two agree on a corpus of argv.
import type { Argv } from 'yargs';

/** An option or positional as a builder gives it to yargs (the subset the fast path reads). */
export interface OptionSpec {
  alias?: string | readonly string[];
  type?: string;
  requiresArg?: boolean;
  coerce?: (value: unknown) => unknown;
  default?: unknown;
  choices?: readonly unknown[];
  array?: boolean;
  global?: boolean;
  describe?: string;
  defaultDescription?: string;
}

// Keys with no effect on the parsed value, or whose effect the fast path reproduces; any other key
// (nargs, conflicts, implies, demandOption, number types…) makes the command go to yargs.
const OPTION_KEYS = new Set(['alias', 'type', 'requiresArg', 'coerce', 'default', 'describe', 'defaultDescription', 'global']);
const POSITIONAL_KEYS = new Set(['type', 'choices', 'array', 'default', 'describe', 'defaultDescription']);

export interface Definition {
  options: Map<string, OptionSpec>;
  /** The command's positional, `[name..]` in its command string; at most one. */
  positional: { name: string; spec: OptionSpec } | null;
}

/**
 * What a builder declares, run against a stand-in for yargs that records .option and .positional;
 * undefined when it calls anything else, or declares something the fast path does not read.
 */
export function recordDefinition(command: string, builder: (yargs: Argv) => unknown): Definition | undefined {
  const words = command.split(' ');
  if (words.length > 2) return undefined;
  const variadic = words[1] === undefined ? null : /^\[([A-Za-z][\w-]*)\.\.\]$/.exec(words[1]);
  if (words[1] !== undefined && !variadic) return undefined;
  const options = new Map<string, OptionSpec>();
  let positional: Definition['positional'] = null;
  let supported = true;
  const recorder: unknown = new Proxy(
    {},
    {
      get(_target, method) {
        // Anything but .option and .positional, even read without a call, is beyond what is recorded.
        if (method !== 'option' && method !== 'positional') supported = false;
        return (name: string, spec: OptionSpec = {}) => {
          if (method === 'option' && Object.keys(spec).every((k) => OPTION_KEYS.has(k)) && (spec.type === 'string' || spec.type === 'boolean')) {
            options.set(name, spec);
          } else if (method === 'positional' && variadic && name === variadic[1] && positional === null && Object.keys(spec).every((k) => POSITIONAL_KEYS.has(k))) {
            positional = { name, spec };
          } else supported = false;
          return recorder;
        };
      },
    },
  );
  builder(recorder as Argv);
  if (!supported || (variadic && positional === null)) return undefined;
  return { options, positional };
}

const camel = (key: string): string => key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

const aliasesOf = (spec: OptionSpec): string[] => (spec.alias === undefined ? [] : typeof spec.alias === 'string' ? [spec.alias] : [...spec.alias]);

/** Every key yargs sets for an option: its name, its aliases, and their camelCase forms. */
function keysOf(name: string, spec: OptionSpec): string[] {
  const keys = [name, ...aliasesOf(spec)];
  return [...new Set([...keys, ...keys.filter((k) => k.includes('-')).map(camel)])];
}

/**
 * argv (the command word included) → the arguments yargs would hand the command's handler,
 * or undefined when the fast path does not take this argv. `globals`: the options every command has.
 */
export function fastArgs(name: string, definition: Definition, globals: ReadonlyMap<string, OptionSpec>, argv: readonly string[]): Record<string, unknown> | undefined {
  const byFlag = new Map<string, [string, OptionSpec]>();
  for (const [key, spec] of [...globals, ...definition.options]) {
    for (const flag of [key, ...aliasesOf(spec)]) {
      const form = flag.length === 1 ? `-${flag}` : `--${flag}`;
      if (byFlag.has(form)) return undefined;
      byFlag.set(form, [key, spec]);
    }
  }
  const given = new Map<string, string[] | true>();
  const positionals: string[] = [];
  let seenCommand = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (!token.startsWith('-') || token === '-') {
      if (token === '-') return undefined;
      if (!seenCommand) {
        if (token !== name) return undefined;
        seenCommand = true;
      } else positionals.push(token);
      continue;
    }
    const eq = token.startsWith('--') ? token.indexOf('=') : -1;
    const flag = eq < 0 ? token : token.slice(0, eq);
    const found = byFlag.get(flag);
    if (!found) return undefined;
    const [key, spec] = found;
    // Before the command word, only the global options (yargs reads them there too).
    if (!seenCommand && !globals.has(key)) return undefined;
    if (spec.type === 'boolean') {
      // `--json true`: yargs takes the word as the flag's value; --flag=VALUE likewise.
      const next = argv[i + 1];
      if (eq >= 0 || given.has(key) || next === 'true' || next === 'false') return undefined;
      given.set(key, true);
      continue;
    }
    let value: string;
    if (eq >= 0) value = token.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next !== '-')) return undefined;
      value = next;
      i++;
    }
    const values = given.get(key);
    if (values === true) return undefined;
    given.set(key, [...(values ?? []), value]);
  }
  if (!seenCommand) return undefined;

  const args: Record<string, unknown> = { _: [name] };
  const set = (key: string, spec: OptionSpec, value: unknown): void => {
    for (const k of keysOf(key, spec)) args[k] = value;
  };
  const positional = definition.positional;
  if (positional) {
    const { spec } = positional;
    // Without a type, yargs would read "1" as a number: only strings, or a closed list of them.
    if (spec.type !== 'string' && spec.choices === undefined) return undefined;
    if (spec.choices && positionals.some((p) => !spec.choices!.includes(p))) return undefined;
    if (positionals.length > 0) set(positional.name, spec, positionals);
    else if (spec.default !== undefined) set(positional.name, spec, spec.default);
  } else if (positionals.length > 0) return undefined;
  try {
    for (const [key, spec] of [...globals, ...definition.options]) {
      const value = given.get(key);
      let parsed: unknown = value === undefined ? spec.default : value === true ? true : value.length === 1 ? value[0] : value;
      if (parsed === undefined) continue;
      if (spec.coerce) parsed = spec.coerce(parsed);
      set(key, spec, parsed);
    }
  } catch {
    // A value the option's coerce refuses: yargs reports it, in its own words.
    return undefined;
  }
  args.$0 = 'nocow';
  return args;
}
