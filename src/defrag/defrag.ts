// nocow defrag: defragment the regular files of the given places that are fragmented enough to be
// worth it, with btrfs filesystem defragment, one file at a time, leaving alone what it must:
//   - a file at or below the threshold (src/defrag/policy.ts: extentLimit);
//   - a file with shared extents (a reflinked copy, a snapshot): defragmenting unshares them, so
//     the space they take is taken again (--force-shared overrides);
//   - a file some process has open for writing (or a writable loop device is backed by): its
//     writes would stall behind the defragmentation and fragment it again;
//   - a file whose extents are mostly preallocated ranges never written: btrfs leaves those as
//     they are and would scatter the written blocks between them, so the count would grow
//     (measured: 889 → 1798 extents);
// and keeping compression as it is (src/defrag/compression.ts).
import { lstat, opendir, realpath, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { TEMP_SUFFIX } from '../facts.js';
import { size as sizeText } from '../io.js';
import { extentCounts, extentMap, TOOL_ENV, type ExtentMap } from './extents.js';
import { chooseCompression, mountCompression, type CompressionChoice } from './compression.js';
import { extentLimit } from './policy.js';
import { identity, writers } from './writers.js';

const BTRFS_SUPER_MAGIC = 0x9123683e;

export interface DefragOptions {
  /** More than this many extents per GiB (at least this many) makes a file a candidate. */
  minExtents: number;
  /** Defragment files with shared extents too, unsharing them. */
  forceShared: boolean;
  dryRun: boolean;
}

export type FileResult = 'defragmented' | 'would-defragment' | 'below-threshold' | 'no-gain' | 'skipped' | 'failed';

/** One file, as --json reports it. */
export interface FileReport {
  path: string;
  result: FileResult;
  /** Why it was skipped, left as it is or failed; null otherwise. */
  reason: string | null;
  sizeBytes: number;
  extentsBefore: number | null;
  extentsAfter: number | null;
  /** The most extents it may have before it is defragmented. */
  threshold: number;
  /** null where not looked at (at or below the threshold by its count alone). */
  sharedExtents: number | null;
  compression: { algorithm: string | null; by: string | null; option: string | null } | null;
  seconds: number | null;
}

/** A file's outcome to report: `notable` when the user should look at it (exit status 1). */
export interface Outcome {
  report: FileReport;
  notable: boolean;
}

/** Whether PATH is on Btrfs, and if not, what `stat -f` calls its file system. */
export async function onBtrfs(path: string): Promise<boolean> {
  const fs = await statfs(path);
  return Number(fs.type) === BTRFS_SUPER_MAGIC;
}

/** The data profile of the Btrfs holding PATH, lower case ("single", "raid1"…); null when btrfs-progs cannot tell. */
export async function dataProfile(path: string): Promise<string | null> {
  const r = await execa('btrfs', ['filesystem', 'df', '--', path], { reject: false, env: TOOL_ENV, stdin: 'ignore' });
  return /^Data(?:\+Metadata)?, ([A-Za-z0-9]+):/m.exec(String(r.stdout ?? ''))?.[1]?.toLowerCase() ?? null;
}

/** nocow migrate's half-made copies: never ours to defragment. */
const isTemporary = (name: string) => name.startsWith('.') && name.endsWith(TEMP_SUFFIX.migrate);

/**
 * The regular files below DIR on its own file system (a nested subvolume or mount is another
 * target's business, as for nocow status), sorted; symlinks are not followed.
 */
export async function filesBelow(dir: string): Promise<string[]> {
  const top = await lstat(dir, { bigint: true });
  const out: string[] = [];
  const walk = async (path: string): Promise<void> => {
    const entries = await opendir(path);
    for await (const entry of entries) {
      const child = join(path, entry.name);
      if (entry.isFile() && !isTemporary(entry.name)) out.push(child);
      else if (entry.isDirectory()) {
        const info = await lstat(child, { bigint: true }).catch(() => undefined);
        if (info?.dev === top.dev) await walk(child);
      }
    }
  };
  await walk(dir);
  return out.sort();
}

interface Candidate {
  path: string;
  size: number;
  key: string;
  extents: number;
  threshold: number;
  map: ExtentMap;
}

const seconds = (start: bigint) => Math.round(Number(process.hrtime.bigint() - start) / 1e7) / 100;

/**
 * Looks at every file of FILES and defragments those worth it (or says it would, with dryRun).
 * `progress` receives each outcome as soon as it is known.
 */
export async function defragFiles(files: string[], opts: DefragOptions, progress: (o: Outcome) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const emit = (report: FileReport, notable = false) => {
    const o = { report, notable };
    outcomes.push(o);
    progress(o);
  };
  const base = (path: string, size: number, extents: number | null, threshold: number): FileReport => ({
    path,
    result: 'below-threshold',
    reason: null,
    sizeBytes: size,
    extentsBefore: extents,
    extentsAfter: null,
    threshold,
    sharedExtents: null,
    compression: null,
    seconds: null,
  });

  const infos = new Map<string, { size: number; key: string }>();
  for (const path of files) {
    const info = await lstat(path, { bigint: true }).catch(() => undefined);
    if (info?.isFile()) infos.set(path, { size: Number(info.size), key: identity(info) });
  }
  const counts = await extentCounts([...infos.keys()]);
  const candidates: Candidate[] = [];
  for (const [path, { size, key }] of infos) {
    const extents = counts.get(path);
    const plain = extentLimit(opts.minExtents, size);
    if (extents === undefined) {
      emit({ ...base(path, size, null, plain), result: 'failed', reason: 'filefrag could not count its extents' }, true);
      continue;
    }
    // Compression only raises the threshold: a count within the plain one needs no closer look.
    if (extents <= plain) {
      emit(base(path, size, extents, plain));
      continue;
    }
    const { map, error } = await extentMap(path);
    if (!map) {
      emit({ ...base(path, size, extents, plain), result: 'failed', reason: `filefrag -v failed: ${error}` }, true);
      continue;
    }
    const threshold = extentLimit(opts.minExtents, size, map.encodedBytes);
    const report = { ...base(path, size, extents, threshold), sharedExtents: map.sharedExtents };
    if (extents <= threshold) emit(report);
    else if (map.sharedExtents > 0 && !opts.forceShared) {
      const reason =
        `${map.sharedExtents} of its ${map.extents} extents are shared with another file or a snapshot (a reflinked copy): ` +
        `defragmenting would unshare them, taking up to ${sizeText(map.sharedBytes)} more space (--force-shared overrides)`;
      emit({ ...report, result: 'skipped', reason }, true);
    } else if (map.unwrittenExtents > 0 && map.unwrittenExtents + map.writtenRuns >= extents) {
      const reason =
        `mostly preallocated space never written (${map.unwrittenExtents} such ranges between ${map.writtenRuns} written ones), ` +
        'which defragmenting leaves in place: it would move the written blocks out of it and not reduce the count';
      emit({ ...report, result: 'no-gain', reason });
    } else candidates.push({ path, size, key, extents, threshold, map });
  }

  // One pass over /proc for every candidate; a file opened after it is defragmented all the same (that is safe, only slower).
  const busy = writers(new Set(candidates.map((c) => c.key)));
  const mounts = new Map<string, Awaited<ReturnType<typeof mountCompression>>>();
  for (const c of candidates) {
    const report = { ...base(c.path, c.size, c.extents, c.threshold), sharedExtents: c.map.sharedExtents };
    const holders = busy.get(c.key);
    if (holders) {
      const reason = `open for writing by ${holders.join(', ')}: its writes would stall behind the defragmentation and fragment it again`;
      emit({ ...report, result: 'skipped', reason }, true);
      continue;
    }
    const real = await realpath(c.path).catch(() => c.path);
    const dir = real.slice(0, real.lastIndexOf('/')) || '/';
    if (!mounts.has(dir)) mounts.set(dir, await mountCompression(real));
    const compression: CompressionChoice = await chooseCompression(c.path, c.map.encodedExtents > 0, mounts.get(dir)!);
    const chosen = { algorithm: compression.algorithm, by: compression.by, option: compression.flag };
    if (opts.dryRun) {
      emit({ ...report, result: 'would-defragment', compression: chosen });
      continue;
    }
    const start = process.hrtime.bigint();
    // -f: flush each file's data as it goes (and filefrag -s below waits for it), so the count read next is the one on disk.
    const args = ['filesystem', 'defragment', '-f', ...(compression.flag ? [compression.flag] : []), '--', c.path];
    const r = await execa('btrfs', args, { reject: false, env: TOOL_ENV, stdin: 'ignore' });
    const took = seconds(start);
    if (r.exitCode !== 0) {
      const reason = String(r.stderr).split('\n')[0]?.replace(/^ERROR: /, '') || String(r.shortMessage ?? 'btrfs filesystem defragment failed');
      emit({ ...report, result: 'failed', reason, compression: chosen, seconds: took }, true);
      continue;
    }
    const after = (await extentCounts([c.path], { sync: true })).get(c.path) ?? null;
    emit({ ...report, result: 'defragmented', extentsAfter: after, compression: chosen, seconds: took });
  }
  return outcomes;
}

