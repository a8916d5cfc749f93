// nocow migrate: rewrite existing copy-on-write files as NOCOW, one at a time, so that
// a kill at any moment leaves the original intact and a re-run finishes the job.
//   1. a new file beside the original, at a fixed name (.NAME.nocow-migrate), +C while empty
//   2. the data copied by plain reads and writes (never a reflink, which would share the
//      CoW extents), holes kept, preallocation kept; fsync
//   3. verified: size and SHA-256 of the copy read back against the original
//   4. owner, mode, times, xattrs (ACLs, SELinux label) copied; then one rename over the original
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { lstat, readdir, readlink, rename, statfs, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';

const BTRFS_SUPER_MAGIC = 0x9123683e;
const CHUNK = 1024 * 1024;
// Room for metadata beyond the copy's own blocks.
const SPACE_MARGIN = 16 * 1024 * 1024;
const REDUNDANT = new Set(['RAID1', 'RAID1C3', 'RAID1C4', 'RAID10', 'RAID5', 'RAID6', 'DUP']);

export interface Candidate {
  path: string;
  size: number;
  /** Bytes allocated on disk (st_blocks × 512). */
  allocated: number;
  extents: number | undefined;
  /** Why this file is not migrated; undefined when it will be. */
  refusal?: string;
}

export interface MigrateOptions {
  /** Rewrite even files some process has open. */
  force: boolean;
  /** Rewrite even on a redundant data profile, where +C drops the checksums self-healing needs. */
  forceNocow: boolean;
}

export class MigrateError extends Error {}

export const temporaryName = (path: string) => join(dirname(path), `.${basename(path)}.nocow-migrate`);

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
  return /^Data(?:\+Metadata)?, ([A-Za-z0-9]+):/m.exec(result.stdout)?.[1];
}

/** PIDs of processes holding PATH open, from /proc/PID/fd (those we may read). */
async function openers(path: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const fds = await readdir(`/proc/${entry}/fd`).catch(() => []);
    for (const fd of fds) {
      if ((await readlink(`/proc/${entry}/fd/${fd}`).catch(() => '')) === path) {
        pids.push(Number(entry));
        break;
      }
    }
  }
  return pids;
}

async function regularFilesBelow(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && !e.name.endsWith('.nocow-migrate'))
    .map((e) => join(e.parentPath, e.name))
    .sort();
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
  const candidates: Candidate[] = [];
  const profiles = new Map<string, string | undefined>();
  for (const path of unique.filter((p) => !nocow.get(p))) {
    const info = await lstat(path);
    const candidate: Candidate = { path, size: info.size, allocated: info.blocks * 512, extents: await extentCount(path) };
    const fs = await statfs(dirname(path));
    const dir = dirname(path);
    if (!profiles.has(dir)) profiles.set(dir, Number(fs.type) === BTRFS_SUPER_MAGIC ? await dataProfile(dir) : undefined);
    const profile = profiles.get(dir);
    const pids = opts.force ? [] : await openers(path);
    if (Number(fs.type) !== BTRFS_SUPER_MAGIC) candidate.refusal = 'not on Btrfs';
    else if (profile && REDUNDANT.has(profile) && !opts.forceNocow)
      candidate.refusal = `the data profile is ${profile}: +C would remove the checksums its self-healing needs (--force-nocow overrides)`;
    else if (info.nlink > 1) candidate.refusal = `it has ${info.nlink} hard links, which a rewrite would split`;
    else if (pids.length > 0) candidate.refusal = `open by process ${pids.join(', ')} (--force overrides)`;
    else if (fs.bavail * fs.bsize < Math.max(candidate.allocated, 0) + SPACE_MARGIN)
      candidate.refusal = `not enough free space for the copy (${mib(fs.bavail * fs.bsize)} free, ${mib(candidate.allocated + SPACE_MARGIN)} needed)`;
    candidates.push(candidate);
  }
  return candidates;
}

export const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

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

/**
 * Rewrites one file as NOCOW. Synchronous reads and writes in this thread, so a kill
 * lands between two of them; `tick` lets a progress bar redraw between chunks.
 */
export async function migrateFile(candidate: Candidate, progress: (bytes: number) => void, tick: () => Promise<void>): Promise<void> {
  const { path, size } = candidate;
  const temp = temporaryName(path);
  // Left by a killed run: the original was still in place (the rename is the last step).
  await unlink(temp).catch(() => {});
  const out = openSync(temp, 'wx+', 0o600); // read back to verify
  const input = openSync(path, 'r');
  try {
    await execa('chattr', ['+C', '--', temp]);
    // A fully allocated (preallocated) original stays preallocated; a sparse one keeps its holes.
    if (candidate.allocated >= size && size > 0) await execa('fallocate', ['-l', String(size), '--', temp]);
    else ftruncateSync(out, size);
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(CHUNK);
    for (let offset = 0; offset < size; ) {
      const n = readSync(input, buffer, 0, Math.min(CHUNK, size - offset), offset);
      if (n === 0) throw new MigrateError(`${path}: shrank while being copied`);
      hash.update(buffer.subarray(0, n));
      if (!isZero(buffer, n)) writeSync(out, buffer, 0, n, offset);
      offset += n;
      progress(n);
      await tick();
    }
    fsyncSync(out);
    const copied = sha256Of(out, size);
    if (copied !== hash.digest('hex')) throw new MigrateError(`${path}: the copy does not read back the same; original kept`);
    if (fstatSync(input).size !== size) throw new MigrateError(`${path}: changed size while being copied; original kept`);
  } catch (error) {
    closeSync(out);
    await unlink(temp).catch(() => {});
    throw error;
  } finally {
    closeSync(input);
  }
  closeSync(out);
  // After the data: writing it changed the copy's times.
  await execa('cp', ['--attributes-only', '--preserve=all', '--', path, temp]);
  await rename(temp, path);
  const dir = openSync(dirname(path), 'r');
  fsyncSync(dir);
  closeSync(dir);
}
