// The tree below a directory as nocow convert reads it: every entry with its lstat, the inode
// flags of its files and directories (lsattr) and every xattr (getfattr), and the comparisons
// verification makes between the original tree and its copy. Names are walked as bytes: a name
// that is not UTF-8 cannot be named through Node's string paths, so it is reported, never skipped.
import { createHash } from 'node:crypto';
import { closeSync, constants, lstatSync, openSync, readdirSync, readlinkSync, readSync, rmdirSync, unlinkSync, type BigIntStats } from 'node:fs';
import { lsattr } from '../host/attrs.js';
import { argumentLists, run, type ToolRun } from '../host/run.js';

export type Kind = 'dir' | 'file' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

export interface Entry {
  /** Relative to the tree's root, "" for the root itself. */
  rel: string;
  kind: Kind;
  st: BigIntStats;
  /** A further name of an inode met before in walk order: that first name. */
  linkOf?: string;
}

export interface Tree {
  root: string;
  /** Pre-order (a directory before its entries), names sorted: the same order for a tree and its copy. */
  entries: Entry[];
  byRel: Map<string, Entry>;
  /** What stands in the way of copying it whole, one sentence each (names relative to the root). */
  problems: string[];
  /** Regular files (every name) and the bytes of their inodes (each once). */
  files: number;
  bytes: number;
  /** Bytes allocated on disk by those inodes (st_blocks × 512). */
  allocated: number;
}

export const at = (root: string, rel: string): string => (rel === '' ? root : `${root}/${rel}`);

/** A relative name as a reason shows it: "." for the root. */
export const shown = (rel: string): string => (rel === '' ? '.' : rel);

function kindOf(st: BigIntStats): Kind {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

/**
 * Every entry below ROOT, with what would keep it from being copied whole: a name that is not
 * UTF-8, a nested subvolume or mount point (another device), hard links to outside the tree.
 */
export function walk(root: string): Tree {
  const rootSt = lstatSync(root, { bigint: true });
  const entries: Entry[] = [{ rel: '', kind: 'dir', st: rootSt }];
  const problems: string[] = [];
  const visit = (rel: string) => {
    const names: string[] = [];
    for (const raw of readdirSync(at(root, rel), { encoding: 'buffer' })) {
      const name = raw.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(raw)) {
        problems.push(`${shown(rel)} holds a name that is not UTF-8 (${JSON.stringify(raw.toString('latin1'))}): rename it first`);
        continue;
      }
      names.push(name);
    }
    names.sort();
    for (const name of names) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(at(root, r), { bigint: true });
      const entry: Entry = { rel: r, kind: kindOf(st), st };
      entries.push(entry);
      if (entry.kind !== 'dir') continue;
      if (st.dev !== rootSt.dev) problems.push(`${r} is a nested subvolume or a mount point, which a copy cannot keep: move it out first`);
      else visit(r);
    }
  };
  visit('');
  const first = new Map<bigint, Entry[]>();
  let files = 0;
  let bytes = 0;
  let allocated = 0;
  for (const e of entries) {
    if (e.kind === 'file') files++;
    if (e.kind !== 'dir' && e.st.nlink > 1n) {
      const group = first.get(e.st.ino);
      if (group) {
        e.linkOf = group[0]!.rel;
        group.push(e);
        continue;
      }
      first.set(e.st.ino, [e]);
    }
    if (e.kind === 'file') {
      bytes += Number(e.st.size);
      allocated += Number(e.st.blocks) * 512;
    }
  }
  for (const group of first.values()) {
    const nlink = group[0]!.st.nlink;
    if (BigInt(group.length) < nlink) {
      problems.push(`${group[0]!.rel} has ${nlink} hard links, ${nlink - BigInt(group.length)} of them outside the directory, which a copy would split`);
    }
  }
  return { root, entries, byRel: new Map(entries.map((e) => [e.rel, e])), problems, files, bytes, allocated };
}

/** The newest mtime or ctime in the tree, in ns. */
export function lastChange(tree: Tree): bigint {
  let last = 0n;
  for (const { st } of tree.entries) {
    if (st.mtimeNs > last) last = st.mtimeNs;
    if (st.ctimeNs > last) last = st.ctimeNs;
  }
  return last;
}

/**
 * Why a program did not end well: "CMD was killed by SIGKILL" (killed, it has no exit status, and
 * whatever it said before is not why it ended), else "CMD failed: " and its first line of stderr,
 * or its exit status.
 */
