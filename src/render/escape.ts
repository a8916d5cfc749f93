// One escaping function per output format (DESIGN.md, "Escaping"). Each is what
// ejs's `escape` is set to for that format, so `<%= value %>` is always safe.

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

/** A user-scope path (`~/rest`) as a user tmpfiles.d field: `%h` stays a specifier, the rest is literal. */
export function tmpfilesHomePath(path: string): string {
  const field = tmpfilesQuote(path.replace(/^~/, ''));
  return field.startsWith('"') ? `"%h${field.slice(1)}` : `%h${field}`;
}
