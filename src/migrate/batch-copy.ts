// Steps 2–5 of nocow migrate (and revert) for a batch: +C (revert: none) on the empty copies, the data copied by the copy
// engine (src/host/copy.ts), the small copies synced and read back, the attributes copied.
import { fstatSync, fsyncSync, ftruncateSync, mkdtempSync, openSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { DIRECT_MIN, READ_BACK, WRITE_DIRECT, copyData, planCopy, verifyCopy, writesDirect } from '../host/copy.js';
import { chattr, flagsOf } from '../host/attrs.js';
import { argumentLists, run as tool } from '../host/run.js';
import { TargetError as MigrateError } from '../errors.js';
import { CHANGED, unchanged, type Job, closeQuietly, BAD_COPY, UNREADABLE_COPY, type Direction, copyFlag } from './common.js';

/**
 * The copies' flag while they are still empty (the only time +C can change): +C (nocow) or -C
 * (cow: a copy made in a directory that still has +C inherits it), one chattr for them all; when
 * it fails, one per file to tell which. Then checked with lsattr: a copy without it fails.
 */
export async function setFlag(jobs: Job[], direction: Direction, fail: (job: Job, error: unknown) => void): Promise<void> {
  const flag = copyFlag(direction);
  for (const list of argumentLists(jobs.map((j) => j.temp))) {
    if ((await chattr(flag, list)).ok) continue;
    const listed = new Set(list);
    for (const job of jobs.filter((j) => listed.has(j.temp))) {
      const one = await chattr(flag, [job.temp]);
      if (!one.ok) fail(job, new Error(one.error));
    }
  }
  const live = jobs.filter((j) => j.error === undefined);
  const flags = await flagsOf(live.map((j) => j.temp));
  for (const job of live) {
    if ((flags.get(job.temp)?.includes('C') ?? false) !== (direction === 'nocow')) fail(job, new Error(`its copy could not be given ${flag}; original kept`));
  }
}

/** The data of JOB's original into its copy (src/host/copy.ts), and what to read back. */
export async function copyFile(job: Job, progress: (bytes: number) => void, tick: () => Promise<void>): Promise<void> {
  const size = Number(job.before!.size);
  const large = job.candidate.size >= DIRECT_MIN;
  // Grown past the size it was chosen by (its bytes would be kept in memory for the check): changed.
  if (!large && size >= DIRECT_MIN) throw new MigrateError(CHANGED);
  const plan = await planCopy(job.candidate.path, { size, blocks: Number(job.before!.blocks) }, job.temp, job.out!);
  const writeDirect = writesDirect(size);
  if (writeDirect) job.direct = openSync(job.temp, WRITE_DIRECT);
  if (large) job.check = openSync(job.temp, READ_BACK);
  const mode = { readDirect: large, writeDirect, check: job.check, keep: 'bytes' } as const;
  job.kept = await copyData(job.input!, job.direct ?? job.out!, plan, mode, progress, tick);
  job.plan = plan;
  // The last block was written whole.
  if (writeDirect) ftruncateSync(job.out!, size);
  if (large) fsyncSync(job.out!);
}

/** The small files' copies on the disk: one syncfs per file system for a batch, fsync for one or two. */
export async function syncSmall(jobs: Job[], fail: (job: Job, error: unknown) => void): Promise<void> {
  const each = () => {
    for (const job of jobs) {
      try {
        fsyncSync(job.out!);
      } catch (error) {
        fail(job, error);
      }
    }
  };
  if (jobs.length <= 2) return each();
  const onDevice = new Map<bigint, string>(jobs.map((j) => [j.before!.dev, j.temp]));
  if (!(await tool('sync', ['-f', '--', ...onDevice.values()])).ok) each();
}

/**
 * Small files: the copy read back from the disk (O_DIRECT) against the bytes read from the
 * original (large ones were, chunk by chunk, as they were written). Then for all: the copy's
 * size, and the original unchanged.
 */
export async function verify(job: Job): Promise<void> {
  if (job.check === undefined) {
    job.check = openSync(job.temp, READ_BACK);
    try {
      await verifyCopy(job.check, job.plan!, job.kept!);
    } catch (error) {
      // A copy-on-write copy (revert) whose block on the disk is not what was written fails its checksum.
      if ((error as NodeJS.ErrnoException).code === 'EIO') throw new MigrateError(UNREADABLE_COPY);
      throw error;
    }
    job.kept = undefined;
  }
  if (fstatSync(job.check, { bigint: true }).size !== job.before!.size) throw new MigrateError(BAD_COPY);
  if (!unchanged(fstatSync(job.input!, { bigint: true }), job.before!)) throw new MigrateError(CHANGED);
  job.copy = fstatSync(job.out!, { bigint: true });
  for (const fd of [job.check, job.direct, job.out]) closeQuietly(fd);
  job.out = job.direct = job.check = undefined;
}

const CP_ATTRIBUTES = ['--attributes-only', '--preserve=all'];

/** Where the symlinks go: memory (/dev/shm) where there is one, 20 times faster than a busy /tmp on disk. */
const farmBase = () => {
  try {
    if (statSync('/dev/shm').isDirectory()) return '/dev/shm';
  } catch {
    // No /dev/shm here.
  }
  return tmpdir();
};

/**
 * The originals' owner, mode, times and xattrs onto the copies (after the data: writing it
 * changed the copies' times), exact to the nanosecond as only cp can set them here: one cp per
 * directory, given symlinks named as the copies that point at the originals (-L, -t DIR); when
 * it fails, one cp per file, to tell which.
 */
export async function copyAttributes(jobs: Job[], fail: (job: Job, error: unknown) => void): Promise<void> {
  const one = async (job: Job) => {
    const run = await tool('cp', [...CP_ATTRIBUTES, '--', job.candidate.path, job.temp]);
    if (!run.ok) fail(job, new Error(run.error));
  };
  const byDir = new Map<string, Job[]>();
  for (const job of jobs) byDir.set(dirname(job.temp), [...(byDir.get(dirname(job.temp)) ?? []), job]);
  for (const [dir, group] of byDir) {
    if (group.length === 1) {
      await one(group[0]!);
      continue;
    }
    let farm: string | undefined;
    try {
      farm = mkdtempSync(join(farmBase(), 'nocow-migrate-'));
      const links = new Map<string, Job>();
      for (const job of group) {
        const link = join(farm, basename(job.temp));
        symlinkSync(job.candidate.path, link);
        links.set(link, job);
      }
      for (const list of argumentLists([...links.keys()])) {
        if ((await tool('cp', [...CP_ATTRIBUTES, '--dereference', '-t', dir, '--', ...list])).ok) continue;
        for (const link of list) await one(links.get(link)!);
      }
    } catch {
      // No room for the links: one cp per file.
      for (const job of group) await one(job);
    } finally {
      if (farm) rmSync(farm, { recursive: true, force: true });
    }
  }
}
