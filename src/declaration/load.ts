// The I/O layer: profiles and config files → one Declaration, or a DeclarationError listing every problem.
import { readFile } from 'node:fs/promises';
import { BUILTIN_PROFILES, DEFAULT_PROFILE } from './profiles.js';
import type { Declaration, Target } from './types.js';
import { firstInvalidUtf8 } from '../io.js';
import { UsageError } from '../errors.js';

// zod, yaml and the validation code that needs them cost ~80 ms to import; `--help`
// only needs describeProfiles(), so they are imported when a declaration is loaded, and
// not at all for built-in profiles alone (see builtinDeclaration).

export class DeclarationError extends UsageError {
  constructor(problems: string[]) {
    super(problems.join('\n'), problems);
  }
}

export interface LoadOptions {
  profiles?: string[];
  configs?: string[];
  /** Built-in profiles through the validator too (tests: the shortcut gives what it gives). */
  validateProfiles?: boolean;
}

type Parsed = { raw: unknown } | { problem: string };

function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `${before.length}:${(before.at(-1)?.length ?? 0) + 1}`;
}

function parseJson(file: string, text: string): Parsed {
  try {
    return { raw: JSON.parse(text) };
  } catch (err) {
    const message = (err as Error).message;
    const at = / in JSON at position (\d+)/.exec(message);
    // Newer V8 appends "(line L column C)"; the position is converted here so every Node reads alike.
    const reason = message.replace(/ in JSON at position \d+.*$/, '');
    const where = at ? `:${lineAndColumn(text, Number(at[1]))}` : '';
    return { problem: `${file}${where}: JSON syntax error: ${reason}` };
  }
}

async function parseYaml(file: string, text: string): Promise<Parsed> {
  const { parseDocument } = await import('yaml');
  const doc = parseDocument(text, { prettyErrors: true });
  // Later errors are usually echoes of the first one.
  const first = doc.errors[0];
  if (!first) return { raw: doc.toJS() };
  const pos = first.linePos?.[0];
  const where = pos ? `:${pos.line}:${pos.col}` : '';
  // prettyErrors appends the position and a multi-line code frame; a problem is one line.
  const reason =
    first.code === 'MULTIPLE_DOCS'
      ? 'more than one YAML document ("---"); put all targets in one'
      : first.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '');
  return { problem: `${file}${where}: YAML syntax error: ${reason}` };
}

export { firstInvalidUtf8 };

type FieldKey = string | number;

/**
 * The field holding character offset `at` in a YAML (or JSON) text, e.g. "targets[0].path",
 * or "a field name of targets[0]"; undefined when none can be told.
 */
async function fieldAt(text: string, at: number): Promise<string | undefined> {
  const { parseDocument, isMap, isSeq, isScalar } = await import('yaml');
  const doc = parseDocument(text);
  const inside = (node: unknown): boolean => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return !!range && range[0] <= at && at < range[2];
  };
  let inKey = false;
  const walk = (node: unknown, path: FieldKey[]): FieldKey[] => {
    if (isMap(node)) {
      for (const pair of node.items) {
        // A key with the bad byte cannot be named; its mapping is.
        if (inside(pair.key)) {
          inKey = true;
          return path;
        }
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        if (inside(pair.value)) return walk(pair.value, [...path, String(key)]);
      }
      return path;
    }
    if (isSeq(node)) {
      for (const [i, item] of node.items.entries()) if (inside(item)) return walk(item, [...path, i]);
      return path;
    }
    return path;
  };
  const path = inside(doc.contents) ? walk(doc.contents, []) : [];
  const name = path
    .map((key, i) => (typeof key === 'number' ? `[${key}]` : /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? `${i === 0 ? '' : '.'}${key}` : `[${JSON.stringify(key)}]`))
    .join('');
  if (inKey) return name ? `a field name of ${name}` : 'a field name';
  return name || undefined;
}

/**
 * The text of a declaration, decoded strictly: bytes that are not UTF-8 are refused, never
 * replaced by U+FFFD (a path with a replaced byte is another directory). The problem
 * names the line, the column (in characters), the byte and, where it can, the field.
 */
