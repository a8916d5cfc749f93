// nocow migrate: rewrite existing copy-on-write files as NOCOW, one at a time, so that
// a kill at any moment leaves the original intact and a re-run finishes the job, and
// no write to the original is ever lost.
//   1. a new file beside the original, at a fixed name (.NAME.nocow-migrate, or
//      .nocow-CKSUM.nocow-migrate when that would not fit NAME_MAX), +C while empty
//   2. the data copied by plain reads and writes (never a reflink, which would share the
//      CoW extents), holes kept, preallocation kept; fsync
//   3. verified: size and SHA-256 of the copy read back against the original
//   4. owner, mode, times, xattrs (ACLs, SELinux label) copied
//   5. last checks: no other process holds the original open or mapped and no loop device
//      is attached to it (a scan of /proc and /sys/block, by device and inode, so any path
//      to it counts), and its size, mtime, ctime, device and inode are those recorded
//      before the copy; PATH still names it, the copy is still ours
//   6. one rename over the original: the last step, so a kill before it leaves the
//      original in place and a re-run removes the half-made copy
// A file whose checks fail keeps its original, untouched; the copy is removed.
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  renameSync,
  statSync,
  writeSync,
  type BigIntStats,
} from 'node:fs';
import { lstat, readdir, realpath, statfs, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { REDUNDANT_PROFILES, TEMP_SUFFIX, refusedTarget, temporaryName as temporaryBeside } from '../facts.js';
import { size } from '../io.js';

const BTRFS_SUPER_MAGIC = 0x9123683e;
const CHUNK = 1024 * 1024;
// Room for metadata beyond the copy's own blocks.
const SPACE_MARGIN = 16 * 1024 * 1024;
// File timestamps come from a clock that advances by ticks of a few milliseconds (1–10 ms):
// a write within the tick of the last change could leave mtime and ctime as they were.
// The copy starts only once the clock is this far past the file's last change.
const TIMESTAMP_TICK_NS = 50_000_000n;

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
}

export class MigrateError extends Error {}

/** Where the copy of PATH is made: hidden, beside it, always a valid name. */
export const temporaryName = (path: string) => temporaryBeside(path, TEMP_SUFFIX.migrate, '.');

/** Both forms temporaryName gives: ".NAME.nocow-migrate" and ".nocow-CKSUM.nocow-migrate". */
const isTemporaryName = (name: string) => name.startsWith('.') && name.endsWith(TEMP_SUFFIX.migrate);

const identity = (info: { dev: bigint; ino: bigint }) => `${info.dev}:${info.ino}`;

async function hasNocow(paths: string[]): Promise<Map<string, boolean>> {
  const flags = new Map<string, boolean>();
  if (paths.length === 0) return flags;
  const { stdout } = await execa('lsattr', ['-d', '--', ...paths]);
  // lsattr prints "FLAGS PATH", one line per path in the order given.
  stdout.split('\n').forEach((line, i) => flags.set(paths[i]!, line.split(' ', 1)[0]!.includes('C')));
  return flags;
}

export async function extentCount(path: string): Promise<number | undefined> {
  const result = await execa('filefrag', ['--', path], { reject: false });
  const match = / (\d+) extents? found$/.exec(result.stdout);
  return match ? Number(match[1]) : undefined;
}

async function dataProfile(path: string): Promise<string | undefined> {
  const result = await execa('btrfs', ['filesystem', 'df', '--', path], { reject: false });
  // Lower case, as nocow status and btrfs(8)'s own documentation spell it ("raid1", not "RAID1").
  return /^Data(?:\+Metadata)?, ([A-Za-z0-9]+):/m.exec(result.stdout)?.[1]?.toLowerCase();
}

/**
 * Which of the files WANTED ("dev:ino") other processes hold open or have mapped (their PIDs)
 * or loop devices are attached to ("/dev/loopN"): one pass over /proc (the processes we may
 * look at) and /sys/block. By device and inode, not by the text of the links, so a path
 * through a symlink, a bind mount or a chroot counts too.
 * Synchronous: a pass takes milliseconds (about 7 ms for 100 processes), ten times less than
 * with a promise per entry, and the last one is the window before the rename.
 */
