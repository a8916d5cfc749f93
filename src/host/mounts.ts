// The mount table as the kernel states it (/proc/self/mountinfo, proc(5)), read once here for every
// engine: which mounts lie inside a directory (bind mounts of the same file system included, which
// device numbers do not show), and under which other paths the directory itself is visible or
// mounted again. Paths are compared as bytes: a mount point need not be UTF-8.
import { readFileSync } from 'node:fs';

export interface Mount {
  id: number;
  parent: number;
  /** "MAJOR:MINOR" of the file system (for Btrfs: the file system's, whichever subvolume is mounted). */
  device: string;
  /** The directory of the file system that is mounted (for a bind mount: its source), as bytes. */
  root: Buffer;
  /** Where it is mounted, as bytes. */
  point: Buffer;
  fstype: string;
  source: string;
  /** Per-mount options and the super block's options, as mountinfo lists them. */
  options: string;
  superOptions: string;
}

/** mountinfo's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) undone, as bytes. */
export function decodeField(field: string): Buffer {
  const latin = field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return Buffer.from(latin, 'latin1');
}

/** The lines of a mountinfo text (proc(5): ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS…] - FSTYPE SOURCE SUPER). */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (fields.length < 10 || dash < 0) continue;
    mounts.push({
      id: Number(fields[0]),
      parent: Number(fields[1]),
      device: fields[2]!,
      root: decodeField(fields[3]!),
      point: decodeField(fields[4]!),
      options: fields[5]!,
      fstype: fields[dash + 1] ?? '',
      source: decodeField(fields[dash + 2] ?? '').toString('utf8'),
      superOptions: fields[dash + 3] ?? '',
    });
  }
  return mounts;
}

/** This process's mount table, in mount order (a later mount on the same point hides an earlier one). */
export function mountTable(): Mount[] {
  try {
    return parseMountinfo(readFileSync('/proc/self/mountinfo', 'latin1'));
  } catch {
    return [];
  }
}

const bytes = (path: string | Buffer): Buffer => (typeof path === 'string' ? Buffer.from(path) : path);
const SLASH = 0x2f;

/** Is A the path B or below it (byte-wise, by whole segments)? */
export function within(a: Buffer, b: Buffer): boolean {
  if (b.length === 1 && b[0] === SLASH) return a[0] === SLASH;
  return a.length >= b.length && a.subarray(0, b.length).equals(b) && (a.length === b.length || a[b.length] === SLASH);
}

const below = (a: Buffer, b: Buffer) => !a.equals(b) && within(a, b);

/** PATH's part below PREFIX ("" when equal), PREFIX being an ancestor-or-self of PATH. */
function rest(path: Buffer, prefix: Buffer): Buffer {
  if (prefix.length === 1 && prefix[0] === SLASH) return path.length === 1 ? Buffer.alloc(0) : path;
  return path.subarray(prefix.length);
}

function join(base: Buffer, tail: Buffer): Buffer {
  if (tail.length === 0) return base;
  if (base.length === 1 && base[0] === SLASH) return tail;
  return Buffer.concat([base, tail]);
}

/** A mount's options, per-mount and the super block's (Btrfs lists compress=… among the latter), as /proc/self/mounts shows them together. */
export const mountOptions = (m: Mount): string[] => [...m.options.split(','), ...m.superOptions.split(',')];

/** A mount's point, for a line: UTF-8 where it is, else as Node reads the bytes. */
export const shownPoint = (m: Mount): string => m.point.toString('utf8');

/**
 * The mount PATH (absolute, symlinks resolved) lies on: the last-mounted of the mounts whose point
 * is PATH or its nearest ancestor.
 */
export function mountOf(path: string | Buffer, mounts: Mount[] = mountTable()): Mount | undefined {
  const p = bytes(path);
  let found: Mount | undefined;
  for (const m of mounts) {
    if (!within(p, m.point)) continue;
    if (found === undefined || m.point.length >= found.point.length) found = m;
  }
  return found;
}

/** Is something mounted on PATH itself (a file system, or a bind mount, even of its own directory)? */
export function isMountPoint(path: string | Buffer, mounts: Mount[] = mountTable()): boolean {
  const p = bytes(path);
  return mounts.some((m) => m.point.equals(p));
}

/**
 * The mounts whose point lies strictly inside PATH: boundaries no engine walks through, the same
 * file system's bind mounts included (their files are not PATH's, though st_dev says they could be).
 */
export function mountsInside(path: string | Buffer, mounts: Mount[] = mountTable()): Mount[] {
  const p = bytes(path);
  return mounts.filter((m) => below(m.point, p));
}

/**
 * The mounts inside PATH's directory seen through any mount of its file system: what a rename or
 * removal of the directory would meet, though a walk through PATH does not see them.
 */
export function mountsInsideAnywhere(path: string | Buffer, mounts: Mount[] = mountTable()): Mount[] {
  const found = new Set<Mount>();
  for (const alias of aliasesOf(path, mounts)) for (const m of mountsInside(alias, mounts)) found.add(m);
  return [...found];
}

/** Where PATH is in its file system: the mount, and PATH's directory in the file system's own terms. */
export function locate(path: string | Buffer, mounts: Mount[] = mountTable()): { mount: Mount; inFs: Buffer } | undefined {
  const p = bytes(path);
  const mount = mountOf(p, mounts);
  if (mount === undefined) return undefined;
  return { mount, inFs: join(mount.root, rest(p, mount.point)) };
}

/**
 * Every path under which PATH's directory is visible through a mount of its file system, PATH
 * included (the same Btrfs mounted at /var and at /t/top: /t/top/lib is also /var/lib).
 */
export function aliasesOf(path: string | Buffer, mounts: Mount[] = mountTable()): string[] {
  const here = locate(path, mounts);
  if (here === undefined) return [bytes(path).toString('utf8')];
  const out = new Set<string>([bytes(path).toString('utf8')]);
  for (const m of mounts) {
    if (m.device !== here.mount.device || !within(here.inFs, m.root)) continue;
    const alias = join(m.point, rest(here.inFs, m.root));
    // A mount hidden under a later one on the same point still names a path; a path is refused either way.
    out.add(alias.toString('utf8'));
  }
  return [...out];
}

/**
 * Mounts elsewhere whose source is PATH's directory or lies inside it (`mount --bind PATH /v`): they
 * pin the directory itself, so a swap by rename would leave them showing the old tree.
 */
export function mountsOfSource(path: string | Buffer, mounts: Mount[] = mountTable()): Mount[] {
  const p = bytes(path);
  const here = locate(p, mounts);
  if (here === undefined) return [];
  return mounts.filter((m) => m.device === here.mount.device && m !== here.mount && within(m.root, here.inFs) && !within(m.point, p));
}

/**
 * Why PATH (absolute, resolved) may not be a target because the same directory is a refused
 * one under another of its paths (one Btrfs at /var and at /t/top: /t/top/lib is /var/lib), in
 * the words of a refusal; undefined when no path of it is refused. REFUSED: src/facts.ts refusedTarget.
 */
export function refusedAlias(path: string, refused: (path: string) => string | undefined, mounts: Mount[] = mountTable()): string | undefined {
  const alias = aliasesOf(path, mounts).find((a) => a !== path && refused(a) !== undefined);
  return alias === undefined ? undefined : `it is also ${alias}: ${refused(alias)}`;
}
