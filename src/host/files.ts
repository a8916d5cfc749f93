// Programs run on files whatever bytes their names hold. Node and execa pass every argument as a
// string, so a name that is not UTF-8 cannot reach a child's argv as itself (it would become
// U+FFFD, another name). So each file is opened here and handed to the program as a descriptor of
// its own, named /proc/self/fd/N in its argv: no name's bytes pass through argv, none is parsed back
// out of the program's output (a name that mimics that output, or starts with "-", is never read as
// such), and the program acts on the very file that was looked at, even if its name is renamed or
// swapped meanwhile. filefrag, btrfs filesystem defragment, btrfs property and getfattr/setfattr
// open the path given and so follow the link to the file. lsattr and compsize lstat it first and
// refuse a symlink; for those, `byName` has sh turn octal escapes back into the name's bytes.
import { constants } from 'node:fs';
import { open, readlink, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { nameText } from '../io.js';

// As the shell library's nocow_init: sbin first, where filefrag lives on most distributions.
export const TOOL_ENV = { LC_ALL: 'C', PATH: `/usr/sbin:/usr/bin:/sbin:/bin${process.env.PATH ? `:${process.env.PATH}` : ''}` };

/** A regular file opened to be handed to programs, and what fstat said of it then. */
export interface OpenFile {
  path: Buffer;
  handle: FileHandle;
  info: BigIntStats;
}

/** Why a file could not be opened: gone (removed meanwhile), or anything else, in one line. */
export type OpenFailure = { gone: true; reason: string } | { gone: false; reason: string };

// O_NOFOLLOW: a symlink put in its place is not followed; O_NONBLOCK: a FIFO put in its place does not
// block the open. (libuv adds O_CLOEXEC: a child gets only the descriptors it is handed.)
const FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * Opens PATH (absolute, no symlink in it) read-only, if it is still a regular file reached by that
 * very path: the kernel's name for the descriptor must be PATH, so a directory above it swapped for
 * a symlink meanwhile leads nowhere else.
 */
export async function openRegular(path: Buffer): Promise<OpenFile | OpenFailure> {
  let handle: FileHandle;
  try {
    handle = await open(path, FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { gone: true, reason: 'removed since it was listed' };
    if (code === 'ELOOP') return { gone: false, reason: 'replaced by a symlink since it was listed' };
    return { gone: false, reason: `cannot open it: ${(e as Error).message.replace(/^[A-Z]+: /, '').replace(/, open .*$/, '')}` };
  }
  try {
    const info = await handle.stat({ bigint: true });
    if (!info.isFile()) throw new Error('no longer a regular file: replaced since it was listed');
    const seen = await readlink(`/proc/self/fd/${handle.fd}`, { encoding: 'buffer' });
    if (!seen.equals(path)) throw new Error(`moved since it was listed (it is now ${nameText(seen)})`);
    return { path, handle, info };
  } catch (e) {
    await handle.close();
    return { gone: false, reason: (e as Error).message };
  }
}

/** The name a program started by `runOn` knows the I-th file by. */
export const fdPath = (i: number): string => `/proc/self/fd/${3 + i}`;

/**
 * The stdio option that hands FILES to a child as its descriptors 3, 4…, in order (fdPath(i) in
 * its argv), stdin closed and output piped.
 */
export function handing(files: readonly OpenFile[]): { stdio: ['ignore', 'pipe', 'pipe', ...3[]] } {
  // execa's types list the descriptors 3 to 9 only; it hands any number to child_process as it is.
  return { stdio: ['ignore', 'pipe', 'pipe', ...files.map((f) => f.handle.fd as 3)] };
}

/** As many files as one child is handed at once: far below the descriptor limit (1024 at least). */
export const FILES_PER_CHILD = 200;

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
