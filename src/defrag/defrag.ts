// nocow defrag: defragment the regular files of the given places that are fragmented enough to be
// worth it, with btrfs filesystem defragment, one file at a time, leaving alone what it must:
//   - a file at or below the threshold (src/defrag/policy.ts: extentLimit), counting only written
//     extents: preallocated ranges never written and holes are left where they are by a
//     defragmentation, so the written extents between them can at best become one per stretch;
//     those floors are added to the threshold, and a file above it only by them is left as it is;
//   - a file with shared extents (a reflinked copy, a snapshot): defragmenting unshares them, so
//     the space they take is taken again (--force-shared overrides);
//   - a file some process has open for writing (or a writable loop device is backed by): its
//     writes would stall behind the defragmentation and fragment it again;
//   - a file an earlier run defragmented without bringing it under its threshold, unchanged since
//     (src/defrag/record.ts);
// and keeping compression as it is (src/defrag/compression.ts). Each of those skips is by design
// (exit status 0); a file that could not be looked at or defragmented is one to look at (1).
// Files are reached by their names as bytes and handed to the tools by descriptor
// (src/host/files.ts), so every file is defragmented or named with its reason, whatever its name.
import { fstatSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { TEMP_SUFFIX } from '../facts.js';
import { firstInvalidUtf8, nameText, size as sizeText } from '../io.js';
import { closeAll, fdPath, FILES_PER_CHILD, isOpen, openRegular, runOn, type OpenFile } from '../host/files.js';
import { dataProfile as profileOf } from '../host/btrfs.js';
import { extentSummaries as extentMaps, type ExtentSummary as ExtentMap } from '../host/filefrag.js';
import { mountsInside, mountTable } from '../host/mounts.js';
import { chooseCompression, mountCompression, type CompressionChoice } from './compression.js';
import { extentLimit } from './policy.js';
import { readRecords, RECORD_XATTR, stillHolds, writeRecord } from './record.js';
import { identity, openers, withName } from '../host/openers.js';

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
  /** Its name as text: UTF-8, each byte that is not as \xHH. */
  path: string;
  /** Its name's bytes in hex where they are not UTF-8 (path is then not the name itself); null otherwise. */
  pathHex: string | null;
  result: FileResult;
  /** Why it was skipped, left as it is or failed; for one defragmented still above its threshold, that it is not tried again until it changes; null otherwise. */
  reason: string | null;
  sizeBytes: number;
  /** Written extents (preallocated ranges never written are not counted); null where not known. */
  extentsBefore: number | null;
  extentsAfter: number | null;
  /** Preallocated ranges never written, which a defragmentation leaves where they are. */
  unwrittenExtents: number | null;
  /** The most written extents it may have before it is defragmented. */
  threshold: number;
  sharedExtents: number | null;
  compression: { algorithm: string | null; by: string | null; option: string | null } | null;
  seconds: number | null;
}

/** A file's outcome to report: `notable` when the user should look at it (exit status 1). */
export interface Outcome {
  report: FileReport;
  notable: boolean;
}

// Named here too for the command.
export { onBtrfs } from '../host/btrfs.js';

/** The data profile of the Btrfs holding PATH, lower case ("single", "raid1"…); null when btrfs-progs cannot tell. */
export async function dataProfile(path: string): Promise<string | null> {
  return (await profileOf(path)).profile;
}

const MIGRATE_SUFFIX = Buffer.from(TEMP_SUFFIX.migrate);
/** nocow migrate's half-made copies: never ours to defragment. */
const isTemporary = (name: Buffer) => name[0] === 0x2e && name.length > MIGRATE_SUFFIX.length && name.subarray(-MIGRATE_SUFFIX.length).equals(MIGRATE_SUFFIX);

const SLASH = Buffer.from('/');
const join = (dir: Buffer, name: Buffer) => Buffer.concat(dir.length === 1 && dir[0] === 0x2f ? [dir, name] : [dir, SLASH, name]);

/** The name of a file or directory as a report shows it: text, and its bytes where they are not UTF-8. */
export const named = (path: Buffer): { path: string; pathHex: string | null } => ({
  path: nameText(path),
  pathHex: firstInvalidUtf8(path) < 0 ? null : path.toString('hex'),
});

/**
 * The regular files below DIR on its own file system (a nested subvolume or mount is another
 * target's business, as for nocow status), by their names' bytes, sorted; symlinks are not
 * followed. A directory that cannot be read is in `unreadable`, with why.
 */
