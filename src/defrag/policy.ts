// The threshold nocow defrag defragments a file above. Pure data and pure functions.
// The profile and defrag rules are src/policy.ts's; named here too for the defrag command.
export { defragWant, isRedundant, type DefragWant } from '../policy.js';

/** --min-extents' default: more than this many extents per GiB (at least this many) makes a file worth defragmenting. */
export const DEFAULT_MIN_EXTENTS = 256;

const GIB = 1024 ** 3;
/** The most data one compressed extent holds: a compressed file has at least one extent per this many bytes. */
export const COMPRESSED_EXTENT_MAX = 128 * 1024;

/**
 * The most extents a file of SIZE bytes may have before it is defragmented: MIN per GiB of its size
 * (at least MIN), plus the extents its compressed bytes need (one per 128 KiB), which no defragmentation removes.
 */
export function extentLimit(minExtents: number, sizeBytes: number, compressedBytes = 0): number {
  return Math.max(minExtents, Math.ceil((minExtents * sizeBytes) / GIB)) + Math.ceil(compressedBytes / COMPRESSED_EXTENT_MAX);
}
