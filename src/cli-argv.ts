// The command line, read as GNU getopt_long reads it, before either way main() runs a command (the
// fast path, src/cli-fast.ts, or yargs): so a root tool acts on exactly what it was given, and the two
// ways cannot read one argv differently.
//
//   --             ends the options: every word after it is an operand, one beginning with "-" too
//   --flag         a flag (boolean option) takes no value: --flag=VALUE is refused, and the next word
//                  is never taken as its value (yargs would take "true" or "false"); no --no-flag form
//   --name VALUE   an option with a value: --name=VALUE, -n VALUE, -nVALUE, -n=VALUE; a next word
//                  beginning with "-" is not taken as the value (write --name=-VALUE for that)
//   -abc           short options bundled, the last may take the rest of the word as its value
//   anything else  an unknown option, refused with the command's options listed
//
// Operands are checked against the command's positional: how many, which choices, none empty.
// yargs then gets an argv it cannot misread (src/main.ts): every option as --name or --name=VALUE,
// every operand as a stand-in (OPERAND_PREFIX + its index) that a middleware turns back into the
// word given, since yargs drops what follows "--" and would read an operand "-x" as an option.
import type { Argv } from 'yargs';
import { UsageError } from './errors.js';
import { valueName } from './cli-options.js';

/** An option or positional as a builder gives it to yargs (what the reader uses of it). */
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

export interface Positional {
  name: string;
  spec: OptionSpec;
  /** `[name..]` or `<name..>`: any number; else at most one. */
  variadic: boolean;
  /** `<name..>`: at least one. */
  required: boolean;
}

export interface Definition {
  /** By key, in the order the builder defines them (the order --help lists them in). */
  options: Map<string, OptionSpec>;
  /** The command's positional; at most one. */
  positional: Positional | null;
}

// The keys this reader (and the fast path) knows the meaning of; any other (nargs, conflicts,
// implies, demandOption…) would make yargs read the command line otherwise than this reader does.
const OPTION_KEYS = new Set(['alias', 'type', 'requiresArg', 'coerce', 'default', 'describe', 'defaultDescription', 'global']);
const POSITIONAL_KEYS = new Set(['type', 'choices', 'array', 'default', 'describe', 'defaultDescription']);

/**
 * What a builder declares, run against a stand-in for yargs that records .option and .positional.
 * Throws when the builder calls anything else or declares what this reader cannot read as yargs
 * would (a number option, nargs…): a command the reader does not understand must not run.
 */
export function recordDefinition(command: string, builder: (yargs: Argv) => unknown): Definition {
  const [, word, ...rest] = command.split(' ');
  const form = word === undefined ? null : /^(\[|<)([A-Za-z][\w-]*)(\.\.)?(\]|>)$/.exec(word);
  const cannot = (what: string) => new Error(`src/cli-argv.ts cannot read the command line of "${command}": ${what}`);
  if (rest.length > 0 || (word !== undefined && (!form || (form[1] === '[') !== (form[4] === ']')))) throw cannot('more than one positional, or one of another form');
  const options = new Map<string, OptionSpec>();
  let positional: Positional | null = null;
  let problem: string | undefined;
  const recorder: unknown = new Proxy(
    {},
    {
      get(_target, method) {
        if (method !== 'option' && method !== 'positional') problem ??= `.${String(method)}()`;
        return (key: string, spec: OptionSpec = {}) => {
          const unknown = Object.keys(spec).filter((k) => !(method === 'option' ? OPTION_KEYS : POSITIONAL_KEYS).has(k));
          if (unknown.length > 0) problem ??= `${key}: ${unknown.join(', ')}`;
          if (method === 'option') {
            if (spec.type !== 'string' && spec.type !== 'boolean') problem ??= `${key}: type ${String(spec.type)} (only string and boolean)`;
            options.set(key, spec);
          } else if (method === 'positional') {
            if (!form || key !== form[2] || positional !== null) problem ??= `positional ${key} is not the one ${command} names`;
            else positional = { name: key, spec, variadic: form[3] === '..', required: form[1] === '<' };
          }
          return recorder;
        };
      },
    },
  );
  builder(recorder as Argv);
  if (form && positional === null) problem ??= `no .positional() for ${word}`;
  if (problem !== undefined) throw cannot(problem);
  return { options, positional };
}

/** What the command line gave, read. */
export interface Scanned {
  /** Each option given, by key: its values in order, or true for a flag. */
  options: Map<string, string[] | true>;
  /** The operands, the command word first. */
  operands: string[];
}

const aliasesOf = (spec: OptionSpec): string[] => (spec.alias === undefined ? [] : typeof spec.alias === 'string' ? [spec.alias] : [...spec.alias]);

const quoted = (value: string): string => JSON.stringify(value);

/**
 * argv (the command word included) read by the options of `command` and `globals`: the options given
 * and the operands, or a UsageError in one line saying what is wrong, naming the option.
 */
