// The data path of nocow migrate: the original's data ranges copied into the new file, then
// read back from the disk and compared byte for byte with what was read from the original.
//
// - Memory aligned for O_DIRECT: WebAssembly memory is page-aligned (a Buffer from the heap is
//   not, and Btrfs would then quietly go through the page cache instead).
// - Large files (DIRECT_MIN and up) are read and written with O_DIRECT: the original's
//   fragments are read in CHUNK-sized requests the device serves together, the copy goes
//   straight to the disk without filling the page cache, and while a chunk is written (here,
//   in the main thread, one pwrite per WRITE bytes, so that a kill lands between two of them)
//   the next one is read from the original and, once written, the chunk is read back from the
//   copy on the disk (both in libuv's thread pool) and compared.
// - Small files go through the page cache; once the batch they are in is on the disk (one
//   syncfs), each is read back with O_DIRECT and compared with the bytes kept from its read.
// Either way what is compared is what the disk returns for the copy, never what the page cache
// kept of the writes.
import { read, readSync, writeSync } from 'node:fs';

export const CHUNK = 8 * 1024 * 1024;
/** Bytes per write: a kill or an injected fault lands between two of them. */
export const WRITE = 1024 * 1024;
/** From this size on, files are read and written with O_DIRECT. */
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

let pool: Buffer[] | undefined;
/** Three CHUNK buffers, page-aligned, reused by every copy (one copy at a time): two for reads, one to read back. */
export function alignedBuffers(): Buffer[] {
  if (pool) return pool;
  if (typeof WebAssembly === 'undefined') throw new Error('aligned memory for O_DIRECT needs WebAssembly (node was started with --jitless?)');
  const memory = new WebAssembly.Memory({ initial: (3 * CHUNK) / 65536, maximum: (3 * CHUNK) / 65536 });
  pool = [0, 1, 2].map((i) => Buffer.from(memory.buffer, i * CHUNK, CHUNK));
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

/** The original ended before the plan did: it shrank. */
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

/**
 * Copies the plan's ranges from INPUT to OUT.
 * - `check` given: INPUT and OUT are O_DIRECT and CHECK is the copy opened O_DIRECT for reading.
 *   Each chunk is read back from the disk as soon as it is written and compared byte for byte
 *   with what was read (Mismatch), while the next chunk is read from the original. Returns [].
 * - Otherwise (small files, through the page cache): returns the bytes read, for verifyCopy
 *   once the copy is on the disk.
 * Throws ShortRead when the original ends early (it shrank).
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
  check: number | undefined,
  progress: (bytes: number) => void,
  tick: () => Promise<void>,
): Promise<Buffer[]> {
  const list = pieces(plan);
  const [a, b, back] = alignedBuffers();
  const buffers = [a!, b!];
  const direct = check !== undefined;
  const length = (i: number) => (direct ? alignUp(list[i]!.want) : list[i]!.want);
  const kept: Buffer[] = [];
  // One chunk only (most small files): no thread pool round trip.
  let next: Promise<number> | undefined = list.length > 1 || (direct && list.length > 0) ? pending(readAt(input, buffers[0]!, length(0), list[0]?.pos ?? 0)) : undefined;
  let checking: Promise<void> | undefined;
  try {
    for (let i = 0; i < list.length; i++) {
      const { pos, want } = list[i]!;
      const buffer = buffers[i % 2]!;
      const n = next ? await next : readSync(input, buffer, 0, length(i), pos);
      next = undefined;
      if (n !== want) throw new ShortRead();
      // The chunk before is checked: its buffer takes the next read.
      if (checking) await checking;
      checking = undefined;
      if (i + 1 < list.length) next = pending(readAt(input, buffers[(i + 1) % 2]!, length(i + 1), list[i + 1]!.pos));
      writeChunk(out, buffer, n, pos, plan, direct);
      if (check !== undefined) checking = pending(checkChunk(check, back!, buffer, n, pos));
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
  return kept;
}

/** The copy (CHECK, opened O_DIRECT) read back from the disk against KEPT, what copyData read from the original. */
export async function verifyCopy(check: number, plan: CopyPlan, kept: Buffer[]): Promise<void> {
  const list = pieces(plan);
  if (list.length !== kept.length) throw new Mismatch();
  const [, , back] = alignedBuffers();
  for (let i = 0; i < list.length; i++) await checkChunk(check, back!, kept[i]!, kept[i]!.length, list[i]!.pos);
}
