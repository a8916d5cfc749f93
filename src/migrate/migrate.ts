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
// Killed at any point, a re-run puts things right before anything else (settle):
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
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  type BigIntStats,
} from 'node:fs';
import { lstat, readdir, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { DIRECT_MIN, Mismatch, READ_BACK, ShortRead, WRITE_DIRECT, copyData, planCopy, verifyCopy, writesDirect, type CopyPlan, type Kept } from '../host/copy.js';
import { TEMP_SUFFIX, frozenBy, temporaryName as temporaryBeside } from '../facts.js';
import { nameText, size } from '../io.js';
import { chattr, flagsOf } from '../host/attrs.js';
import { dataProfile, isBtrfsType } from '../host/btrfs.js';
import { extentCounts } from '../host/filefrag.js';
import { mountsInside, shownPoint } from '../host/mounts.js';
import { identity, openers } from '../host/openers.js';
import { argumentLists, run as tool } from '../host/run.js';
import { SPACE_MARGIN, settled } from '../host/settle.js';
import { isRedundant } from '../policy.js';
import { reasonOf, TargetError as MigrateError } from '../errors.js';

// Shared with nocow convert: named here too for the command.
export { resolveTargets } from '../host/targets.js';
export { TargetError as MigrateError } from '../errors.js';

/** A batch: at most so many files, so many bytes (a file of DIRECT_MIN or more goes alone). */
const BATCH_FILES = 256;
const BATCH_BYTES = 64 * 1024 * 1024;

export interface Candidate {
  path: string;
  size: number;
  /** Bytes allocated on disk (st_blocks × 512). */
  allocated: number;
  extents: number | undefined;
  /** The file the checks were made on: the rewrite stops if PATH names another. */
  dev: bigint;
  ino: bigint;
  /** Why this file is not migrated; undefined when it will be. */
  refusal?: string;
}

export interface MigrateOptions {
  /** Rewrite even files some process has open (a change during the copy still stops the rewrite). */
  force: boolean;
  /** Rewrite even on a redundant data profile, where +C drops the checksums self-healing needs. */
  forceNocow: boolean;
  /** Change nothing: what an interrupted run left is not put right (settle), only allowed for. */
  dryRun?: boolean;
}

/** Where the copy of PATH is made: hidden, beside it, always a valid name. */
export const temporaryName = (path: string) => temporaryBeside(path, TEMP_SUFFIX.migrate, '.');
/** The original's second name while it is swapped with its copy (step 1). */
export const originalName = (path: string) => temporaryBeside(path, TEMP_SUFFIX.original, '.');
/** The copy's second name while the original is put back (step 8). */
export const rewrittenName = (path: string) => temporaryBeside(path, TEMP_SUFFIX.rewritten, '.');

/** The second names of step 1 and 8, in both forms temporaryBeside gives (".NAME…", ".nocow-CKSUM…"). */
const isSecondName = (name: string) => name.startsWith('.') && (name.endsWith(TEMP_SUFFIX.original) || name.endsWith(TEMP_SUFFIX.rewritten));
/** Any name migrate gives a file of its own beside PATH: never a file to migrate. */
const isTemporaryName = (name: string) => (name.startsWith('.') && name.endsWith(TEMP_SUFFIX.migrate)) || isSecondName(name);

/** What openers() found, as the reason: "open by process 12, 34", "attached to /dev/loop0", or both. */
function openRefusal(users: string[]): string {
  const pids = users.filter((u) => !u.startsWith('/'));
  const devices = users.filter((u) => u.startsWith('/'));
  const uses = [pids.length > 0 ? `open by process ${pids.join(', ')}` : '', devices.length > 0 ? `attached to ${devices.join(', ')}` : ''];
  return `${uses.filter(Boolean).join(' and ')} (--force overrides)`;
}

/**
 * The regular files below DIR, and apart the second names an interrupted run left there. No
 * mount point inside DIR is entered, nor taken as a file: what is mounted there (a bind mount
 * of the same file system too, which device numbers do not tell) is not DIR's.
 */
async function regularFilesBelow(dir: string): Promise<{ files: string[]; seconds: Set<string>; temporaries: string[]; unnamed: string[] }> {
  const boundaries = new Set(mountsInside(dir).map(shownPoint));
  const files: string[] = [];
  const seconds = new Set<string>();
  // Names that are not UTF-8 cannot be named through Node's string paths: each is reported, never skipped.
  const unnamed: string[] = [];
  const temporaries: string[] = [];
  const pending = [dir];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    for (const entry of await readdir(next, { withFileTypes: true, encoding: 'buffer' })) {
      const raw = entry.name as unknown as Buffer;
      const name = raw.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        if (entry.isDirectory() || entry.isFile()) unnamed.push(join(next, nameText(raw)) + (entry.isDirectory() ? '/' : ''));
        continue;
      }
      const path = join(next, name);
      if (boundaries.has(path)) continue;
      if (entry.isDirectory()) pending.push(path);
      else if (entry.isFile() && isSecondName(name)) seconds.add(path);
      else if (entry.isFile() && isTemporaryName(name)) temporaries.push(path);
      else if (entry.isFile()) files.push(path);
    }
  }
  return { files: files.sort(), seconds, temporaries, unnamed: unnamed.sort() };
}

