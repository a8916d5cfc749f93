// A file's extents as filefrag(8) reports them through FIEMAP: the count it prints (extents that
// are not physically contiguous with the one before them), and, from `filefrag -v`, which are
// shared with another file (a reflinked copy, a snapshot), compressed ("encoded") or
// preallocated and never written ("unwritten").
import { execa } from 'execa';

export interface ExtentMap {
  /** As filefrag counts them ("N extents found"). */
  extents: number;
  /** Extents flagged "shared", and the bytes they hold (logical). */
  sharedExtents: number;
  sharedBytes: number;
  /** Extents flagged "encoded" (compressed), and the bytes they hold (logical). */
  encodedExtents: number;
  encodedBytes: number;
  /** Extents flagged "unwritten": preallocated and never written, which btrfs filesystem defragment leaves as they are. */
  unwrittenExtents: number;
  /** Runs of logically adjacent extents that are not unwritten: the most a defragmentation can join. */
  writtenRuns: number;
}

// As the shell library's nocow_init: sbin first, where filefrag lives on most distributions.
export const TOOL_ENV = { LC_ALL: 'C', PATH: `/usr/sbin:/usr/bin:/sbin:/bin${process.env.PATH ? `:${process.env.PATH}` : ''}` };

// "   3:       44..      44:      36956..     36956:      1:             unwritten"
// "   7:       54..      54:      21927..     21927:      1:      36966: last,shared,eof"
const EXTENT_LINE = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*\d+\.\.\s*\d+:\s*(\d+):\s*(?:\d+:)?\s*(\S*)\s*$/;
const BLOCKS = / \((\d+) blocks? of (\d+) bytes\)$/m;
const FOUND = /: (\d+) extents? found$/;

/** Reads the output of `filefrag -v FILE` (one file); undefined when it is not that. */
export function parseFilefragVerbose(out: string): ExtentMap | undefined {
  const lines = out.replace(/\n$/, '').split('\n');
  const found = FOUND.exec(lines.at(-1) ?? '');
  const blocks = BLOCKS.exec(out);
  if (!found || !blocks) return undefined;
  const blockSize = Number(blocks[2]);
  const map: ExtentMap = { extents: Number(found[1]), sharedExtents: 0, sharedBytes: 0, encodedExtents: 0, encodedBytes: 0, unwrittenExtents: 0, writtenRuns: 0 };
  let nextLogical: number | undefined;
  let inRun = false;
  for (const line of lines) {
    const m = EXTENT_LINE.exec(line);
    if (!m) continue;
    const [start, length] = [Number(m[1]), Number(m[3])];
    const flags = m[4]!.split(',');
    const bytes = length * blockSize;
    if (flags.includes('shared')) {
      map.sharedExtents += 1;
      map.sharedBytes += bytes;
    }
    if (flags.includes('encoded')) {
      map.encodedExtents += 1;
      map.encodedBytes += bytes;
    }
    if (flags.includes('unwritten')) {
      map.unwrittenExtents += 1;
      inRun = false;
    } else {
      // A hole (a jump in the logical offset) ends a run as an unwritten extent does.
      if (!inRun || start !== nextLogical) map.writtenRuns += 1;
      inRun = true;
    }
    nextLogical = start + length;
  }
  return map;
}

/** `filefrag -v` of one file; undefined when filefrag fails or prints something else. */
export async function extentMap(path: string): Promise<{ map?: ExtentMap; error?: string }> {
  const r = await execa('filefrag', ['-v', '--', path], { reject: false, env: TOOL_ENV, stdin: 'ignore' });
  const map = r.exitCode === 0 ? parseFilefragVerbose(String(r.stdout)) : undefined;
  if (map) return { map };
  return { error: String(r.stderr).split('\n')[0] || String(r.shortMessage ?? 'filefrag failed') };
}

// Well under ARG_MAX (2 MiB on Linux, environment included), so any number of files takes few processes.
const ARGS_BYTES = 128 * 1024;

function batches(items: string[]): string[][] {
  const out: string[][] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = Buffer.byteLength(item) + 1;
    if (current.length > 0 && bytes + size > ARGS_BYTES) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

const COUNT = /^(\d+) extents? found[^\n]*\n/;

/**
 * filefrag's count for each of FILES, a few calls for any number of them. Its lines are
 * `NAME: N extents found`, in argument order: walking the known names, rather than splitting
 * lines, keeps names with ": " or newlines intact. A file filefrag failed on has no entry.
 */
export async function extentCounts(files: string[], opts: { sync?: boolean } = {}): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (const batch of batches(files)) {
    // -s (FIEMAP_FLAG_SYNC): the kernel writes the file's data and waits for it before mapping; without it,
    // just after a defragmentation, it may still show the extents being replaced (seen: 6406 → 6406).
    const args = [...(opts.sync ? ['-s'] : []), '--', ...batch];
    const r = await execa('filefrag', args, { reject: false, env: TOOL_ENV, stdin: 'ignore', stripFinalNewline: false });
    const out = String(r.stdout);
    let at = 0;
    for (const file of batch) {
      const head = `${file}: `;
      if (!out.startsWith(head, at)) continue;
      const m = COUNT.exec(out.slice(at + head.length, at + head.length + 200));
      if (!m) continue;
      found.set(file, Number(m[1]));
      at += head.length + m[0].length;
    }
  }
  return found;
}
