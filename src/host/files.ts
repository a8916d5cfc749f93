// Programs run on files whatever bytes their names hold. Node and execa pass every argument as a
// string, so a name that is not UTF-8 cannot reach a child's argv as itself (it would become
// U+FFFD, another name). So each file is opened here and handed to the program as a descriptor of
// its own, named /proc/self/fd/N in its argv: no name's bytes pass through argv, none is parsed back
// out of the program's output (a name that mimics that output, or starts with "-", is never read as
// such), and the program acts on the very file that was looked at, even if its name is renamed or
// swapped meanwhile. filefrag, btrfs filesystem defragment, btrfs property and getfattr/setfattr
// open the path given and so follow the link to the file. lsattr and compsize lstat it first and
// refuse a symlink; for those, `byName` has sh turn octal escapes back into the name's bytes.
import { closeSync, constants, fstatSync, openSync, readFileSync, readlinkSync, type BigIntStats } from 'node:fs';
import { nameText } from '../io.js';
import { run, type ToolRun } from './run.js';

/** A regular file opened to be handed to programs, and what fstat said of it then. */
export interface OpenFile {
  path: Buffer;
  fd: number;
  info: BigIntStats;
}

/** Why a file could not be opened: gone (removed meanwhile), or anything else, in one line. */
export type OpenFailure = { gone: boolean; reason: string };

// O_NOFOLLOW: a symlink put in its place is not followed; O_NONBLOCK: a FIFO put in its place does not
// block the open. (libuv adds O_CLOEXEC: a child gets only the descriptors it is handed.)
const FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

// A system call's error without its code and the path Node adds ("ENOENT: …, open '/x'").
const reasonOf = (e: unknown) => ((e as NodeJS.ErrnoException).code ? (e as Error).message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*$/s, '') : (e as Error).message);

/**
 * Opens PATH (absolute, no symlink in it) read-only, if it is still a regular file reached by that
 * very path: the kernel's name for the descriptor must be PATH, so a directory above it swapped for
 * a symlink meanwhile leads nowhere else. Synchronous: a few system calls, which the thread pool
 * would make 20 times slower for many small files.
 */
export function openRegular(path: Buffer): OpenFile | OpenFailure {
  let fd: number;
  try {
    fd = openSync(path, FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { gone: true, reason: 'removed since it was listed' };
    if (code === 'ELOOP') return { gone: false, reason: 'replaced by a symlink since it was listed' };
    return { gone: false, reason: `cannot open it: ${reasonOf(e)}` };
  }
  try {
    const info = fstatSync(fd, { bigint: true });
    if (!info.isFile()) throw new Error('no longer a regular file: replaced since it was listed');
    const seen = readlinkSync(`/proc/self/fd/${fd}`, { encoding: 'buffer' });
    if (!seen.equals(path)) throw new Error(`moved since it was listed (it is now ${nameText(seen)})`);
    return { path, fd, info };
  } catch (e) {
    closeSync(fd);
    return { gone: false, reason: reasonOf(e) };
  }
}

export const isOpen = (f: OpenFile | OpenFailure): f is OpenFile => 'fd' in f;

export function closeAll(files: readonly OpenFile[]): void {
  for (const f of files) closeSync(f.fd);
}

/** The name a program started by `runOn` knows the I-th file by. */
export const fdPath = (i: number): string => `/proc/self/fd/${3 + i}`;

/**
 * Runs COMMAND ARGS… (src/host/run.ts) with FILES as its descriptors 3, 4…, named fdPath(i); why it
 * could not start, if it could not, is in its stderr.
 */
export async function runOn(files: readonly OpenFile[], command: string, args: string[]): Promise<ToolRun> {
  const r = await run(command, args, { fds: files.map((f) => f.fd) });
  return r.spawnError ? { ...r, stderr: `${r.stderr}${command}: ${r.spawnError.message}` } : r;
}

/**
 * As many files as one child is handed at once: a quarter of the descriptors this process may open
 * (Node raises its soft limit to the hard one, 524288 under systemd, 1024 at the least), at most
 * 2000. Each child started costs 15 to 80 ms on a busy machine, so few children for many files.
 */
export const FILES_PER_CHILD = (() => {
  let limit = 1024;
  try {
    limit = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? limit);
  } catch {
    // No /proc: the least a Linux process gets.
  }
  return Math.max(16, Math.min(2000, Math.floor(limit / 4)));
})();

// The name arrives as `\ooo` escapes (ASCII, so a string argument carries it), printf makes them
// bytes again, and the "." kept to the end protects a name's trailing newlines from $(…).
const UNESCAPE = 'p=$(printf "$1."); p=${p%.}; shift; exec "$@" "$p"';

/**
 * The command line that runs COMMAND ARGS… PATH with PATH's exact bytes as its last argument, for
 * the programs that cannot take /proc/self/fd/N (they lstat the name). The name is looked up when
 * the program runs: for questions about a file, not for acting on it.
 */
export function byName(path: Buffer, command: string, ...args: string[]): [string, string[]] {
  const octal = [...path].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
  return ['sh', ['-c', UNESCAPE, 'sh', octal, command, ...args]];
}
