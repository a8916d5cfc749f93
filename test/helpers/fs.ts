import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// Runs shell scripts against real loop-mounted file systems, each mounted only
// inside a private mount namespace so nothing is visible to (or left on) the
// host. Missing tools or privileges make runInFs reject: those tests must fail,
// never skip (test/deps.sh says what is missing).

export type FsType = 'btrfs' | 'ext4' | 'xfs';

export interface RunInFsOptions {
  fs: FsType;
  /** bash, run with -euo pipefail; $MNT is the mounted file system, cwd is inherited. */
  script: string;
  env?: Record<string, string>;
  /** btrfs only: data and metadata raid1 over two loop devices. */
  raid1?: boolean;
  sizeMiB?: number;
  mkfsArgs?: string[];
  /** A second file system of this type (default size, default options), mounted at $MNT2. */
  second?: FsType;
}

/** As execa gives them: output without its final newline. */
export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

// The smallest sizes mkfs takes with default options are 114 MiB (btrfs-progs 6.2)
// and 300 MiB (xfsprogs >= 5.19). Images are sparse: only what mkfs writes costs.
const DEFAULT_MIB: Record<FsType, number> = { btrfs: 256, ext4: 64, xfs: 300 };
// -f/-F: never stop to ask; the image is new and ours.
const MKFS: Record<FsType, string[]> = {
  btrfs: ['mkfs.btrfs', '-q', '-f'],
  ext4: ['mkfs.ext4', '-q', '-F'],
  xfs: ['mkfs.xfs', '-q', '-f'],
};
const OBSERVE_SH = join(import.meta.dirname, 'observe.sh');
const LOOP_RELEASE_MS = 5000;

const sq = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

function prelude(o: RunInFsOptions): string {
  const mkfs = [...MKFS[o.fs], ...(o.raid1 ? ['-d', 'raid1', '-m', 'raid1'] : []), ...(o.mkfsArgs ?? [])].map(sq).join(' ');
  const setup = o.raid1
    ? [
        // Loop devices are global, not per namespace. Detaching a mounted one only
        // marks it to go away when the mount does, i.e. when this namespace ends;
        // the trap covers a failure before that point.
        'L1= L2=',
        `trap '[ -z "$L1" ] || losetup -d "$L1"; [ -z "$L2" ] || losetup -d "$L2"' EXIT`,
        'L1=$(losetup --find --show "$RUNINFS_DIR/a.img")',
        'L2=$(losetup --find --show "$RUNINFS_DIR/b.img")',
        `${mkfs} "$L1" "$L2"`,
        'mount -t btrfs -o device="$L2" "$L1" "$MNT"',
        'losetup -d "$L1" "$L2"',
        'trap - EXIT',
        'unset L1 L2',
      ]
    : [
        `${mkfs} "$RUNINFS_DIR/a.img"`,
        // mount -o loop sets autoclear: the device goes with the namespace's mount.
        `mount -t ${o.fs} -o loop "$RUNINFS_DIR/a.img" "$MNT"`,
      ];
  const second = o.second
    ? [`${MKFS[o.second].map(sq).join(' ')} "$RUNINFS_DIR/second.img"`, `mount -t ${o.second} -o loop "$RUNINFS_DIR/second.img" "$MNT2"`]
    : [];
  return [
    'export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"',
    // Setup output goes to a log, so stdout and stderr are the script's alone.
    '{',
    `. ${sq(OBSERVE_SH)}`,
    ...setup,
    ...second,
    '} >"$RUNINFS_DIR/setup.log" 2>&1',
    ': >"$RUNINFS_DIR/ready"',
    // Sourced from a file so error messages carry the script's own line numbers.
    '. "$RUNINFS_DIR/script.sh"',
  ].join('\n');
}

/** Loop devices whose backing file is under dir, from sysfs (no process to start). */
async function loopsBackedBy(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const dev of await readdir('/sys/block')) {
    if (!dev.startsWith('loop')) continue;
    const backing = await readFile(`/sys/block/${dev}/loop/backing_file`, 'utf8').catch(() => '');
    if (backing.startsWith(`${dir}/`)) found.push(`/dev/${dev}`);
  }
  return found;
}

