// The copy engine of nocow migrate and nocow convert: one regular file's data copied into a new
// file by plain reads and writes (never a reflink, nor copy_file_range, which may clone on Btrfs
// and keeps the bytes out of our sight), then read back from the disk and compared with what was
// read from the original.
//
// - What is copied (planCopy): a dense file whole; a sparse one (fewer bytes allocated than its
//   size) only where FIEMAP maps data, its holes never read and left holes in the copy, its
//   preallocated (unwritten) ranges preallocated in the copy; a large dense file is
//   preallocated whole and pieces of zeros are not written.
// - The copy is written with O_DIRECT (files of a block or more): none of it stays in the page
//   cache, so reading it back reads the disk. O_DIRECT on the read alone is not enough: on the
//   Linux 6.18 the tests run on, Btrfs serves an O_DIRECT read through the page cache (a
//   buffered read, which returns what the writes left there), as test/copy.test.ts shows with
//   a block of the copy changed on the device under it. A file under a block, which Btrfs
//   keeps inline in its metadata, is written through the page cache.
// - Memory aligned for O_DIRECT: WebAssembly memory is page-aligned (a Buffer from the heap is
//   not, and Btrfs would then quietly go through the page cache instead).
// - Large files (DIRECT_MIN and up) are read with O_DIRECT too: the original's fragments are
//   read in CHUNK-sized requests the device serves together. Three stages overlap: while chunk
//   k is written (in the main thread, one pwrite per WRITE bytes, so that a kill or an injected
//   fault lands between two of them, and strace, following the main thread, sees each), chunk
//   k+1 is read from the original and, given `check` (migrate), chunk k-1 is read back from the
//   disk and compared (both in libuv's thread pool). Read-back and read of the next chunk each
//   need their own buffer beside the one being written: three data buffers take turns, a
//   fourth takes the read-back. Where the disk serves reads and writes from one budget (the
//   benchmark's, BENCHMARKS.md) the overlap gains nothing measurable: the read-back's cost is
//   the extra pass over the disk itself.
// - Otherwise what was read is kept (its bytes; or their SHA-256 where a whole tree is copied
//   before anything is read back, as convert does) and, once the copy is on the disk (a
//   syncfs), verifyCopy reads the copy back with O_DIRECT and compares.
import { createHash } from 'node:crypto';
import { constants, ftruncateSync, read, readSync, writeSync } from 'node:fs';
import { extentMap } from '../host/filefrag.js';
import { mustRun } from '../host/run.js';

export const CHUNK = 8 * 1024 * 1024;
/** Bytes per write: a kill or an injected fault lands between two of them. */
export const WRITE = 1024 * 1024;
/** From this size on, the original is read with O_DIRECT too. */
export const DIRECT_MIN = 8 * 1024 * 1024;
/** O_DIRECT needs offsets, lengths and memory aligned to the file system's sector size. */
export const ALIGN = 4096;

/** What to copy: byte ranges [start, end), ascending, ALIGN-aligned; the rest stays a hole (or preallocated). */
export interface CopyPlan {
  size: number;
  ranges: [number, number][];
  /** Pieces of zeros are not written: the copy is preallocated there and reads zeros already. */
  skipZeros: boolean;
}

export const alignDown = (n: number) => Math.floor(n / ALIGN) * ALIGN;
export const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** The copy opened to be read back past the page cache; reading it leaves its times alone. */
export const READ_BACK = constants.O_RDONLY | constants.O_DIRECT | constants.O_NOATIME;
/** The copy opened to write its data past the page cache (from a block on: see writesDirect). */
export const WRITE_DIRECT = constants.O_WRONLY | constants.O_DIRECT;
/** Whether the copy of a file of SIZE bytes is written with O_DIRECT (WRITE_DIRECT): all but a file under a block. */
export const writesDirect = (size: number): boolean => size >= ALIGN;

/** Extents as ranges [start, end), ALIGN-aligned, merged, within the first SIZE bytes (rounded up to a block). */
function rangesOf(extents: { offset: number; length: number }[], size: number): [number, number][] {
  const ranges: [number, number][] = [];
  const last = alignUp(size);
  for (const e of [...extents].sort((a, b) => a.offset - b.offset)) {
    const start = alignDown(e.offset);
    const end = Math.min(alignUp(e.offset + e.length), last);
    if (start >= end) continue;
    const previous = ranges.at(-1);
    if (previous && start <= previous[1]) previous[1] = Math.max(previous[1], end);
    else ranges.push([start, end]);
  }
  return ranges;
}

