// nocow migrate's plan (and nocow revert's, the direction flipped): the files PATHS name that lack
// +C (revert: that have it), each with the reason it would be refused (its checks), the copies an
// interrupted run left, found and removed, and (revert) the directories whose +C goes.
import { lstatSync, unlinkSync, type BigIntStats } from 'node:fs';
import { lstat, readdir, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { frozenBy } from '../facts.js';
import { nameText, size } from '../io.js';
import { chattr, flagsOf } from '../host/attrs.js';
import { dataProfile, isBtrfsType } from '../host/btrfs.js';
import { extentCounts } from '../host/filefrag.js';
import { mountsInside, shownPoint } from '../host/mounts.js';
import { identity, openers } from '../host/openers.js';
import { SPACE_MARGIN } from '../host/settle.js';
import { isRedundant } from '../policy.js';
import { reasonOf, TargetError as MigrateError } from '../errors.js';
import { settle } from './recover.js';
import {
  type Candidate,
  type MigrateOptions,
  wantsRewrite,
  temporaryName,
  originalName,
  rewrittenName,
  isSecondName,
  isTemporaryName,
  openRefusal,
  hardLinks,
} from './common.js';

/**
 * The regular files below DIR, and apart the second names an interrupted run left there. No
 * mount point inside DIR is entered, nor taken as a file: what is mounted there (a bind mount
 * of the same file system too, which device numbers do not tell) is not DIR's.
 */
async function regularFilesBelow(dir: string): Promise<{ files: string[]; seconds: Set<string>; temporaries: string[]; unnamed: string[]; dirs: string[] }> {
  const boundaries = new Set(mountsInside(dir).map(shownPoint));
  const files: string[] = [];
  const seconds = new Set<string>();
  // Names that are not UTF-8 cannot be named through Node's string paths: each is reported, never skipped.
  const unnamed: string[] = [];
  const temporaries: string[] = [];
  const dirs: string[] = [];
  const pending = [dir];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    dirs.push(next);
    for (const entry of await readdir(next, { withFileTypes: true, encoding: 'buffer' })) {
      const raw = entry.name;
      const name = raw.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        if (entry.isDirectory() || entry.isFile()) unnamed.push(join(next, nameText(raw)) + (entry.isDirectory() ? '/' : ''));
        continue;
      }
      const path = join(next, name);
      if (boundaries.has(path)) continue;
      if (entry.isDirectory()) pending.push(path);
      else if (entry.isFile() && isSecondName(name)) seconds.add(path);
      else if (entry.isFile() && isTemporaryName(name)) temporaries.push(path);
      else if (entry.isFile()) files.push(path);
    }
  }
  return { files: files.sort(), seconds, temporaries, unnamed: unnamed.sort(), dirs: dirs.sort() };
}

/**
 * The copies an interrupted run left (.NAME.nocow-migrate, .nocow-CKSUM.nocow-migrate): below each
 * directory of PATHS, beside each file. Never the only copy of anything (the rename over the
 * original is a run's last step), so a later run removes them: those of the files it rewrites as
 * it rewrites them, the others (their file refused, given +C, or gone) by removeLeftovers.
 */
