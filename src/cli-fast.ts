// The fast path from a command line to a command's arguments, without loading yargs (about a third of
// the start-up time). The command line has been read by src/cli-argv.ts, as it is for yargs; this
// gives the command what yargs would make of it: defaults, coerce, each key under its aliases and
// camelCase forms. A coerce that refuses its value returns undefined and goes to yargs, which reports
// it (the same message). test/cli-fast.test.ts proves the two agree on a corpus of argv.
import type { Arguments } from 'yargs';
import type { Definition, OptionSpec, Scanned } from './cli-argv.js';

const camel = (key: string): string => key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

const aliasesOf = (spec: OptionSpec): string[] => (spec.alias === undefined ? [] : typeof spec.alias === 'string' ? [spec.alias] : [...spec.alias]);

/** Every key yargs sets for an option: its name, its aliases, and their camelCase forms. */
function keysOf(name: string, spec: OptionSpec): string[] {
  const keys = [name, ...aliasesOf(spec)];
  return [...new Set([...keys, ...keys.filter((k) => k.includes('-')).map(camel)])];
}

/**
 * The arguments yargs would hand the command's handler for what was scanned, or undefined where
 * yargs must read them. `globals`: the options every command has.
 */
export function fastArgs(name: string, definition: Definition, globals: ReadonlyMap<string, OptionSpec>, scanned: Scanned): Arguments | undefined {
  const args: Record<string, unknown> = {};
  const set = (key: string, spec: OptionSpec, value: unknown): void => {
    for (const k of keysOf(key, spec)) args[k] = value;
  };
  const operands = scanned.operands.slice(1);
  const positional = definition.positional;
  if (positional) {
    if (operands.length > 0) set(positional.name, positional.spec, positional.variadic ? operands : operands[0]);
    else if (positional.spec.default !== undefined) set(positional.name, positional.spec, positional.spec.default);
  }
  try {
    for (const [key, spec] of [...globals, ...definition.options]) {
      const value = scanned.options.get(key);
      let parsed: unknown = value === undefined ? spec.default : value === true ? true : value.length === 1 ? value[0] : value;
      if (parsed === undefined) continue;
      if (spec.coerce) parsed = spec.coerce(parsed);
      set(key, spec, parsed);
    }
  } catch {
    // A value the option's coerce refuses: yargs reports it, in the same words.
    return undefined;
  }
  return { _: [name], ...args, $0: 'nocow' };
}
