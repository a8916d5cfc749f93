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
// Killed at any point, a re-run — holding the lock again — reads the state off the three names
// and finishes or undoes, losing nothing: the table in src/convert/classify.ts, and classify(),
// which is that table as code.
//
// The modules, by step: recover.ts (what an interrupted run left: look, clean up, finish),
// preflight.ts (1), copy-tree.ts (2–4), swap.ts (5–6); common.ts what they share.
import { dirname } from 'node:path';
import { TEMP_SUFFIX, temporaryName } from '../facts.js';
import { reasonOf } from '../errors.js';
import { classify } from './classify.js';
import { MARKER, Refusal, fsyncDir, presence, removeCopy, type ConvertContext, type ConvertRequest, type Names, type Outcome, type OutcomeOf } from './common.js';
import { copyTree, verify, type Step } from './copy-tree.js';
import { preflight, type Checked } from './preflight.js';
import { cleanUp, completeSwap, finishOld, finishUnmark, look, restoreOld } from './recover.js';
import { swapAndClean, swapOut } from './swap.js';
import type { Tree } from './tree.js';

export { MARKER, type ConvertContext, type ConvertRequest, type Outcome, type Progress, type Result } from './common.js';

/** Converts one PATH, or finishes an interrupted conversion of it; see the table in src/convert/classify.ts. */
export async function convertPath(req: ConvertRequest, ctx: ConvertContext): Promise<Outcome> {
  const P = req.path;
  const names: Names = { P, N: temporaryName(P, TEMP_SUFFIX.new), O: temporaryName(P, TEMP_SUFFIX.old) };
  const outcome: OutcomeOf = (result, reason, tree) => ({ path: P, result, reason, files: tree?.files ?? 0, bytes: tree?.bytes ?? 0 });
  try {
    const s = req.subject;
    if (s.subvolume === 'never') throw new Refusal(`declared subvolume: never${s.name ? ` (target ${s.name})` : ''}`);
    // As the shell library: the checks first, without the lock; a refusal, or nothing to do,
    // needs none. Then, holding it, every condition is checked anew and acted on.
    const plan = await lookAndAct(req, { ...ctx, dryRun: true }, names, outcome);
    if (ctx.dryRun || plan.result !== 'would-convert') return plan;
    await ctx.lock();
    return await lookAndAct(req, ctx, names, outcome);
  } catch (error) {
    if (error instanceof Refusal) return outcome('refused', error.message);
    return outcome('failed', reasonOf(error));
  }
}

/**
 * One pass over PATH: what is found there classified, then acted on; on a dry run (ctx.dryRun),
 * what would be done, said. Throws a Refusal when PATH is to be left as it is.
 */
async function lookAndAct(req: ConvertRequest, ctx: ConvertContext, names: Names, outcome: OutcomeOf): Promise<Outcome> {
  const { P, N, O } = names;
  const dry = ctx.dryRun;
  const found = await look(names);
  const action = classify(found.path, found.neu, found.old);
  switch (action.act) {
    case 'refuse':
      throw new Refusal(action.why);
    case 'nothing':
      return outcome('nothing-to-do', action.why);
    case 'complete-swap':
      if (dry) return outcome('would-convert', `would complete an interrupted conversion: rename ${N} to ${P}, check ${O} against it, then remove ${O}`);
      completeSwap(names, ctx);
      return lookAndAct(req, ctx, names, outcome);
    case 'restore-old':
      if (dry) return outcome('would-convert', `would restore ${P} from ${O}, left by an interrupted conversion, then convert it`);
      restoreOld(names, ctx);
      return lookAndAct(req, ctx, names, outcome);
    case 'unmark':
      if (dry) return outcome('would-convert', `would take the mark of an interrupted conversion (${MARKER}) off it`);
      cleanUp(action.first, names, ctx);
      return finishUnmark(names, ctx, outcome);
    case 'finish-old':
      if (dry) return outcome('would-convert', `would finish an interrupted conversion: check ${O} against ${P}, then remove ${O}`);
      cleanUp(action.first, names, ctx);
      return finishOld(names, ctx, outcome);
    case 'convert': {
      const notes = cleanUp(action.first, names, ctx);
      const checked = await preflight(req, ctx, found.probed!);
      if (dry) return outcome('would-convert', notes.length > 0 ? notes.join('; ') : null, checked.tree);
      return convertChecked(names, checked, ctx, outcome);
    }
  }
}

/**
 * Steps 2–6 on a PATH that passed the checks. Until the first rename PATH is untouched: a failure
 * removes NEW and says so.
 */
async function convertChecked(names: Names, checked: Checked, ctx: ConvertContext, outcome: OutcomeOf): Promise<Outcome> {
  const { P, N } = names;
  const { tree } = checked;
  const at: Step = { now: '' };
  let copy: Tree;
  try {
    const hashes = await copyTree(names, checked, ctx, at);
    copy = await verify(names, checked, hashes, ctx, at);
    swapOut(names, tree, copy, at);
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
    const why = error instanceof Refusal ? error.message : `${at.now}: ${reasonOf(error)}`;
    const result = error instanceof Refusal ? 'refused' : 'failed';
    return outcome(result, `${why}; ${P} is unchanged${left}`, tree);
  }
  return swapAndClean(names, tree, copy, ctx, outcome);
}
