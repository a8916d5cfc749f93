// Probing a target on disk: the facts status reports and apply --dry-run plans from.
// The same questions the shell library asks (stat -f, inode 256, lsattr, btrfs filesystem df),
// answered by the same programs, so the two cannot disagree about what they see.
import { lstat, readdir, stat } from 'node:fs/promises';
import { CONVERT_MARKER, TEMP_SUFFIX, frozenBy, isFileTemporary, temporaryName } from '../facts.js';
import { lsattrFlags } from '../host/attrs.js';
import { fileSystemName, mightBeSubvolume, parseCompressionProperty } from '../host/btrfs.js';
import { filefragCounts } from '../host/filefrag.js';
import { mountOf, mountOptions, mountsInside } from '../host/mounts.js';
import { isEmpty, probeDirectory, probeProfile } from '../host/probe.js';
import { batcher, run as tool } from '../host/run.js';
import { joinBase, relativePath, type Subject } from './subject.js';

export interface CowFile {
  /** Relative to the target directory. */
  path: string;
  size: number;
  /** As filefrag counts them; null where it could not tell (or was not asked). */
  extents: number | null;
}

export type Compression = { kind: 'flag'; algorithm: string | null } | { kind: 'mount'; option: string };

export type OptOut = { by: 'env'; file: null } | { by: 'mask'; file: string };

/** Something an interrupted run left beside the target, or inside it. */
export interface Leftover {
  path: string;
  /** A conversion's new subvolume (PATH.nocow-new) or old directory (PATH.nocow-old), or a copy nocow migrate made of a file inside. */
  kind: 'new' | 'old' | 'migrate';
  /** A directory, as a conversion leaves them (anything else at those names is in the way). */
  directory: boolean;
  /** A directory without entries. */
  empty: boolean;
  /** Bytes of its files (a directory: every file below it). */
  bytes: number;
  /**
   * A conversion's, holding data: whether nocow convert left it, by the mark it puts on its copy
   * (on NEW; for OLD, on PATH, which was that copy). null where that cannot be told (not root:
   * trusted.* xattrs are hidden; no getfattr), or not asked (empty, or migrate's).
   */
  convert: boolean | null;
}

export interface Facts {
  /** Where the target is on this machine, symlinks on the way resolved; null when not inspected. */
  location: string | null;
  /** The symlink through which the path leaves its root or home; nothing else is probed then. */
  escapes: string | null;
  /** `stat -f -c %T` of the path or, when missing, of its nearest existing ancestor. */
  fstype: string | null;
  exists: boolean;
  directory: boolean;
  /** null when not an existing directory on Btrfs. */
  subvolume: boolean | null;
  /** Another file system, or a bind mount, mounted on the path (apply never converts one). */
  mountPoint: boolean;
  empty: boolean | null;
  /** +C on the directory; null when not an existing directory on Btrfs. */
  nocow: boolean | null;
  /**
   * Compression that stands in the way of +C, or beside it: the directory marked for compression
   * (+c, or the `compression` property: chattr +C then fails with "Invalid argument"), or a compress-force
   * mount (files with +C are stored uncompressed). Empty when none, or not looked for.
   */
  compression?: Compression[];
  /**
   * Whether the root the target is under is a Btrfs subvolume, as systemd-tmpfiles tells it before
   * a `v` line (Btrfs, inode 256): where it is not, `v` makes a plain directory. null: not asked
   * (user scope, or the target is not on Btrfs).
   */
  rootSubvolume?: boolean | null;
  /** Lower case ("single", "dup", "raid1"…); null off Btrfs or without btrfs-progs. */
  dataProfile: string | null;
  btrfsProgs: boolean;
  optOut: OptOut | null;
  /** PATH.nocow-new / PATH.nocow-old left by an interrupted conversion; copies an interrupted nocow migrate left inside (where its files are listed). */
  leftovers: Leftover[];
  /** What froze the directory (immutable, append-only), in words: nocow apply leaves it alone; null when nothing did. */
  frozen?: string | null;
  /** Regular files inside (same file system, no mount point entered) without +C; null when not looked for. */
  cowFiles: CowFile[] | null;
  /** How many of the regular files inside have +C (looked for with cowFiles): on a redundant profile, those scrub cannot repair. */
  nocowFiles?: number | null;
  /** What could not be probed, one line each. */
  problems: string[];
}