/**
 * The copies an interrupted run left (.NAME.nocow-migrate, .nocow-CKSUM.nocow-migrate): below each
 * directory of PATHS, beside each file. Never the only copy of anything (the rename over the
 * original is a run's last step), so a later run removes them: those of the files it rewrites as
 * it rewrites them, the others (their file refused, given +C, or gone) by removeLeftovers.
 */
export async function leftoversOf(paths: string[]): Promise<{ path: string; size: number }[]> {
  const found: { path: string; size: number }[] = [];
  const add = (path: string) => {
    const info = lstatSync(path, { throwIfNoEntry: false });
    if (info?.isFile()) found.push({ path, size: info.size });
  };
  for (const path of paths) {
    const info = await lstat(path).catch(() => undefined);
    if (info?.isDirectory()) {
      for (const temporary of (await regularFilesBelow(path)).temporaries) add(temporary);
    } else if (info?.isFile()) add(temporaryName(path));
  }
  return [...new Map(found.map((f) => [f.path, f])).values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Removes LEFTOVERS (leftoversOf), each unless some process has it open (another run's copy at work): why it was kept, by path. */
export function removeLeftovers(leftovers: string[]): Map<string, string> {
  const kept = new Map<string, string>();
  const infos = new Map(leftovers.map((path) => [path, lstatSync(path, { bigint: true, throwIfNoEntry: false })]));
  const open = openers(new Set([...infos.values()].filter((i) => i !== undefined).map(identity)));
  for (const [path, info] of infos) {
    if (info === undefined) continue;
    const users = open.get(identity(info));
    if (users) {
      kept.set(path, `${openRefusal(users).replace(/ \(--force overrides\)$/, '')}: another run's copy at work?`);
      continue;
    }
    try {
      unlinkSync(path);
    } catch (error) {
      kept.set(path, reasonOf(error));
    }
  }
  return kept;
}

/**
 * The files PATHS name (directories: every regular file below) that lack +C, each with the reason
 * it would be refused. Processes per run, not per file: lsattr and filefrag take the files in
 * batches, one pass over /proc covers them all, btrfs filesystem df runs once per file system.
 */
export async function findCandidates(paths: string[], opts: MigrateOptions): Promise<Candidate[]> {
  const files: string[] = [];
  const seconds = new Set<string>();
  const unnamed: string[] = [];
  for (const path of paths) {
    const info = await lstat(path).catch(() => undefined);
    if (!info) throw new MigrateError(`${path}: no such file or directory`);
    if (info.isDirectory()) {
      const below = await regularFilesBelow(path);
      files.push(...below.files);
      for (const second of below.seconds) seconds.add(second);
      unnamed.push(...below.unnamed);
    } else if (info.isFile()) {
      files.push(path);
      for (const second of [originalName(path), rewrittenName(path)]) if (lstatSync(second, { throwIfNoEntry: false })) seconds.add(second);
    } else throw new MigrateError(`${path}: not a regular file or directory`);
  }
  const unique = [...new Set(files)];
  // What a killed run left is put right before anything is looked at: it may change which file PATH is.
  const interrupted = unique.filter((p) => seconds.has(originalName(p)) || seconds.has(rewrittenName(p)));
  const unsettled = opts.dryRun ? new Map<string, string>() : settle(interrupted);
  const flags = await flagsOf(unique);
  const todo: [string, BigIntStats][] = [];
  for (const path of unique.filter((p) => unsettled.has(p) || !flags.get(p)?.includes('C'))) {
    // Removed since it was listed: nothing to migrate.
    const info = lstatSync(path, { bigint: true, throwIfNoEntry: false });
    if (info?.isFile()) todo.push([path, info]);
  }
  // An immutable or append-only file, or directory, is frozen by its admin: left alone, said why.
  const dirFlags = await flagsOf([...new Set(todo.map(([path]) => dirname(path)))]);
  const frozen = (path: string): string | undefined => {
    const own = frozenBy(flags.get(path));
    const dir = frozenBy(dirFlags.get(dirname(path)));
    return own ? `it is ${own}: left alone` : dir && `its directory ${dirname(path)} is ${dir}: left alone`;
  };
  // One scan of /proc for every file.
  const open = opts.force ? new Map<string, string[]>() : openers(new Set(todo.map(([, info]) => identity(info))));
  const extents = await extentCounts(todo.map(([path]) => path));
  const candidates: Candidate[] = unnamed.map((shown) => ({
    path: shown,
    size: 0,
    allocated: 0,
    extents: undefined,
    dev: 0n,
    ino: 0n,
    refusal: shown.endsWith('/')
      ? 'a directory whose name is not UTF-8 (shown with \\xHH for each such byte): its files are not looked at; rename it first'
      : 'its name is not UTF-8 (shown with \\xHH for each such byte), which nocow cannot name safely: rename it first',
  }));
  const spaces = new Map<string, { type: number; bavail: number; bsize: number }>();
  const profiles = new Map<bigint, string | undefined>();
  for (const [path, info] of todo) {
    const candidate: Candidate = {
      path,
      size: Number(info.size),
      allocated: Number(info.blocks) * 512,
      extents: extents.get(path),
      dev: info.dev,
      ino: info.ino,
    };
    const dir = dirname(path);
    if (!spaces.has(dir)) spaces.set(dir, await statfs(dir));
    const fs = spaces.get(dir)!;
    const btrfs = isBtrfsType(fs.type);
    // The data profile is the file system's: asked once per device.
    if (btrfs && !profiles.has(info.dev)) profiles.set(info.dev, (await dataProfile(dir)).profile ?? undefined);
    const profile = profiles.get(info.dev);
    const users = open.get(identity(info)) ?? [];
    // A dry run leaves the original's second name of a killed run in place: not a link of the user's.
    const spare = opts.dryRun ? lstatSync(originalName(path), { bigint: true, throwIfNoEntry: false }) : undefined;
    const links = spare?.ino === info.ino && spare.dev === info.dev ? info.nlink - 1n : info.nlink;
    const frozenAs = frozen(path);
    if (unsettled.has(path)) candidate.refusal = unsettled.get(path)!;
    else if (!btrfs) candidate.refusal = 'not on Btrfs';
    else if (frozenAs) candidate.refusal = frozenAs;
    else if (isRedundant(profile) && !opts.forceNocow)
      candidate.refusal = `the data profile is ${profile}: +C would remove the checksums its self-healing needs (--force-nocow overrides)`;
    else if (links > 1n) candidate.refusal = hardLinks(links);
    else if (users.length > 0) candidate.refusal = openRefusal(users);
    else if (fs.bavail * fs.bsize < Math.max(candidate.allocated, 0) + SPACE_MARGIN)
      candidate.refusal = `not enough free space for the copy (${size(fs.bavail * fs.bsize)} free, ${size(candidate.allocated + SPACE_MARGIN)} needed)`;
    candidates.push(candidate);
  }
  return candidates;
}

const CHANGED = 'it changed while being copied; original kept';
const REACHED = 'it was opened or written during its rename; original put back';
const hardLinks = (links: bigint) => `it has ${links} hard links, which a rewrite would split`;

/** The reason a file keeps both versions: writes reached each, and which one is where. */
const bothKept = (path: string, other: string, otherIs: 'original' | 'copy') =>
  `writes reached both the original and its NOCOW copy: ${path} is the ${otherIs === 'original' ? 'copy' : 'original'}, ` +
  `the ${otherIs} is kept as ${other}; keep the one wanted and remove the other`;

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
function settle(paths: string[]): Map<string, string> {
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

/** Same file, same size, same data and metadata as far as the kernel's timestamps tell. */
const unchanged = (now: BigIntStats, then: BigIntStats) =>
  now.dev === then.dev &&
  now.ino === then.ino &&
  now.size === then.size &&
  now.nlink === then.nlink &&
  now.mtimeNs === then.mtimeNs &&
  now.ctimeNs === then.ctimeNs;

/**
 * Same file, data, mode and owner, once a rename has taken one of its LOST names: the rename
 * set its ctime and its link count, so a change shows in its size, mtime, mode or owner.
 */
const untouched = (now: BigIntStats, then: BigIntStats, lost: bigint) =>
  now.dev === then.dev &&
  now.ino === then.ino &&
  now.size === then.size &&
  now.nlink === then.nlink - lost &&
  now.mtimeNs === then.mtimeNs &&
  now.mode === then.mode &&
  now.uid === then.uid &&
  now.gid === then.gid;

const sameInode = (a: BigIntStats | undefined, b: BigIntStats) => a !== undefined && a.dev === b.dev && a.ino === b.ino;

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

/** What became of one file. */
export interface Outcome {
  candidate: Candidate;
  /** Why it was not rewritten (the original kept, the copy removed); undefined when it was. */
  error?: Error;
  /** The rewritten file's extents, as filefrag counts them. */
  extentsAfter?: number;
}

export interface MigrateHooks {
  /** A file's copy begins. */
  start?: (candidate: Candidate) => void;
  /** Bytes copied, as they are. */
  progress?: (bytes: number) => void;
  /** Awaited between chunks: a progress bar redraws. */
  tick?: () => Promise<void>;
  /** Each file's outcome, in order, once its batch is done. */
  done?: (outcome: Outcome) => void | Promise<void>;
}

/** One file of a batch on its way. */
interface Job {
  candidate: Candidate;
  temp: string;
  /** The original's second name (step 1), and whether this run made it. */
  spare: string;
  linked?: boolean;
  input?: number;
  out?: number;
  /** The copy's descriptors with O_DIRECT: to write (a block or more), and to read back as it is written (large files). */
  direct?: number;
  check?: number;
  /** Small files: the bytes read from the original, to compare once the copy is on the disk. */
  kept?: Kept;
  before?: BigIntStats;
  plan?: CopyPlan;
  /** The copy as verified; then, at the last checks, as it is renamed. */
  copy?: BigIntStats;
  /** PATH names the copy (step 7). */
  renamed?: boolean;
  /** The original is gone, the copy stays (step 8). */
  rewritten?: boolean;
  error?: Error;
  extentsAfter?: number;
}

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
export async function migrateFiles(candidates: Candidate[], opts: Pick<MigrateOptions, 'force'>, hooks: MigrateHooks = {}): Promise<Outcome[]> {
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
  opts: Pick<MigrateOptions, 'force'>,
  progress: (bytes: number) => void,
  tick: () => Promise<void>,
): Promise<void> {
  const [outcome] = await migrateFiles([candidate], opts, { progress, tick });
  if (outcome?.error) throw outcome.error;
}

const unlinkQuietly = (path: string) => {
  try {
    unlinkSync(path);
  } catch {
    // Not there: nothing to remove.
  }
};

const closeQuietly = (fd: number | undefined) => {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // Already closed, or nothing to do about it.
  }
};

async function migrateBatch(jobs: Job[], opts: Pick<MigrateOptions, 'force'>, hooks: MigrateHooks): Promise<void> {
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
    await setNocow(live(), fail);
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

/** +C on the new, still empty files: one chattr for them all; when it fails, one per file to tell which. */
async function setNocow(jobs: Job[], fail: (job: Job, error: unknown) => void): Promise<void> {
  for (const list of argumentLists(jobs.map((j) => j.temp))) {
    if ((await chattr('+C', list)).ok) continue;
    const listed = new Set(list);
    for (const job of jobs.filter((j) => listed.has(j.temp))) {
      const one = await chattr('+C', [job.temp]);
      if (!one.ok) fail(job, new Error(one.error));
    }
  }
}

/** The data of JOB's original into its copy (src/host/copy.ts), and what to read back. */
async function copyFile(job: Job, progress: (bytes: number) => void, tick: () => Promise<void>): Promise<void> {
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
async function syncSmall(jobs: Job[], fail: (job: Job, error: unknown) => void): Promise<void> {
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

const BAD_COPY = 'the copy does not read back the same; original kept';

/**
 * Small files: the copy read back from the disk (O_DIRECT) against the bytes read from the
 * original (large ones were, chunk by chunk, as they were written). Then for all: the copy's
 * size, and the original unchanged.
 */
async function verify(job: Job): Promise<void> {
  if (job.check === undefined) {
    job.check = openSync(job.temp, READ_BACK);
    await verifyCopy(job.check, job.plan!, job.kept!);
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
async function copyAttributes(jobs: Job[], fail: (job: Job, error: unknown) => void): Promise<void> {
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
