// What the steps of nocow convert share: its types, its marks on NEW and PATH, the tool runner
// that throws, and the two questions asked before and after the swap: which mounts are in the
// way, which process holds a part of a tree.
import { closeSync, fsyncSync, lstatSync, openSync } from 'node:fs';
import { CONVERT_MARKER } from '../facts.js';
import type { Target } from '../declaration/types.js';
import { identity, openers, openersText } from '../host/openers.js';
import { run as runTool } from '../host/run.js';
import { aliasesOf, isMountPoint, mountsInsideAnywhere, mountsOfSource, mountTable, shownPoint } from '../host/mounts.js';
import { failure, removeTree, shown, walk, type Entry, type Tree } from './tree.js';

/** On NEW from its creation, on PATH until the old tree is gone: "this subvolume is nocow convert's copy". */
export const MARKER = CONVERT_MARKER;

export type Result = 'converted' | 'refused' | 'nothing-to-do' | 'would-convert' | 'failed';

export interface Outcome {
  path: string;
  result: Result;
  /** Why refused, failed or nothing to do; for converted, what was left for later (exit 1); else null. */
  reason: string | null;
  /** Regular files (names) and their bytes (each inode once): copied, or that would be. */
  files: number;
  bytes: number;
}

export interface Progress {
  /** A phase of bytes: "copying", "verifying", "checking"; FIRST: the file it starts with. */
  start(phase: string, total: number, first: string): void;
  file(rel: string): void;
  add(bytes: number): void;
  tick(): Promise<void>;
  stop(): void;
}

export interface ConvertContext {
  dryRun: boolean;
  forceNocow: boolean;
  /** One line on stdout about PATH (the command adds "nocow: PATH: "). */
  say(line: string): void;
  progress?: Progress;
  /** Takes PATH's lock (src/host/lock.ts), held until PATH is done; not called on a dry run. */
  lock(): Promise<void>;
}

export interface ConvertRequest {
  /** Absolute, symlinks resolved. */
  path: string;
  /** What is declared of it (a declared target's settings, or the defaults for an undeclared path). */
  subject: { name: string | null } & Pick<Target, 'subvolume' | 'nocow' | 'redundancy'>;
}

/** PATH and the two names beside it (src/facts.ts temporaryName): NEW, the copy; OLD, the original once swapped out. */
export interface Names {
  P: string;
  N: string;
  O: string;
}

/** PATH's outcome: RESULT, the reason, and the files and bytes of TREE. */
export type OutcomeOf = (result: Result, reason: string | null, tree?: Tree) => Outcome;

/** A check that refuses: PATH is left as it was (the run says so, exit 1). */
export class Refusal extends Error {}

/** Runs a tool; throws its first line of stderr, or the signal that ended it. */
export async function run(command: string, args: string[]): Promise<string> {
  const r = await runTool(command, args);
  if (r.missing) throw new Error(`${command} is not installed`);
  if (!r.ok) throw new Error(failure(command, r));
  return r.stdout;
}

export type Presence = 'missing' | 'dir' | 'other';

export function presence(path: string): Presence {
  const st = lstatSync(path, { throwIfNoEntry: false });
  return st === undefined ? 'missing' : st.isDirectory() ? 'dir' : 'other';
}

export async function marked(path: string): Promise<boolean> {
  return (await runTool('getfattr', ['--only-values', '-h', '-n', MARKER, '--', path])).ok;
}

export async function unmark(path: string): Promise<void> {
  if (await marked(path)) await run('setfattr', ['-h', '-x', MARKER, '--', path]);
}

export function fsyncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Why the mounts around the directory PATH forbid copying it and moving it away, in words;
 * undefined when none do. Seen through every mount of its file system: a bind mount of the same
 * file system inside it (which device numbers do not show: its files would be copied, then
 * removed with the old tree), a mount showing it or a directory inside it elsewhere (it would
 * show the old, removed tree after the swap), a mount on another path of it.
 */
export function mountsInTheWay(path: string): string | undefined {
  const table = mountTable();
  const more = (n: number) => (n > 1 ? ` (and ${n - 1} more)` : '');
  const inside = mountsInsideAnywhere(path, table);
  if (inside.length > 0) {
    return `${shownPoint(inside[0]!)} is a mount point inside it${more(inside.length)}: its files are not this directory's, and a copy cannot keep a mount: unmount it first`;
  }
  const showing = mountsOfSource(path, table);
  if (showing.length > 0) {
    return `${shownPoint(showing[0]!)} shows it or a directory inside it (a bind mount)${more(showing.length)}: after the swap it would show the old, removed tree: unmount it first`;
  }
  const covered = aliasesOf(path, table).find((alias) => alias !== path && isMountPoint(alias, table));
  if (covered !== undefined) return `${covered}, another path to it, is a mount point: unmount it first`;
  return undefined;
}

export const parentRel = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');

/** The first file whose bytes are read, for the first frame of a progress bar. */
export const firstFile = (tree: Tree) => tree.entries.find((e) => e.kind === 'file' && e.linkOf === undefined)?.rel ?? '';

const holdable = (e: Entry) => e.kind === 'dir' || (e.kind === 'file' && e.linkOf === undefined);

/**
 * "a.img is open by process 12 (qemu)", "sub is the working directory of process 34 (bash)": the
 * first file or directory of TREE that a process holds (open, mapped, its working directory or
 * root; a loop device attached to a file), and how many more; undefined when none is. One scan.
 */
export function inUse(tree: Tree): string | undefined {
  const users = openers(new Set(tree.entries.filter(holdable).map((e) => identity(e.st))), { places: true });
  if (users.size === 0) return undefined;
  const named = tree.entries.filter((e) => holdable(e) && users.has(identity(e.st)));
  const first = named[0]!;
  const more = named.length > 1 ? ` (and ${named.length - 1} more)` : '';
  return `${shown(first.rel)} is ${openersText(users.get(identity(first.st))!)}${more}`;
}


/** Removes NEW, a copy of ours (or the library's empty leftover): every entry by name, then the subvolume; never through a mount. */
export function removeCopy(path: string): void {
  const mounted = mountsInTheWay(path);
  if (mounted) throw new Error(mounted);
  removeTree(walk(path));
}
