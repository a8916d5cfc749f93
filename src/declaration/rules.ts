// The rules a target's values follow, each declared once, as data: validate.ts checks declarations
// by them, and src/render/macro-rules.ts writes them as the Lua that checks %nocow_posttrans's
// arguments in macros.nocow, so the macro refuses what a declaration refuses, in the same words.
// Pure data and small pure functions: no zod here (the macro renderer loads this).
import { NAME_MAX, PATH_MAX } from '../facts.js';

/**
 * A word: one character of FIRST, then characters of REST, MIN to MAX of them in all (no MAX: any
 * number), then SUFFIX or not. FIRST and REST are bracket-expression bodies that read the same as a
 * RegExp class and as a Lua pattern set (letters, digits, ranges, and `.` `_`, with `-` last).
 */
export interface WordRule {
  first: string;
  rest: string;
  min: number;
  max?: number;
  suffix?: string;
}

/** A value that is one of WORDS, with what it should be as an "expected …" phrase. */
export interface ValueRule {
  words: readonly WordRule[];
  expected: string;
}

export const NAME_RULE: ValueRule = {
  words: [{ first: 'A-Za-z0-9', rest: 'A-Za-z0-9._-', min: 1, max: 64 }],
  expected: '1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit',
};

export const MODE_RULE: ValueRule = {
  words: [{ first: '0-7', rest: '0-7', min: 3, max: 4 }],
  expected: '3 or 4 octal digits',
};

/** What a target's `subvolume` may be: make it a subvolume where possible, or never (+C only). */
export const SUBVOLUME_VALUES = ['auto', 'never'] as const;

/**
 * What a target's `compression` may be: keep a compression mark on the directory (+C then fails
 * where one is set, and says so), or clear it (+c and the compression property) just before +C.
 */
export const COMPRESSION_VALUES = ['keep', 'clear'] as const;

/** A value that is one of a fixed list, as the hook and the macros check it: the option's words, in a declaration's order. */
export const ENUM_RULES = { subvolume: SUBVOLUME_VALUES, compression: COMPRESSION_VALUES } as const;

/** useradd's portable name rule (a trailing `$` is a Samba machine account), or a numeric id. */
export const ownerRule = (what: 'user' | 'group'): ValueRule => ({
  words: [
    { first: 'A-Za-z_', rest: 'A-Za-z0-9_.-', min: 1, max: 32, suffix: '$' },
    { first: '0-9', rest: '0-9', min: 1 },
  ],
  expected: `a ${what} name (letters, digits, "_", ".", "-"; at most 32) or a numeric id`,
});

const regexLiteral = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

/** WORD as a RegExp source, anchored. */
export function wordSource(word: WordRule): string {
  const count = `{${word.min - 1},${word.max === undefined ? '' : word.max - 1}}`;
  return `^[${word.first}][${word.rest}]${count}${word.suffix === undefined ? '' : `(?:${regexLiteral(word.suffix)})?`}$`;
}

export const matchesRule = (rule: ValueRule, value: string): boolean => rule.words.some((word) => new RegExp(wordSource(word)).test(value));

/** Where a path of a scope must start, and what "below" it means. */
export interface ScopeRule {
  prefix: string;
  expected: string;
  /** Why the prefix alone (less its final "/") is no target. */
  below: string;
}

export const SCOPE_RULES: { readonly system: ScopeRule; readonly user: ScopeRule } = {
  system: { prefix: '/', expected: 'an absolute path starting with "/"', below: 'a path below "/" (the root cannot be made a subvolume)' },
  user: { prefix: '~/', expected: 'a path in the home directory starting with "~/" (scope user)', below: 'a path below "~/"' },
};

/**
 * A rule on the path after its scope's prefix. `expected` takes what was found (a code point as
 * four or more hex digits, or a byte count) and says what was expected.
 */
export type PathRule =
  /** invalidUtf8: bytes that are not UTF-8 break it too, where the path arrives as bytes (rpm's macro arguments). */
  | { kind: 'characters'; ranges: readonly (readonly [number, number])[]; invalidUtf8?: boolean; expected: (codePoint: string) => string }
  | { kind: 'segments'; refused: readonly string[]; expected: () => string }
  | { kind: 'empty-segment'; expected: () => string }
  | { kind: 'trailing-slash'; expected: () => string }
  | { kind: 'segment-bytes'; max: number; expected: (bytes: string) => string }
  | { kind: 'path-bytes'; max: number; expected: () => string };

/** In the order their problems are listed. */
export const PATH_RULES: readonly PathRule[] = [
  // C1 as well as C0/DEL: a terminal treats U+009B as an escape sequence.
  { kind: 'characters', ranges: [[0x00, 0x1f], [0x7f, 0x9f]], expected: (code) => `a path without control characters (found U+${code})` },
  // What bytes that are not UTF-8 become when decoded (a path from argv, say): it never names the directory meant.
  { kind: 'characters', ranges: [[0xfffd, 0xfffd]], invalidUtf8: true, expected: () => 'a path of valid UTF-8 (found U+FFFD, the replacement for bytes that are not UTF-8)' },
  { kind: 'segments', refused: ['.', '..'], expected: () => 'a path without "." or ".." segments' },
  { kind: 'empty-segment', expected: () => 'a path without empty segments ("//")' },
  { kind: 'trailing-slash', expected: () => 'a path without a trailing "/"' },
  { kind: 'segment-bytes', max: NAME_MAX, expected: (bytes) => `path segments of at most ${NAME_MAX} bytes (one has ${bytes})` },
  { kind: 'path-bytes', max: PATH_MAX, expected: () => `a path of at most ${PATH_MAX} bytes` },
];

const bytes = (text: string): number => Buffer.byteLength(text);

/** What PATH_RULE finds wrong with PATH (REST: the part after the scope's prefix), as an "expected …" phrase. */
export function pathRuleProblem(rule: PathRule, path: string, rest: string): string | undefined {
  const segments = rest.split('/');
  switch (rule.kind) {
    case 'characters': {
      const found = [...path].find((c) => rule.ranges.some(([from, to]) => c.codePointAt(0)! >= from && c.codePointAt(0)! <= to));
      return found === undefined ? undefined : rule.expected(found.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0'));
    }
    case 'segments':
      return segments.some((s) => rule.refused.includes(s)) ? rule.expected() : undefined;
    case 'empty-segment':
      return segments.slice(0, -1).includes('') ? rule.expected() : undefined;
    case 'trailing-slash':
      return rest.endsWith('/') ? rule.expected() : undefined;
    case 'segment-bytes': {
      const long = segments.find((s) => bytes(s) > rule.max);
      return long === undefined ? undefined : rule.expected(String(bytes(long)));
    }
    case 'path-bytes':
      return bytes(path) > rule.max ? rule.expected() : undefined;
  }
}
