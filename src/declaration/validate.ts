// Raw document (parsed YAML/JSON, or a built-in profile) → typed targets.
// Pure: every problem is returned as one line, so the caller can report them all at once.
import { z } from 'zod';
import { PATH_MAX, refusedTarget } from '../facts.js';
import { tmpfilesProblem } from '../formats.js';
import type { Scope, Target } from './types.js';
import { COMPRESSION_VALUES, MODE_RULE, NAME_RULE, PATH_RULES, SCOPE_RULES, SUBVOLUME_VALUES, matchesRule, ownerRule, pathRuleProblem } from './rules.js';

export interface ValidationResult {
  targets: Target[];
  problems: string[];
}

const TARGET_KEYS = ['name', 'path', 'scope', 'subvolume', 'nocow', 'mode', 'user', 'group', 'redundancy', 'defrag', 'compression'] as const;

const MODE_PHRASE = `a string of ${MODE_RULE.expected}`;

const oneOf = (values: readonly string[]): string => `one of: ${values.join(', ')}`;

const EXPECT = {
  document: 'a mapping with a "targets" list',
  targets: 'a non-empty list of targets',
  target: 'a mapping with at least "name" and "path"',
  name: `a name of ${NAME_RULE.expected}`,
  systemPath: 'an absolute path, e.g. "/var/lib/foo"',
  userPath: 'a path in the home directory, e.g. "~/.local/share/foo"',
  mode: `${MODE_PHRASE}, e.g. "0755"`,
  owner: (what: 'user' | 'group') => ownerRule(what).expected,
  userScopeOwner: '"-" (a user-scope target belongs to the user who logs in)',
} as const;

/** YAML 1.2 has no leading-zero octal: `mode: 0711` arrives as the number 711. */
function modeNumberHint(n: unknown): string {
  const example = typeof n === 'number' && /^[0-7]{3}$/.test(String(n)) ? `0${n}` : '0711';
  return `${MODE_PHRASE}; quote it, e.g. "${example}" (YAML 1.2 reads ${example} as the decimal number ${Number(example)})`;
}

/** Why a path cannot be used, as "expected …" phrases; empty when it is fine. */
function pathProblems(path: string, scope: Scope): string[] {
  const { prefix, expected, below } = SCOPE_RULES[scope];
  if (!path.startsWith(prefix)) {
    const hint = scope === 'system' && path.startsWith('~') ? '; for a path in the home directory set scope: user' : '';
    return [`${expected}${hint}`];
  }
  const rest = path.slice(prefix.length);
  if (rest === '') return [below];
  const out = PATH_RULES.flatMap((rule) => pathRuleProblem(rule, path, rest) ?? []);
  if (out.length === 0) {
    const refused = refusedTarget(path);
    if (refused !== undefined) out.push(`a directory of its own, not a system one (${refused}; see SECURITY.md)`);
    // Every target gets a tmpfiles.d snippet, so what tmpfiles cannot read is refused for all artifacts.
    const tmpfiles = tmpfilesProblem(path);
    if (tmpfiles !== undefined && Buffer.byteLength(path) <= PATH_MAX) out.push(tmpfiles);
  }
  return out;
}

const documentSchema = z.strictObject(
  { targets: z.array(z.unknown(), { error: EXPECT.targets }).min(1, { error: EXPECT.targets }) },
  { error: EXPECT.document },
);

// Path and owner rules depend on the scope, so each target gets the schema for its own scope.
function targetSchema(scope: Scope) {
  const owner = (what: 'user' | 'group') =>
    scope === 'user'
      ? z.literal('-', { error: EXPECT.userScopeOwner }).default('-')
      : z.string({ error: EXPECT.owner(what) }).refine((value) => matchesRule(ownerRule(what), value), { error: EXPECT.owner(what) }).default('root');
  return z.strictObject(
    {
      name: z.string({ error: EXPECT.name }).refine((value) => matchesRule(NAME_RULE, value), { error: EXPECT.name }),
      path: z
        .string({ error: scope === 'user' ? EXPECT.userPath : EXPECT.systemPath })
        .superRefine((path, ctx) => {
          for (const message of pathProblems(path, scope)) ctx.addIssue({ code: 'custom', message });
        }),
      scope: z.enum(['system', 'user'], { error: oneOf(['system', 'user']) }).default('system'),
      subvolume: z.enum(SUBVOLUME_VALUES, { error: oneOf(SUBVOLUME_VALUES) }).default('auto'),
      nocow: z.boolean({ error: 'true or false' }).default(true),
      mode: z
        .string({ error: (issue) => (typeof issue.input === 'number' ? modeNumberHint(issue.input) : EXPECT.mode) })
        .refine((value) => matchesRule(MODE_RULE, value), { error: EXPECT.mode })
        .default('0755'),
      user: owner('user'),
      group: owner('group'),
      redundancy: z
        .enum(['keep-checksums', 'force-nocow'], { error: oneOf(['keep-checksums', 'force-nocow']) })
        .default('keep-checksums'),
      defrag: z.enum(['auto', 'on', 'off'], { error: oneOf(['auto', 'on', 'off']) }).default('auto'),
      compression: z.enum(COMPRESSION_VALUES, { error: oneOf(COMPRESSION_VALUES) }).default('keep'),
    },
    { error: EXPECT.target },
  );
}