export interface InspectOptions {
  root: string;
  env?: NodeJS.ProcessEnv;
  /** Count extents with filefrag (status); apply --dry-run only needs the count of files. */
  extents?: boolean;
}

const exists = (path: string) => lstat(path).then(() => true, () => false);

/** A tmpfiles.d snippet masked the way systemd-tmpfiles and the shell library read it: /dev/null, or empty. */
async function masked(file: string): Promise<boolean> {
  const st = await stat(file).catch(() => undefined);
  return st !== undefined && (st.isCharacterDevice() || (st.isFile() && st.size === 0));
}

async function optOut(s: Subject, root: string, env: NodeJS.ProcessEnv): Promise<OptOut | null> {
  if (env.NOCOW_DISABLE === '1') return { by: 'env', file: null };
  if (s.name === null) return null;
  const snippet = `nocow-${s.name}.conf`;
  const candidates =
    s.scope === 'system'
      ? [joinBase(root, `/etc/tmpfiles.d/${snippet}`)]
      : [
          ...(s.base === null ? [] : [joinBase(s.base, `/.config/user-tmpfiles.d/${snippet}`)]),
          joinBase(root, `/etc/user-tmpfiles.d/${snippet}`),
        ];
  for (const file of candidates) if (await masked(file)) return { by: 'mask', file };
  return null;
}

/** As the shell's nocow_resolve: resolve only when an existing component is a symlink, and refuse to leave the base. */
async function resolve(base: string, rel: string, problems: string[]): Promise<{ location: string | null; escapes: string | null }> {
  const top = base.replace(/\/+$/, '');
  const path = `${top}${rel}`;
  let walk = top;
  let link: string | undefined;
  for (const part of rel.split('/').filter(Boolean)) {
    walk = `${walk}/${part}`;
    const st = await lstat(walk).catch(() => undefined);
    if (!st) return { location: path, escapes: null };
    if (st.isSymbolicLink()) {
      link = walk;
      break;
    }
  }
  if (link === undefined) return { location: path, escapes: null };
  const real = await tool('realpath', ['-m', '--', path]);
  const resolved = real.stdout.replace(/\n$/, '');
  if (!real.ok || resolved === '') {
    problems.push(`cannot resolve the symlink ${link}: ${real.error}`);
    return { location: null, escapes: null };
  }
  if (!resolved.startsWith(`${top}/`) || resolved === `${top}/`) return { location: null, escapes: link };
  return { location: resolved, escapes: null };
}

async function nearestDirectory(path: string): Promise<string> {
  let p = path;
  while (!(await stat(p).then((st) => st.isDirectory(), () => false))) {
    const cut = p.lastIndexOf('/');
    if (cut <= 0) return '/';
    p = p.slice(0, cut);
  }
  return p;
}

/** The directory's btrfs `compression` property ("zstd", "lzo"…); null when unset or unreadable. */
async function compressionProperty(path: string): Promise<string | null> {
  const get = await tool('btrfs', ['property', 'get', '--', path, 'compression']);
  return get.ok ? parseCompressionProperty(get.stdout) : null;
}

/** The compress-force option of the Btrfs mount holding PATH. */
function compressForce(path: string): string | null {
  const mount = mountOf(path);
  if (mount === undefined || mount.fstype !== 'btrfs') return null;
  return mountOptions(mount).find((o) => o.startsWith('compress-force')) ?? null;
}

async function nearestExisting(path: string): Promise<string> {
  let p = path;
  while (!(await exists(p))) {
    const cut = p.lastIndexOf('/');
    if (cut <= 0) return '/';
    p = p.slice(0, cut);
  }
  return p;
}

/**
 * A find(1) -path pattern that matches the path POINT (bytes) and nothing else, as find reads
 * it with LC_ALL=C: every character escaped; a byte that is not part of a UTF-8 character (an
 * argument cannot carry it) matched by `?`, one byte.
 */
