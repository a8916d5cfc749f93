// Step 1 of nocow convert on a plain directory PATH on Btrfs: every check that refuses before
// anything is made, and what the copy then works from (the tree walked once settled, its flags
// and xattrs). Run twice: without the lock (the dry pass), then again holding it.
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { size } from '../io.js';
import { isMountPoint } from '../host/mounts.js';
import { SPACE_MARGIN, settled } from '../host/settle.js';
import { expectsNocow } from '../policy.js';
import { Refusal, inUse, mountsInTheWay, run, type ConvertContext, type ConvertRequest } from './common.js';
import type { Probed } from './recover.js';
import { flagsOf, lastChange, shown, walk, xattrsOf, type Tree, type Xattrs } from './tree.js';

// Room for metadata beyond the copy's own blocks: SPACE_MARGIN, and some per entry.
const SPACE_PER_ENTRY = 4096;

/** The tree to copy as it passed the checks. */
export interface Checked {
  tree: Tree;
  /** Each entry's flags as lsattr prints them. */
  flags: Map<string, string>;
  xattrs: Xattrs;
  /** Whether an entry's copy gets +C: all when +C is declared, else those that had it. */
  want: (rel: string) => boolean;
}

/** The walk of PATH once the clock is past its last change (src/host/settle.ts). */
async function settledWalk(path: string): Promise<Tree> {
  return settled(() => walk(path), (tree) => [lastChange(tree)]);
}

/** Throws a Refusal for the first check PATH fails; else the tree, as walked, to copy. */
export async function preflight(req: ConvertRequest, ctx: ConvertContext, probed: Probed): Promise<Checked> {
  const P = req.path;
  const s = req.subject;
  if (probed.facts.mountPoint || isMountPoint(P)) throw new Refusal('a mount point (a file system or a bind mount is mounted there): convert the directory it comes from');
  const mounted = mountsInTheWay(P);
  if (mounted) throw new Refusal(mounted);
  if (!probed.progs) throw new Refusal('btrfs-progs is not installed: a subvolume cannot be made');
  if (probed.problems.length > 0) throw new Refusal(probed.problems[0]!);

  const wantC = s.nocow;
  if (wantC && !expectsNocow(s, probed.profile, ctx.forceNocow)) {
    throw new Refusal(`the data profile is ${probed.profile}: +C would remove the checksums its self-healing needs (--force-nocow overrides)`);
  }

  const tree = await settledWalk(P);
  if (tree.problems.length > 0) throw new Refusal(`${tree.problems[0]}${tree.problems.length > 1 ? ` (and ${tree.problems.length - 1} more)` : ''}`);
  const flags = await flagsOf(tree);
  for (const e of tree.entries) {
    const f = flags.get(e.rel) ?? '';
    if (f.includes('i')) throw new Refusal(`${shown(e.rel)} is immutable (chattr +i): chattr -i it first`);
    if (f.includes('a')) throw new Refusal(`${shown(e.rel)} is append-only (chattr +a): chattr -a it first`);
  }
  const xattrs = await xattrsOf(P);
  if (wantC) {
    for (const [rel, names] of xattrs) {
      const value = names.get('btrfs.compression');
      if (value === undefined) continue;
      const algorithm = Buffer.from(value.replace(/^0x/, ''), 'hex').toString('utf8');
      throw new Refusal(`${shown(rel)} is marked for compression (${algorithm}), which +C cannot be set with: chattr -c it first, or declare nocow: false`);
    }
  }
  // Data written and not yet on the disk (delayed allocation) is not counted out of statfs's free
  // space until it is written: without this, a tree just written would pass and meet ENOSPC mid-copy.
  await run('sync', ['-f', '--', P]);
  const fs = statfsSync(dirname(P), { bigint: false });
  const free = fs.bavail * fs.bsize;
  const needed = tree.allocated + SPACE_MARGIN + tree.entries.length * SPACE_PER_ENTRY;
  if (free < needed) throw new Refusal(`not enough free space for the copy (${size(free)} free, ${size(needed)} needed)`);
  const busy = inUse(tree);
  if (busy) throw new Refusal(`${busy}: stop it first`);
  return { tree, flags, xattrs, want: (rel: string) => wantC || (flags.get(rel) ?? '').includes('C') };
}
