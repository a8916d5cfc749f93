// Inode flags (chattr(1)'s +C, +c, +i, +a…) as lsattr prints them and chattr sets them, for every
// engine: names walked as given, so a name with spaces or line breaks stays whole.
import { argumentLists, run, type RunOptions, type ToolRun } from './run.js';

/**
 * `FLAGS NAME` per file as lsattr prints them, in argument order. Walking the known names (rather
 * than splitting lines) keeps names with spaces or newlines intact; a file lsattr failed on has no
 * line and no entry.
 */
export function lsattrFlags(out: string, files: readonly string[]): Map<string, string> {
  const found = new Map<string, string>();
  let at = 0;
  for (const file of files) {
    const space = out.indexOf(' ', at);
    if (space < 0) break;
    const line = `${file}\n`;
    if (!out.startsWith(line, space + 1)) continue;
    found.set(file, out.slice(at, space));
    at = space + 1 + line.length;
  }
  return found;
}

/** lsattr's run on NAMES (one command line): their flags, and the run, for why one is missing. */
export async function lsattr(names: readonly string[], opts: { own?: boolean; cwd?: string } = {}): Promise<{ flags: Map<string, string>; run: ToolRun }> {
  const r = await run('lsattr', [...(opts.own ? ['-d'] : []), '--', ...names], { cwd: opts.cwd } satisfies RunOptions);
  return { flags: lsattrFlags(r.stdout, names), run: r };
}

/**
 * `lsattr -d` of every path (any number): flags by path; paths it could not read (removed
 * meanwhile, say) are missing. ABSENT: what a missing lsattr throws (its own line when not given).
 */
export async function flagsOf(paths: readonly string[], absent?: string): Promise<Map<string, string>> {
  const flags = new Map<string, string>();
  for (const list of argumentLists(paths)) {
    const { flags: found, run: r } = await lsattr(list, { own: true });
    if (r.missing) throw new Error(absent ?? r.error);
    for (const [path, f] of found) flags.set(path, f);
  }
  return flags;
}

/** `chattr FLAG -- PATHS…` (FLAG: "+C", "-C"…). */
export const chattr = (flag: string, paths: readonly string[]): Promise<ToolRun> => run('chattr', [flag, '--', ...paths]);
