// Steps 5–6 of nocow convert: the last checks and the swap by two renames, then OLD looked at
// again and removed, or, reached by anything, the swap undone.
import { renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { reasonOf } from '../errors.js';
import { Refusal, fsyncDir, inUse, mountsInTheWay, unmark, type ConvertContext, type Names, type OutcomeOf, type Outcome } from './common.js';
import type { Step } from './copy-tree.js';
import { removeTree, treeChange, type Tree } from './tree.js';

/** The last checks (nothing held, nothing mounted in or of PATH, PATH and NEW unchanged), then at once the first rename, PATH → OLD. */
export function swapOut({ P, O }: Names, tree: Tree, copy: Tree, step: Step): void {
  step.now = 'the last checks';
  const held = inUse(tree);
  if (held) throw new Refusal(`${held}: stop it first`);
  const mountedNow = mountsInTheWay(P);
  if (mountedNow) throw new Refusal(mountedNow);
  const changedNow = treeChange(tree) ?? treeChange(copy);
  if (changedNow) throw new Refusal(`it changed while being copied (${changedNow})`);
  step.now = `renaming ${P} to ${O}`;
  renameSync(P, O);
}

/**
 * PATH is OLD now: NEW renamed to PATH; then OLD, looked at again, removed (and the mark taken
 * off PATH), or, reached by anything since the walk, the swap undone (swapBack).
 */
export async function swapAndClean({ P, N, O }: Names, tree: Tree, copy: Tree, ctx: ConvertContext, outcome: OutcomeOf): Promise<Outcome> {
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
  if (reached !== undefined) return swapBack({ P, N, O }, { ...copy, root: P }, `${reached} after the swap`, tree, outcome);
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
async function swapBack({ P, N, O }: Names, copy: Tree, why: string, tree: Tree, outcome: OutcomeOf): Promise<Outcome> {
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
