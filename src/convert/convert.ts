// nocow convert PATH: a filled plain directory made a subvolume, with +C as declared, on request.
//
//   1. checks (first without the lock, then again holding PATH's lock, src/host/lock.ts, the
//      shell library's: a refusal takes no lock, as a target in place takes none): on Btrfs, not
//      a subvolume or mount point; nothing mounted inside it, no other mount showing it or a
//      directory inside it, no mount on another path of it — seen through every mount of its
//      file system (src/host/mounts.ts: a bind mount of the same file system shows no other
//      device number); no nested subvolume, no hard link to outside, no name that is not UTF-8,
//      nothing immutable; no file or directory held by a process (open or mapped, its working
//      directory or root) and no file under a loop device (by device and inode); room for the
//      copy, and a data profile that keeps no checksums unless +C is not wanted or --force-nocow
//   2. NEW = temporaryName(PATH, ".nocow-new"), the name the shell library repairs: a new
//      subvolume beside PATH, marked as a copy of ours (the xattr trusted.nocow-kit.convert), +C
//      while empty when +C is declared, so every directory and file made in it inherits it
//   3. copy: directories, regular files by migrate's copy engine (src/host/copy.ts: plain
//      reads and writes, never a reflink, the copy written with O_DIRECT; holes skipped by FIEMAP
//      and kept, preallocation kept), hard links as hard links; then
//      `cp -a --attributes-only` makes the symlinks, fifos, sockets and devices and gives every
//      entry its owner, mode, times, xattrs, ACLs and SELinux label; then syncfs (`sync -f`)
//   4. verify: the copy walked again, every entry against the original: type, mode, owner, size,
//      mtime, device number, link target, hard links, xattrs, +C, and every file's data read
//      back from the disk (O_DIRECT) against the SHA-256 of what was read from the original;
//      and PATH unchanged since step 1 (lstat of every entry: a write moves mtime or ctime, an
//      entry added or removed its directory's)
//   5. last checks (nothing held, nothing mounted in or of PATH, PATH and NEW unchanged), then
//      the swap by two renames: PATH → OLD = temporaryName(PATH, ".nocow-old"), NEW → PATH;
//      fsync of the parent
//   6. OLD looked at again. A process in it (whoever was inside as the last checks ended went
//      along with it), a mount in or of it, or any change in it since step 1 means something
//      reached it: the swap is undone (PATH → NEW, OLD → PATH), the original is back in place
//      with all it received, NEW is removed as an unfinished copy (or, reached too while it was
//      PATH, kept with its mark taken off, so that no run removes it), and the run says so in
//      one line, exit 1. Otherwise OLD is removed by the names walked (unlink, rmdir: anything
//      added since makes its directory's rmdir fail, and stays), each directory entered by its
//      one name and found to be the one walked (device and inode) before anything in it is
//      unlinked: a mount made on it meanwhile is never gone through, OLD is kept. The mark is
//      taken off PATH last
//
// Killed at any point (kill -9, power loss: everything is on disk by step 4), a re-run — holding
// the lock again — reads the state off the three names and finishes or undoes, losing nothing:
//
//   PATH          NEW              OLD       what happened                 the re-run
//   ------------  ---------------  --------  ----------------------------  --------------------------------------
//   plain dir     absent           absent    nothing yet, or undone        convert from step 1
//   plain dir     ours (marked)    absent    killed in steps 2–5, before   remove NEW (only a copy: the originals
//                                            the first rename, or after    are in PATH), convert from step 1
//                                            a swap back
//   plain dir     empty, unmarked  absent    the shell library's leftover  rmdir NEW, convert from step 1
//   plain dir     holds data,      —         not ours                      refused: left alone
//                 unmarked
//   absent        ours (marked)    dir       killed between the renames    rename NEW → PATH (NEW was verified
//                                            (of the swap, or of a swap    before the first rename), then as below
//                                            back: then OLD differs from   (after a swap back: OLD holds what PATH
//                                            PATH)                         does not, so it is kept; nothing lost)
//   absent        absent           dir       (not left by convert; the     rename OLD → PATH (as the library),
//                                            library restores it too)      convert from step 1
//   subvolume     absent           dir       killed in step 6, before or   verify OLD against PATH again: every
//                                            while OLD was removed         entry left in OLD must be in PATH, the
//                                                                          same bytes and metadata; then remove
//                                                                          OLD and the mark (if not: OLD kept)
//   subvolume,    absent           absent    killed before the mark was    take the mark off
//   marked                                   taken off
//   subvolume     absent           absent    done                          nothing to do
//
// The shell library (nocow apply, every scriptlet) repairs only with rmdir and mv: meeting these
// states it completes the swap (PATH absent, NEW and OLD present), or leaves a non-empty NEW or
// OLD alone with a warning; the next nocow convert finishes from there.
import {
  closeSync,
  constants,
  fsyncSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmdirSync,
  statfsSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { CONVERT_MARKER, TEMP_SUFFIX, temporaryName } from '../facts.js';
import { reasonOf } from '../errors.js';
import { size } from '../io.js';
import type { Target } from '../declaration/types.js';
import { fileSystemName } from '../host/btrfs.js';
import { identity, openers, openersText } from '../host/openers.js';
import { probeDirectory, probeProfile } from '../host/probe.js';
import { run as runTool } from '../host/run.js';
import { SPACE_MARGIN, settled } from '../host/settle.js';
import { expectsNocow } from '../policy.js';
import { aliasesOf, isMountPoint, mountsInsideAnywhere, mountsOfSource, mountTable, shownPoint } from '../host/mounts.js';
import {
  DIRECT_MIN,
  Mismatch,
  READ_BACK,
  ShortRead,
  WRITE_DIRECT,
  copyData,
  planCopy,
  plannedBytes,
  verifyCopy as verifyData,
  writesDirect,
  type CopyPlan,
  type Kept,
} from '../host/copy.js';
import {
  at,
  failure,
  flagsOf,
  lastChange,
  linkTarget,
  metadataDifference,
  openToRead,
  removeTree,
  sha256File,
  shown,
  treeChange,
  walk,
  xattrDifference,
  xattrsOf,
  type Entry,
  type Tree,
  type Xattrs,
} from './tree.js';

/** On NEW from its creation, on PATH until the old tree is gone: "this subvolume is nocow convert's copy". */
export const MARKER = CONVERT_MARKER;
// Room for metadata beyond the copy's own blocks: SPACE_MARGIN, and some per entry.
const SPACE_PER_ENTRY = 4096;

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

class Refusal extends Error {}

/** Runs a tool; throws its first line of stderr, or the signal that ended it. */
async function run(command: string, args: string[]): Promise<string> {
  const r = await runTool(command, args);
  if (r.missing) throw new Error(`${command} is not installed`);
  if (!r.ok) throw new Error(failure(command, r));
  return r.stdout;
}

type Presence = 'missing' | 'dir' | 'other';

function presence(path: string): Presence {
  const st = lstatSync(path, { throwIfNoEntry: false });
  return st === undefined ? 'missing' : st.isDirectory() ? 'dir' : 'other';
}

async function marked(path: string): Promise<boolean> {
  return (await runTool('getfattr', ['--only-values', '-h', '-n', MARKER, '--', path])).ok;
}

async function unmark(path: string): Promise<void> {
  if (await marked(path)) await run('setfattr', ['-h', '-x', MARKER, '--', path]);
}

function fsyncDir(path: string): void {
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
function mountsInTheWay(path: string): string | undefined {
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

const parentRel = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');

/** The first file whose bytes are read, for the first frame of a progress bar. */
const firstFile = (tree: Tree) => tree.entries.find((e) => e.kind === 'file' && e.linkOf === undefined)?.rel ?? '';

const holdable = (e: Entry) => e.kind === 'dir' || (e.kind === 'file' && e.linkOf === undefined);

/**
 * "a.img is open by process 12 (qemu)", "sub is the working directory of process 34 (bash)": the
 * first file or directory of TREE that a process holds (open, mapped, its working directory or
 * root; a loop device attached to a file), and how many more; undefined when none is. One scan.
 */
function inUse(tree: Tree): string | undefined {
  const users = openers(new Set(tree.entries.filter(holdable).map((e) => identity(e.st))), { places: true });
  if (users.size === 0) return undefined;
  const named = tree.entries.filter((e) => holdable(e) && users.has(identity(e.st)));
  const first = named[0]!;
  const more = named.length > 1 ? ` (and ${named.length - 1} more)` : '';
  return `${shown(first.rel)} is ${openersText(users.get(identity(first.st))!)}${more}`;
}

/** A file's data as copied: what was copied of it, and the SHA-256 of what was read, for the read-back. */
interface Copied {
  plan: CopyPlan;
  kept: Kept;
}

/**
 * The copy of one regular file by the engine nocow migrate uses (src/host/copy.ts): holes
 * skipped, preallocation kept, written with O_DIRECT (so that the read-back reads the disk),
 * large originals read with O_DIRECT; +C (or not) as its new directory gives it unless `flip`
 * says otherwise.
 */
async function copyFile(src: string, dst: string, e: Entry, flip: boolean | undefined, progress: Progress | undefined): Promise<Copied> {
  const size = Number(e.st.size);
  const large = size >= DIRECT_MIN;
  const input = openToRead(src, large ? constants.O_DIRECT : 0);
  let out: number | undefined;
  let direct: number | undefined;
  try {
    out = openSync(dst, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    // +C (or its absence) only takes while the file is empty.
    if (flip !== undefined) await run('chattr', [flip ? '+C' : '-C', '--', dst]);
    const plan = await planCopy(src, { size, blocks: Number(e.st.blocks) }, dst, out);
    const writeDirect = writesDirect(size);
    if (writeDirect) direct = openSync(dst, WRITE_DIRECT);
    const add = (n: number) => progress?.add(n);
    const tick = () => progress?.tick() ?? Promise.resolve();
    // Read back once the whole tree is on the disk (verifyCopy): only its SHA-256 is kept meanwhile.
    const kept = await copyData(input, direct ?? out, plan, { readDirect: large, writeDirect, keep: 'sha256' }, add, tick);
    // The last block was written whole.
    if (writeDirect) ftruncateSync(out, size);
    // The holes, not read, are copied too as far as the progress bar goes.
    progress?.add(size - plannedBytes(plan));
    return { plan, kept: kept! };
  } catch (error) {
    if (error instanceof ShortRead) throw new Refusal(`it changed while being copied (${shown(e.rel)} was written to)`);
    throw error;
  } finally {
    if (direct !== undefined) closeSync(direct);
    if (out !== undefined) closeSync(out);
    closeSync(input);
  }
}

/**
 * The copy against the original, entry by entry; the first difference in words, or undefined.
 * `copied`: each file's plan and the SHA-256 of what was read for it, which its copy, read back
 * from the disk with O_DIRECT (past the page cache), must match.
 */
async function verifyCopy(
  original: Tree,
  copy: Tree,
  originalXattrs: Xattrs,
  copied: Map<string, Copied>,
  wantC: (rel: string) => boolean,
  progress: Progress | undefined,
): Promise<string | undefined> {
  if (copy.problems.length > 0) return copy.problems[0];
  const copyXattrs = await xattrsOf(copy.root);
  const copyFlags = await flagsOf(copy);
  for (const e of original.entries) {
    const c = copy.byRel.get(e.rel);
    if (!c) return `${shown(e.rel)} is missing in the copy`;
    const d = metadataDifference(e, c, { times: true, links: true });
    if (d) return `${shown(e.rel)}: ${d} in the copy`;
    if (e.kind === 'symlink' && !linkTarget(original.root, e.rel).equals(linkTarget(copy.root, c.rel))) return `${shown(e.rel)}: another link target in the copy`;
    const x = xattrDifference(originalXattrs.get(e.rel), copyXattrs.get(e.rel), e.rel === '' ? [MARKER] : []);
    if (x) return `${shown(e.rel)}: ${x} in the copy`;
    if ((e.kind === 'file' || e.kind === 'dir') && (copyFlags.get(e.rel) ?? '').includes('C') !== wantC(e.rel)) {
      return `${shown(e.rel)}: ${wantC(e.rel) ? 'no +C' : '+C'} in the copy`;
    }
  }
  if (copy.entries.length !== original.entries.length) {
    const extra = copy.entries.find((c) => !original.byRel.has(c.rel))!;
    return `${shown(extra.rel)} is in the copy, not in the original`;
  }
  progress?.start('verifying', original.bytes, firstFile(original));
  for (const e of original.entries) {
    if (e.kind !== 'file' || e.linkOf !== undefined) continue;
    progress?.file(e.rel);
    const { plan, kept } = copied.get(e.rel)!;
    const check = openSync(at(copy.root, e.rel), READ_BACK);
    try {
      await verifyData(check, plan, kept, (n) => progress?.add(n), () => progress?.tick() ?? Promise.resolve());
    } catch (error) {
      if (error instanceof Mismatch) return `${shown(e.rel)}: the copy does not read back the same bytes`;
      throw error;
    } finally {
      closeSync(check);
    }
    progress?.add(plan.size - plannedBytes(plan));
  }
  return undefined;
}

/**
 * After an interrupted run: is everything left in OLD in PATH, the same? (OLD may be partly removed
 * already, so its directories' times are not compared, nor hard link counts.) The first entry that
 * is not, in words; undefined when OLD holds nothing PATH does not.
 */
async function oldHeldBy(old: Tree, current: Tree, progress: Progress | undefined): Promise<string | undefined> {
  if (old.problems.length > 0) return old.problems[0];
  const [oldXattrs, currentXattrs] = [await xattrsOf(old.root), await xattrsOf(current.root)];
  for (const e of old.entries) {
    const c = current.byRel.get(e.rel);
    if (!c) return `${shown(e.rel)} is not in ${current.root}`;
    const d = metadataDifference(e, c, { times: e.kind !== 'dir', links: false });
    if (d) return `${shown(e.rel)}: ${d} in ${current.root}`;
    if (e.kind === 'symlink' && !linkTarget(old.root, e.rel).equals(linkTarget(current.root, e.rel))) return `${shown(e.rel)}: another link target in ${current.root}`;
    const x = xattrDifference(oldXattrs.get(e.rel), currentXattrs.get(e.rel), e.rel === '' ? [MARKER] : []);
    if (x) return `${shown(e.rel)}: ${x} in ${current.root}`;
  }
  progress?.start('checking', 2 * old.bytes, firstFile(old));
  for (const e of old.entries) {
    if (e.kind !== 'file' || e.linkOf !== undefined) continue;
    progress?.file(e.rel);
    const tick = progress && (() => progress.tick());
    const add = (n: number) => progress?.add(n);
    if ((await sha256File(at(old.root, e.rel), add, tick)) !== (await sha256File(at(current.root, e.rel), add, tick))) {
      return `${shown(e.rel)}: other bytes in ${current.root}`;
    }
  }
  return undefined;
}

/** Removes NEW, a copy of ours (or the library's empty leftover): every entry by name, then the subvolume; never through a mount. */
function removeCopy(path: string): void {
  const mounted = mountsInTheWay(path);
  if (mounted) throw new Error(mounted);
  removeTree(walk(path));
}

/** The walk of PATH once the clock is past its last change (src/host/settle.ts). */
async function settledWalk(path: string): Promise<Tree> {
  return settled(() => walk(path), (tree) => [lastChange(tree)]);
}

/** Converts one PATH, or finishes an interrupted conversion of it; see the table at the top. */
export async function convertPath(req: ConvertRequest, ctx: ConvertContext): Promise<Outcome> {
  const P = req.path;
  const N = temporaryName(P, TEMP_SUFFIX.new);
  const O = temporaryName(P, TEMP_SUFFIX.old);
  const outcome = (result: Result, reason: string | null, tree?: Tree): Outcome => ({
    path: P,
    result,
    reason,
    files: tree?.files ?? 0,
    bytes: tree?.bytes ?? 0,
  });
  try {
    // As the shell library: the checks first, without the lock; a refusal, or nothing to do,
    // needs none. Then, holding it, every condition is checked anew and acted on.
    const plan = await convertLocked(req, { ...ctx, dryRun: true }, N, O, outcome);
    if (ctx.dryRun || plan.result !== 'would-convert') return plan;
    await ctx.lock();
    return await convertLocked(req, ctx, N, O, outcome);
  } catch (error) {
    if (error instanceof Refusal) return outcome('refused', error.message);
    return outcome('failed', reasonOf(error));
  }
}

async function convertLocked(
  req: ConvertRequest,
  ctx: ConvertContext,
  N: string,
  O: string,
  outcome: (result: Result, reason: string | null, tree?: Tree) => Outcome,
): Promise<Outcome> {
  const P = req.path;
  const s = req.subject;
  const dry = ctx.dryRun;
  const notes: string[] = [];
  if (s.subvolume === 'never') throw new Refusal(`declared subvolume: never${s.name ? ` (target ${s.name})` : ''}`);

  // The state an interrupted run may have left (the table at the top).
  let p = presence(P);
  let n = presence(N);
  const o = presence(O);
  if (p === 'missing') {
    if (o !== 'dir') {
      if (n === 'dir' && (await marked(N))) throw new Refusal(`${P} is missing; ${N} holds a copy of it that was not verified: left alone`);
      throw new Refusal(`${P} does not exist`);
    }
    if (n === 'dir') {
      if (!(await marked(N))) throw new Refusal(`${N} and ${O} are left by an interrupted nocow apply: nocow apply repairs them`);
      if (dry) return outcome('would-convert', `would complete an interrupted conversion: rename ${N} to ${P}, check ${O} against it, then remove ${O}`);
      renameSync(N, P);
      fsyncDir(dirname(P));
      ctx.say(`completed the swap of an interrupted conversion; ${O} is checked against it next`);
      p = 'dir';
      n = 'missing';
    } else if (n === 'missing') {
      if (dry) return outcome('would-convert', `would restore ${P} from ${O}, left by an interrupted conversion, then convert it`);
      renameSync(O, P);
      fsyncDir(dirname(P));
      ctx.say(`restored from ${O}, left by an interrupted conversion`);
      return convertLocked(req, ctx, N, O, outcome);
    } else throw new Refusal(`${N} is in the way (not left by nocow): move it away`);
  }
  if (p !== 'dir') throw new Refusal(`${P} is not a directory`);
  if (n !== 'missing') {
    if (n !== 'dir') throw new Refusal(`${N} is in the way (not left by nocow): move it away`);
    if (await marked(N)) {
      if (dry) notes.push(`would first remove ${N}, the unfinished copy of an interrupted run`);
      else {
        removeCopy(N);
        fsyncDir(dirname(P));
        ctx.say(`removed ${N}, the unfinished copy of an interrupted run (the originals are in place)`);
      }
    } else if (readdirSync(N).length === 0) {
      if (dry) notes.push(`would first remove the empty ${N}, left by an interrupted run`);
      else {
        rmdirSync(N);
        ctx.say(`removed the empty ${N}, left by an interrupted run`);
      }
    } else throw new Refusal(`${N} is left over and holds files that nocow convert did not put there: left alone`);
  }

  const fsName = await fileSystemName(P);
  if (!('name' in fsName) || fsName.name !== 'btrfs') throw new Refusal(`not on Btrfs (${'name' in fsName ? fsName.name : 'unknown'})`);
  const problems: string[] = [];
  const profiled = probeProfile(P);
  const facts = await probeDirectory(P, lstatSync(P), problems);
  const { profile, progs, problem } = await profiled;
  if (problem) problems.push(problem);
  if (facts.subvolume) {
    if (o === 'missing') {
      // Killed after the old tree was removed: only the mark is left to take off.
      if (!(await marked(P))) return outcome('nothing-to-do', 'already a subvolume');
      if (dry) return outcome('would-convert', `would take the mark of an interrupted conversion (${MARKER}) off it`);
      await unmark(P);
      ctx.say(`finished an interrupted conversion: took its mark (${MARKER}) off`);
      return outcome('converted', null, walk(P));
    }
    if (o !== 'dir') throw new Refusal(`${O} is in the way (not left by nocow): move it away`);
    return finishOld(P, O, ctx, outcome);
  }
  if (facts.mountPoint || isMountPoint(P)) throw new Refusal('a mount point (a file system or a bind mount is mounted there): convert the directory it comes from');
  const mounted = mountsInTheWay(P);
  if (mounted) throw new Refusal(mounted);
  if (!progs) throw new Refusal('btrfs-progs is not installed: a subvolume cannot be made');
  if (problems.length > 0) throw new Refusal(problems[0]!);
  if (o !== 'missing') {
    if (o === 'dir' && readdirSync(O).length === 0) {
      if (dry) notes.push(`would first remove the empty ${O}, left by an interrupted run`);
      else {
        rmdirSync(O);
        ctx.say(`removed the empty ${O}, left by an interrupted run`);
      }
    } else throw new Refusal(`${O} is in the way (not left by nocow convert on a plain ${P}): move it away`);
  }

  const wantC = s.nocow;
  if (wantC && !expectsNocow(s, profile, ctx.forceNocow)) {
    throw new Refusal(`the data profile is ${profile}: +C would remove the checksums its self-healing needs (--force-nocow overrides)`);
  }

  const tree = await settledWalk(P);
  if (tree.problems.length > 0) throw new Refusal(`${tree.problems[0]}${tree.problems.length > 1 ? ` (and ${tree.problems.length - 1} more)` : ''}`);
  const flags = await flagsOf(tree);
  for (const e of tree.entries) {
    const f = flags.get(e.rel) ?? '';
    if (f.includes('i')) throw new Refusal(`${shown(e.rel)} is immutable (chattr +i): chattr -i it first`);
    if (f.includes('a')) throw new Refusal(`${shown(e.rel)} is append-only (chattr +a): chattr -a it first`);
  }
  const xattrs = await xattrsOf(P);
  if (wantC) {
    for (const [rel, names] of xattrs) {
      const value = names.get('btrfs.compression');
      if (value === undefined) continue;
      const algorithm = Buffer.from(value.replace(/^0x/, ''), 'hex').toString('utf8');
      throw new Refusal(`${shown(rel)} is marked for compression (${algorithm}), which +C cannot be set with: chattr -c it first, or declare nocow: false`);
    }
  }
  // Data written and not yet on the disk (delayed allocation) is not counted out of statfs's free
  // space until it is written: without this, a tree just written would pass and meet ENOSPC mid-copy.
  await run('sync', ['-f', '--', P]);
  const fs = statfsSync(dirname(P), { bigint: false });
  const free = fs.bavail * fs.bsize;
  const needed = tree.allocated + SPACE_MARGIN + tree.entries.length * SPACE_PER_ENTRY;
  if (free < needed) throw new Refusal(`not enough free space for the copy (${size(free)} free, ${size(needed)} needed)`);
  const busy = inUse(tree);
  if (busy) throw new Refusal(`${busy}: stop it first`);
  if (dry) return outcome('would-convert', notes.length > 0 ? notes.join('; ') : null, tree);

  // Acting from here. Until the first rename, PATH is untouched: a failure removes NEW and says so.
  const want = (rel: string) => wantC || (flags.get(rel) ?? '').includes('C');
  let step = `creating the subvolume ${N}`;
  let copy: Tree | undefined;
  try {
    await run('btrfs', ['subvolume', 'create', '--', N]);
    step = `marking ${N}`;
    await run('setfattr', ['-h', '-n', MARKER, '-v', `0x${Buffer.from(P).toString('hex')}`, '--', N]);
    if (want('')) await run('chattr', ['+C', '--', N]);
    const hashes = new Map<string, Copied>();
    ctx.progress?.start('copying', tree.bytes, firstFile(tree));
    for (const e of tree.entries) {
      if (e.rel === '') continue;
      step = `copying ${shown(e.rel)}`;
      const dst = at(N, e.rel);
      const inherited = want(parentRel(e.rel));
      if (e.kind === 'dir') {
        mkdirSync(dst, 0o700);
        if (want(e.rel) !== inherited) await run('chattr', [want(e.rel) ? '+C' : '-C', '--', dst]);
      } else if (e.kind === 'file') {
        if (e.linkOf !== undefined) linkSync(at(N, e.linkOf), dst);
        else {
          ctx.progress?.file(e.rel);
          hashes.set(e.rel, await copyFile(at(P, e.rel), dst, e, want(e.rel) === inherited ? undefined : want(e.rel), ctx.progress));
        }
      }
    }
    step = 'copying the attributes';
    // Creates the symlinks, fifos, sockets and devices, and gives every entry (NEW too) its owner, mode, times and xattrs.
    await run('cp', ['-a', '-x', '--attributes-only', '-T', '--', P, N]);
    step = 'syncing the copy to disk';
    await run('sync', ['-f', '--', N]);
    step = 'verifying the copy';
    copy = walk(N);
    const difference = await verifyCopy(tree, copy, xattrs, hashes, want, ctx.progress);
    if (difference) throw new Error(`the copy is not the same (${difference})`);
    const changed = treeChange(tree);
    if (changed) throw new Refusal(`it changed while being copied (${changed})`);
    // The last checks, then at once the renames.
    step = 'the last checks';
    const held = inUse(tree);
    if (held) throw new Refusal(`${held}: stop it first`);
    const mountedNow = mountsInTheWay(P);
    if (mountedNow) throw new Refusal(mountedNow);
    const changedNow = treeChange(tree) ?? treeChange(copy);
    if (changedNow) throw new Refusal(`it changed while being copied (${changedNow})`);
    step = `renaming ${P} to ${O}`;
    renameSync(P, O);
  } catch (error) {
    ctx.progress?.stop();
    let left = '';
    try {
      if (presence(N) === 'dir') {
        removeCopy(N);
        fsyncDir(dirname(P));
      }
    } catch (removal) {
      left = `; the copy ${N} is left (${reasonOf(removal)}): a re-run removes it`;
    }
    const why = error instanceof Refusal ? error.message : `${step}: ${reasonOf(error)}`;
    const result = error instanceof Refusal ? 'refused' : 'failed';
    return outcome(result, `${why}; ${P} is unchanged${left}`, tree);
  }
  try {
    renameSync(N, P);
  } catch (error) {
    const why = `renaming ${N} to ${P}: ${reasonOf(error)}`;
    try {
      renameSync(O, P);
      return outcome('failed', `${why}; ${P} is unchanged, the verified copy is left as ${N}: a re-run removes it`, tree);
    } catch {
      return outcome('failed', `${why}; the original is ${O}, its verified copy ${N}: a re-run puts the copy in place`, tree);
    }
  }
  fsyncDir(dirname(P));
  ctx.progress?.stop();

  // Swapped. A process that was in the tree as the last checks ended (its working directory or
  // root, a file or directory open) went along with it to OLD, and what it writes lands there; so
  // does a write through such a one, or a mount made on it. Any of these, seen now or as a change
  // since the walk, and the original goes back in place rather than be stranded or removed.
  const old: Tree = { ...tree, root: O };
  const reached = inUse(old) ?? mountsInTheWay(O) ?? treeChange(old, { ignoreRootCtime: true });
  if (reached !== undefined) return swapBack(P, N, O, { ...copy!, root: P }, `${reached} after the swap`, tree, outcome);
  try {
    removeTree(old);
  } catch (error) {
    return outcome('converted', `the old directory ${O} is kept: removing it: ${reasonOf(error)}; nocow convert ${P} removes it once it matches ${P}`, tree);
  }
  fsyncDir(dirname(P));
  await unmark(P);
  return outcome('converted', null, tree);
}

/**
 * After the swap something reached OLD (WHY): the swap undone by two renames (PATH → NEW, OLD →
 * PATH), the original back in place with all it received since; then NEW, the copy, is removed
 * as an unfinished copy — unless it too was reached while it was PATH: then it is kept, its mark
 * taken off so that no run removes it.
 */
async function swapBack(
  P: string,
  N: string,
  O: string,
  copy: Tree,
  why: string,
  tree: Tree,
  outcome: (result: Result, reason: string | null, tree?: Tree) => Outcome,
): Promise<Outcome> {
  try {
    renameSync(P, N);
  } catch (error) {
    return outcome('converted', `the old directory ${O} is kept: ${why}, and swapping back failed (renaming ${P} to ${N}: ${reasonOf(error)}); look at it`, tree);
  }
  try {
    renameSync(O, P);
  } catch (error) {
    const failed = `${why}, and swapping back failed (renaming ${O} to ${P}: ${reasonOf(error)})`;
    try {
      renameSync(N, P);
      return outcome('converted', `the old directory ${O} is kept: ${failed}; look at it`, tree);
    } catch {
      return outcome('failed', `${failed}; the original is ${O}, its copy ${N}: look at both`, tree);
    }
  }
  fsyncDir(dirname(P));
  const swapped = `${why}: swapped back, ${P} is the original again with all it received`;
  const asNew: Tree = { ...copy, root: N };
  const reachedCopy = inUse(asNew) ?? mountsInTheWay(N) ?? treeChange(asNew, { ignoreRootCtime: true });
  if (reachedCopy !== undefined) {
    await unmark(N);
    return outcome('refused', `${swapped}; the copy ${N} is kept, unmarked: ${reachedCopy} while it was ${P}; look at it`, tree);
  }
  try {
    removeTree(asNew);
    fsyncDir(dirname(P));
  } catch (error) {
    return outcome('refused', `${swapped}; the copy ${N} is left (${reasonOf(error)}): a re-run removes it`, tree);
  }
  return outcome('refused', `${swapped}; the copy is removed`, tree);
}

/** PATH is a subvolume and OLD is left: check that PATH holds all of OLD, then remove OLD and the mark. */
async function finishOld(P: string, O: string, ctx: ConvertContext, outcome: (result: Result, reason: string | null, tree?: Tree) => Outcome): Promise<Outcome> {
  if (ctx.dryRun) return outcome('would-convert', `would finish an interrupted conversion: check ${O} against ${P}, then remove ${O}`);
  const mounted = mountsInTheWay(O);
  if (mounted) throw new Refusal(`${O}, left by an interrupted conversion, is kept: ${mounted}`);
  const old = walk(O);
  const current = walk(P);
  const difference = await oldHeldBy(old, current, ctx.progress);
  ctx.progress?.stop();
  if (difference) throw new Refusal(`${O}, left by an interrupted conversion, holds what ${P} does not (${difference}): kept; look at it`);
  const busy = inUse(old);
  if (busy) throw new Refusal(`${O}, left by an interrupted conversion, is in use (${busy}): kept`);
  removeTree(old);
  fsyncDir(dirname(P));
  await unmark(P);
  ctx.say(`finished an interrupted conversion: removed ${O}, which ${P} holds in full`);
  return outcome('converted', null, current);
}
