// Steps 2–4 of nocow convert: NEW made beside PATH and marked, the tree copied into it by the
// copy engine nocow migrate uses, then verified entry by entry against the original, every
// file's data read back from the disk.
import { closeSync, constants, ftruncateSync, linkSync, mkdirSync, openSync } from 'node:fs';
import {
  DIRECT_MIN,
  Mismatch,
  READ_BACK,
  ShortRead,
  WRITE_DIRECT,
  copyData,
  planCopy,
  plannedBytes,
  verifyCopy as verifyData,
  writesDirect,
  type CopyPlan,
  type Kept,
} from '../host/copy.js';
import { MARKER, Refusal, firstFile, parentRel, run, type ConvertContext, type Names, type Progress } from './common.js';
import type { Checked } from './preflight.js';
import {
  at,
  flagsOf,
  linkTarget,
  metadataDifference,
  openToRead,
  shown,
  treeChange,
  walk,
  xattrDifference,
  xattrsOf,
  type Entry,
  type Tree,
  type Xattrs,
} from './tree.js';

/** A file's data as copied: what was copied of it, and the SHA-256 of what was read, for the read-back. */
export interface Copied {
  plan: CopyPlan;
  kept: Kept;
}

/**
 * The copy of one regular file by the engine nocow migrate uses (src/host/copy.ts): holes
 * skipped, preallocation kept, written with O_DIRECT (so that the read-back reads the disk),
 * large originals read with O_DIRECT; +C (or not) as its new directory gives it unless `flip`
 * says otherwise.
 */