type Key = PropertyKey;

function fieldName(path: readonly Key[]): string {
  return path
    .map((key, i) => {
      if (typeof key === 'number') return `[${key}]`;
      const k = String(key);
      if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(k)) return i === 0 ? k : `.${k}`;
      return `[${show(k)}]`;
    })
    .join('');
}

function valueAt(raw: unknown, path: readonly Key[]): unknown {
  let value = raw;
  for (const key of path) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<Key, unknown>)[key];
  }
  return value;
}

/** JSON for the reader, kept to one terminal-safe line of about 60 characters. */
export function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value); // bigint, or a cycle built with YAML aliases
  }
  // JSON.stringify leaves DEL, C1 and the Unicode line separators as they are.
  text = text.replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

function problemLine(file: string, path: readonly Key[], value: unknown, expected: string): string {
  const field = fieldName(path);
  const what = value === undefined ? 'missing' : `${show(value)} is not allowed`;
  return `${file}: ${field ? `${field}: ` : ''}${what}; expected ${expected}`;
}

function issueLines(file: string, raw: unknown, prefix: readonly Key[], issues: readonly z.core.$ZodIssue[], allowed: readonly string[]): string[] {
  return issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${file}: ${fieldName([...path, key])}: unknown field; expected ${oneOf(allowed)}`);
    }
    return [problemLine(file, path, valueAt(raw, path), issue.message)];
  });
}

export function validateDeclaration(raw: unknown, source: string, file: string): ValidationResult {
  const problems: string[] = [];
  const top = documentSchema.safeParse(raw);
  if (!top.success) problems.push(...issueLines(file, raw, [], top.error.issues, ['targets']));

  // Targets are checked even when the document has other problems, so one run reports everything.
  const list = valueAt(raw, ['targets']);
  const targets: Target[] = [];
  if (!Array.isArray(list)) return { targets, problems };

  const byName = new Map<string, number>();
  const byPath = new Map<string, number>();
  list.forEach((item: unknown, i) => {
    const scope: Scope = valueAt(item, ['scope']) === 'user' ? 'user' : 'system';
    const parsed = targetSchema(scope).safeParse(item);
    if (!parsed.success) {
      problems.push(...issueLines(file, raw, ['targets', i], parsed.error.issues, TARGET_KEYS));
      return;
    }
    const t = parsed.data;
    // Within one file a repeat is a mistake; across sources combine.ts merges identical repeats.
    const nameSeen = byName.get(t.name);
    const pathKey = `${t.scope}:${t.path}`;
    const pathSeen = byPath.get(pathKey);
    if (nameSeen !== undefined) {
      problems.push(problemLine(file, ['targets', i, 'name'], t.name, `a name not used by another target (targets[${nameSeen}] uses it)`));
    }
    if (pathSeen !== undefined) {
      problems.push(problemLine(file, ['targets', i, 'path'], t.path, `a path not declared by another target (targets[${pathSeen}] declares it)`));
    }
    if (nameSeen !== undefined || pathSeen !== undefined) return;
    byName.set(t.name, i);
    byPath.set(pathKey, i);
    // Fixed key order: targets are compared field by field and rendered deterministically.
    targets.push({
      name: t.name,
      path: t.path,
      scope: t.scope,
      subvolume: t.subvolume,
      nocow: t.nocow,
      mode: t.mode,
      user: t.user,
      group: t.group,
      redundancy: t.redundancy,
      defrag: t.defrag,
      compression: t.compression,
      source,
    });
  });
  return { targets, problems };
}