export const failure = (command: string, r: ToolRun): string =>
  r.signal ? `${command} was killed by ${r.signal}` : `${command} failed: ${r.stderr.split('\n')[0] || r.spawnError?.message || `exit status ${r.exitCode}`}`;

/**
 * The inode flags (lsattr's first field, e.g. "---------------C------") of the tree's files and
 * directories, by relative name. lsattr prints "FLAGS NAME\n" in argument order; walking the
 * known names keeps names with spaces or line breaks whole.
 */
export async function flagsOf(tree: Tree): Promise<Map<string, string>> {
  const flags = new Map<string, string>();
  const rels = tree.entries.filter((e) => e.kind === 'dir' || e.kind === 'file').map((e) => e.rel);
  for (const batch of argumentLists(rels)) {
    const paths = batch.map((rel) => at(tree.root, rel));
    const { flags: found, run: r } = await lsattr(paths, { own: true });
    if (r.missing) throw new Error('lsattr (e2fsprogs) is not installed');
    batch.forEach((rel, i) => {
      const f = found.get(paths[i]!);
      if (f !== undefined) flags.set(rel, f);
    });
    const missing = batch.find((rel) => !flags.has(rel));
    if (missing !== undefined) throw new Error(`cannot read the attributes of ${shown(missing)}: ${failure('lsattr', r)}`);
  }
  return flags;
}

/** getfattr's escapes (\ooo octal, for bytes and for "=" in names) undone, as UTF-8. */
function unescapeOctal(text: string): string {
  if (!text.includes('\\')) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const m = /^\\([0-7]{3})/.exec(text.slice(i, i + 4));
    if (m) {
      bytes.push(parseInt(m[1]!, 8));
      i += 3;
    } else bytes.push(...Buffer.from(text[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

export type Xattrs = Map<string, Map<string, string>>;

/**
 * Every xattr of every entry (ACLs, SELinux labels, capabilities, user.*, trusted.*), values in
 * hex, by relative name; one getfattr for the whole tree, symlinks' own included.
 */
export async function xattrsOf(root: string): Promise<Xattrs> {
  const r = await run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root });
  if (r.missing) throw new Error('getfattr (attr) is not installed');
  if (r.exitCode !== 0) throw new Error(`cannot read the xattrs below ${root}: ${failure('getfattr', r)}`);
  const all: Xattrs = new Map();
  let current: Map<string, string> | undefined;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      const name = unescapeOctal(line.slice('# file: '.length));
      const rel = name === '.' ? '' : name.startsWith('./') ? name.slice(2) : name;
      current = new Map();
      all.set(rel, current);
    } else if (line !== '' && current) {
      const eq = line.indexOf('=');
      const name = unescapeOctal(eq < 0 ? line : line.slice(0, eq));
      current.set(name, eq < 0 ? '' : line.slice(eq + 1));
    }
  }
  return all;
}

/** How two entries' xattrs differ ("user.origin differs"), ignoring the names in IGNORE; undefined when equal. */
export function xattrDifference(a: Map<string, string> | undefined, b: Map<string, string> | undefined, ignore: readonly string[] = []): string | undefined {
  const names = new Set([...(a?.keys() ?? []), ...(b?.keys() ?? [])]);
  for (const name of [...names].sort()) {
    if (ignore.includes(name)) continue;
    const [x, y] = [a?.get(name), b?.get(name)];
    if (x === y) continue;
    return x === undefined ? `the xattr ${name} is not in the original` : y === undefined ? `the xattr ${name} is missing` : `the xattr ${name} differs`;
  }
  return undefined;
}

const CHUNK = 1024 * 1024;

/**
 * Opens a file to read without following a symlink and without touching its atime (root may;
 * others fall back); FLAGS added (O_DIRECT).
 */
export function openToRead(path: string, flags = 0): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NOATIME | flags);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
    return openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | flags);
  }
}

