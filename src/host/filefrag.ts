// A file's extents as filefrag(8) reports them through FIEMAP, read once here for every engine:
// how many (`N extents found`, for status and migrate), and the map (`filefrag -v`): in bytes for
// a copy that skips holes and keeps preallocation, and summed up for defrag, told apart by what a
// defragmentation can do with them: written extents it can join, preallocated ranges never written
// ("unwritten") and holes it leaves where they are, so the written extents on either side of one
// stay apart; and which extents are shared with another file (a reflinked copy, a snapshot) or
// compressed ("encoded").
import { fdPath, FILES_PER_CHILD, runOn, type OpenFile } from './files.js';
import { argumentLists, mustRun, run } from './run.js';

const EXTENTS = /^(\d+) extents? found[^\n]*\n/;

/**
 * `NAME: N extents found` per file, as filefrag prints them in argument order; walking the known
 * names keeps names with spaces or newlines intact; a file filefrag failed on has no entry.
 */
export function filefragCounts(out: string, files: readonly string[]): Map<string, number> {
  const found = new Map<string, number>();
  let at = 0;
  for (const file of files) {
    const head = `${file}: `;
    if (!out.startsWith(head, at)) continue;
    const m = EXTENTS.exec(out.slice(at + head.length, at + head.length + 200));
    if (!m) continue;
    found.set(file, Number(m[1]));
    at += head.length + m[0].length;
  }
  return found;
}

/**
 * filefrag's extent count of every path (any number, relative to CWD when given); paths it could
 * not tell are missing. `missing`: filefrag is not installed (then its line).
 */
export async function extentCounts(paths: readonly string[], opts: { cwd?: string } = {}): Promise<Map<string, number> & { missing?: string }> {
  const counts: Map<string, number> & { missing?: string } = new Map();
  for (const list of argumentLists(paths)) {
    const r = await run('filefrag', ['--', ...list], { cwd: opts.cwd });
    if (r.missing) {
      counts.missing = r.error;
      break;
    }
    for (const [path, n] of filefragCounts(r.stdout, list)) counts.set(path, n);
  }
  return counts;
}

/** One line of `filefrag -v`'s table, in blocks. */
interface ExtentLine {
  logical: number;
  physical: number;
  length: number;
  flags: string[];
}

// "   3:       44..      44:      36956..     36956:      1:             unwritten"
// "   7:       54..      54:      21927..     21927:      1:      36966: last,shared,eof"
const EXTENT_LINE = /^\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+):\s*(?:\d+:)?\s*(\S*)\s*$/;
const BLOCKS = / \((\d+) blocks? of (\d+) bytes\)$/m;

function extentLines(out: string): ExtentLine[] {
  const lines: ExtentLine[] = [];
  for (const line of out.split('\n')) {
    const m = EXTENT_LINE.exec(line);
    if (m) lines.push({ logical: Number(m[1]), physical: Number(m[2]), length: Number(m[3]), flags: m[4]!.split(',') });
  }
  return lines;
}

/** One extent of a file's map, in bytes. */
export interface Extent {
  offset: number;
  length: number;
  /** Preallocated and never written: reads as zeros. */
  unwritten: boolean;
}

/**
 * PATH's extent map in bytes (FIEMAP, as SEEK_DATA/SEEK_HOLE would tell it, which Node cannot ask),
 * its dirty pages written out first (-s) so that no data waits in the page cache unmapped.
 */
export async function extentMap(path: string): Promise<Extent[]> {
  const out = await mustRun('filefrag', ['-v', '-s', '-b1', '--', path]);
  // A file of holes alone has no extent, and no table.
  if (/: 0 extents found$/m.test(out)) return [];
  // Without FIEMAP, filefrag falls back to FIBMAP and prints no such table: no map, then.
  if (!/^ ext:\s+logical_offset:/m.test(out)) throw new Error(`filefrag could not map ${path} (no FIEMAP)`);
  // -b1: blocks of one byte.
  return extentLines(out).map((e) => ({ offset: e.logical, length: e.length, unwritten: e.flags.includes('unwritten') }));
}