/**
 * The copy (COPY, open as OUT, still empty) made the original's size and given its allocation,
 * and what to copy into it. ORIGINAL as it was when its stat was taken (size, st_blocks). A
 * dense original is read whole; when large, its copy is preallocated whole first (as a
 * preallocated original is) and pieces of zeros are left unwritten in it. A sparse one (fewer
 * bytes allocated than its size) is mapped (FIEMAP): only its data is read, holes stay holes,
 * preallocated ranges are preallocated in the copy.
 */
export async function planCopy(original: string, st: { size: number; blocks: number }, copy: string, out: number): Promise<CopyPlan> {
  const { size } = st;
  const large = size >= DIRECT_MIN;
  ftruncateSync(out, size);
  if (size === 0) return { size, ranges: [], skipZeros: false };
  if (st.blocks * 512 >= size) {
    if (large) await mustRun('fallocate', ['-l', String(size), '--', copy]);
    return { size, ranges: [[0, alignUp(size)]], skipZeros: large };
  }
  const map = await extentMap(original);
  for (const [start, end] of rangesOf(map.filter((e) => e.unwritten), size)) {
    await mustRun('fallocate', ['-o', String(start), '-l', String(Math.min(end, size) - start), '--', copy]);
  }
  return { size, ranges: rangesOf(map.filter((e) => !e.unwritten), size), skipZeros: false };
}

/** The bytes a plan reads (its data, holes left out), for a progress bar. */
export const plannedBytes = (plan: CopyPlan): number => plan.ranges.reduce((sum, [start, end]) => sum + Math.max(0, Math.min(end, plan.size) - start), 0);

let pool: Buffer[] | undefined;
/**
 * Four CHUNK buffers, page-aligned, reused by every copy (one copy at a time): three take turns
 * for the data (one being written, one read from the original, one being read back), the last
 * takes the read-back.
 */
export function alignedBuffers(): Buffer[] {
  if (pool) return pool;
  if (typeof WebAssembly === 'undefined') throw new Error('aligned memory for O_DIRECT needs WebAssembly (node was started with --jitless?)');
  const memory = new WebAssembly.Memory({ initial: (4 * CHUNK) / 65536, maximum: (4 * CHUNK) / 65536 });
  pool = [0, 1, 2, 3].map((i) => Buffer.from(memory.buffer, i * CHUNK, CHUNK));
  return pool;
}

const ZERO = Buffer.alloc(WRITE);

interface Piece {
  pos: number;
  /** Bytes the file has there (less than CHUNK at the end of a range or of the file). */
  want: number;
}

/** The plan's ranges cut into reads of at most CHUNK, none past the end of the file. */
function pieces(plan: CopyPlan): Piece[] {
  const list: Piece[] = [];
  for (const [start, end] of plan.ranges) {
    for (let pos = start; pos < Math.min(end, plan.size); pos += CHUNK) list.push({ pos, want: Math.min(CHUNK, end - pos, plan.size - pos) });
  }
  return list;
}

const readAt = (fd: number, buffer: Buffer, length: number, position: number) =>
  new Promise<number>((resolve, reject) => read(fd, buffer, 0, length, position, (error, n) => (error ? reject(error) : resolve(n))));

/** The original did not read as planned (it ended before the plan did, or went on past it): it changed. */
export class ShortRead extends Error {}
/** The copy, read back from the disk, is not what was read from the original. */
export class Mismatch extends Error {}

/** Writes BUFFER's first N bytes at POS, WRITE bytes a call; see copyData. */
function writeChunk(out: number, buffer: Buffer, n: number, pos: number, plan: CopyPlan, direct: boolean) {
  for (let w = 0; w < n; w += WRITE) {
    let length = Math.min(WRITE, n - w);
    if (plan.skipZeros && buffer.subarray(w, w + length).equals(ZERO.subarray(0, length))) continue;
    if (direct && length % ALIGN !== 0) {
      // The file's last block, written whole with zeros past the end (the buffer is CHUNK
      // long, so there is room); the caller truncates the copy back to its size.
      buffer.fill(0, w + length, w + alignUp(length));
      length = alignUp(length);
    }
    for (let done = 0; done < length; ) done += writeSync(out, buffer, w + done, length - done, pos + w + done);
  }
}

/** Reads the copy's N bytes at POS from the disk (CHECK is O_DIRECT) and compares them with EXPECTED. */
async function checkChunk(check: number, into: Buffer, expected: Buffer, n: number, pos: number): Promise<void> {
  const got = await readAt(check, into, alignUp(n), pos);
  if (got < n || !into.subarray(0, n).equals(expected.subarray(0, n))) throw new Mismatch();
}

/** What copyData kept of what it read from the original, for verifyCopy: the bytes, or their SHA-256. */
export type Kept = { bytes: Buffer[] } | { sha256: string };

