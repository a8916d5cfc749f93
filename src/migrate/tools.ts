// The programs nocow migrate asks (lsattr, filefrag, chattr, cp, fallocate, sync, btrfs), run
// without execa (about 65 ms to import) and, wherever a program takes many files, with many
// files per process: the cost of a directory of small files is in its files, not in processes.
import { spawn } from 'node:child_process';

export interface ToolResult {
  ok: boolean;
  /** The program is not installed. */
  missing: boolean;
  stdout: string;
  /** The signal that killed the program, the first line of stderr, or why it did not run or end well. */
  error: string;
}

// As the shell library's nocow_init: sbin first, where btrfs lives on most distributions.
const toolEnv = (): NodeJS.ProcessEnv => ({ ...process.env, LC_ALL: 'C', PATH: `/usr/sbin:/usr/bin:/sbin:/bin${process.env.PATH ? `:${process.env.PATH}` : ''}` });

/** What stderr keeps of a program: enough for its first lines. */
const STDERR_KEPT = 64 * 1024;

/** Runs COMMAND with ARGS, stdin empty; never rejects. `stderr` has all that was kept of it. */
export function tool(command: string, args: string[]): Promise<ToolResult & { stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: toolEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = Buffer.alloc(0);
    let spawnError: Error | undefined;
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      if (err.length < STDERR_KEPT) err = Buffer.concat([err, chunk]);
    });
    child.on('error', (error) => (spawnError = error));
    child.on('close', (code, signal) => {
      const stderr = err.toString('utf8');
      const reason = spawnError
        ? `${command}: ${spawnError.message}`
        : signal !== null
          ? `${command} was killed by ${signal}`
          : `${command} failed with exit status ${code}`;
      resolve({
        ok: spawnError === undefined && code === 0,
        missing: (spawnError as NodeJS.ErrnoException | undefined)?.code === 'ENOENT',
        stdout: Buffer.concat(out).toString('utf8'),
        // Killed, it has no exit status, and whatever it said before is not why it ended.
        error: (signal === null && stderr.split('\n').find(Boolean)) || reason,
        stderr,
      });
    });
  });
}

/** Like tool(), but a failure throws its first line of stderr. */
export async function mustRun(command: string, args: string[]): Promise<string> {
  const run = await tool(command, args);
  if (!run.ok) throw new Error(run.error);
  return run.stdout;
}

// Well under ARG_MAX (2 MiB on Linux, environment included).
const ARGS_BYTES = 128 * 1024;

/** NAMES cut into lists that fit one command line each. */
export function argumentLists(names: string[]): string[][] {
  const lists: string[][] = [];
  let list: string[] = [];
  let bytes = 0;
  for (const name of names) {
    const size = Buffer.byteLength(name) + 1;
    if (list.length > 0 && bytes + size > ARGS_BYTES) {
      lists.push(list);
      list = [];
      bytes = 0;
    }
    list.push(name);
    bytes += size;
  }
  if (list.length > 0) lists.push(list);
  return lists;
}

/**
 * `FLAGS NAME` per file as `lsattr -d` prints them, in argument order. Walking the known names
 * (rather than splitting lines) keeps names with spaces or newlines intact; a file lsattr failed
 * on has no line and no entry.
 */
export function lsattrFlags(out: string, files: string[]): Map<string, string> {
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

const EXTENTS = /^(\d+) extents? found[^\n]*\n/;

/** `NAME: N extents found` per file, as filefrag prints them, read like lsattrFlags. */
export function filefragExtents(out: string, files: string[]): Map<string, number> {
  const found = new Map<string, number>();
  let at = 0;
  for (const file of files) {
    const head = `${file}: `;
    const start = out.indexOf(head, at);
    if (start < 0) continue;
    const m = EXTENTS.exec(out.slice(start + head.length, start + head.length + 200));
    if (!m) continue;
    found.set(file, Number(m[1]));
    at = start + head.length + m[0].length;
  }
  return found;
}

/** lsattr -d of every path (any number): flags by path; paths it could not read (removed meanwhile, say) are missing. */
export async function flagsOf(paths: string[]): Promise<Map<string, string>> {
  const flags = new Map<string, string>();
  for (const list of argumentLists(paths)) {
    const run = await tool('lsattr', ['-d', '--', ...list]);
    if (run.missing) throw new Error(run.error);
    for (const [path, f] of lsattrFlags(run.stdout, list)) flags.set(path, f);
  }
  return flags;
}

/** filefrag's extent count of every path (any number); paths it could not tell are missing. */
export async function extentCounts(paths: string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const list of argumentLists(paths)) {
    const run = await tool('filefrag', ['--', ...list]);
    for (const [path, n] of filefragExtents(run.stdout, list)) counts.set(path, n);
  }
  return counts;
}

/** One extent of a file's map, in bytes. */
export interface Extent {
  offset: number;
  length: number;
  /** Preallocated and never written: reads as zeros. */
  unwritten: boolean;
}

// " 12:   10485760..  11534335: 4879024128..4880072703:  1048576:  10485760: last,unwritten"
const EXTENT_LINE = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*\d+\.\.\s*\d+:\s*(\d+):(?:\s*\d+:)?\s*([a-z_,]*)\s*$/;

/** The extents `filefrag -v -b1` prints for one file (FIEMAP), in bytes. */
export function parseExtentMap(out: string): Extent[] {
  const extents: Extent[] = [];
  for (const line of out.split('\n')) {
    const m = EXTENT_LINE.exec(line);
    if (!m) continue;
    const flags = m[4]!.split(',');
    extents.push({ offset: Number(m[1]), length: Number(m[3]), unwritten: flags.includes('unwritten') });
  }
  return extents;
}

/**
 * PATH's extent map (FIEMAP, as SEEK_DATA/SEEK_HOLE would tell it, which Node cannot ask), its
 * dirty pages written out first (-s) so that no data waits in the page cache unmapped.
 */
export async function extentMap(path: string): Promise<Extent[]> {
  const out = await mustRun('filefrag', ['-v', '-s', '-b1', '--', path]);
  // A file of holes alone has no extent, and no table.
  if (/: 0 extents found$/m.test(out)) return [];
  // Without FIEMAP, filefrag falls back to FIBMAP and prints no such table: no map, then.
  if (!/^ ext:\s+logical_offset:/m.test(out)) throw new Error(`filefrag could not map ${path} (no FIEMAP)`);
  return parseExtentMap(out);
}
