// What the steps of nocow migrate share: what a file to migrate is, the names it is given beside
// PATH, the reasons a file keeps its original, and the comparisons of a file with itself before.
import { closeSync, unlinkSync, type BigIntStats } from 'node:fs';
import type { CopyPlan, Kept } from '../host/copy.js';
import { TEMP_SUFFIX, temporaryName as temporaryBeside } from '../facts.js';

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

/**
 * Which way the files go: `nocow` (nocow migrate: copy-on-write files rewritten with +C) or `cow`
 * (nocow revert: +C files rewritten as copy-on-write files, with checksums). One engine for both.
 */
export type Direction = 'nocow' | 'cow';

/** The flag a rewritten file has: +C (nocow) or none (cow); what chattr sets on the empty copy. */
export const copyFlag = (direction: Direction) => (direction === 'nocow' ? '+C' : '-C');
/** Whether a file with FLAGS (as lsattr prints them) is one to rewrite in DIRECTION. */
export const wantsRewrite = (direction: Direction, flags: string | undefined) => (flags?.includes('C') ?? false) === (direction === 'cow');

export interface MigrateOptions {
  /** nocow (the default): migrate; cow: revert. */
  direction?: Direction;
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
export const isSecondName = (name: string) => name.startsWith('.') && (name.endsWith(TEMP_SUFFIX.original) || name.endsWith(TEMP_SUFFIX.rewritten));
/** Any name migrate gives a file of its own beside PATH: never a file to migrate. */
export const isTemporaryName = (name: string) => (name.startsWith('.') && name.endsWith(TEMP_SUFFIX.migrate)) || isSecondName(name);

/** What openers() found, as the reason: "open by process 12, 34", "attached to /dev/loop0", or both. */
export function openRefusal(users: string[]): string {
  const pids = users.filter((u) => !u.startsWith('/'));
  const devices = users.filter((u) => u.startsWith('/'));
  const uses = [pids.length > 0 ? `open by process ${pids.join(', ')}` : '', devices.length > 0 ? `attached to ${devices.join(', ')}` : ''];
  return `${uses.filter(Boolean).join(' and ')} (--force overrides)`;
}

export const CHANGED = 'it changed while being copied; original kept';
export const REACHED = 'it was opened or written during its rename; original put back';
export const hardLinks = (links: bigint) => `it has ${links} hard links, which a rewrite would split`;

/** The reason a file keeps both versions: writes reached each, and which one is where. */
export const bothKept = (path: string, other: string, otherIs: 'original' | 'copy') =>
  `writes reached both the original and its new copy: ${path} is the ${otherIs === 'original' ? 'copy' : 'original'}, ` +
  `the ${otherIs} is kept as ${other}; keep the one wanted and remove the other`;

/** Same file, same size, same data and metadata as far as the kernel's timestamps tell. */
export const unchanged = (now: BigIntStats, then: BigIntStats) =>
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
export const untouched = (now: BigIntStats, then: BigIntStats, lost: bigint) =>
  now.dev === then.dev &&
  now.ino === then.ino &&
  now.size === then.size &&
  now.nlink === then.nlink - lost &&
  now.mtimeNs === then.mtimeNs &&
  now.mode === then.mode &&
  now.uid === then.uid &&
  now.gid === then.gid;

export const sameInode = (a: BigIntStats | undefined, b: BigIntStats) => a !== undefined && a.dev === b.dev && a.ino === b.ino;

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
export interface Job {
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
export const unlinkQuietly = (path: string) => {
  try {
    unlinkSync(path);
  } catch {
    // Not there: nothing to remove.
  }
};

export const closeQuietly = (fd: number | undefined) => {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    // Already closed, or nothing to do about it.
  }
};
export const BAD_COPY = 'the copy does not read back the same; original kept';
export const UNREADABLE_COPY = 'the copy cannot be read back from the disk (I/O error); original kept';

