// What the output formats can carry, where the declaration must know it too: validate.ts refuses
// what an artifact could not carry, and the renderers (src/render/escape.ts) write by the same rules.
// Pure, and outside render/: the declaration never imports the renderers.

/**
 * glob(3) as systemd-tmpfiles calls it on the path of `h` and its other glob types
 * (GLOB_NOSORT|GLOB_BRACE, escapes on), after its own C-style unescaping and specifiers:
 * a `\` makes the next character literal, in brace expansion, in directory parts and in
 * the last segment alike. Every character glob or brace expansion can read specially
 * gets one (`,` `]` `}` only matter next to the others, escaping them is harmless).
 * Measured with systemd 252 and glibc 2.36 (test/tmpfiles.test.ts).
 */
export function globEscape(path: string): string {
  return path.replace(/[\\*?[\]{},]/g, (c) => `\\${c}`);
}

/**
 * systemd-tmpfiles' limit on a path field once its specifiers are expanded (specifier_printf
 * with PATH_MAX-1). A longer one is an error on that line (systemd 252): reading the
 * configuration directories, as at boot, it skips the line, so the `v` line makes the
 * directory and the `h` line never sets +C; given the file by name (%tmpfiles_create), it
 * fails and applies nothing.
 */
export const TMPFILES_PATH_MAX = 4095;

/**
 * Why systemd-tmpfiles cannot carry PATH (absolute, or `~/…` for user scope), as an
 * "expected …" phrase; undefined when it can. Every character a declaration accepts is
 * carried (see globEscape): only the length can fail, as the `h` line's path is the
 * glob-escaped one and each `\ * ? [ ] { } ,` takes two bytes there. In user scope the
 * home directory's path comes on top of that at login, unknown here.
 */
export function tmpfilesProblem(path: string): string | undefined {
  const user = path.startsWith('~');
  const bytes = new TextEncoder().encode(globEscape(user ? path.slice(1) : path)).length;
  if (bytes <= TMPFILES_PATH_MAX) return undefined;
  const where = user ? ' after the home directory' : '';
  return `a path that systemd-tmpfiles can carry: at most ${TMPFILES_PATH_MAX} bytes${where} once each \\ * ? [ ] { } , in it is escaped with a \\ for its h line (this one takes ${bytes})`;
}
