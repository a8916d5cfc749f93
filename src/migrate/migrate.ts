// nocow migrate: rewrite existing copy-on-write files as NOCOW so that a kill at any moment
// leaves the original intact and a re-run finishes the job, and no write to the original is
// ever lost. Files go in batches (one large file alone; small ones up to BATCH_FILES or
// BATCH_BYTES together), so that what costs a process or a pass over /proc is paid per batch:
//   1. a second name for the original, a hard link beside it at a fixed name
//      (.NAME.nocow-original): its inode keeps a name until the end, so whatever reaches it
//      after the checks can still be found and put back (step 8)
//   2. a new file beside each original, at a fixed name (.NAME.nocow-migrate, or
//      .nocow-CKSUM.nocow-migrate when that would not fit NAME_MAX), +C while empty (one
//      chattr for the batch)
//   3. the data copied by plain reads and writes (never a reflink, which would share the
//      CoW extents; nor copy_file_range, which may clone on Btrfs and keeps the bytes out of
//      our sight): holes skipped (the FIEMAP map of a sparse file), preallocation kept; the
//      copy written with O_DIRECT, large originals read with it too, the next chunk read
//      while this one is written (src/host/copy.ts, the engine convert uses too)
//   4. verified: the copy read back from the disk with O_DIRECT (never from the page cache,
//      which holds none of it) must be, byte for byte, what was read from the original for
//      it: large files chunk by chunk as they are written, small ones once their batch is on
//      the disk (one syncfs); then its size. A large copy is fsynced.
//   5. owner, mode, times, xattrs (ACLs, SELinux label) copied (one cp per directory in a batch)
//   6. last checks: no other process holds the original open or mapped and no loop device
//      is attached to it (one scan of /proc and /sys/block for the batch, by device and inode,
//      so any path to it counts), and its size, mtime, ctime, links (its path and the second
//      name), device and inode are those recorded before the copy; PATH and the second name
//      still name it, the copy is still ours
//   7. one rename of the copy over PATH
//   8. the original looked at again (a second scan for the batch, and its own descriptor): a
//      process that opened PATH between the last checks and the rename holds it, or wrote into
//      it. Its size, mtime, mode and owner are compared (not its ctime: the rename, which took
//      a name from it, set that). Untouched: its second name goes, and with it the original.
//      Reached: it is put back. The copy gets a second name (.NAME.nocow-rewritten), the
//      original is renamed back over PATH, and the copy, looked at once more, is removed; when
//      the copy was reached too (opened through PATH after the rename), both are kept and one
//      line says where each is.
// A file whose checks fail keeps its original, untouched; the copy is removed.
//
// Killed at any point, a re-run puts things right first: the table in src/migrate/recover.ts.
//
// nocow revert is this engine with the direction flipped (MigrateOptions.direction 'cow'): the
// files that have +C are the candidates, and each copy has +C cleared while empty (step 2), so
// it is a copy-on-write file with checksums; every other step, check and name is the same.
//
// The modules, by job: candidates.ts (the plan: which files, and the checks that refuse one),
// recover.ts (settle), batch.ts (the per-file swap, steps 1 and 6–8), batch-copy.ts (steps 2–5),
// common.ts what they share.
import { DIRECT_MIN } from '../host/copy.js';
import { originalName, temporaryName, type Candidate, type Job, type MigrateHooks, type MigrateOptions, type Outcome } from './common.js';
import { migrateBatch } from './batch.js';

// Shared with nocow convert: named here too for the command.
export { resolveTargets } from '../host/targets.js';
export { TargetError as MigrateError } from '../errors.js';
// The plan and the names, for the command.
export { findCandidates, leftoversOf, removeLeftovers, nocowDirectories, clearNocow, frozenDirectories } from './candidates.js';
export { originalName, rewrittenName, temporaryName, type Direction, type Candidate, type MigrateOptions, type MigrateHooks, type Outcome } from './common.js';

/** A batch: at most so many files, so many bytes (a file of DIRECT_MIN or more goes alone). */
const BATCH_FILES = 256;
const BATCH_BYTES = 64 * 1024 * 1024;

/** Candidates in batches: a large file alone, small ones together. */
function batches(candidates: Candidate[]): Candidate[][] {
  const list: Candidate[][] = [];
  let batch: Candidate[] = [];
  let bytes = 0;
  for (const c of candidates) {
    if (batch.length > 0 && (c.size >= DIRECT_MIN || batch.length >= BATCH_FILES || bytes + c.size > BATCH_BYTES)) {
      list.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(c);
    bytes += c.size;
    if (c.size >= DIRECT_MIN) {
      list.push(batch);
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) list.push(batch);
  return list;
}

/**
 * Rewrites CANDIDATES (those without a refusal) as NOCOW, batch by batch; each file's outcome
 * goes to `hooks.done` as its batch ends and all are returned. A file that changed during its
 * copy, or (without `force`) that another process holds at the end, keeps its original
 * untouched and its copy is removed; so does one whose copy does not read back the same.
 */
export async function migrateFiles(candidates: Candidate[], opts: Pick<MigrateOptions, 'force' | 'direction'>, hooks: MigrateHooks = {}): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (const batch of batches(candidates)) {
    const jobs: Job[] = batch.map((candidate) => ({ candidate, temp: temporaryName(candidate.path), spare: originalName(candidate.path) }));
    try {
      await migrateBatch(jobs, opts, hooks);
    } catch (error) {
      // Not one file's failure (a program missing, say): every file of the batch not rewritten.
      for (const job of jobs) if (!job.rewritten) job.error ??= error as Error;
    }
    for (const job of jobs) {
      const outcome: Outcome = { candidate: job.candidate, ...(job.error ? { error: job.error } : { extentsAfter: job.extentsAfter }) };
      outcomes.push(outcome);
      await hooks.done?.(outcome);
    }
  }
  return outcomes;
}

/**
 * Rewrites one file as NOCOW (migrateFiles with one file). Throws the reason it was not: a
 * MigrateError, the original untouched and the copy removed, when the original changed during
 * the copy or (without `force`) another process holds it at the end.
 */
export async function migrateFile(
  candidate: Candidate,
  opts: Pick<MigrateOptions, 'force' | 'direction'>,
  progress: (bytes: number) => void,
  tick: () => Promise<void>,
): Promise<void> {
  const [outcome] = await migrateFiles([candidate], opts, { progress, tick });
  if (outcome?.error) throw outcome.error;
}