export function findPathPattern(point: Buffer): string {
  let pattern = '';
  for (let i = 0; i < point.length; ) {
    const lead = point[i]!;
    const length = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    const piece = point.subarray(i, i + length);
    const text = piece.toString('utf8');
    if (piece.length === length && [...text].length === 1 && Buffer.from(text).equals(piece)) {
      pattern += `\\${text}`;
      i += length;
    } else {
      pattern += '?';
      i += 1;
    }
  }
  return pattern;
}

/**
 * The regular files inside DIR (same file system, no mount point entered) without +C, with their sizes and extent counts; the
 * copies an interrupted nocow migrate left go to LEFTOVERS instead.
 * find's list is read as it comes and handed to lsattr in batches, the files it finds without +C
 * to filefrag likewise: a file with +C is forgotten once its batch is read, and names are passed
 * relative to DIR (run there), so they take fewer processes than absolute ones.
 */
async function cowFiles(dir: string, extents: boolean, problems: string[], leftovers: Leftover[], counted: { nocow: number }): Promise<CowFile[]> {
  const cow: CowFile[] = [];
  let lsattrMissing = false;
  let filefragMissing = false;
  const frag = batcher<CowFile>(
    (c) => c.path,
    async (batch, names) => {
      if (filefragMissing) return;
      const run = await tool('filefrag', ['--', ...names], { cwd: dir });
      if (run.missing) {
        problems.push(`cannot count extents: ${run.error}`);
        filefragMissing = true;
        return;
      }
      const counts = filefragCounts(run.stdout, names);
      for (const c of batch) c.extents = counts.get(c.path) ?? null;
    },
  );
  const attrs = batcher<CowFile>(
    (c) => c.path,
    async (batch, names) => {
      if (lsattrMissing) return;
      const run = await tool('lsattr', ['--', ...names], { cwd: dir });
      if (run.missing) {
        problems.push(`cannot read file attributes: ${run.error}`);
        lsattrMissing = true;
        return;
      }
      // A file removed since find listed it is simply not reported.
      const flags = lsattrFlags(run.stdout, names);
      for (const c of batch) {
        const f = flags.get(c.path);
        if (f === undefined) continue;
        if (f.includes('C')) {
          counted.nocow += 1;
          continue;
        }
        cow.push(c);
        if (extents) frag.add(c);
      }
    },
  );
  // As in the shell library: -xdev, and no mount point entered (a bind mount of the same file
  // system, which -xdev does not see, brings in files that are not DIR's).
  const prune = mountsInside(dir).flatMap((m) => ['-path', findPathPattern(m.point), '-prune', '-o']);
  let rest = '';
  const found = await tool('find', [dir, '-xdev', ...prune, '-type', 'f', '-printf', '%s %P\\0'], {
    onStdout(text) {
      const entries = (rest + text).split('\0');
      rest = entries.pop()!;
      for (const entry of entries) {
        const space = entry.indexOf(' ');
        if (space <= 0) continue;
        const file = { path: entry.slice(space + 1), size: Number(entry.slice(0, space)), extents: null };
        // nocow migrate's own copy, left by an interrupted run: not a file of the target's.
        if (isFileTemporary(file.path.slice(file.path.lastIndexOf('/') + 1))) {
          leftovers.push({ path: `${dir}/${file.path}`, kind: 'migrate', directory: false, empty: false, bytes: file.size, convert: null });
        } else attrs.add(file);
      }
    },
  });
  if (!found.ok) problems.push(`cannot list the files in ${dir}: ${found.error}`);
  await attrs.end();
  await frag.end();
  return cow.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Whether PATH carries nocow convert's mark; null when that cannot be told (trusted.* xattrs are hidden from all but root; no getfattr). */
async function convertMarked(path: string): Promise<boolean | null> {
  if (process.getuid?.() !== 0) return null;
  const get = await tool('getfattr', ['--only-values', '-h', '-n', CONVERT_MARKER, '--', path]);
  return get.missing ? null : get.ok;
}

/** Bytes of the regular files below DIR (each name counted). */
async function bytesBelow(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  const sizes = await Promise.all(entries.filter((e) => e.isFile()).map((e) => lstat(`${e.parentPath}/${e.name}`).then((st) => st.size, () => 0)));
  return sizes.reduce((sum, n) => sum + n, 0);
}

/** What is at a conversion's temporary name PATH, if anything; MARKED: where convert's mark would be (NEW itself when undefined). */
async function conversionLeftover(path: string, kind: 'new' | 'old', marked: string | undefined): Promise<Leftover | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return undefined;
  const leftover: Leftover = { path, kind, directory: st.isDirectory(), empty: false, bytes: st.isFile() ? st.size : 0, convert: null };
  if (!leftover.directory) return leftover;
  leftover.empty = await isEmpty(path, []).then((empty) => empty === true);
  if (leftover.empty) return leftover;
  leftover.bytes = await bytesBelow(path);
  leftover.convert = await convertMarked(marked ?? path);
  return leftover;
}