export async function filesBelow(dir: string): Promise<{ files: Buffer[]; unreadable: { path: Buffer; reason: string }[] }> {
  const top = await lstat(dir, { bigint: true });
  // Bind mounts of the same file system show its st_dev: only the mount table tells them.
  const mounted = mountsInside(dir, mountTable()).map((m) => m.point);
  const files: Buffer[] = [];
  const unreadable: { path: Buffer; reason: string }[] = [];
  const walk = async (path: Buffer): Promise<void> => {
    let entries;
    try {
      entries = await readdir(path, { encoding: 'buffer', withFileTypes: true });
    } catch (e) {
      unreadable.push({ path, reason: `cannot read the directory: ${(e as Error).message.replace(/^[A-Z]+: /, '').replace(/, scandir .*$/, '')}` });
      return;
    }
    for (const entry of entries) {
      const name = entry.name;
      const child = join(path, name);
      if (entry.isFile() && !isTemporary(name)) files.push(child);
      else if (entry.isDirectory() && !mounted.some((m) => m.equals(child))) {
        const info = await lstat(child, { bigint: true }).catch(() => undefined);
        if (info?.dev === top.dev) await walk(child);
      }
    }
  };
  await walk(Buffer.from(dir));
  return { files: files.sort(Buffer.compare), unreadable };
}

interface Candidate {
  path: Buffer;
  key: string;
  size: number;
  map: ExtentMap;
  threshold: number;
}

const seconds = (start: bigint) => Math.round(Number(process.hrtime.bigint() - start) / 1e7) / 100;

/**
 * The most written extents MAP may have: the threshold for its size, plus the extents its
 * compressed bytes need (one per 128 KiB) and one per stretch of written data after the first
 * (preallocated ranges never written and holes part them), none of which a defragmentation removes.
 */
const thresholdOf = (minExtents: number, size: number, map: ExtentMap) => extentLimit(minExtents, size, map.encodedBytes) + Math.max(0, map.writtenRuns - 1);

/**
 * Looks at every file of FILES and defragments those worth it (or says it would, with dryRun).
 * `progress` receives each outcome as soon as it is known.
 */
export async function defragFiles(files: Buffer[], opts: DefragOptions, progress: (o: Outcome) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const emit = (report: FileReport, notable = false) => {
    const o = { report, notable };
    outcomes.push(o);
    progress(o);
  };
  const base = (path: Buffer, size: number, map: ExtentMap | null, threshold: number): FileReport => ({
    ...named(path),
    result: 'below-threshold',
    reason: null,
    sizeBytes: size,
    extentsBefore: map?.writtenExtents ?? null,
    extentsAfter: null,
    unwrittenExtents: map?.unwrittenExtents ?? null,
    threshold,
    sharedExtents: map?.sharedExtents ?? null,
    compression: null,
    seconds: null,
  });
  const unopened = (path: Buffer, failure: { gone: boolean; reason: string }) =>
    emit({ ...base(path, 0, null, opts.minExtents), result: failure.gone ? 'skipped' : 'failed', reason: failure.reason }, !failure.gone);

  // Looked at as many at a time as one filefrag is handed, by descriptor; a candidate is opened again to be defragmented.
  const candidates: Candidate[] = [];
  for (let start = 0; start < files.length; start += FILES_PER_CHILD) {
    const open: OpenFile[] = [];
    try {
      for (const path of files.slice(start, start + FILES_PER_CHILD)) {
        const file = openRegular(path);
        if (isOpen(file)) open.push(file);
        else unopened(path, file);
      }
      const maps = await extentMaps(open);
      const over: { file: OpenFile; map: ExtentMap; threshold: number }[] = [];
      for (const [i, file] of open.entries()) {
        const size = Number(file.info.size);
        const map = maps[i]!;
        const plain = extentLimit(opts.minExtents, size);
        if ('error' in map) {
          emit({ ...base(file.path, size, null, plain), result: 'failed', reason: map.error }, true);
          continue;
        }
        const threshold = thresholdOf(opts.minExtents, size, map);
        const report = base(file.path, size, map, threshold);
        const written = map.writtenExtents;
        if (written <= extentLimit(opts.minExtents, size, map.encodedBytes)) emit(report);
        else if (written <= threshold) {
          const reason =
            `its ${written} written extents lie in ${map.writtenRuns} stretches, parted by ${map.unwrittenExtents} preallocated ranges never written or by holes, ` +
            `which defragmenting leaves where they are: at best it would bring them down to ${map.writtenRuns}, and its threshold, counting one per stretch, is ${threshold}`;
          emit({ ...report, result: 'no-gain', reason });
        } else if (map.sharedExtents > 0 && !opts.forceShared) {
          const reason =
            `${map.sharedExtents} of its extents are shared with another file or a snapshot (a reflinked copy): ` +
            `defragmenting would unshare them, taking up to ${sizeText(map.sharedBytes)} more space (--force-shared overrides)`;
          emit({ ...report, result: 'skipped', reason });
        } else over.push({ file, map, threshold });
      }
      const records = await readRecords(over.map((o) => o.file));
      for (const { file, map, threshold } of over) {
        const size = Number(file.info.size);
        const record = records.get(file);
        if (record && stillHolds(record, file, map.writtenExtents)) {
          const reason =
            `defragmenting it at ${record.at} took it from ${record.before} to ${record.extents} written extents, still above its threshold; ` +
            `unchanged since, it is not tried again until it changes (${RECORD_XATTR})`;
          emit({ ...base(file.path, size, map, threshold), result: 'no-gain', reason });
        } else candidates.push({ path: file.path, key: identity(file.info), size, map, threshold });
      }
    } finally {
      closeAll(open);
    }
  }

  // One pass over /proc for every candidate; a file opened after it is defragmented all the same (that is safe, only slower).
  const busy = new Map(
    [...openers(new Set(candidates.map((c) => c.key)), { writersOnly: true })].map(([key, who]) => [key, who.map((w) => (w.startsWith('/') ? w : `process ${withName(w)}`))]),
  );
  const mounts = mountTable();
  for (const c of candidates) {
    const report = base(c.path, c.size, c.map, c.threshold);
    const holders = busy.get(c.key);
    if (holders) {
      const reason = `open for writing by ${holders.join(', ')}: its writes would stall behind the defragmentation and fragment it again`;
      emit({ ...report, result: 'skipped', reason });
      continue;
    }
    const file = openRegular(c.path);
    if (!isOpen(file)) {
      unopened(c.path, file);
      continue;
    }
    try {
      if (identity(file.info) !== c.key) {
        emit({ ...report, result: 'skipped', reason: 'replaced by another file while nocow defrag ran: looked at again by the next run' });
        continue;
      }
      await defragOne(file, c, report, opts, mounts, emit);
    } finally {
      closeAll([file]);
    }
  }
  return outcomes;
}

