// The reading every format shares: shell-like words (kickstart), systemd's quoted words and its
// unit-file syntax (mount units, repart.d, mkosi), mkfs.btrfs's data profile option, and which file
// system a device spec names. Pure functions of text.

/**
 * LINE's words as a POSIX shell (and pykickstart's shlex) splits them: blanks separate, '…' and "…"
 * group (in "…" a backslash escapes \ " $ `), a backslash outside quotes escapes the next character,
 * and a # that starts a word starts a comment. An unclosed quote ends at the line's end.
 */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === ' ' || c === '\t') {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === '#' && word === null) break;
    else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      word = (word ?? '') + line.slice(i + 1, end < 0 ? undefined : end);
      i = end < 0 ? line.length : end;
    } else if (c === '"') {
      word ??= '';
      for (i++; i < line.length && line[i] !== '"'; i++) {
        if (line[i] === '\\' && '\\"$`'.includes(line[i + 1] ?? '')) i++;
        word += line[i];
      }
    } else if (c === '\\') word = (word ?? '') + (line[++i] ?? '');
    else word = (word ?? '') + c;
  }
  if (word !== null) words.push(word);
  return words;
}

/**
 * VALUE split at SEPARATORS outside quotes, each part unquoted, as systemd's extract_first_word()
 * with quote removal reads a setting: '…' and "…" group, a backslash escapes the next character.
 * Blanks separate words (the default); ":" splits repart's PATH:FLAGS and MountPoint= fields.
 */
export function quotedWords(value: string, separators = ' \t'): string[] {
  const parts: string[] = [];
  let part: string | null = null;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (separators.includes(c)) {
      if (part !== null || separators !== ' \t') parts.push(part ?? '');
      part = null;
    } else if (c === '"' || c === "'") {
      part ??= '';
      for (i++; i < value.length && value[i] !== c; i++) {
        if (value[i] === '\\' && c === '"') i++;
        part += value[i] ?? '';
      }
    } else if (c === '\\') part = (part ?? '') + (value[++i] ?? '');
    else part = (part ?? '') + c;
  }
  if (part !== null || (separators !== ' \t' && value.length > 0)) parts.push(part ?? '');
  return parts;
}

/** One assignment of a systemd-style file (unit, repart.d, mkosi.conf): its section and the line it starts on. */
export interface Setting {
  line: number;
  section: string;
  key: string;
  value: string;
}

/**
 * The settings of an INI-style file as systemd reads it (systemd.syntax(7)): # and ; start comment
 * lines, [Section] headers, KEY=VALUE with blanks around both trimmed, and a line ending in a
 * backslash continued on the next (the backslash read as a blank).
 */
export function iniSettings(text: string): Setting[] {
  const settings: Setting[] = [];
  const lines = text.split('\n');
  let section = '';
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    // Each line stripped first, as systemd's parser does; a continuation joins them with one blank.
    let logical = lines[i]!.trim();
    while (logical.endsWith('\\') && i + 1 < lines.length) {
      const next = lines[++i]!.trim();
      // A comment line inside a continuation is skipped, as systemd does.
      if (/^[#;]/.test(next)) {
        logical = `${logical.slice(0, -1)}\\`;
        continue;
      }
      logical = `${logical.slice(0, -1)} ${next}`;
    }
    const trimmed = logical.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) continue;
    const header = /^\[([^\]]+)\]$/.exec(trimmed);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = trimmed.indexOf('=');
    if (eq < 0) continue;
    settings.push({ line: start, section, key: trimmed.slice(0, eq).trim(), value: trimmed.slice(eq + 1).trim() });
  }
  return settings;
}

/** The section names an INI-style text has, for telling the formats apart. */
export const iniSections = (text: string): string[] => [...text.matchAll(/^\s*\[([^\]\n]+)\]\s*$/gm)].map((m) => m[1]!);

/** The data profile mkfs.btrfs ARGS ask for (-d P, -dP, --data P, --data=P), lower-case, with the words that say it. */
export function mkfsDataProfile(args: readonly string[]): { profile: string; said: string } | undefined {
  let found: { profile: string; said: string } | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const joined = /^(?:-d|--data=)(.+)$/.exec(arg);
    if (joined) found = { profile: joined[1]!.toLowerCase(), said: arg };
    else if ((arg === '-d' || arg === '--data') && args[i + 1] !== undefined) {
      found = { profile: args[i + 1]!.toLowerCase(), said: `${arg} ${args[i + 1]}` };
      i++;
    }
  }
  return found;
}

const BY_TAG: Readonly<Record<string, string>> = { UUID: 'by-uuid', LABEL: 'by-label', PARTUUID: 'by-partuuid', PARTLABEL: 'by-partlabel' };

/**
 * The file system a device spec names, one key for its spellings: UUID=X, UUID="X" and
 * /dev/disk/by-uuid/X alike (UUIDs in lower case); LABEL=, PARTUUID=, PARTLABEL= the same way.
 */
export function fsKey(spec: string): string {
  const tag = /^(UUID|LABEL|PARTUUID|PARTLABEL)=(.*)$/.exec(spec);
  const byPath = /^\/dev\/disk\/(by-uuid|by-label|by-partuuid|by-partlabel)\/(.+)$/.exec(spec);
  const kind = tag ? BY_TAG[tag[1]!]! : byPath?.[1];
  if (kind === undefined) return `dev:${spec}`;
  const value = (tag ? tag[2]! : byPath![2]!).replace(/^"(.*)"$/, '$1');
  return `${kind}:${kind.endsWith('uuid') ? value.toLowerCase() : value}`;
}