function holders(wanted: Set<string>): Map<string, string[]> {
  const found = new Map<string, string[]>();
  if (wanted.size === 0) return found;
  const inodes = new Set([...wanted].map((key) => key.slice(key.indexOf(':') + 1)));
  const note = (key: string, holder: string) => {
    if (!wanted.has(key)) return;
    const known = found.get(key) ?? [];
    if (!known.includes(holder)) found.set(key, [...known, holder]);
  };
  // A process may end, or close the descriptor, at any moment of the pass.
  const attempt = <T>(read: () => T, otherwise: T): T => {
    try {
      return read();
    } catch {
      return otherwise;
    }
  };
  const statOf = (link: string) => attempt<BigIntStats | undefined>(() => statSync(link, { bigint: true }), undefined);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    for (const fd of attempt(() => readdirSync(`/proc/${entry}/fd`), [] as string[])) {
      // Sockets, pipes and anonymous inodes ("socket:[…]") are not files of ours.
      if (!attempt(() => readlinkSync(`/proc/${entry}/fd/${fd}`), '').startsWith('/')) continue;
      // fdinfo names the inode without touching its file system (a hung network mount would
      // hang a stat); when it does and the number is none of ours, the stat is not needed.
      const fdinfo = attempt(() => readFileSync(`/proc/${entry}/fdinfo/${fd}`, 'utf8'), '');
      const ino = /^ino:\s*(\d+)$/m.exec(fdinfo)?.[1];
      if (ino !== undefined && !inodes.has(ino)) continue;
      const info = statOf(`/proc/${entry}/fd/${fd}`);
      if (info) note(identity(info), entry);
    }
    // A shared mapping writes into the file after its descriptor is closed.
    for (const line of attempt(() => readFileSync(`/proc/${entry}/maps`, 'utf8'), '').split('\n')) {
      const [range, , , , ino] = line.split(/\s+/); // "START-END PERMS OFFSET MAJOR:MINOR INODE PATH"
      if (!range || !ino || !inodes.has(ino)) continue;
      const info = statOf(`/proc/${entry}/map_files/${range}`);
      // Without map_files (not root), the inode number alone: better a refusal than a lost write.
      if (info) note(identity(info), entry);
      else for (const key of wanted) if (key.endsWith(`:${ino}`)) note(key, entry);
    }
  }
  // A loop device writes into its backing file with no process holding it.
  for (const device of attempt(() => readdirSync('/sys/block'), [] as string[])) {
    if (!device.startsWith('loop')) continue;
    const backing = attempt(() => readFileSync(`/sys/block/${device}/loop/backing_file`, 'utf8'), '').replace(/\n$/, '');
    if (!backing.startsWith('/') || backing.endsWith(' (deleted)')) continue;
    const info = statOf(backing);
    if (info) note(identity(info), `/dev/${device}`);
  }
  return found;
}

/** What holders() found, as the reason: "open by process 12, 34", "attached to /dev/loop0", or both. */
function openRefusal(users: string[]): string {
  const pids = users.filter((u) => !u.startsWith('/'));
  const devices = users.filter((u) => u.startsWith('/'));
  const uses = [pids.length > 0 ? `open by process ${pids.join(', ')}` : '', devices.length > 0 ? `attached to ${devices.join(', ')}` : ''];
  return `${uses.filter(Boolean).join(' and ')} (--force overrides)`;
}

