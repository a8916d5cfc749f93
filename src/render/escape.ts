// One escaping function per output format (docs/design.md, "Escaping"). Each is what
// ejs's `escape` is set to for that format, so `<%= value %>` is always safe.
import { globEscape } from '../formats.js';

/** POSIX shell: one single-quoted word; `'` becomes `'\''`. */
export function shQuote(value: unknown): string {
  return `'${String(value).replace(/'/g, `'\\''`)}'`;
}

/**
 * tmpfiles.d field: `%` starts a specifier, so it doubles; quotes and backslashes
 * are C-style escaped; whitespace or quote characters make the field double-quoted.
 */
export function tmpfilesQuote(value: unknown): string {
  const text = String(value);
  const escaped = text.replace(/%/g, '%%').replace(/[\\"]/g, (c) => `\\${c}`);
  return /[\s'"\\]/.test(text) || text === '' ? `"${escaped}"` : escaped;
}

/** RPM spec text: rpm expands `%` before the shell sees the scriptlet. */
export function rpmEscape(text: string): string {
  return text.replace(/%/g, '%%');
}

/**
 * The body of a definition in an RPM macro file (after rpmEscape where it is shell text):
 * reading the file, rpm drops a `\` before any character and ends the definition at the
 * first line without a trailing `\`. So `\` doubles, and every line break gets one.
 */
export function rpmMacroBody(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\\n');
}

/** A value shown inside a `#` comment: no line breaks or control characters. */
export function commentSafe(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f]/g, '?');
}

/**
 * Kickstart: inside a section, a line starting with `%` ends it or opens another.
 * Values cannot cause one (no line breaks get through the declaration), so a hit
 * here is a defect in a template: fail loudly rather than emit a broken file.
 */
export function assertKickstartSection(text: string): string {
  const lines = text.split('\n');
  const body = lines.slice(lines.findIndex((l) => l.startsWith('%post')) + 1, lines.lastIndexOf('%end'));
  const stray = body.find((line) => line.trimStart().startsWith('%'));
  if (stray !== undefined) throw new Error(`kickstart section would be cut by the line: ${stray}`);
  return text;
}

/** A path as the field of a glob-type tmpfiles.d line (`h`): glob-escaped, then quoted like any field. */
export function tmpfilesGlobPath(path: string): string {
  return tmpfilesQuote(globEscape(path));
}

/** tmpfiles.d field text after `%h`: keeps a double-quoted field one field. */
function afterHome(field: string): string {
  return field.startsWith('"') ? `"%h${field.slice(1)}` : `%h${field}`;
}

/** A user-scope path (`~/rest`) as a user tmpfiles.d field: `%h` stays a specifier, the rest is literal. */
export function tmpfilesHomePath(path: string): string {
  return afterHome(tmpfilesQuote(path.replace(/^~/, '')));
}

/**
 * A user-scope path as the field of a glob-type user tmpfiles.d line (`h`): `%h`, then the
 * glob-escaped rest. The home directory itself reaches glob unescaped (a specifier cannot
 * be escaped): a home whose path has `*?[{\` in it is not supported.
 */
export function tmpfilesHomeGlobPath(path: string): string {
  return afterHome(tmpfilesGlobPath(path.replace(/^~/, '')));
}

/**
 * One word of a systemd unit's command line (ExecStart=), as systemd.service(5) "Command lines"
 * reads it: always double-quoted, so blanks, quotes and a lone `;` stay in the word; inside, `\`
 * and `"` get a backslash (the C-style escapes of systemd.syntax(7) "Quoting"), `%` doubles (a
 * specifier otherwise) and `$` doubles (environment variable substitution otherwise).
 */
export function unitExecWord(value: unknown): string {
  return `"${String(value).replace(/[\\"]/g, (c) => `\\${c}`).replace(/[%$]/g, (c) => c + c)}"`;
}

/** A user-scope path (`~/rest`) as one ExecStart= word: `%h` stays a specifier (the home), the rest is literal. */
export function unitExecHomeWord(path: string): string {
  return `"%h${unitExecWord(path.replace(/^~/, '')).slice(1)}`;
}