// The namespace (and with it the mount and the autoclear loop devices) is torn
// down as the script's last process exits; wait for that rather than assume it.
async function ensureReleased(dir: string): Promise<void> {
  const deadline = Date.now() + LOOP_RELEASE_MS;
  let loops = await loopsBackedBy(dir);
  while (loops.length > 0 && Date.now() < deadline) {
    await sleep(50);
    loops = await loopsBackedBy(dir);
  }
  if (loops.length === 0) return;
  await execa('losetup', ['-d', ...loops], { reject: false });
  throw new Error(
    `runInFs: ${loops.join(', ')} still attached ${LOOP_RELEASE_MS} ms after the script ended, now detached ` +
      '(a harness bug, or a background process of the script keeping the file system mounted)',
  );
}

export async function runInFs(opts: RunInFsOptions): Promise<RunResult> {
  if (opts.raid1 && opts.fs !== 'btrfs') throw new Error(`runInFs: raid1 needs btrfs, not ${opts.fs}`);
  const dir = await mkdtemp(join(tmpdir(), 'nocow-runinfs-'));
  try {
    const bytes = (opts.sizeMiB ?? DEFAULT_MIB[opts.fs]) * 1024 * 1024;
    for (const image of opts.raid1 ? ['a.img', 'b.img'] : ['a.img']) {
      await writeFile(join(dir, image), '');
      await truncate(join(dir, image), bytes);
    }
    if (opts.second) {
      await writeFile(join(dir, 'second.img'), '');
      await truncate(join(dir, 'second.img'), DEFAULT_MIB[opts.second] * 1024 * 1024);
      await mkdir(join(dir, 'mnt2'));
    }
    await mkdir(join(dir, 'mnt'));
    await writeFile(join(dir, 'script.sh'), opts.script);
    const result = await execa(
      'unshare',
      ['--mount', '--propagation', 'private', 'bash', '-euo', 'pipefail', '-c', prelude(opts)],
      { env: { ...opts.env, MNT: join(dir, 'mnt'), ...(opts.second ? { MNT2: join(dir, 'mnt2') } : {}), RUNINFS_DIR: dir }, stdin: 'ignore', reject: false },
    );
    const ready = await readFile(join(dir, 'ready')).then(() => true, () => false);
    if (!ready) {
      const log = await readFile(join(dir, 'setup.log'), 'utf8').catch(() => '');
      throw new Error(
        `runInFs(${opts.fs}${opts.raid1 ? ', raid1' : ''}): could not set up the file system ` +
          `(run \`sh test/deps.sh\` as root to see what is missing)\n${result.message}\n${log}`.trimEnd(),
      );
    }
    const signal = result.signal ? constants.signals[result.signal] : undefined;
    return {
      stdout: result.stdout,
      stderr: result.stderr,
      exitCode: result.exitCode ?? (signal === undefined ? 1 : 128 + signal),
    };
  } finally {
    try {
      await ensureReleased(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

// ---- Parsers for the lines observe.sh prints ----

export type Kind = 'missing' | 'dir' | 'file' | 'symlink' | 'other';

/** null where the line has "-" (does not apply, e.g. everything but kind when missing). */
export interface Observation {
  path: string;
  kind: Kind;
  inode: number | null;
  /** Permission bits with setuid/setgid/sticky, e.g. 0o2775. */
  mode: number | null;
  uid: number | null;
  gid: number | null;
  /** "seconds.nanoseconds", kept as text so comparisons are exact. */
  mtime: string | null;
  ctime: string | null;
  /** The flags field of `lsattr -d`, e.g. "---------------C------". */
  attrs: string | null;
  nocow: boolean;
  /** null off btrfs. */
  subvol: boolean | null;
  /** As `stat -f -c %T` prints it: "btrfs", "xfs", "ext2/ext3" (ext4 too). */
  fstype: string | null;
}

export interface TreeEntry extends Observation {
  /** sha256 of a file, target of a symlink, null otherwise. */
  content: string | null;
  /** name -> value as getfattr -e hex prints it ("0x..."). */
  xattrs: Record<string, string>;
}

const KINDS: readonly string[] = ['missing', 'dir', 'file', 'symlink', 'other'];

const unescape = (s: string): string => s.replace(/\\(.)/g, (_, c: string) => (c === 't' ? '\t' : c === 'n' ? '\n' : c));

/** The lines after `section NAME` up to the next section. */
export function section(stdout: string, name: string): string {
  const out: string[] = [];
  let inside = false;
  let found = false;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('SECTION\t')) {
      inside = line.slice('SECTION\t'.length) === name;
      found ||= inside;
    } else if (inside) out.push(line);
  }
  if (!found) throw new Error(`no "section ${name}" in the output:\n${stdout}`);
  return out.join('\n');
}

function records(stdout: string, tag: string, width: number): string[][] {
  const rows: string[][] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith(`${tag}\t`)) continue;
    const cols = line.split('\t').slice(1);
    if (cols.length !== width) throw new Error(`malformed ${tag} line (${cols.length} fields, not ${width}): ${line}`);
    rows.push(cols);
  }
  return rows;
}