/** SHA-256 of a file's bytes, read in 1 MiB chunks; `progress` gets each chunk's length. */
export async function sha256File(path: string, progress: (bytes: number) => void = () => {}, tick?: () => Promise<void>): Promise<string> {
  const fd = openToRead(path);
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(CHUNK);
    for (;;) {
      const n = readSync(fd, buffer, 0, CHUNK, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
      progress(n);
      if (tick) await tick();
    }
    return hash.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/**
 * How an entry differs from the way it was (same name, same inode, same size, links, mode,
 * owner, mtime and ctime: a write or a change of metadata moves ctime); undefined when it does not.
 */
export function changeOf(root: string, e: Entry, opts: { ignoreCtime?: boolean } = {}): string | undefined {
  const now = lstatSync(at(root, e.rel), { bigint: true, throwIfNoEntry: false });
  if (now === undefined) return `${shown(e.rel)} was removed`;
  const then = e.st;
  if (now.dev !== then.dev || now.ino !== then.ino) return `${shown(e.rel)} was replaced`;
  if (now.size !== then.size || now.mtimeNs !== then.mtimeNs) return `${shown(e.rel)} was written to`;
  if (now.mode !== then.mode || now.uid !== then.uid || now.gid !== then.gid || now.nlink !== then.nlink || (!opts.ignoreCtime && now.ctimeNs !== then.ctimeNs)) {
    return `${shown(e.rel)} changed`;
  }
  return undefined;
}

/** The first entry of TREE that changed since it was walked, in words; undefined when none did. */
export function treeChange(tree: Tree, opts: { ignoreRootCtime?: boolean } = {}): string | undefined {
  for (const e of tree.entries) {
    const change = changeOf(tree.root, e, { ignoreCtime: opts.ignoreRootCtime === true && e.rel === '' });
    if (change !== undefined) return change;
  }
  return undefined;
}

/** What a copy must show of an entry: type and permission bits, owner, and for all but directories size and mtime. */
export function metadataDifference(original: Entry, copy: Entry, opts: { times: boolean; links: boolean }): string | undefined {
  const [a, b] = [original.st, copy.st];
  if (original.kind !== copy.kind) return `is a ${copy.kind}, not a ${original.kind}`;
  if (a.mode !== b.mode) return `mode ${(Number(b.mode) & 0o7777).toString(8)}, not ${(Number(a.mode) & 0o7777).toString(8)}`;
  if (a.uid !== b.uid || a.gid !== b.gid) return `owner ${b.uid}:${b.gid}, not ${a.uid}:${a.gid}`;
  if (original.kind !== 'dir' && a.size !== b.size) return `size ${b.size}, not ${a.size}`;
  if ((original.kind === 'char' || original.kind === 'block') && a.rdev !== b.rdev) return 'another device number';
  if (opts.times && a.mtimeNs !== b.mtimeNs) return 'another mtime';
  if (opts.links && original.kind !== 'dir' && (a.nlink !== b.nlink || original.linkOf !== copy.linkOf)) return 'other hard links';
  return undefined;
}

/** The target of a symlink, as bytes. */
export const linkTarget = (root: string, rel: string): Buffer => readlinkSync(at(root, rel), { encoding: 'buffer' });

/**
 * Removes the tree's entries, by the names walked, deepest first: files by unlink, directories by
 * rmdir, so an entry added since the walk makes its directory's rmdir fail and is kept. Each
 * directory is entered (chdir) by its one name from its parent, and must be the directory walked
 * (device and inode) before anything in it is unlinked: a mount that appeared on it or above it
 * since the walk is never gone through (unlink and rmdir refuse a mount point itself).
 * `removed` counts what is gone (for a progress bar).
 */
export function removeTree(tree: Tree, removed: () => void = () => {}): void {
  const children = new Map<string, Entry[]>();
  for (const e of tree.entries) {
    if (e.rel === '') continue;
    const parent = e.rel.includes('/') ? e.rel.slice(0, e.rel.lastIndexOf('/')) : '';
    const siblings = children.get(parent);
    if (siblings) siblings.push(e);
    else children.set(parent, [e]);
  }
  const enter = (path: string, dir: Entry) => {
    process.chdir(path);
    const here = lstatSync('.', { bigint: true });
    if (here.dev !== dir.st.dev || here.ino !== dir.st.ino) throw new Error(`${shown(dir.rel)} is not the directory walked (a mount on it, or above it?): nothing in it removed`);
  };
  const empty = (dir: Entry) => {
    for (const e of [...(children.get(dir.rel) ?? [])].reverse()) {
      const name = e.rel.slice(e.rel.lastIndexOf('/') + 1);
      if (e.kind === 'dir') {
        enter(name, e);
        empty(e);
        enter('..', dir);
        rmdirSync(name);
      } else unlinkSync(name);
      removed();
    }
  };
  let home = '/';
  try {
    home = process.cwd();
  } catch {
    // Our working directory was removed: / it is.
  }
  try {
    enter(tree.root, tree.entries[0]!);
    empty(tree.entries[0]!);
  } finally {
    try {
      process.chdir(home);
    } catch {
      process.chdir('/');
    }
  }
  rmdirSync(tree.root);
  removed();
}
