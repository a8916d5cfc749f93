// The I/O layer: profiles and config files → one Declaration, or a DeclarationError listing every problem.
import { readFile } from 'node:fs/promises';
import { BUILTIN_PROFILES, DEFAULT_PROFILE } from './profiles.js';
import type { Declaration, Target } from './types.js';

// zod, yaml and the validation code that needs them cost ~80 ms to import; `--help`
// only needs describeProfiles(), so they are imported when a declaration is loaded.

export class DeclarationError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'DeclarationError';
    this.problems = problems;
  }
}

export interface LoadOptions {
  profiles?: string[];
  configs?: string[];
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

async function parseConfig(file: string): Promise<Parsed> {
  let text: string;
  try {
    // `-`: the declaration comes on stdin (YAML, which JSON also is), e.g. from a heredoc.
    text = file === '-' ? await (await import('node:stream/consumers')).text(process.stdin) : await readFile(file, 'utf8');
  } catch (err) {
    // Drop Node's ", open 'FILE'" tail: the file is already named first.
    const reason = (err as Error).message.replace(/, \w+ '.*'$/, '');
    return { problem: `${file}: cannot read: ${reason}` };
  }
  if (file.endsWith('.json')) return parseJson(file, text.replace(/^\uFEFF/, ''));
  return parseYaml(file, text);
}

export async function loadDeclaration(opts: LoadOptions = {}): Promise<Declaration> {
  const profiles = opts.profiles ?? [];
  const configs = opts.configs ?? [];
  const wanted = profiles.length === 0 && configs.length === 0 ? [DEFAULT_PROFILE] : profiles;
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
