// Which `-c` btrfs filesystem defragment gets, so a file stays compressed as it is.
//
// Measured (kernel 6.18, btrfs-progs 6.2; test/defrag.test.ts keeps the first case): a 32 MiB
// compressible file fragmented by 4 KiB writes comes out of a defragmentation without -c exactly as
// with -c of the same algorithm (255 vs 254 extents, 3% of its size on disk either way) wherever the
// rewrite compresses by itself: a compress=zstd or compress-force=zstd mount, the compression
// property, chattr +c (which sets the property, zlib by default). Without any of those, -c would
// compress a file that was not; with another algorithm than the file's, it would change it. So no -c,
// except where the rewrite would not compress although the file's extents are compressed now: no
// property and no compress option (compressed under an earlier mount option, or by defragment -c),
// or btrfs has marked the file incompressible (lsattr `m`: after a write that did not compress,
// mount -o compress stops trying) while some of it is compressed.
import { byName, fdPath, runOn, type OpenFile } from '../host/files.js';
import { run as runTool } from '../host/run.js';
import { parseCompressionProperty } from '../host/btrfs.js';
import { mountOf, mountOptions, type Mount } from '../host/mounts.js';

export interface CompressionChoice {
  /** The algorithm the rewritten file is compressed with; null: stored uncompressed. */
  algorithm: string | null;
  /** Why: "property compression=zstd", "mount option compress=zstd:3", "its extents (compsize)"… */
  by: string | null;
  /** The `-cALG` option given to btrfs filesystem defragment; null: none. */
  flag: string | null;
}

export type MountCompression = { option: string; algorithm: string; force: boolean } | null;

/**
 * compress=ALG[:LEVEL] or compress-force=ALG[:LEVEL] (plain `compress` is zlib) of the Btrfs mount
 * FILE lies on (MOUNTS: the table, read once for many files).
 */
export function mountCompression(file: OpenFile, mounts: Mount[]): MountCompression {
  const mount = mountOf(file.path, mounts);
  if (mount === undefined || mount.fstype !== 'btrfs') return null;
  // Btrfs lists it among the super block's options (mountinfo's last field).
  const option = mountOptions(mount).find((o) => /^compress(-force)?(=|$)/.test(o));
  const algorithm = option?.split('=')[1]?.split(':')[0] || 'zlib';
  return option === undefined || algorithm === 'no' || algorithm === 'none' ? null : { option, algorithm, force: option.startsWith('compress-force') };
}

async function run(command: string, args: string[]): Promise<string | undefined> {
  const r = await runTool(command, args);
  return r.ok ? r.stdout : undefined;
}

/** The file's `compression` property (set by btrfs property set, or chattr +c); null when none. */
async function property(file: OpenFile): Promise<string | null> {
  const r = await runOn([file], 'btrfs', ['property', 'get', '--', fdPath(0), 'compression']);
  return r.exitCode === 0 ? parseCompressionProperty(r.stdout) : null;
}

/** lsattr's `m` (no-compress: btrfs gave up compressing the file). */
async function markedIncompressible(file: OpenFile): Promise<boolean> {
  const out = await run(...byName(file.path, 'lsattr', '-d', '--'));
  return out?.split(' ', 1)[0]?.includes('m') ?? false;
}

/** The algorithm most of the file's compressed bytes use, as compsize (btrfs-compsize) tells; null without it. */
async function compsizeAlgorithm(file: OpenFile): Promise<string | null> {
  const out = await run(...byName(file.path, 'compsize', '--'));
  // "Type       Perc     Disk Usage   Uncompressed Referenced", then TOTAL and one row per type.
  const rows = (out ?? '').split('\n').map((l) => l.trim().split(/\s+/)).filter((r) => r[0] && !['Processed', 'Type', 'TOTAL', 'none', 'prealloc'].includes(r[0]));
  return rows[0]?.[0] ?? null;
}

/** What the rewrite of PATH should be compressed with; `compressed`: some of its extents are now. */
export async function chooseCompression(file: OpenFile, compressed: boolean, mount: MountCompression): Promise<CompressionChoice> {
  const prop = await property(file);
  if (prop !== null) return { algorithm: prop, by: `property compression=${prop}`, flag: null };
  if (mount !== null && (mount.force || !compressed || !(await markedIncompressible(file)))) {
    return { algorithm: mount.algorithm, by: `mount option ${mount.option}`, flag: null };
  }
  if (!compressed) return { algorithm: null, by: null, flag: null };
  if (mount !== null) return { algorithm: mount.algorithm, by: `mount option ${mount.option}, although marked incompressible`, flag: `-c${mount.algorithm}` };
  const found = await compsizeAlgorithm(file);
  const algorithm = found ?? 'zstd';
  return { algorithm, by: found ? 'its compressed extents (compsize)' : 'its compressed extents (algorithm unknown without compsize)', flag: `-c${algorithm}` };
}
