// What nocow defrag remembers of a file it defragmented without bringing it under its threshold
// (free space in small pieces, extents already as large as btrfs makes them…), so that the next
// run, the weekly timer's, does not rewrite it again for nothing: the xattr user.nocow-kit.defrag,
// `extents=N size=BYTES mtime=NANOSECONDS before=N at=ISO-TIME`, on the file itself.
//
// On the file, not in a state file: it goes wherever the file goes (a rename, another --root, a
// copy that keeps xattrs) and away with it, needs no pruning, and holds for any bytes the name has.
// It holds only while the file is as it was left: the same written extents, size and mtime (any
// write changes the mtime; a copy, even one keeping the mtime, has other extents), so a file that
// changed is looked at afresh. user.*, not trusted.*: the user-defrag-timer units run as the user,
// who may write only user.* xattrs; whoever could forge one may write the file, and could only keep
// nocow defrag from trying it. Writing it changes the file's ctime once; the defragmentation
// itself changes neither the ctime nor the mtime. `setfattr -x user.nocow-kit.defrag FILE` makes
// the next run try again.
import { fdPath, FILES_PER_CHILD, runOn, type OpenFile } from '../host/files.js';

export const RECORD_XATTR = 'user.nocow-kit.defrag';

export interface NoGainRecord {
  /** The written extents the defragmentation left, and those it started from. */
  extents: number;
  before: number;
  sizeBytes: bigint;
  mtimeNs: bigint;
  /** When, as an ISO 8601 time (UTC). */
  at: string;
}

export function formatRecord(r: NoGainRecord): string {
  return `extents=${r.extents} size=${r.sizeBytes} mtime=${r.mtimeNs} before=${r.before} at=${r.at}`;
}

/** The record in an xattr's value; undefined when it is not one (written by something else, or by a later version). */
export function parseRecord(value: string): NoGainRecord | undefined {
  const m = /^extents=(\d+) size=(\d+) mtime=(\d+) before=(\d+) at=(\S+)$/.exec(value);
  if (!m) return undefined;
  return { extents: Number(m[1]), sizeBytes: BigInt(m[2]!), mtimeNs: BigInt(m[3]!), before: Number(m[4]), at: m[5]! };
}

/** Whether RECORD still describes FILE, which has WRITTEN extents now. */
export function stillHolds(record: NoGainRecord, file: OpenFile, written: number): boolean {
  return record.extents === written && record.sizeBytes === file.info.size && record.mtimeNs === file.info.mtimeNs;
}

/** The record on each of FILES that has one (one getfattr for many files). getfattr missing or failing: none known. */
export async function readRecords(files: readonly OpenFile[]): Promise<Map<OpenFile, NoGainRecord>> {
  const found = new Map<OpenFile, NoGainRecord>();
  for (let start = 0; start < files.length; start += FILES_PER_CHILD) {
    const batch = files.slice(start, start + FILES_PER_CHILD);
    const pattern = `^${RECORD_XATTR.replaceAll('.', '\\.')}$`;
    const args = ['--absolute-names', '-d', '-m', pattern, '-e', 'hex', '--', ...batch.map((_, i) => fdPath(i))];
    const r = await runOn(batch, 'getfattr', args);
    // "# file: /proc/self/fd/3", then "user.nocow-kit.defrag=0x…", for the files that have it.
    const block = /^# file: \/proc\/self\/fd\/(\d+)\n[^=\n]+=0x([0-9a-f]*)$/gm;
    for (const m of r.stdout.matchAll(block)) {
      const file = batch[Number(m[1]) - 3];
      const record = parseRecord(Buffer.from(m[2]!, 'hex').toString('utf8'));
      if (file && record) found.set(file, record);
    }
  }
  return found;
}

/** Records that defragmenting FILE left it as RECORD says; the reason when it could not. */
export async function writeRecord(file: OpenFile, record: NoGainRecord): Promise<string | undefined> {
  const r = await runOn([file], 'setfattr', ['-n', RECORD_XATTR, '-v', formatRecord(record), '--', fdPath(0)]);
  if (r.exitCode === 0) return undefined;
  if (r.missing) return 'setfattr (attr) is not installed';
  return r.stderr.split('\n')[0]?.replace(`setfattr: ${fdPath(0)}: `, '') || `setfattr exited with ${r.exitCode}`;
}