/** Defragments one candidate FILE, opened (or says it would); records it when that did not bring it under its threshold. */
async function defragOne(file: OpenFile, c: Candidate, report: FileReport, opts: DefragOptions, mounts: ReturnType<typeof mountTable>, emit: (report: FileReport, notable?: boolean) => void) {
  const compression: CompressionChoice = await chooseCompression(file, c.map.encodedExtents > 0, mountCompression(file, mounts));
  const chosen = { algorithm: compression.algorithm, by: compression.by, option: compression.flag };
  if (opts.dryRun) {
    emit({ ...report, result: 'would-defragment', compression: chosen });
    return;
  }
  const start = process.hrtime.bigint();
  // -f: flush each file's data as it goes (and filefrag -s below waits for it), so the count read next is the one on disk.
  const args = ['filesystem', 'defragment', '-f', ...(compression.flag ? [compression.flag] : []), '--', fdPath(0)];
  const r = await runOn([file], 'btrfs', args);
  const took = seconds(start);
  if (r.exitCode !== 0) {
    const said = r.stderr.split('\n')[0]?.replace(/^ERROR: /, '').replaceAll(fdPath(0), 'the file');
    emit({ ...report, result: 'failed', reason: said || `btrfs filesystem defragment exited with ${r.exitCode}`, compression: chosen, seconds: took }, true);
    return;
  }
  const [after] = await extentMaps([file], { sync: true });
  const done = { ...report, result: 'defragmented' as const, compression: chosen, seconds: took };
  if (after === undefined || 'error' in after) {
    emit({ ...done, reason: `its extents could not be counted afterwards: ${after?.error ?? 'filefrag gave no map'}` }, true);
    return;
  }
  const threshold = thresholdOf(opts.minExtents, c.size, after);
  const result = { ...done, extentsAfter: after.writtenExtents, unwrittenExtents: after.unwrittenExtents };
  if (after.writtenExtents <= threshold) {
    emit(result);
    return;
  }
  // Still above: so that the next run does not do the same again for nothing, while the file stays as it is.
  const info = fstatSync(file.fd, { bigint: true });
  const failed = await writeRecord(file, { extents: after.writtenExtents, before: c.map.writtenExtents, sizeBytes: info.size, mtimeNs: info.mtimeNs, at: new Date().toISOString().replace(/\.\d+Z$/, 'Z') });
  const reason = failed
    ? `still above its threshold (${threshold}); could not record that (${failed}), so the next run tries again`
    : `still above its threshold (${threshold}): not tried again until it changes (${RECORD_XATTR})`;
  emit({ ...result, reason });
}