function keyed<T>(rows: [string, T][], what: string): Map<string, T> {
  const map = new Map<string, T>();
  for (const [key, value] of rows) {
    if (map.has(key)) throw new Error(`${key} ${what} twice: put each snapshot in its own section`);
    map.set(key, value);
  }
  return map;
}

function observation(cols: string[]): Observation {
  const [path, kind, inode, mode, uid, gid, mtime, ctime, attrs, subvol, fstype] = cols.map((c) => (c === '-' ? null : c));
  if (!path || !kind || !KINDS.includes(kind)) throw new Error(`malformed observation: ${cols.join('\t')}`);
  const num = (v: string | null | undefined): number | null => (v == null ? null : Number(v));
  return {
    path: unescape(path),
    kind: kind as Kind,
    inode: num(inode),
    mode: mode == null ? null : parseInt(mode, 8),
    uid: num(uid),
    gid: num(gid),
    mtime: mtime ?? null,
    ctime: ctime ?? null,
    attrs: attrs ?? null,
    nocow: attrs?.includes('C') ?? false,
    subvol: subvol == null ? null : subvol === 'yes',
    fstype: fstype ?? null,
  };
}

/** OBS lines, by path. */
export function parseObservations(stdout: string): Map<string, Observation> {
  return keyed(
    records(stdout, 'OBS', 11).map((cols) => {
      const o = observation(cols);
      return [o.path, o];
    }),
    'observed',
  );
}

/** XATTR lines: path -> name -> value ("0x..."). A path without xattrs is absent. */
export function parseXattrs(stdout: string): Map<string, Record<string, string>> {
  const map = new Map<string, Record<string, string>>();
  for (const [path, name, value] of records(stdout, 'XATTR', 3)) {
    const xattrs = map.get(unescape(path!)) ?? {};
    if (name! in xattrs) throw new Error(`${path} ${name} observed twice: put each snapshot in its own section`);
    xattrs[name!] = value!;
    map.set(unescape(path!), xattrs);
  }
  return map;
}

/** TREE lines, by path relative to the observed directory ("." for itself). */
export function parseTree(stdout: string): Map<string, TreeEntry> {
  return keyed(
    records(stdout, 'TREE', 13).map((cols) => {
      const o = observation(cols.slice(0, 11));
      const content = cols[11] === '-' ? null : unescape(cols[11]!);
      const xattrs: Record<string, string> = {};
      if (cols[12] !== '-') {
        for (const pair of cols[12]!.split(',')) {
          const eq = pair.lastIndexOf('=');
          xattrs[pair.slice(0, eq)] = pair.slice(eq + 1);
        }
      }
      return [o.path, { ...o, content, xattrs }];
    }),
    'in the tree',
  );
}

/** An xattr value as text ("0x68690a" -> "hi\n"). */
export function xattrText(hex: string): string {
  return Buffer.from(hex.replace(/^0x/, ''), 'hex').toString('utf8');
}