async function regularFilesBelow(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && !isTemporaryName(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/**
 * The paths given on the command line, each resolved to its real path, or the first
 * refusal: a system directory, anything below /etc, /usr…, whether as given or resolved.
 * Nothing is read but the paths' names; a missing path stays as given (findCandidates says so).
 */
export async function resolveTargets(paths: string[]): Promise<string[]> {
  const resolved: string[] = [];
  for (const given of paths) {
    const absolute = resolve(given);
    const real = await realpath(absolute).catch(() => undefined);
    const reason = refusedTarget(absolute) ?? (real === undefined ? undefined : refusedTarget(real));
    if (reason !== undefined) throw new MigrateError(`${given}: refused: ${reason}, never a target (see SECURITY.md)`);
    resolved.push(real ?? absolute);
  }
  return resolved;
}

/** The files PATHS name (directories: every regular file below) that lack +C, each with the reason it would be refused. */
export async function findCandidates(paths: string[], opts: MigrateOptions): Promise<Candidate[]> {
  const files: string[] = [];
  for (const path of paths) {
    const info = await lstat(path).catch(() => undefined);
    if (!info) throw new MigrateError(`${path}: no such file or directory`);
    if (info.isDirectory()) files.push(...(await regularFilesBelow(path)));
    else if (info.isFile()) files.push(path);
    else throw new MigrateError(`${path}: not a regular file or directory`);
  }
  const unique = [...new Set(files)];
  const nocow = await hasNocow(unique);
  const todo: [string, BigIntStats][] = [];
  for (const path of unique.filter((p) => !nocow.get(p))) todo.push([path, await lstat(path, { bigint: true })]);
  // One scan of /proc for every file.
  const open = opts.force ? new Map<string, string[]>() : holders(new Set(todo.map(([, info]) => identity(info))));
  const candidates: Candidate[] = [];
  const profiles = new Map<string, string | undefined>();
  for (const [path, info] of todo) {
    const candidate: Candidate = {
      path,
      size: Number(info.size),
      allocated: Number(info.blocks) * 512,
      extents: await extentCount(path),
      dev: info.dev,
      ino: info.ino,
    };
    const fs = await statfs(dirname(path));
    const dir = dirname(path);
    if (!profiles.has(dir)) profiles.set(dir, Number(fs.type) === BTRFS_SUPER_MAGIC ? await dataProfile(dir) : undefined);
    const profile = profiles.get(dir);
    const users = open.get(identity(info)) ?? [];
    if (Number(fs.type) !== BTRFS_SUPER_MAGIC) candidate.refusal = 'not on Btrfs';
    else if (profile && REDUNDANT_PROFILES.includes(profile) && !opts.forceNocow)
      candidate.refusal = `the data profile is ${profile}: +C would remove the checksums its self-healing needs (--force-nocow overrides)`;
    else if (info.nlink > 1n) candidate.refusal = `it has ${info.nlink} hard links, which a rewrite would split`;
    else if (users.length > 0) candidate.refusal = openRefusal(users);
    else if (fs.bavail * fs.bsize < Math.max(candidate.allocated, 0) + SPACE_MARGIN)
      candidate.refusal = `not enough free space for the copy (${size(fs.bavail * fs.bsize)} free, ${size(candidate.allocated + SPACE_MARGIN)} needed)`;
    candidates.push(candidate);
  }
  return candidates;
}

const isZero = (buffer: Buffer, length: number) => {
  for (let i = 0; i < length; i++) if (buffer[i] !== 0) return false;
  return true;
};

function sha256Of(fd: number, size: number): string {
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(CHUNK);
  for (let offset = 0; offset < size; ) {
    const n = readSync(fd, buffer, 0, Math.min(CHUNK, size - offset), offset);
    if (n === 0) break;
    hash.update(buffer.subarray(0, n));
    offset += n;
  }
  return hash.digest('hex');
}

const CHANGED = 'it changed while being copied; original kept';

/** Same file, same size, same data and metadata as far as the kernel's timestamps tell. */
const unchanged = (now: BigIntStats, then: BigIntStats) =>
  now.dev === then.dev &&
  now.ino === then.ino &&
  now.size === then.size &&
  now.nlink === then.nlink &&
  now.mtimeNs === then.mtimeNs &&
  now.ctimeNs === then.ctimeNs;

/** fstat of FD once the clock has moved past the file's last change, so any later change shows in mtime and ctime. */
async function settledStat(fd: number): Promise<BigIntStats> {
  let info = fstatSync(fd, { bigint: true });
  for (let tries = 0; tries < 3; tries++) {
    const last = info.ctimeNs > info.mtimeNs ? info.ctimeNs : info.mtimeNs;
    const age = BigInt(Date.now()) * 1_000_000n - last;
    // Far in the future (a clock set back): any write sets an earlier time, a change still.
    if (age >= TIMESTAMP_TICK_NS || age < -1_000_000_000n) break;
    await sleep(Number((TIMESTAMP_TICK_NS - age) / 1_000_000n) + 1);
    info = fstatSync(fd, { bigint: true });
  }
  return info;
}

/**
 * Rewrites one file as NOCOW. Synchronous reads and writes in this thread, so a kill
 * lands between two of them; `tick` lets a progress bar redraw between chunks. Throws a
 * MigrateError, the original untouched and the copy removed, when the original changed
 * during the copy or (without `force`) another process holds it at the end.
 */
export async function migrateFile(
  candidate: Candidate,
  opts: Pick<MigrateOptions, 'force'>,
  progress: (bytes: number) => void,
  tick: () => Promise<void>,
): Promise<void> {
  const { path } = candidate;
  const temp = temporaryName(path);
  // Left by a killed run: the original was still in place (the rename is the last step).
  await unlink(temp).catch(() => {});
  const input = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  let out: number | undefined;
  try {
    const before = await settledStat(input);
    // Replaced since the checks: they were about another file.
    if (before.dev !== candidate.dev || before.ino !== candidate.ino) throw new MigrateError(CHANGED);
    const size = Number(before.size);
    out = openSync(temp, 'wx+', 0o600); // read back to verify
    await execa('chattr', ['+C', '--', temp]);
    // A fully allocated (preallocated) original stays preallocated; a sparse one keeps its holes.
    if (Number(before.blocks) * 512 >= size && size > 0) await execa('fallocate', ['-l', String(size), '--', temp]);
    else ftruncateSync(out, size);
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(CHUNK);
    for (let offset = 0; offset < size; ) {
      const n = readSync(input, buffer, 0, Math.min(CHUNK, size - offset), offset);
      if (n === 0) throw new MigrateError(CHANGED); // shrank
      hash.update(buffer.subarray(0, n));
      if (!isZero(buffer, n)) writeSync(out, buffer, 0, n, offset);
      offset += n;
      progress(n);
      await tick();
    }
    fsyncSync(out);
    const copied = sha256Of(out, size);
    if (copied !== hash.digest('hex')) throw new MigrateError('the copy does not read back the same; original kept');
    if (!unchanged(fstatSync(input, { bigint: true }), before)) throw new MigrateError(CHANGED);
    const copy = fstatSync(out, { bigint: true });
    closeSync(out);
    out = undefined;
    // After the data: writing it changed the copy's times.
    await execa('cp', ['--attributes-only', '--preserve=all', '--', path, temp]);
    // The last checks, then at once the rename. Whoever holds the original now would go on
    // writing into a file no longer there; a write since `before` would not be in the copy.
    if (!opts.force) {
      const users = holders(new Set([identity(before)])).get(identity(before));
      if (users) throw new MigrateError(`${openRefusal(users)}; original kept`);
    }
    if (!unchanged(fstatSync(input, { bigint: true }), before)) throw new MigrateError(CHANGED);
    const named = lstatSync(path, { bigint: true, throwIfNoEntry: false });
    if (named === undefined || !unchanged(named, before)) throw new MigrateError(CHANGED);
    const renamed = lstatSync(temp, { bigint: true, throwIfNoEntry: false });
    if (renamed?.dev !== copy.dev || renamed.ino !== copy.ino) throw new MigrateError('the copy was replaced; original kept');
    renameSync(temp, path);
  } catch (error) {
    if (out !== undefined) closeSync(out);
    await unlink(temp).catch(() => {});
    throw error;
  } finally {
    closeSync(input);
  }
  const dir = openSync(dirname(path), 'r');
  fsyncSync(dir);
  closeSync(dir);
}