export async function inspect(subject: Subject, opts: InspectOptions): Promise<Facts> {
  const problems: string[] = [];
  const facts: Facts = {
    location: null,
    escapes: null,
    fstype: null,
    exists: false,
    directory: false,
    subvolume: null,
    mountPoint: false,
    empty: null,
    nocow: null,
    compression: [],
    dataProfile: null,
    btrfsProgs: true,
    optOut: await optOut(subject, opts.root, opts.env ?? process.env),
    leftovers: [],
    cowFiles: null,
    problems,
  };
  if (subject.base === null) return facts;
  const { location, escapes } = await resolve(subject.base, relativePath(subject), problems);
  facts.escapes = escapes;
  if (location === null) return facts;
  facts.location = location;

  const ancestor = await nearestExisting(location);
  const fs = await fileSystemName(ancestor);
  if ('error' in fs) {
    problems.push(`cannot tell the file system of ${ancestor}: ${fs.error}`);
    return facts;
  }
  facts.fstype = fs.name;
  const st = await lstat(location).catch(() => undefined);
  facts.exists = st !== undefined;
  facts.directory = st?.isDirectory() ?? false;
  for (const [kind, suffix] of [['new', TEMP_SUFFIX.new], ['old', TEMP_SUFFIX.old]] as const) {
    const leftover = await conversionLeftover(temporaryName(location, suffix), kind, kind === 'new' ? undefined : location);
    if (leftover) facts.leftovers.push(leftover);
  }
  if (facts.fstype !== 'btrfs') return facts;
  if (subject.scope === 'system') facts.rootSubvolume = await mightBeSubvolume(subject.base);

  // btrfs filesystem df wants a directory: the nearest one, when the path is a file.
  const profile = probeProfile(await nearestDirectory(ancestor));
  if (st?.isDirectory()) {
    const counted = { nocow: 0 };
    const [{ subvolume, flags, empty, mountPoint }, files, property] = await Promise.all([
      probeDirectory(location, st, problems),
      subject.nocow ? cowFiles(location, opts.extents ?? true, problems, facts.leftovers, counted) : null,
      subject.nocow ? compressionProperty(location) : null,
    ]);
    const force = subject.nocow ? compressForce(location) : null;
    const nocow = flags === null ? null : flags.includes('C');
    const compression: Compression[] = [];
    // chattr +c and the compression property are one inode flag; the property names the algorithm.
    if (flags?.includes('c')) compression.push({ kind: 'flag', algorithm: property });
    if (force !== null) compression.push({ kind: 'mount', option: force });
    facts.compression = compression;
    facts.subvolume = subvolume;
    facts.mountPoint = mountPoint;
    facts.nocow = nocow;
    facts.frozen = frozenBy(flags ?? undefined) ?? null;
    facts.empty = empty;
    facts.cowFiles = files;
    facts.nocowFiles = files === null ? null : counted.nocow;
  }
  const p = await profile;
  facts.dataProfile = p.profile;
  facts.btrfsProgs = p.progs;
  if (p.problem) problems.push(p.problem);
  return facts;
}