export interface CopyMode {
  /** INPUT is O_DIRECT: whole blocks are read. */
  readDirect: boolean;
  /** OUT is O_DIRECT (writesDirect): whole blocks are written, the caller truncates the copy to its size after. */
  writeDirect: boolean;
  /** The copy opened READ_BACK: each chunk read back as soon as it is written. */
  check?: number;
  /** Without `check`: what to keep for verifyCopy. The SHA-256 where many files are copied before any is read back. */
  keep: 'bytes' | 'sha256';
}

/**
 * Copies the plan's ranges from INPUT to OUT.
 * - `check` given: each chunk is read back from the disk as soon as it is written and compared
 *   byte for byte with what was read (Mismatch), while the next chunk is read from the
 *   original. Returns undefined: nothing is left to verify.
 * - Otherwise: returns what was read (`keep`), for verifyCopy once the copy is on the disk.
 * Throws ShortRead when the original does not read as planned (it changed).
 */
/**
 * PROMISE, awaited later while another is: its failure is seen then, not taken meanwhile for an
 * unhandled rejection (which ends the process) when it fails first.
 */
function pending<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

export async function copyData(
  input: number,
  out: number,
  plan: CopyPlan,
  mode: CopyMode,
  progress: (bytes: number) => void,
  tick: () => Promise<void>,
): Promise<Kept | undefined> {
  const list = pieces(plan);
  const [a, b, c, back] = alignedBuffers();
  // Chunk i in buffers[i % 3]: its read-back (chunk i-1's, while i is written) still holds it.
  const buffers = [a!, b!, c!];
  const { readDirect, writeDirect, check } = mode;
  const length = (i: number) => (readDirect ? alignUp(list[i]!.want) : list[i]!.want);
  const kept: Buffer[] = [];
  const hash = check === undefined && mode.keep === 'sha256' ? createHash('sha256') : undefined;
  // One chunk only (most small files): no thread pool round trip.
  let next: Promise<number> | undefined = list.length > 1 || (readDirect && list.length > 0) ? pending(readAt(input, buffers[0]!, length(0), list[0]?.pos ?? 0)) : undefined;
  let checking: Promise<void> | undefined;
  try {
    for (let i = 0; i < list.length; i++) {
      const { pos, want } = list[i]!;
      const buffer = buffers[i % 3]!;
      const n = next ? await next : readSync(input, buffer, 0, length(i), pos);
      next = undefined;
      if (n !== want) throw new ShortRead();
      // Its buffer held chunk i-2, read back before chunk i-1's read-back began.
      if (i + 1 < list.length) next = pending(readAt(input, buffers[(i + 1) % 3]!, length(i + 1), list[i + 1]!.pos));
      writeChunk(out, buffer, n, pos, plan, writeDirect);
      // Chunk i-1, read back while chunk i was written: the read-back buffer is free again.
      if (checking) await checking;
      checking = undefined;
      if (check !== undefined) checking = pending(checkChunk(check, back!, buffer, n, pos));
      else if (hash) hash.update(buffer.subarray(0, n));
      else kept.push(Buffer.from(buffer.subarray(0, n)));
      progress(n);
      await tick();
    }
    if (checking) await checking;
    checking = undefined;
  } finally {
    // Every read has ended before the buffers are used again.
    await next?.catch(() => {});
    await checking?.catch(() => {});
  }
  if (check !== undefined) return undefined;
  return hash ? { sha256: hash.digest('hex') } : { bytes: kept };
}

/**
 * The copy (CHECK, opened READ_BACK) read back from the disk against KEPT, what copyData read
 * from the original for the same plan; Mismatch when it differs. `progress` gets each piece's length.
 */
export async function verifyCopy(check: number, plan: CopyPlan, kept: Kept, progress?: (bytes: number) => void, tick?: () => Promise<void>): Promise<void> {
  const list = pieces(plan);
  const [, , , back] = alignedBuffers();
  if ('bytes' in kept) {
    if (list.length !== kept.bytes.length) throw new Mismatch();
    for (let i = 0; i < list.length; i++) {
      await checkChunk(check, back!, kept.bytes[i]!, kept.bytes[i]!.length, list[i]!.pos);
      progress?.(list[i]!.want);
      await tick?.();
    }
    return;
  }
  const hash = createHash('sha256');
  for (const { pos, want } of list) {
    const got = await readAt(check, back!, alignUp(want), pos);
    if (got < want) throw new Mismatch();
    hash.update(back!.subarray(0, want));
    progress?.(want);
    await tick?.();
  }
  if (hash.digest('hex') !== kept.sha256) throw new Mismatch();
}
