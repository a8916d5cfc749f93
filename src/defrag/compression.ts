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
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { TOOL_ENV } from './extents.js';

export interface CompressionChoice {
  /** The algorithm the rewritten file is compressed with; null: stored uncompressed. */
  algorithm: string | null;
  /** Why: "property compression=zstd", "mount option compress=zstd:3", "its extents (compsize)"… */
  by: string | null;
  /** The `-cALG` option given to btrfs filesystem defragment; null: none. */
  flag: string | null;
}

/** compress=ALG[:LEVEL] or compress-force=ALG[:LEVEL] (plain `compress` is zlib) of the btrfs mount holding PATH. */
export async function mountCompression(path: string): Promise<{ option: string; algorithm: string; force: boolean } | null> {
  const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  let best = '';
  let found: { option: string; algorithm: string; force: boolean } | null = null;
  for (const line of mounts.split('\n')) {
    const [, rawPoint, type, options] = line.split(' ');
    if (rawPoint === undefined || type === undefined || options === undefined) continue;
    const point = rawPoint.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const within = point === '/' || path === point || path.startsWith(`${point}/`);
    if (!within || point.length < best.length) continue;
    best = point;
    const option = type === 'btrfs' ? options.split(',').find((o) => /^compress(-force)?(=|$)/.test(o)) : undefined;
    const algorithm = option?.split('=')[1]?.split(':')[0] || 'zlib';
    found = option === undefined || algorithm === 'no' || algorithm === 'none' ? null : { option, algorithm, force: option.startsWith('compress-force') };
  }
  return found;
}

async function run(command: string, args: string[]): Promise<string | undefined> {
  const r = await execa(command, args, { reject: false, env: TOOL_ENV, stdin: 'ignore' });
  return r.exitCode === 0 ? String(r.stdout) : undefined;
}

/** The file's `compression` property (set by btrfs property set, or chattr +c); null when none. */
async function property(path: string): Promise<string | null> {
  return /^compression=(\S+)/m.exec((await run('btrfs', ['property', 'get', '--', path, 'compression'])) ?? '')?.[1] ?? null;
}

/** lsattr's `m` (no-compress: btrfs gave up compressing the file). */
async function markedIncompressible(path: string): Promise<boolean> {
  const out = await run('lsattr', ['-d', '--', path]);
  return out?.split(' ', 1)[0]?.includes('m') ?? false;
}

/** The algorithm most of the file's compressed bytes use, as compsize (btrfs-compsize) tells; null without it. */
async function compsizeAlgorithm(path: string): Promise<string | null> {
  const out = await run('compsize', ['--', path]);
  // "Type       Perc     Disk Usage   Uncompressed Referenced", then TOTAL and one row per type.
  const rows = (out ?? '').split('\n').map((l) => l.trim().split(/\s+/)).filter((r) => r[0] && !['Processed', 'Type', 'TOTAL', 'none', 'prealloc'].includes(r[0]));
  return rows[0]?.[0] ?? null;
}

/** What the rewrite of PATH should be compressed with; `compressed`: some of its extents are now. */
export async function chooseCompression(path: string, compressed: boolean, mount: Awaited<ReturnType<typeof mountCompression>>): Promise<CompressionChoice> {
  const prop = await property(path);
  if (prop !== null) return { algorithm: prop, by: `property compression=${prop}`, flag: null };
  if (mount !== null && (mount.force || !compressed || !(await markedIncompressible(path)))) {
    return { algorithm: mount.algorithm, by: `mount option ${mount.option}`, flag: null };
  }
  if (!compressed) return { algorithm: null, by: null, flag: null };
  if (mount !== null) return { algorithm: mount.algorithm, by: `mount option ${mount.option}, although marked incompressible`, flag: `-c${mount.algorithm}` };
  const found = await compsizeAlgorithm(path);
  const algorithm = found ?? 'zstd';
  return { algorithm, by: found ? 'its compressed extents (compsize)' : 'its compressed extents (algorithm unknown without compsize)', flag: `-c${algorithm}` };
}
