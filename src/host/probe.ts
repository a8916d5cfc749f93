// A directory as status and convert see it on Btrfs, asked the shell library's way (inode 256 and
// btrfs subvolume show, lsattr, the device of its parent): the facts both decide from.
import { opendir, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { lsattr } from './attrs.js';
import { dataProfile, isSubvolume } from './btrfs.js';

export interface DirectoryFacts {
  subvolume: boolean;
  /** Its own flags as lsattr prints them ("----C-…"); null when they cannot be read. */
  flags: string | null;
  /** Without entries; null when it cannot be read. */
  empty: boolean | null;
  /** Another file system, or a bind mount of another device, mounted on it. */
  mountPoint: boolean;
}

/** The directory's own flags as lsattr prints them; null when they cannot be read (and why, in PROBLEMS). */
export async function dirFlags(path: string, problems: string[]): Promise<string | null> {
  const { flags, run } = await lsattr([path], { own: true });
  const f = flags.get(path);
  if (!run.ok || f === undefined) {
    problems.push(`cannot read the attributes of ${path}: ${run.error}`);
    return null;
  }
  return f;
}

/** Whether the directory PATH has no entry; null when it cannot be read (and why, in PROBLEMS). */
export async function isEmpty(path: string, problems: string[]): Promise<boolean | null> {
  try {
    const dir = await opendir(path);
    const first = await dir.read();
    await dir.close();
    return first === null;
  } catch (err) {
    problems.push(`cannot read the directory ${path}: ${(err as Error).message}`);
    return null;
  }
}

/** The directory PATH (ST: its lstat) on Btrfs: what could not be read is said in PROBLEMS. */
export async function probeDirectory(path: string, st: Stats, problems: string[]): Promise<DirectoryFacts> {
  const [subvolume, flags, empty, parent] = await Promise.all([
    isSubvolume(path, st.ino),
    dirFlags(path, problems),
    isEmpty(path, problems),
    stat(`${path}/..`).catch(() => undefined),
  ]);
  // As the shell library tells them: another device with another inode than 256 is a mount point.
  return { subvolume, flags, empty, mountPoint: st.ino !== 256 && parent !== undefined && st.dev !== parent.dev };
}

/** The data profile as the shell library reads it, and whether btrfs-progs is there; `problem`: why it could not be read. */
export async function probeProfile(dir: string): Promise<{ profile: string | null; progs: boolean; problem?: string }> {
  const p = await dataProfile(dir);
  return p.failed ? { ...p, problem: `cannot read the data profile of ${dir}: ${p.failed.error}` } : p;
}
