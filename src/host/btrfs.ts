// What the live commands ask of Btrfs, asked one way: whether a path is on it (statfs's magic
// number), what `stat -f -c %T` calls its file system, its data profile (`btrfs filesystem df`,
// as the shell library reads it), and whether a directory is a subvolume.
import { stat, statfs } from 'node:fs/promises';
import { run, type ToolRun } from './run.js';

/** statfs(2)'s f_type of Btrfs (BTRFS_SUPER_MAGIC). */
export const BTRFS_MAGIC = 0x9123683e;

/** Is a statfs type (a number from fs.statfs) Btrfs's? */
export const isBtrfsType = (type: number | bigint): boolean => Number(type) >>> 0 === BTRFS_MAGIC;

/** Whether PATH is on Btrfs; a path that cannot be looked at throws. */
export async function onBtrfs(path: string): Promise<boolean> {
  return isBtrfsType((await statfs(path)).type);
}

/**
 * The names `stat -f -c %T` (coreutils) gives the statfs(2) magic numbers met most; the shell
 * library asks stat, which reads the same number. Any other file system: stat itself names it.
 */
const FS_NAMES: ReadonlyMap<number, string> = new Map([
  [BTRFS_MAGIC, 'btrfs'],
  [0xef53, 'ext2/ext3'],
  [0x58465342, 'xfs'],
  [0x01021994, 'tmpfs'],
]);

/** `stat -f -c %T PATH`, without a process where the magic number is a known one. */
export async function fileSystemName(path: string): Promise<{ name: string } | { error: string }> {
  const known = await statfs(path).then((st) => FS_NAMES.get(st.type >>> 0), () => undefined);
  if (known !== undefined) return { name: known };
  const r = await run('stat', ['-f', '-c', '%T', '--', path]);
  return r.ok ? { name: r.stdout.trim() } : { error: r.error };
}

/** The data profile in `btrfs filesystem df`'s output, lower case ("single", "raid1"…), as nocow status and btrfs(8)'s documentation spell it. */
export function parseDataProfile(out: string): string | undefined {
  return /^Data(?:\+Metadata)?, ([^:\n]+):/m.exec(out)?.[1]?.toLowerCase();
}

/**
 * The data profile of the Btrfs holding PATH (a directory); null when it cannot be told, with
 * `progs` false when btrfs-progs is not installed, else the run that failed.
 */
export async function dataProfile(path: string): Promise<{ profile: string | null; progs: boolean; failed?: ToolRun }> {
  const df = await run('btrfs', ['filesystem', 'df', '--', path]);
  if (df.missing) return { profile: null, progs: false };
  const profile = parseDataProfile(df.stdout);
  if (!df.ok || profile === undefined) return { profile: null, progs: true, failed: df };
  return { profile, progs: true };
}

/** systemd's btrfs_is_subvol(): a directory on Btrfs whose inode is 256, told without a process; null when it cannot be looked at. */
export async function mightBeSubvolume(path: string): Promise<boolean | null> {
  const [fs, st] = await Promise.all([statfs(path).catch(() => undefined), stat(path).catch(() => undefined)]);
  if (fs === undefined || st === undefined) return null;
  return isBtrfsType(fs.type) && st.isDirectory() && st.ino === 256;
}

/** Inode 256 is a subvolume's root on Btrfs; btrfs subvolume show confirms it where it can. */
export async function isSubvolume(path: string, inode: number): Promise<boolean> {
  if (inode !== 256) return false;
  const show = await run('btrfs', ['subvolume', 'show', '--', path]);
  // Without btrfs-progs, or without the privileges show needs, the inode number alone decides.
  return show.ok || !/not a btrfs subvolume/i.test(show.error);
}

/** The `compression` property in `btrfs property get … compression`'s output ("zstd", "lzo"…); null when unset. */
export const parseCompressionProperty = (out: string): string | null => /^compression=(\S+)/m.exec(out)?.[1] ?? null;
