// nocow migrate's per-file swap, a batch at a time: steps 1 and 6–8 of src/migrate/migrate.ts
// (the second name, the last checks, the rename, the original looked at again and put back when
// reached), around the copy of batch-copy.ts.
import { closeSync, constants, fstatSync, fsyncSync, linkSync, lstatSync, openSync, renameSync, unlinkSync, type BigIntStats } from 'node:fs';
import { dirname } from 'node:path';
import { DIRECT_MIN, Mismatch, ShortRead } from '../host/copy.js';
import { extentCounts } from '../host/filefrag.js';
import { identity, openers } from '../host/openers.js';
import { settled } from '../host/settle.js';
import { TargetError as MigrateError } from '../errors.js';
import {
  type MigrateOptions,
  rewrittenName,
  openRefusal,
  CHANGED,
  REACHED,
  hardLinks,
  bothKept,
  unchanged,
  untouched,
  sameInode,
  type MigrateHooks,
  type Job,
  unlinkQuietly,
  closeQuietly,
  BAD_COPY,
} from './common.js';
import { copyAttributes, copyFile, setFlag, syncSmall, verify } from './batch-copy.js';

/**
 * fstat of each FD once the clock has moved past the files' last change, so any later change
 * shows in mtime and ctime: one wait for the batch, as long as its youngest file needs.
 */
async function settledStats(fds: number[]): Promise<BigIntStats[]> {
  return settled(
    () => fds.map((fd) => fstatSync(fd, { bigint: true })),
    (infos) => infos.map((info) => (info.ctimeNs > info.mtimeNs ? info.ctimeNs : info.mtimeNs)),
  );
}