async function copyFile(src: string, dst: string, e: Entry, flip: boolean | undefined, progress: Progress | undefined): Promise<Copied> {
  const size = Number(e.st.size);
  const large = size >= DIRECT_MIN;
  const input = openToRead(src, large ? constants.O_DIRECT : 0);
  let out: number | undefined;
  let direct: number | undefined;
  try {
    out = openSync(dst, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    // +C (or its absence) only takes while the file is empty.
    if (flip !== undefined) await run('chattr', [flip ? '+C' : '-C', '--', dst]);
    const plan = await planCopy(src, { size, blocks: Number(e.st.blocks) }, dst, out);
    const writeDirect = writesDirect(size);
    if (writeDirect) direct = openSync(dst, WRITE_DIRECT);
    const add = (n: number) => progress?.add(n);
    const tick = () => progress?.tick() ?? Promise.resolve();
    // Read back once the whole tree is on the disk (verifyCopy): only its SHA-256 is kept meanwhile.
    const kept = await copyData(input, direct ?? out, plan, { readDirect: large, writeDirect, keep: 'sha256' }, add, tick);
    // The last block was written whole.
    if (writeDirect) ftruncateSync(out, size);
    // The holes, not read, are copied too as far as the progress bar goes.
    progress?.add(size - plannedBytes(plan));
    return { plan, kept: kept! };
  } catch (error) {
    if (error instanceof ShortRead) throw new Refusal(`it changed while being copied (${shown(e.rel)} was written to)`);
    throw error;
  } finally {
    if (direct !== undefined) closeSync(direct);
    if (out !== undefined) closeSync(out);
    closeSync(input);
  }
}

/** What copyTree says it is doing, for the line of a failure ("copying a/b: …"). */
export interface Step {
  now: string;
}

/**
 * NEW made (a subvolume, marked as our copy, +C while empty when wanted) and CHECKED.tree copied
 * into it: directories, files, hard links; then cp gives every entry its attributes and makes
 * the other kinds; then syncfs. Each file's plan and the SHA-256 of what was read, by path.
 */
export async function copyTree({ P, N }: Names, checked: Checked, ctx: ConvertContext, step: Step): Promise<Map<string, Copied>> {
  const { tree, want } = checked;
  step.now = `creating the subvolume ${N}`;
  await run('btrfs', ['subvolume', 'create', '--', N]);
  step.now = `marking ${N}`;
  await run('setfattr', ['-h', '-n', MARKER, '-v', `0x${Buffer.from(P).toString('hex')}`, '--', N]);
  if (want('')) await run('chattr', ['+C', '--', N]);
  const hashes = new Map<string, Copied>();
  ctx.progress?.start('copying', tree.bytes, firstFile(tree));
  for (const e of tree.entries) {
    if (e.rel === '') continue;
    step.now = `copying ${shown(e.rel)}`;
    const dst = at(N, e.rel);
    const inherited = want(parentRel(e.rel));
    if (e.kind === 'dir') {
      mkdirSync(dst, 0o700);
      if (want(e.rel) !== inherited) await run('chattr', [want(e.rel) ? '+C' : '-C', '--', dst]);
    } else if (e.kind === 'file') {
      if (e.linkOf !== undefined) linkSync(at(N, e.linkOf), dst);
      else {
        ctx.progress?.file(e.rel);
        hashes.set(e.rel, await copyFile(at(P, e.rel), dst, e, want(e.rel) === inherited ? undefined : want(e.rel), ctx.progress));
      }
    }
  }
  step.now = 'copying the attributes';
  // Creates the symlinks, fifos, sockets and devices, and gives every entry (NEW too) its owner, mode, times and xattrs.
  await run('cp', ['-a', '-x', '--attributes-only', '-T', '--', P, N]);
  step.now = 'syncing the copy to disk';
  await run('sync', ['-f', '--', N]);
  return hashes;
}

/** NEW walked and compared with the original (throws the first difference), and PATH unchanged since the walk (else a Refusal): the copy's walk. */
export async function verify({ N }: Names, checked: Checked, hashes: Map<string, Copied>, ctx: ConvertContext, step: Step): Promise<Tree> {
  step.now = 'verifying the copy';
  const copy = walk(N);
  const difference = await compare(checked.tree, copy, checked.xattrs, hashes, checked.want, ctx.progress);
  if (difference) throw new Error(`the copy is not the same (${difference})`);
  const changed = treeChange(checked.tree);
  if (changed) throw new Refusal(`it changed while being copied (${changed})`);
  return copy;
}

/**
 * The copy against the original, entry by entry; the first difference in words, or undefined.
 * `copied`: each file's plan and the SHA-256 of what was read for it, which its copy, read back
 * from the disk with O_DIRECT (past the page cache), must match.
 */
async function compare(
  original: Tree,
  copy: Tree,
  originalXattrs: Xattrs,
  copied: Map<string, Copied>,
  wantC: (rel: string) => boolean,
  progress: Progress | undefined,
): Promise<string | undefined> {
  if (copy.problems.length > 0) return copy.problems[0];
  const copyXattrs = await xattrsOf(copy.root);
  const copyFlags = await flagsOf(copy);
  for (const e of original.entries) {
    const c = copy.byRel.get(e.rel);
    if (!c) return `${shown(e.rel)} is missing in the copy`;
    const d = metadataDifference(e, c, { times: true, links: true });
    if (d) return `${shown(e.rel)}: ${d} in the copy`;
    if (e.kind === 'symlink' && !linkTarget(original.root, e.rel).equals(linkTarget(copy.root, c.rel))) return `${shown(e.rel)}: another link target in the copy`;
    const x = xattrDifference(originalXattrs.get(e.rel), copyXattrs.get(e.rel), e.rel === '' ? [MARKER] : []);
    if (x) return `${shown(e.rel)}: ${x} in the copy`;
    if ((e.kind === 'file' || e.kind === 'dir') && (copyFlags.get(e.rel) ?? '').includes('C') !== wantC(e.rel)) {
      return `${shown(e.rel)}: ${wantC(e.rel) ? 'no +C' : '+C'} in the copy`;
    }
  }
  if (copy.entries.length !== original.entries.length) {
    const extra = copy.entries.find((c) => !original.byRel.has(c.rel))!;
    return `${shown(extra.rel)} is in the copy, not in the original`;
  }
  progress?.start('verifying', original.bytes, firstFile(original));
  for (const e of original.entries) {
    if (e.kind !== 'file' || e.linkOf !== undefined) continue;
    progress?.file(e.rel);
    const { plan, kept } = copied.get(e.rel)!;
    const check = openSync(at(copy.root, e.rel), READ_BACK);
    try {
      await verifyData(check, plan, kept, (n) => progress?.add(n), () => progress?.tick() ?? Promise.resolve());
    } catch (error) {
      if (error instanceof Mismatch) return `${shown(e.rel)}: the copy does not read back the same bytes`;
      throw error;
    } finally {
      closeSync(check);
    }
    progress?.add(plan.size - plannedBytes(plan));
  }
  return undefined;
}
