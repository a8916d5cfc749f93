// The typed form of a declaration: what every later layer (plan, render, apply) consumes.

export type Scope = 'system' | 'user';
export type SubvolumePolicy = 'auto' | 'never';
/** What to do on a redundant data profile (raid1, dup, …), where +C would drop the checksums self-healing needs. */
export type RedundancyPolicy = 'keep-checksums' | 'force-nocow';
/**
 * Whether `nocow defrag` (and the defrag-timer units) defragment the target's files. `auto`: where
 * they keep copy-on-write: `nocow: false`, or `nocow: true` with `redundancy: keep-checksums` on a
 * redundant data profile (told at run time), where +C is skipped to keep the checksums.
 */
export type DefragPolicy = 'auto' | 'on' | 'off';
/**
 * Whether the target directory's compression mark (+c, the compression property), which +C cannot
 * be set with, is cleared just before +C is set: `clear`; or left, +C then failing with a warning: `keep`.
 */
export type CompressionPolicy = 'keep' | 'clear';

export interface Target {
  /** Used in file names (tmpfiles snippet nocow-NAME.conf, the opt-out) and in log lines. */
  name: string;
  /** system scope: absolute path. user scope: path relative to the home, written `~/…`. */
  path: string;
  scope: Scope;
  subvolume: SubvolumePolicy;
  nocow: boolean;
  /** Octal, 3 or 4 digits, for a directory that has to be created. */
  mode: string;
  /** Name or numeric id; for user scope always '-' (the logged-in user). */
  user: string;
  group: string;
  redundancy: RedundancyPolicy;
  /** Always set by validation; absent (in targets built in code) means `auto`. */
  defrag?: DefragPolicy;
  /** Always set by validation; absent (in targets built in code) means `keep`. */
  compression?: CompressionPolicy;
  /** Where the target was declared: `profile:NAME` or `config:FILE` (as given on the command line). */
  source: string;
}

export interface Declaration {
  /** Every source in the order given, for the marker comment of each artifact. */
  sources: string[];
  targets: Target[];
}