export async function migrateBatch(jobs: Job[], opts: Pick<MigrateOptions, 'force' | 'direction'>, hooks: MigrateHooks): Promise<void> {
  const live = () => jobs.filter((j) => j.error === undefined);
  const fail = (job: Job, error: unknown) => {
    job.error ??= error instanceof Error ? error : new Error(String(error));
    closeQuietly(job.out);
    closeQuietly(job.direct);
    closeQuietly(job.check);
    job.out = job.direct = job.check = undefined;
    job.kept = undefined;
  };
  const attempt = async (job: Job, step: () => unknown) => {
    try {
      await step();
    } catch (error) {
      fail(job, error instanceof ShortRead ? new MigrateError(CHANGED) : error instanceof Mismatch ? new MigrateError(BAD_COPY) : error);
    }
  };
  const progress = hooks.progress ?? (() => {});
  const tick = hooks.tick ?? (() => Promise.resolve());
  try {
    for (const job of jobs) {
      // Left by a killed run: the original was still in place (PATH is renamed over only once the copy is done).
      unlinkQuietly(job.temp);
      const large = job.candidate.size >= DIRECT_MIN;
      await attempt(job, () => (job.input = openSync(job.candidate.path, constants.O_RDONLY | constants.O_NOFOLLOW | (large ? constants.O_DIRECT : 0))));
      if (job.error === undefined) await attempt(job, () => keepSecondName(job));
    }
    const opened = live();
    // After the second names: making one set the originals' ctimes.
    const stats = await settledStats(opened.map((j) => j.input!));
    opened.forEach((job, i) => {
      const before = stats[i]!;
      // Replaced since the checks: they were about another file.
      if (before.dev !== job.candidate.dev || before.ino !== job.candidate.ino) fail(job, new MigrateError(CHANGED));
      // Its path and the second name: any other link since the checks would be split.
      else if (before.nlink !== 2n) fail(job, new MigrateError(hardLinks(before.nlink - 1n)));
      else job.before = before;
    });
    for (const job of live()) await attempt(job, () => (job.out = openSync(job.temp, 'wx', 0o600)));
    await setFlag(live(), opts.direction ?? 'nocow', fail);
    for (const job of live()) {
      hooks.start?.(job.candidate);
      await attempt(job, () => copyFile(job, progress, tick));
    }
    // On the disk before it is read back: each large file has had its fsync; small ones at once.
    await syncSmall(live().filter((j) => j.direct === undefined), fail);
    for (const job of live()) await attempt(job, () => verify(job));
    // After the data: writing it changed the copies' times.
    await copyAttributes(live(), fail);
    // The last checks, then at once the renames. Whoever holds the original now would go on
    // writing into a file no longer there; a write since `before` would not be in the copy.
    const users = opts.force ? new Map<string, string[]>() : openers(new Set(live().map((j) => identity(j.before!))));
    for (const job of live()) {
      const held = users.get(identity(job.before!));
      if (held) {
        fail(job, new MigrateError(`${openRefusal(held)}; original kept`));
        continue;
      }
      await attempt(job, () => {
        if (!unchanged(fstatSync(job.input!, { bigint: true }), job.before!)) throw new MigrateError(CHANGED);
        const named = lstatSync(job.candidate.path, { bigint: true, throwIfNoEntry: false });
        if (named === undefined || !unchanged(named, job.before!)) throw new MigrateError(CHANGED);
        if (!sameInode(lstatSync(job.spare, { bigint: true, throwIfNoEntry: false }), job.before!)) throw new MigrateError(CHANGED);
        const copy = lstatSync(job.temp, { bigint: true, throwIfNoEntry: false });
        if (!sameInode(copy, job.copy!)) throw new MigrateError('the copy was replaced; original kept');
        job.copy = copy;
        renameSync(job.temp, job.candidate.path);
        job.renamed = true;
      });
    }
    confirmRenames(jobs.filter((j) => j.renamed && j.error === undefined), opts, fail);
  } finally {
    for (const job of jobs) {
      closeQuietly(job.out);
      closeQuietly(job.direct);
      closeQuietly(job.check);
      closeQuietly(job.input);
      if (job.renamed) continue;
      unlinkQuietly(job.temp);
      // A name of ours for a file PATH still names: the original stays.
      if (job.linked) unlinkQuietly(job.spare);
    }
  }
  const done = jobs.filter((j) => j.rewritten);
  for (const dir of new Set(jobs.filter((j) => j.renamed).map((j) => dirname(j.candidate.path)))) {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  const counts = await extentCounts(done.map((j) => j.candidate.path));
  for (const job of done) job.extentsAfter = counts.get(job.candidate.path);
}

/**
 * Step 1: the original's second name, a hard link made through PATH, and checked to be the
 * file JOB opened. One left by a killed run was settled or is refused; another file by that
 * name is in the way.
 */
function keepSecondName(job: Job): void {
  try {
    linkSync(job.candidate.path, job.spare);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new MigrateError(`${job.spare} is in the way (not made by this run); original kept`);
    throw error;
  }
  job.linked = true;
  if (!sameInode(lstatSync(job.spare, { bigint: true }), fstatSync(job.input!, { bigint: true }))) throw new MigrateError(CHANGED);
}

/**
 * Step 8, for the files of a batch now renamed: the original, through its descriptor and a
 * scan of /proc, untouched since the last checks gives way to its copy; reached, it is put
 * back over PATH, and the copy is looked at once more before it goes.
 */
function confirmRenames(jobs: Job[], opts: Pick<MigrateOptions, 'force'>, fail: (job: Job, error: unknown) => void): void {
  if (jobs.length === 0) return;
  // Whoever holds a copy matters only when its original was reached too; --force ignores who holds an original.
  const users = openers(new Set(jobs.flatMap((j) => [...(opts.force ? [] : [identity(j.before!)]), identity(j.copy!)])));
  // One name at a time, as when it was renamed: the one given.
  const copyUntouched = (job: Job, name: string, seen: Map<string, string[]>) => {
    const copy = lstatSync(name, { bigint: true, throwIfNoEntry: false });
    return copy !== undefined && untouched(copy, job.copy!, 0n) && !seen.has(identity(job.copy!));
  };
  const putBack: Job[] = [];
  for (const job of jobs) {
    const path = job.candidate.path;
    try {
      if (!users.has(identity(job.before!)) && untouched(fstatSync(job.input!, { bigint: true }), job.before!, 1n)) {
        unlinkSync(job.spare);
        job.rewritten = true;
      } else if (!copyUntouched(job, path, users)) {
        fail(job, new MigrateError(bothKept(path, job.spare, 'original')));
      } else {
        const kept = rewrittenName(path);
        linkSync(path, kept);
        if (!sameInode(lstatSync(kept, { bigint: true }), job.copy!)) {
          // PATH was replaced meanwhile: the name is another of that file's.
          unlinkSync(kept);
          throw new MigrateError(bothKept(path, job.spare, 'original'));
        }
        renameSync(job.spare, path);
        putBack.push(job);
      }
    } catch (error) {
      // Both versions stay where they are; a re-run decides between them.
      fail(job, error);
    }
  }
  if (putBack.length === 0) return;
  const again = openers(new Set(putBack.map((j) => identity(j.copy!))));
  for (const job of putBack) {
    const kept = rewrittenName(job.candidate.path);
    try {
      if (copyUntouched(job, kept, again)) {
        unlinkSync(kept);
        fail(job, new MigrateError(REACHED));
      } else fail(job, new MigrateError(bothKept(job.candidate.path, kept, 'copy')));
    } catch (error) {
      fail(job, error);
    }
  }
}

