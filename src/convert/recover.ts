// What an interrupted run left, found and put right: look() reads PATH, NEW and OLD for
// classify() (src/convert/classify.ts, the table); the cleanups, the renames that complete or
// undo a swap, and finishOld, which removes OLD only once PATH is found to hold all of it.
import { lstatSync, readdirSync, renameSync, rmdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileSystemName } from '../host/btrfs.js';
import { probeDirectory, probeProfile, type DirectoryFacts } from '../host/probe.js';
import type { Cleanup, NewState, OldState, PathState } from './classify.js';
import {
  MARKER,
  Refusal,
  fsyncDir,
  firstFile,
  inUse,
  marked,
  mountsInTheWay,
  presence,
  removeCopy,
  unmark,
  type ConvertContext,
  type Names,
  type OutcomeOf,
  type Progress,
} from './common.js';
import { at, linkTarget, metadataDifference, removeTree, sha256File, shown, walk, xattrDifference, xattrsOf, type Tree } from './tree.js';

/** What the checks of a plain PATH on Btrfs use of the probe look() made. */
export interface Probed {
  facts: DirectoryFacts;
  profile: string | null;
  progs: boolean;
  /** What could not be read: the first refuses a conversion. */
  problems: string[];
}

/** PATH, NEW and OLD as they are now, for classify(); and, for a directory PATH on Btrfs, its probe. */
export async function look({ P, N, O }: Names): Promise<{ path: PathState; neu: NewState; old: OldState; probed?: Probed }> {
  const neu: NewState = { name: N, is: 'missing' };
  const n = presence(N);
  if (n === 'other') neu.is = 'other';
  else if (n === 'dir') neu.is = (await marked(N)) ? 'ours' : readdirSync(N).length === 0 ? 'empty' : 'foreign';
  const old: OldState = { name: O, is: 'missing' };
  const o = presence(O);
  if (o === 'other') old.is = 'other';
  else if (o === 'dir') old.is = readdirSync(O).length === 0 ? 'empty' : 'full';
  const path: PathState = { name: P, is: presence(P), fileSystem: 'unknown', subvolume: false, marked: false };
  if (path.is !== 'dir' || neu.is === 'other' || neu.is === 'foreign') return { path, neu, old };
  const fsName = await fileSystemName(P);
  if ('name' in fsName) path.fileSystem = fsName.name;
  if (path.fileSystem !== 'btrfs') return { path, neu, old };
  const problems: string[] = [];
  const profiled = probeProfile(P);
  const facts = await probeDirectory(P, lstatSync(P), problems);
  const { profile, progs, problem } = await profiled;
  if (problem) problems.push(problem);
  path.subvolume = facts.subvolume;
  path.marked = facts.subvolume && old.is === 'missing' && (await marked(P));
  return { path, neu, old, probed: { facts, profile, progs, problems } };
}

/** The cleanups before the action: done and said, or (dry) what would be done, in words. */
export function cleanUp(first: Cleanup[], { P, N, O }: Names, ctx: ConvertContext): string[] {
  const notes: string[] = [];
  for (const cleanup of first) {
    if (cleanup === 'remove-new') {
      if (ctx.dryRun) notes.push(`would first remove ${N}, the unfinished copy of an interrupted run`);
      else {
        removeCopy(N);
        fsyncDir(dirname(P));
        ctx.say(`removed ${N}, the unfinished copy of an interrupted run (the originals are in place)`);
      }
    } else {
      const empty = cleanup === 'rmdir-new' ? N : O;
      if (ctx.dryRun) notes.push(`would first remove the empty ${empty}, left by an interrupted run`);
      else {
        rmdirSync(empty);
        ctx.say(`removed the empty ${empty}, left by an interrupted run`);
      }
    }
  }
  return notes;
}

/** Killed between the renames: NEW, verified before the first, renamed to PATH. */
export function completeSwap({ P, N, O }: Names, ctx: ConvertContext): void {
  renameSync(N, P);
  fsyncDir(dirname(P));
  ctx.say(`completed the swap of an interrupted conversion; ${O} is checked against it next`);
}

/** PATH missing, only OLD left (the library restores it so too): OLD renamed back to PATH. */
export function restoreOld({ P, O }: Names, ctx: ConvertContext): void {
  renameSync(O, P);
  fsyncDir(dirname(P));
  ctx.say(`restored from ${O}, left by an interrupted conversion`);
}

/** Killed before the mark was taken off PATH: taken off now. */
export async function finishUnmark({ P }: Names, ctx: ConvertContext, outcome: OutcomeOf) {
  await unmark(P);
  ctx.say(`finished an interrupted conversion: took its mark (${MARKER}) off`);
  return outcome('converted', null, walk(P));
}

/**
 * After an interrupted run: is everything left in OLD in PATH, the same? (OLD may be partly removed
 * already, so its directories' times are not compared, nor hard link counts.) The first entry that
 * is not, in words; undefined when OLD holds nothing PATH does not.
 */
export async function oldHeldBy(old: Tree, current: Tree, progress: Progress | undefined): Promise<string | undefined> {
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

/** PATH is a subvolume and OLD is left: check that PATH holds all of OLD, then remove OLD and the mark. */
export async function finishOld({ P, O }: Names, ctx: ConvertContext, outcome: OutcomeOf) {
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
