// The rules every layer decides the same way, once: which data profiles keep the checksums +C
// would remove, whether +C is then expected, and whether a target wants defragmenting. Pure (no
// file system, no process): the generator (plan.ts, render.ts) and the live engines share it; the
// shell library's case of the profiles is rendered from REDUNDANT_PROFILES (render.ts).
import type { Target } from './declaration/types.js';

/** Data profiles whose self-healing needs the checksums that +C removes (lower case, as `btrfs filesystem df` prints them upper). */
export const REDUNDANT_PROFILES: readonly string[] = ['raid1', 'raid1c3', 'raid1c4', 'raid10', 'raid5', 'raid6', 'dup'];

/** A data profile as `btrfs filesystem df` names it, lower case: does it keep the checksums self-healing needs? */
export const isRedundant = (profile: string | null | undefined): boolean => profile != null && REDUNDANT_PROFILES.includes(profile);

/**
 * Whether +C is expected of a target on a file system with data PROFILE: declared (nocow), and
 * not skipped for a redundant profile, unless the redundancy policy (or --force-nocow: FORCE)
 * says +C all the same.
 */
export function expectsNocow(t: Pick<Target, 'nocow' | 'redundancy'>, profile: string | null | undefined, force = false): boolean {
  return t.nocow && !(isRedundant(profile) && t.redundancy !== 'force-nocow' && !force);
}

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
