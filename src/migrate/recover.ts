// nocow migrate killed at any point (the steps: src/migrate/migrate.ts): a re-run puts things
// right before anything else (settle):
//   killed                          on disk                          the re-run
//   before 1                        PATH original [half copy]        removes the half copy
//   after 1, before 7               PATH = .nocow-original [copy]    removes both extra names, migrates
//   after 7, before the end of 8    PATH copy, .nocow-original       decides (below)
//   in 8, copy given its 2nd name   PATH = .nocow-rewritten copy,    removes the extra name,
//                                   .nocow-original                  decides
//   in 8, original put back         PATH original, .nocow-rewritten  decides
// Deciding between the original and the copy, with the copy's birth time as the clock: a
// version is reached when a process holds it or its mtime is not older than the copy's birth
// (the copy's own mtime is the original's, set by cp after its data was written; the original
// was last changed before the copy was made, or the run would not have got that far). The
// original unreached: the copy stays at PATH, the original goes. The original reached and the
// copy not: the original goes back to PATH (and is migrated anew). Both reached: both stay, and
// the file is refused with one line naming where each is. No write to either is lost.
import { lstatSync, renameSync, unlinkSync, type BigIntStats } from 'node:fs';
import { identity, openers } from '../host/openers.js';
import { originalName, rewrittenName, bothKept } from './common.js';

/** One version of a file an interrupted run left two of: where it is, and what it is. */
interface Version {
  name: string;
  info: BigIntStats;
}

/**
 * Puts right what a run killed after step 1 left beside each of PATHS (the table at the top):
 * extra names of PATH's own inode go; of two versions, the one nothing reached since the copy
 * was made gives way to the other. Returns the paths left with both, each with the reason.
 * One scan of /proc for them all.
 */
export function settle(paths: string[]): Map<string, string> {
  const unsettled = new Map<string, string>();
  const pairs: { path: string; original: Version; copy: Version }[] = [];
  for (const path of paths) {
    const at = lstatSync(path, { bigint: true, throwIfNoEntry: false });
    if (!at?.isFile()) continue;
    const second = (name: string): Version | undefined => {
      const info = lstatSync(name, { bigint: true, throwIfNoEntry: false });
      if (info === undefined) return undefined;
      // PATH's own inode: a name too many, nothing to decide.
      if (info.dev === at.dev && info.ino === at.ino) {
        unlinkSync(name);
        return undefined;
      }
      return { name, info };
    };
    const original = second(originalName(path));
    const copy = second(rewrittenName(path));
    const here = { name: path, info: at };
    if (original && copy) unsettled.set(path, `two other versions of it are kept, as ${original.name} and ${copy.name}; keep the one wanted and remove the others`);
    else if (original) pairs.push({ path, original, copy: here });
    else if (copy) pairs.push({ path, original: here, copy });
  }
  if (pairs.length === 0) return unsettled;
  const users = openers(new Set(pairs.flatMap((p) => [identity(p.original.info), identity(p.copy.info)])));
  for (const { path, original, copy } of pairs) {
    const born = copy.info.birthtimeNs;
    // Without a birth time, nothing tells: both count as reached.
    const reached = (v: Version) => users.has(identity(v.info)) || born === 0n || v.info.mtimeNs >= born;
    const winner = !reached(original) ? copy : !reached(copy) ? original : undefined;
    const other = original.name === path ? copy : original;
    if (winner === undefined) unsettled.set(path, bothKept(path, other.name, other === original ? 'original' : 'copy'));
    else if (winner.name === path) unlinkSync(other.name);
    else renameSync(winner.name, path);
  }
  return unsettled;
}

