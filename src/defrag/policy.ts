// Which targets nocow defrag works on, and the threshold it defragments a file above. Pure data and
// pure functions: plan.ts (the defrag-timer units) and the command share them.
import { REDUNDANT_PROFILES } from '../facts.js';
import type { Target } from '../declaration/types.js';

/**
 * What a target's `defrag` setting asks for, before the machine is looked at:
 * - `always`: `defrag: on`, or `auto` with `nocow: false` (copy-on-write kept by choice);
 * - `if-redundant`: `auto` with `nocow: true` and `redundancy: keep-checksums`: only where the data
 *   profile turns out redundant (raid1, dup…), where +C is skipped and the files keep copy-on-write;
 * - `never`: `defrag: off`, or `auto` with `redundancy: force-nocow` (+C everywhere: nothing left to defragment).
 */
export type DefragWant = 'always' | 'if-redundant' | 'never';

export function defragWant(t: Pick<Target, 'nocow' | 'redundancy' | 'defrag'>): DefragWant {
  const policy = t.defrag ?? 'auto';
  if (policy === 'off') return 'never';
  if (policy === 'on' || !t.nocow) return 'always';
  return t.redundancy === 'force-nocow' ? 'never' : 'if-redundant';
}

/** A data profile as `btrfs filesystem df` names it, lower case: does it keep the checksums self-healing needs? */
export const isRedundant = (profile: string | null | undefined): boolean => profile != null && REDUNDANT_PROFILES.includes(profile);

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