async function decodeUtf8(file: string, bytes: Uint8Array): Promise<{ text: string } | { problem: string }> {
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    const offset = firstInvalidUtf8(bytes);
    if (offset < 0) return { problem: `${file}: not valid UTF-8` };
    // lastIndexOf(x, -1) would search from the end.
    const lineStart = offset === 0 ? 0 : bytes.lastIndexOf(0x0a, offset - 1) + 1;
    const line = bytes.subarray(0, lineStart).filter((b) => b === 0x0a).length + 1;
    const decoder = new TextDecoder('utf-8');
    const column = [...decoder.decode(bytes.subarray(lineStart, offset))].length + 1;
    const byte = `0x${bytes[offset]!.toString(16).toUpperCase().padStart(2, '0')}`;
    // The prefix is valid, so its length is the offset of the first U+FFFD in the replaced text.
    const field = await fieldAt(decoder.decode(bytes), decoder.decode(bytes.subarray(0, offset)).length).catch(() => undefined);
    return { problem: `${file}:${line}:${column}: not valid UTF-8 (byte ${byte})${field ? ` in ${field}` : ''}; save the file as UTF-8` };
  }
}

async function parseConfig(file: string): Promise<Parsed> {
  let bytes: Uint8Array;
  try {
    // `-`: the declaration comes on stdin (YAML, which JSON also is), e.g. from a heredoc.
    bytes = file === '-' ? await (await import('node:stream/consumers')).buffer(process.stdin) : await readFile(file);
  } catch (err) {
    // Drop Node's ", open 'FILE'" tail: the file is already named first.
    const reason = (err as Error).message.replace(/, \w+ '.*'$/, '');
    return { problem: `${file}: cannot read: ${reason}` };
  }
  const decoded = await decodeUtf8(file, bytes);
  if ('problem' in decoded) return decoded;
  // TextDecoder has already dropped a byte order mark.
  if (file.endsWith('.json')) return parseJson(file, decoded.text);
  return parseYaml(file, decoded.text);
}

/**
 * The declaration of built-in profiles alone, without the validator (zod costs about 40 ms to
 * import): what validation and combination make of them, which test/load.test.ts checks for every
 * profile and for repeats. Undefined when a name is not a profile: the full path reports it.
 */
export function builtinDeclaration(names: readonly string[]): Declaration | undefined {
  const sources: string[] = [];
  const targets: Target[] = [];
  for (const name of names) {
    if (!Object.hasOwn(BUILTIN_PROFILES, name)) return undefined;
    const source = `profile:${name}`;
    // A profile given twice is the same wish (combine.ts merges identical repeats); profiles never share a name or a path.
    if (sources.includes(source)) continue;
    sources.push(source);
    targets.push({ ...BUILTIN_PROFILES[name]!, source });
  }
  return { sources, targets };
}

export async function loadDeclaration(opts: LoadOptions = {}): Promise<Declaration> {
  const profiles = opts.profiles ?? [];
  const configs = opts.configs ?? [];
  const wanted = profiles.length === 0 && configs.length === 0 ? [DEFAULT_PROFILE] : profiles;
  const builtin = configs.length === 0 && !opts.validateProfiles ? builtinDeclaration(wanted) : undefined;
  if (builtin) return builtin;
  const [{ validateDeclaration, show }, { combineSources }, parsedConfigs] = await Promise.all([
    import('./validate.js'),
    import('./combine.js'),
    Promise.all(configs.map(parseConfig)),
  ]);

  const problems: string[] = [];
  const parts: { source: string; targets: Target[] }[] = [];
  const accept = (raw: unknown, source: string, file: string): void => {
    const result = validateDeclaration(raw, source, file);
    problems.push(...result.problems);
    parts.push({ source, targets: result.targets });
  };

  for (const name of wanted) {
    const target = Object.hasOwn(BUILTIN_PROFILES, name) ? BUILTIN_PROFILES[name] : undefined;
    if (!target) {
      problems.push(`unknown profile ${show(name)}; expected one of: ${Object.keys(BUILTIN_PROFILES).join(', ')}`);
      continue;
    }
    accept({ targets: [target] }, `profile:${name}`, `profile:${name}`);
  }
  configs.forEach((file, i) => {
    const parsed = parsedConfigs[i]!;
    if ('problem' in parsed) problems.push(parsed.problem);
    else accept(parsed.raw, `config:${file}`, file);
  });

  const combined = combineSources(parts);
  problems.push(...combined.problems);
  if (problems.length > 0) throw new DeclarationError(problems);
  return combined.declaration;
}

/** One line per built-in profile (name, scope, path), for --help. */
export function describeProfiles(): string {
  const names = Object.keys(BUILTIN_PROFILES);
  const width = Math.max(...names.map((n) => n.length));
  return names
    .map((name) => {
      const t = BUILTIN_PROFILES[name]!;
      return `${name.padEnd(width)}  ${t.scope.padEnd(6)}  ${t.path}${name === DEFAULT_PROFILE ? '  (default)' : ''}`;
    })
    .join('\n');
}