/** A file's extents, summed up by what a defragmentation can do with them. */
export interface ExtentSummary {
  /** As filefrag counts them ("N extents found"): unwritten ranges included, physically adjacent ones joined. */
  found: number;
  /** Extents holding data: not unwritten, a logically and physically contiguous piece counted once. */
  writtenExtents: number;
  /** Extents flagged "unwritten": preallocated and never written, which btrfs filesystem defragment leaves as they are. */
  unwrittenExtents: number;
  /** Stretches of logically adjacent written extents, between unwritten ranges and holes: the fewest written extents a defragmentation can leave. */
  writtenRuns: number;
  /** Extents flagged "shared", and the bytes they hold (logical). */
  sharedExtents: number;
  sharedBytes: number;
  /** Extents flagged "encoded" (compressed), and the bytes they hold (logical). */
  encodedExtents: number;
  encodedBytes: number;
}

/** Reads what `filefrag -v` prints for one file, from its "File size of" line to its "N extents found" line; undefined when it is not that. */
export function parseFilefragVerbose(out: string): ExtentSummary | undefined {
  const lines = out.replace(/\n$/, '').split('\n');
  const found = /: (\d+) extents? found$/.exec(lines.at(-1) ?? '');
  const blocks = BLOCKS.exec(out);
  if (!found || !blocks) return undefined;
  const blockSize = Number(blocks[2]);
  const map: ExtentSummary = { found: Number(found[1]), writtenExtents: 0, unwrittenExtents: 0, writtenRuns: 0, sharedExtents: 0, sharedBytes: 0, encodedExtents: 0, encodedBytes: 0 };
  // Where the last written extent ended, logically and physically (in blocks); undefined after an unwritten one.
  let end: { logical: number; physical: number; encoded: boolean } | undefined;
  for (const { logical, physical, length, flags } of extentLines(out)) {
    const bytes = length * blockSize;
    const encoded = flags.includes('encoded');
    if (flags.includes('shared')) {
      map.sharedExtents += 1;
      map.sharedBytes += bytes;
    }
    if (encoded) {
      map.encodedExtents += 1;
      map.encodedBytes += bytes;
    }
    if (flags.includes('unwritten')) {
      map.unwrittenExtents += 1;
      end = undefined;
      continue;
    }
    const adjacent = end !== undefined && end.logical === logical;
    // A hole (a jump in the logical offset) ends a run as an unwritten range does.
    if (!adjacent) map.writtenRuns += 1;
    // Pieces FIEMAP lists apart (their flags differ) but that lie end to end on disk are one extent to read.
    if (!adjacent || encoded || end!.encoded || end!.physical !== physical) map.writtenExtents += 1;
    end = { logical: logical + length, physical: physical + length, encoded };
  }
  return map;
}

/** The summed-up map of each of FILES, or why filefrag could not tell, in order; `sync` writes their data out first (FIEMAP_FLAG_SYNC). */
export async function extentSummaries(files: readonly OpenFile[], opts: { sync?: boolean } = {}): Promise<(ExtentSummary | { error: string })[]> {
  const maps: (ExtentSummary | { error: string })[] = [];
  for (let start = 0; start < files.length; start += FILES_PER_CHILD) {
    const batch = files.slice(start, start + FILES_PER_CHILD);
    const names = batch.map((_, i) => fdPath(i));
    // -s: just after a defragmentation, without it, the map may still show the extents being replaced (seen: 6406 → 6406).
    const args = ['-v', ...(opts.sync ? ['-s'] : []), '--', ...names];
    const r = await runOn(batch, 'filefrag', args);
    const out = r.stdout;
    const errors = r.stderr.split('\n');
    // The names are ours (/proc/self/fd/N): each file's part is found by them, whatever the file is
    // called, in the order filefrag was given them.
    let at = 0;
    for (const name of names) {
      const head = out.indexOf(`File size of ${name} is `, at);
      const tail = head < 0 ? -1 : out.indexOf(`\n${name}: `, head);
      const lineEnd = tail < 0 ? -1 : out.indexOf('\n', tail + 1);
      const map = tail < 0 ? undefined : parseFilefragVerbose(out.slice(head, lineEnd < 0 ? undefined : lineEnd));
      if (lineEnd >= 0) at = lineEnd;
      const error = errors.find((e) => e.startsWith(`${name}: `))?.slice(name.length + 2) ?? errors.find((e) => e !== '') ?? `filefrag exited with ${r.exitCode}`;
      maps.push(map ?? { error: `filefrag could not map its extents: ${error}` });
    }
  }
  return maps;
}
