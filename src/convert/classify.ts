// nocow convert, killed at any point (kill -9, power loss: everything is on disk by step 4), a re-run — holding
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
//
// classify() is that table as code, over what look() (src/convert/recover.ts) finds: pure, so
// that test/classify.test.ts walks every row without a file system.

/** PATH as found: `fileSystem` is `stat -f -c %T`'s name ("unknown" when it cannot be told); `subvolume` and `marked` only count on Btrfs. */
export interface PathState {
  name: string;
  is: 'missing' | 'dir' | 'other';
  fileSystem: string;
  subvolume: boolean;
  /** Carries the mark of our copy (trusted.nocow-kit.convert). */
  marked: boolean;
}

/** NEW as found: ours (a directory with the mark), empty (the library's leftover), foreign (holds data, unmarked), other (not a directory). */
export interface NewState {
  name: string;
  is: 'missing' | 'ours' | 'empty' | 'foreign' | 'other';
}

/** OLD as found: an empty or a full directory, or something else. */
export interface OldState {
  name: string;
  is: 'missing' | 'empty' | 'full' | 'other';
}

/** Put right before the action: NEW (our unfinished copy) removed, or an empty NEW or OLD. */
export type Cleanup = 'remove-new' | 'rmdir-new' | 'rmdir-old';

export type Action =
  | { act: 'refuse'; why: string }
  | { act: 'nothing'; why: string }
  /** Rename NEW → PATH (verified before the first rename), then look again: OLD is checked against it. */
  | { act: 'complete-swap' }
  /** Rename OLD → PATH, then look again: convert from step 1. */
  | { act: 'restore-old' }
  /** Take the mark off PATH, the last step. */
  | { act: 'unmark'; first: Cleanup[] }
  /** Check OLD against PATH, then remove OLD and the mark. */
  | { act: 'finish-old'; first: Cleanup[] }
  /** Convert from step 1 (the checks decide). */
  | { act: 'convert'; first: Cleanup[] };

const inTheWay = (name: string) => `${name} is in the way (not left by nocow): move it away`;

/** What a run does, PATH, NEW and OLD being as found: the table above, row by row. */
export function classify(path: PathState, neu: NewState, old: OldState): Action {
  const [P, N, O] = [path.name, neu.name, old.name];
  const refuse = (why: string): Action => ({ act: 'refuse', why });
  if (path.is === 'missing') {
    const oldDir = old.is === 'empty' || old.is === 'full';
    if (!oldDir) return refuse(neu.is === 'ours' ? `${P} is missing; ${N} holds a copy of it that was not verified: left alone` : `${P} does not exist`);
    if (neu.is === 'ours') return { act: 'complete-swap' };
    if (neu.is === 'missing') return { act: 'restore-old' };
    if (neu.is === 'other') return refuse(inTheWay(N));
    return refuse(`${N} and ${O} are left by an interrupted nocow apply: nocow apply repairs them`);
  }
  if (path.is === 'other') return refuse(`${P} is not a directory`);
  const first: Cleanup[] = [];
  if (neu.is === 'other') return refuse(inTheWay(N));
  if (neu.is === 'foreign') return refuse(`${N} is left over and holds files that nocow convert did not put there: left alone`);
  if (neu.is === 'ours') first.push('remove-new');
  if (neu.is === 'empty') first.push('rmdir-new');
  if (path.fileSystem !== 'btrfs') return refuse(`not on Btrfs (${path.fileSystem})`);
  if (path.subvolume) {
    if (old.is === 'other') return refuse(inTheWay(O));
    if (old.is !== 'missing') return { act: 'finish-old', first };
    // Killed after the old tree was removed: only the mark is left to take off.
    return path.marked ? { act: 'unmark', first } : { act: 'nothing', why: 'already a subvolume' };
  }
  if (old.is === 'empty') first.push('rmdir-old');
  else if (old.is !== 'missing') return refuse(`${O} is in the way (not left by nocow convert on a plain ${P}): move it away`);
  return { act: 'convert', first };
}