/**
 * A path as the value of a unit file's path setting, such as ConditionPathIsDirectory=: taken as
 * written, with specifiers (so `%` doubles) but no quoting and no C-style escapes; undefined when
 * the unit file syntax cannot carry it: the parser strips blanks at the end of a line, and a line
 * ending in `\` continues on the next. A user-scope path (`~/rest`) becomes `%h/rest`.
 */
export function unitPathValue(path: string): string | undefined {
  if (/[\s\\]$/.test(path)) return undefined;
  const literal = path.replace(/%/g, '%%');
  return path.startsWith('~') ? `%h${literal.slice(1)}` : literal;
}

/** A value inside a systemd unit or repart.d word: the characters its quoting rules read specially. */
const SYSTEMD_QUOTED = /[\s'"\\]/;

/** Double-quoted as systemd's extract_first_word() reads a quoted word: `\` and `"` get a backslash. */
const systemdDoubleQuoted = (text: string): string => `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

/**
 * A path as one word of a repart.d list setting such as MakeDirectories= (whitespace-separated,
 * quotes removed, then specifiers expanded, systemd-repart 262's config_parse_make_dirs): `%`
 * doubles, and a path with blanks, quotes or backslashes is double-quoted. Every path a
 * declaration accepts is carried (measured: test/image-builders.test.ts).
 */
export function repartWord(value: unknown): string {
  const text = String(value).replace(/%/g, '%%');
  return SYSTEMD_QUOTED.test(text) ? systemdDoubleQuoted(text) : text;
}

/**
 * One word of Subvolumes=: PATH[:FLAGS]. systemd-repart removes quotes twice, once splitting
 * the list at blanks and once splitting the word at its first `:` (config_parse_subvolumes),
 * so a path with `:`, quotes or backslashes is quoted for the second reading, and the word
 * again for the first where it has blanks, quotes or backslashes.
 */
export function repartSubvolumeWord(path: string, flags: string): string {
  const text = path.replace(/%/g, '%%');
  const inner = /[:'"\\]/.test(text) ? systemdDoubleQuoted(text) : text;
  const word = flags === '' ? inner : `${inner}:${flags}`;
  return SYSTEMD_QUOTED.test(word) ? systemdDoubleQuoted(word) : word;
}

/**
 * One line of nocow-mkfs.args, which `grep -v '^#' | xargs -d '\n'` turns into one argument each:
 * a value can hold no line break and cannot start with `#` (a comment line). Values never do
 * (paths hold no control characters, and the relative ones start with a letter of the path),
 * so a hit is a defect in a template: fail loudly rather than emit a wrong argument.
 */
export function argsLine(value: unknown): string {
  const text = String(value);
  if (text.includes('\n') || text.startsWith('#')) throw new Error(`nocow-mkfs.args: ${JSON.stringify(text)} cannot be one line of the file`);
  return text;
}

/** XML text or attribute value (either quote): the five characters XML reads specially, as entities. */
export function xmlEscape(value: unknown): string {
  const entities: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
  return String(value).replace(/[&<>"']/g, (c) => entities[c]!);
}

/** Text inside an XML comment `<!-- TEXT -->` (a blank on either side): no control characters and no `--`. */
export function xmlCommentSafe(value: string): string {
  return commentSafe(value).replace(/-(?=-)/g, '- ');
}

/**
 * Why kiwi cannot carry PATH as a <volume name="…"> on Btrfs, as an "expected …" phrase; undefined
 * when it can. kiwi 11 writes each volume into /etc/fstab as `LABEL=… /PATH btrfs …,subvol=@/PATH 0 0`,
 * joined with blanks and commas and never escaped (volume_manager/btrfs.py get_fstab), and reads a
 * name holding "@root" as the root volume (xml_state.py get_volumes).
 */
export function kiwiProblem(path: string): string | undefined {
  if (/[\s,\\"]/.test(path)) return 'a path without blanks, ",", "\\" or \'"\' (kiwi writes it unescaped into /etc/fstab and the subvol= mount option)';
  if (path.includes('@root')) return 'a path without "@root" (kiwi reads such a volume name as the root volume)';
  return undefined;
}

/**
 * One word of an alpm hook's Exec= (libalpm's wordsplit, pacman 6): the value is split at blanks,
 * no shell reads it; `'…'` and `"…"` group, and a `\` escapes only a quote (in a quoted run, only
 * that run's quote). A word of plain characters goes as it is; any other is double-quoted, `"` as
 * `\"`, its trailing backslashes after the closing quote (inside, the last would escape it).
 * Quoting also keeps bytes above 0x7f from wordsplit's isspace() on a signed char.
 */
export function alpmExecWord(value: unknown): string {
  const text = String(value);
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  const tail = /\\*$/.exec(text)![0];
  return `"${text.slice(0, text.length - tail.length).replace(/"/g, '\\"')}"${tail}`;
}

/**
 * A path as the start of an alpm hook's Target= pattern, without its leading `/` (pacman's file
 * lists have none), SUFFIX appended. libalpm takes a leading `!` as a negation and drops one
 * leading `\`, then matches with fnmatch(3), flags 0 (`\` escapes, `*` crosses "/"); the ini
 * reader trims blanks around the value. So `\ * ? [` get a backslash, and one more `\` goes first
 * where the pattern starts with `!`, `\` or a blank.
 */
export function alpmTargetPattern(path: string, suffix: string): string {
  const pattern = path.replace(/^\/+/, '').replace(/[\\*?[]/g, (c) => `\\${c}`) + suffix;
  return /^[!\\\s]/.test(pattern) ? `\\${pattern}` : pattern;
}

/**
 * pacman's ini reader (parse_ini) takes a line with fgets into PATH_MAX (4096) bytes: a longer one
 * is cut, and its rest read as a line of its own. Measured with pacman 6.0.2: a hook line of 4095
 * bytes is read whole (its newline comes alone, an empty line); one of 4096 makes the hook invalid,
 * and an invalid hook fails the whole transaction.
 */
export const ALPM_LINE_MAX = 4095;

/** TEXT as `#` comment lines of an alpm hook, each within ALPM_LINE_MAX bytes, broken at blanks where it can be. */
export function alpmComment(text: string): string {
  const lines: string[] = [];
  let line = '#';
  for (const word of commentSafe(text).split(' ')) {
    let rest = ` ${word}`;
    while (Buffer.byteLength(line + rest) > ALPM_LINE_MAX) {
      if (line !== '#') {
        lines.push(line);
        line = '#';
        continue;
      }
      // One word longer than a line: cut it between characters.
      let cut = '';
      for (const c of rest) {
        if (Buffer.byteLength(line + cut + c) > ALPM_LINE_MAX) break;
        cut += c;
      }
      lines.push(line + cut);
      rest = ` ${rest.slice(cut.length)}`;
    }
    line += rest;
  }
  lines.push(line);
  return lines.join('\n');
}

/**
 * YAML, as Ansible reads it (PyYAML, YAML 1.1): one double-quoted scalar in printable ASCII,
 * every other character as an escape (\xXX, \uXXXX, \UXXXXXXXX), so no character can end the
 * scalar or be refused by the reader (PyYAML refuses raw C1 controls and others in a stream),
 * and no value reads as another type (`yes`, `0755`, `null` stay strings).
 */
export function yamlQuote(value: unknown): string {
  let out = '';
  for (const c of String(value)) {
    const code = c.codePointAt(0)!;
    if (c === '"' || c === '\\') out += `\\${c}`;
    else if (code >= 0x20 && code <= 0x7e) out += c;
    else if (code <= 0xff) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code <= 0xffff) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += `\\U${code.toString(16).padStart(8, '0')}`;
  }
  return `"${out}"`;
}

/**
 * A string of the declaration in an Ansible variable file: yamlQuote'd and tagged !unsafe, as
 * Ansible templates a variable's strings where they are used, and a path holding "{{" must stay
 * that path, not become an expression run on the controller.
 */
export function ansibleUnsafe(value: unknown): string {
  return `!unsafe ${yamlQuote(value)}`;
}