export async function leftoversOf(paths: string[]): Promise<{ path: string; size: number }[]> {
  const found: { path: string; size: number }[] = [];
  const add = (path: string) => {
    const info = lstatSync(path, { throwIfNoEntry: false });
    if (info?.isFile()) found.push({ path, size: info.size });
  };
  for (const path of paths) {
    const info = await lstat(path).catch(() => undefined);
    if (info?.isDirectory()) {
      for (const temporary of (await regularFilesBelow(path)).temporaries) add(temporary);
    } else if (info?.isFile()) add(temporaryName(path));
  }
  return [...new Map(found.map((f) => [f.path, f])).values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Removes LEFTOVERS (leftoversOf), each unless some process has it open (another run's copy at work): why it was kept, by path. */
export function removeLeftovers(leftovers: string[]): Map<string, string> {
  const kept = new Map<string, string>();
  const infos = new Map(leftovers.map((path) => [path, lstatSync(path, { bigint: true, throwIfNoEntry: false })]));
  const open = openers(new Set([...infos.values()].filter((i) => i !== undefined).map(identity)));
  for (const [path, info] of infos) {
    if (info === undefined) continue;
    const users = open.get(identity(info));
    if (users) {
      kept.set(path, `${openRefusal(users).replace(/ \(--force overrides\)$/, '')}: another run's copy at work?`);
      continue;
    }
    try {
      unlinkSync(path);
    } catch (error) {
      kept.set(path, reasonOf(error));
    }
  }
  return kept;
}

/**
 * The files PATHS name (directories: every regular file below) that lack +C, each with the reason
 * it would be refused. Processes per run, not per file: lsattr and filefrag take the files in
 * batches, one pass over /proc covers them all, btrfs filesystem df runs once per file system.
 */
export async function findCandidates(paths: string[], opts: MigrateOptions): Promise<Candidate[]> {
  const files: string[] = [];
  const seconds = new Set<string>();
  const unnamed: string[] = [];
  for (const path of paths) {
    const info = await lstat(path).catch(() => undefined);
    if (!info) throw new MigrateError(`${path}: no such file or directory`);
    if (info.isDirectory()) {
      const below = await regularFilesBelow(path);
      files.push(...below.files);
      for (const second of below.seconds) seconds.add(second);
      unnamed.push(...below.unnamed);
    } else if (info.isFile()) {
      files.push(path);
      for (const second of [originalName(path), rewrittenName(path)]) if (lstatSync(second, { throwIfNoEntry: false })) seconds.add(second);
    } else throw new MigrateError(`${path}: not a regular file or directory`);
  }
  const unique = [...new Set(files)];
  // What a killed run left is put right before anything is looked at: it may change which file PATH is.
  const interrupted = unique.filter((p) => seconds.has(originalName(p)) || seconds.has(rewrittenName(p)));
  const unsettled = opts.dryRun ? new Map<string, string>() : settle(interrupted);
  const flags = await flagsOf(unique);
  const todo: [string, BigIntStats][] = [];
  const direction = opts.direction ?? 'nocow';
  for (const path of unique.filter((p) => unsettled.has(p) || wantsRewrite(direction, flags.get(p)))) {
    // Removed since it was listed: nothing to migrate.
    const info = lstatSync(path, { bigint: true, throwIfNoEntry: false });
    if (info?.isFile()) todo.push([path, info]);
  }
  // An immutable or append-only file, or directory, is frozen by its admin: left alone, said why.
  const dirFlags = await flagsOf([...new Set(todo.map(([path]) => dirname(path)))]);
  const frozen = (path: string): string | undefined => {
    const own = frozenBy(flags.get(path));
    const dir = frozenBy(dirFlags.get(dirname(path)));
    return own ? `it is ${own}: left alone` : dir && `its directory ${dirname(path)} is ${dir}: left alone`;
  };
  // One scan of /proc for every file.
  const open = opts.force ? new Map<string, string[]>() : openers(new Set(todo.map(([, info]) => identity(info))));
  const extents = await extentCounts(todo.map(([path]) => path));
  const candidates: Candidate[] = unnamed.map((shown) => ({
    path: shown,
    size: 0,
    allocated: 0,
    extents: undefined,
    dev: 0n,
    ino: 0n,
    refusal: shown.endsWith('/')
      ? 'a directory whose name is not UTF-8 (shown with \\xHH for each such byte): its files are not looked at; rename it first'
      : 'its name is not UTF-8 (shown with \\xHH for each such byte), which nocow cannot name safely: rename it first',
  }));
  const spaces = new Map<string, { type: number; bavail: number; bsize: number }>();
  const profiles = new Map<bigint, string | undefined>();
  for (const [path, info] of todo) {
    const candidate: Candidate = {
      path,
      size: Number(info.size),
      allocated: Number(info.blocks) * 512,
      extents: extents.get(path),
      dev: info.dev,
      ino: info.ino,
    };
    const dir = dirname(path);
    if (!spaces.has(dir)) spaces.set(dir, await statfs(dir));
    const fs = spaces.get(dir)!;
    const btrfs = isBtrfsType(fs.type);
    // The data profile is the file system's: asked once per device.
    if (btrfs && !profiles.has(info.dev)) profiles.set(info.dev, (await dataProfile(dir)).profile ?? undefined);
    const profile = profiles.get(info.dev);
    const users = open.get(identity(info)) ?? [];
    // A dry run leaves the original's second name of a killed run in place: not a link of the user's.
    const spare = opts.dryRun ? lstatSync(originalName(path), { bigint: true, throwIfNoEntry: false }) : undefined;
    const links = spare?.ino === info.ino && spare.dev === info.dev ? info.nlink - 1n : info.nlink;
    const frozenAs = frozen(path);
    if (unsettled.has(path)) candidate.refusal = unsettled.get(path)!;
    else if (!btrfs) candidate.refusal = 'not on Btrfs';
    else if (frozenAs) candidate.refusal = frozenAs;
    else if (direction === 'nocow' && isRedundant(profile) && !opts.forceNocow)
      candidate.refusal = `the data profile is ${profile}: +C would remove the checksums its self-healing needs (--force-nocow overrides)`;
    else if (links > 1n) candidate.refusal = hardLinks(links);
    else if (users.length > 0) candidate.refusal = openRefusal(users);
    else if (fs.bavail * fs.bsize < Math.max(candidate.allocated, 0) + SPACE_MARGIN)
      candidate.refusal = `not enough free space for the copy (${size(fs.bavail * fs.bsize)} free, ${size(candidate.allocated + SPACE_MARGIN)} needed)`;
    candidates.push(candidate);
  }
  return candidates;
}


/**
 * The directories PATHS name (each directory operand and every directory below it, no mount
 * point entered) that have +C: those whose new files would be NOCOW, for nocow revert to clear.
 * A file operand's directory is not among them: it holds files not named.
 */
export async function nocowDirectories(paths: string[]): Promise<string[]> {
  const dirs: string[] = [];
  for (const path of paths) {
    const info = await lstat(path).catch(() => undefined);
    if (info?.isDirectory()) dirs.push(...(await regularFilesBelow(path)).dirs);
  }
  const unique = [...new Set(dirs)];
  const flags = await flagsOf(unique);
  return unique.filter((dir) => flags.get(dir)?.includes('C')).sort();
}

/**
 * Among DIRS, those an admin froze (+i, +a), with why they are left alone: such a directory keeps
 * its +C as its files keep theirs (Btrfs would let chattr -C through +i).
 */
export async function frozenDirectories(dirs: string[]): Promise<Map<string, string>> {
  const frozen = new Map<string, string>();
  const flags = await flagsOf(dirs);
  for (const dir of dirs) {
    const frozenAs = frozenBy(flags.get(dir));
    if (frozenAs) frozen.set(dir, `it is ${frozenAs}: left alone`);
  }
  return frozen;
}

/**
 * +C cleared on DIRS (chattr -C: new files there are copy-on-write again; a subvolume stays one):
 * why it could not be, by directory (checked with lsattr, not taken from chattr's status).
 */
export async function clearNocow(dirs: string[]): Promise<Map<string, string>> {
  const failed = new Map<string, string>();
  if (dirs.length === 0) return failed;
  const errors = await frozenDirectories(dirs);
  for (const dir of dirs) {
    if (errors.has(dir)) continue;
    const run = await chattr('-C', [dir]);
    if (!run.ok) errors.set(dir, run.error);
  }
  const flags = await flagsOf(dirs);
  for (const dir of dirs) {
    const now = flags.get(dir);
    if (now === undefined || now.includes('C')) failed.set(dir, errors.get(dir) ?? '+C is still set');
  }
  return failed;
}