export function scanArgv(command: string, definition: Definition, globals: ReadonlyMap<string, OptionSpec>, argv: readonly string[]): Scanned {
  const all = [...definition.options, ...globals];
  const long = new Map<string, string>();
  const short = new Map<string, string>();
  for (const [key, spec] of all) {
    for (const flag of [key, ...aliasesOf(spec)]) (flag.length === 1 ? short : long).set(flag, key);
  }
  const specOf = (key: string): OptionSpec => all.find(([k]) => k === key)![1];
  const isFlag = (key: string): boolean => specOf(key).type === 'boolean';
  const shown = (key: string): string => {
    const shorts = aliasesOf(specOf(key)).filter((a) => a.length === 1);
    return shorts.length > 0 ? `--${key} (${shorts.map((s) => `-${s}`).join(', ')})` : `--${key}`;
  };
  const unknown = (flag: string): UsageError => {
    const negated = /^--no-(.+)$/.exec(flag)?.[1];
    if (negated !== undefined && long.has(negated) && isFlag(long.get(negated)!)) {
      return new UsageError(`unknown option '${flag}': a flag is off unless given, so to leave --${negated} off, leave it out`);
    }
    return new UsageError(`unknown option '${flag}'; nocow ${command} takes: ${all.map(([key]) => shown(key)).join(', ')}`);
  };
  const noValue = (flag: string) => new UsageError(`option '${flag}' doesn't allow an argument: give ${flag} alone, or leave it out`);

  const options = new Map<string, string[] | true>();
  const operands: string[] = [];
  const give = (key: string, value: string | true) => {
    const had = options.get(key);
    options.set(key, value === true ? true : [...(Array.isArray(had) ? had : []), value]);
  };
  let onlyOperands = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    /** The word after `flag` as its value, unless there is none or it is an option. */
    const nextValue = (flag: string, key: string): string => {
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`option '${flag}' needs a value (write ${flag} ${valueName(key)})`);
      if (next.startsWith('-') && next !== '-') {
        throw new UsageError(`option '${flag}' needs a value, and ${quoted(next)} is not taken as one (write --${key}=${next} if you mean it)`);
      }
      i++;
      return next;
    };
    if (onlyOperands || token === '-' || !token.startsWith('-')) operands.push(token);
    else if (token === '--') onlyOperands = true;
    else if (token.startsWith('--')) {
      const eq = token.indexOf('=');
      const flag = eq < 0 ? token : token.slice(0, eq);
      const key = long.get(flag.slice(2));
      if (key === undefined) throw unknown(flag);
      if (isFlag(key)) {
        if (eq >= 0) throw noValue(flag);
        give(key, true);
      } else give(key, eq >= 0 ? token.slice(eq + 1) : nextValue(flag, key));
    } else {
      const letters = [...token.slice(1)];
      for (let j = 0; j < letters.length; j++) {
        const flag = `-${letters[j]}`;
        const key = short.get(letters[j]!);
        if (key === undefined) throw unknown(flag);
        if (isFlag(key)) {
          if (letters[j + 1] === '=') throw noValue(flag);
          give(key, true);
          continue;
        }
        // -oDIR, and -o=DIR as yargs has always read it: DIR.
        const rest = letters.slice(j + 1).join('');
        give(key, rest === '' ? nextValue(flag, key) : rest.replace(/^=/, ''));
        break;
      }
    }
  }
  return { options, operands };
}

/**
 * The operands after the command word against the command's positional: none where it takes none,
 * one at most, at least one, a valid choice, never empty; a UsageError in one line if not.
 */
export function checkOperands(command: string, positional: Positional | null, operands: readonly string[]): void {
  if (positional === null) {
    if (operands.length > 0) throw new UsageError(`unexpected operand ${quoted(operands[0]!)}: nocow ${command} takes none`);
    return;
  }
  const one = (positional.variadic ? positional.name.replace(/s$/, '') : positional.name).toUpperCase();
  if (!positional.variadic && operands.length > 1) throw new UsageError(`unexpected operand ${quoted(operands[1]!)}: nocow ${command} takes one ${one} at most`);
  if (positional.required && operands.length === 0) throw new UsageError(`no ${one} given: nocow ${command} needs at least one`);
  const choices = positional.spec.choices as readonly string[] | undefined;
  for (const operand of operands) {
    if (choices && !choices.includes(operand)) throw new UsageError(`unknown ${one.toLowerCase()} ${quoted(operand)}; expected one of: ${choices.join(', ')}`);
    if (operand === '') throw new UsageError(`an empty ${one} names nothing (write . for the current directory)`);
  }
}

/** Where an operand stands in the argv yargs gets: no word of a real argv holds a NUL. */
export const OPERAND_PREFIX = '\u0000operand:';

/** The argv yargs reads exactly as scanArgv did: the command word, the options as --name[=VALUE], the operands as stand-ins. */
export function yargsArgv(scanned: Scanned): string[] {
  const argv = [scanned.operands[0]!];
  for (const [key, values] of scanned.options) {
    if (values === true) argv.push(`--${key}`);
    else for (const value of values) argv.push(`--${key}=${value}`);
  }
  scanned.operands.slice(1).forEach((_, i) => argv.push(`${OPERAND_PREFIX}${i}`));
  return argv;
}

/** args with each stand-in yargsArgv made turned back into its operand (yargs' middleware, before validation). */
export function restoreOperands(args: Record<string, unknown>, operands: readonly string[]): void {
  const back = (value: unknown): unknown =>
    typeof value === 'string' && value.startsWith(OPERAND_PREFIX) ? operands[Number(value.slice(OPERAND_PREFIX.length)) + 1] : Array.isArray(value) ? value.map(back) : value;
  for (const key of Object.keys(args)) args[key] = back(args[key]);
}
