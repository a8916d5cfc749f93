// The command line is read as strictly as GNU getopt reads it (issue 14, item 1), and both ways
// src/main.ts reads it (the fast path, and yargs) agree: `--` ends the options and what follows is
// an operand, a name beginning with "-" included; a flag given a value (`--dry-run=yes`) is refused;
// a command given operands acts on them, never on the declared targets instead; mistakes are told
// in one line of the project's words. Each argv runs on real Btrfs, through the built bin and, for
// the commands the bin runs without yargs (FAST_PATH), through yargs alone too
// (test/helpers/yargs-path.mjs), on a fresh copy of the same two directories:
// the declared target D (the libvirt profile's /var/lib/libvirt/images, which a bind mount puts on
// the test's file system inside its mount namespace, so no run can reach the host's) and the
// directory named on the command line, P (srv/-cow, a name beginning with "-"). The whole file
// system is observed before and after each run (inodes, lsattr flags, sha256 of every file,
// subvolumes as `btrfs subvolume show` tells them, extent counts): a dry run and a refused line
// change nothing; `-- P` acts on P and leaves D as it was.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { FAST_PATH } from '../src/main.js';
import { builtCli } from './helpers/cli.js';
import { runInFs, section } from './helpers/fs.js';

const ENTRIES = { bin: builtCli(), yargs: join(import.meta.dirname, 'helpers', 'yargs-path.mjs') } as const;
type Entry = keyof typeof ENTRIES;

/** The ways main() may run a command: the bin's, and yargs alone where the bin does without it. */
const entriesOf = (argv: string[]): Entry[] => (FAST_PATH.has(argv[0]!) ? ['bin', 'yargs'] : ['bin']);

// Each run starts node (twice a second of CPU with its snapshots): about two minutes on an idle
// 2-core machine, nine when other test runs keep it six times over busy.
t.setTimeout(30 * 60 * 1000);

const D = 'varlib/libvirt/images';
const P = 'srv/-cow';

/** What the file system holds after a run, by path relative to it: one line of facts per entry. */
type Snapshot = Map<string, string>;

interface Ran {
  rc: number;
  out: string;
  err: string;
  before: Snapshot;
  after: Snapshot;
  /** The mount point, as the paths the command printed start with it. */
  mnt: string;
}

interface Case {
  /** Run with the current directory $MNT/srv: P is `-cow` there, or `./-cow`; the declaration ../d.yaml. */
  argv: string[];
  rc: number;
  /** stderr, exactly (a refused line), or a pattern; not checked when absent. */
  err?: string | RegExp;
  /** What must have changed: nothing (the default), or a check of its own. */
  check?: (t: Test, r: Ran) => void;
}

const sq = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/** The entries under PREFIX (a directory of the snapshot), for comparing one part of the file system. */
const under = (snap: Snapshot, prefix: string): [string, string][] => [...snap].filter(([path]) => path === prefix || path.startsWith(`${prefix}/`));

function unchanged(t: Test, r: Ran, what = 'nothing changed on disk'): void {
  t.same([...r.after], [...r.before], what);
}

function dUnchanged(t: Test, r: Ran): void {
  t.same(under(r.after, D), under(r.before, D), 'the declared target D is as it was');
}

/** A dry run or a report about P: nothing changed, and P named in the output, D not. */
function reportsP(t: Test, r: Ran): void {
  unchanged(t, r);
  t.ok(r.out.includes(`${r.mnt}/srv/-cow`), `the output names P:\n${r.out}${r.err}`);
  t.notOk(r.out.includes('/var/lib/libvirt/images'), 'and not the declared target');
}

const BOOL = (option: string) => `nocow: error: option '${option}' doesn't allow an argument: give ${option} alone, or leave it out\n`;
const NO = (flag: string) => `nocow: error: unknown option '--no-${flag}': a flag is off unless given, so to leave --${flag} off, leave it out\n`;

const SETUP = String.raw`
set +e  # each run's exit status is recorded, not fatal
cd "$MNT"
mkdir -p varlib/libvirt srv
# The libvirt profile's directory, /var/lib/libvirt/images, is on this file system for this namespace alone.
mount --bind "$MNT/varlib" /var/lib
printf 'targets:\n  - name: images\n    path: /var/lib/libvirt/images\n    defrag: "on"\n' >"$MNT/d.yaml"
fill() {  # DIR: a plain directory without +C holding a copy-on-write image of $MIB MiB (fragmented when $FRAG is set) and a small file
  mkdir "$1"; printf 'notes\n' >"$1/notes.txt"
  head -c "$MIB"M /dev/urandom >"$1/disk.img"
  [ -z "$FRAG" ] || { sync -f "$1/disk.img"; fio --name=frag --filename="$1/disk.img" --rw=randwrite --bs=4k --size=4M --io_size=2M --direct=1 \
    --ioengine=psync --randrepeat=1 --randseed=7 --norandommap --output=/dev/null; }
}
gone() {  # PATH: removed with what a conversion leaves beside it, subvolume or not
  local x
  for x in "$1" "$1.nocow-new" "$1.nocow-old"; do
    [ -e "$x" ] || continue
    if [ "$(stat -c %i "$x")" = 256 ]; then btrfs subvolume delete "$x" >/dev/null; else rm -rf "$x"; fi
  done
}
reset() { gone ${D}; gone ${P}; rm -rf out; fill ${D}; fill ${P}; sync -f "$MNT"; }
# The state of the whole file system in a few processes (observe_tree spawns six per entry, which made
# the snapshots most of this test's time): per entry kind, inode, mode, owner, times (find), its lsattr
# flags, the sha256 of a file, a subvolume as btrfs subvolume show tells it; xattrs; each image's extents.
snap() (
  cd "$MNT" || exit 1
  find . -printf 'ENT\t%P\t%y inode %i mode %m %U:%G mtime %T@ ctime %C@\n'
  find . \( -type f -o -type d \) -exec lsattr -d {} + | sed -E 's|^(\S+) \.(/(.*))?$|ATTR\t\3\t\1|'
  find . -type f -exec sha256sum {} + | sed -E 's|^(\S+)  \./(.*)$|SUM\t\2\t\1|'
  find . -type d -inum 256 -print | while IFS= read -r d; do
    if btrfs subvolume show "$d" >/dev/null 2>&1; then printf 'SUBVOL\t%s\n' "$d" | sed -E 's|\t\.(/)?|\t|'; fi
  done
  getfattr -R -h -d -m - -e hex . 2>/dev/null | sed -E -n 's|^# file: \.(/)?(.*)$|XFILE\t\2|p; s|^([^#].*=.*)$|XATTR\t\1|p'
  find . -type f -name '*.img' -exec filefrag {} + | sed -E 's|^\./(.*): ([0-9]+) extents? found$|EXT\t\1\t\2|'
)
echo "MNT $MNT"
reset; snap >"$RUNINFS_DIR/before"
`;

/** The lines snap() printed, by path ("" for the top): kind, inode, mode, owner, times, flags, sha256, subvolume, xattrs, extents. */
function snapshotOf(text: string): Snapshot {
  const facts = new Map<string, string[]>();
  const add = (path: string, fact: string) => facts.get(path)?.push(fact) ?? void facts.set(path, [fact]);
  let xfile = '';
  for (const line of text.split('\n')) {
    const [tag, path = '', value = ''] = line.split('\t');
    if (tag === 'ENT') add(path, value);
    else if (tag === 'ATTR') add(path, `attrs ${value}`);
    else if (tag === 'SUM') add(path, `sha256 ${value}`);
    else if (tag === 'SUBVOL') add(path, 'subvolume');
    else if (tag === 'XFILE') xfile = path;
    else if (tag === 'XATTR') add(xfile, `xattr ${path}`);
    else if (tag === 'EXT') add(path, `extents ${value}`);
  }
  return new Map([...facts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([path, list]) => [path, list.join(' ')]));
}

/** Every case of one command, through both entries, each on a fresh D and P of one Btrfs. */
async function runCases(t: Test, cases: Case[], env: Record<string, string> = {}): Promise<void> {
  const runs = cases.flatMap((c, i) =>
    entriesOf(c.argv).map(
      (entry) => String.raw`
section ${sq(`${i} ${entry} before`)}; cat "$RUNINFS_DIR/before"
rc=0; (cd srv && exec node ${sq(ENTRIES[entry])} ${c.argv.map(sq).join(' ')}) >"$RUNINFS_DIR/out" 2>"$RUNINFS_DIR/err" || rc=$?
snap >"$RUNINFS_DIR/after"
section ${sq(`${i} ${entry} after`)}; cat "$RUNINFS_DIR/after"
# A fresh D and P only after a run that changed something: setting them up is most of the time.
cmp -s "$RUNINFS_DIR/before" "$RUNINFS_DIR/after" || { reset; snap >"$RUNINFS_DIR/before"; }
printf 'RESULT\t%s\t%s\t%s\t%s\n' ${sq(`${i} ${entry}`)} "$rc" "$(base64 -w0 <"$RUNINFS_DIR/out")" "$(base64 -w0 <"$RUNINFS_DIR/err")"
`,
    ),
  );
  const run = await runInFs({ fs: 'btrfs', env: { FRAG: '', MIB: '1', ...env }, script: SETUP + runs.join('') });
  t.equal(run.exitCode, 0, run.stderr);
  const mnt = /^MNT (.*)$/m.exec(run.stdout)?.[1] ?? '';
  const results = new Map<string, string[]>();
  for (const line of run.stdout.split('\n')) if (line.startsWith('RESULT\t')) results.set(line.split('\t')[1]!, line.split('\t').slice(2));
  cases.forEach((c, i) => {
    for (const entry of entriesOf(c.argv)) {
      const name = `nocow ${c.argv.join(' ')} (${entry === 'bin' ? 'the bin' : 'yargs alone'})`;
      t.test(name, async (t) => {
        const result = results.get(`${i} ${entry}`);
        if (!result) return void t.fail(`no result for ${name}: ${run.stderr}`);
        const [rc, out, err] = result;
        const r: Ran = {
          rc: Number(rc),
          out: Buffer.from(out!, 'base64').toString(),
          err: Buffer.from(err!, 'base64').toString(),
          before: snapshotOf(section(run.stdout, `${i} ${entry} before`)),
          after: snapshotOf(section(run.stdout, `${i} ${entry} after`)),
          mnt,
        };
        t.ok(r.before.has(`${P}/disk.img`) && r.before.has(`${D}/disk.img`), 'the snapshot sees D and P');
        t.equal(r.rc, c.rc, `exit status ${c.rc}; stderr: ${r.err}`);
        if (typeof c.err === 'string') t.equal(r.err, c.err, 'stderr');
        else if (c.err) t.match(r.err, c.err, 'stderr');
        (c.check ?? unchanged)(t, r);
      });
    }
  });
}

t.test('generate: -- ARTIFACT writes that artifact alone; a flag with a value, an unknown option or artifact write nothing', async (t) => {
  await runCases(t, [
    {
      argv: ['generate', '-o', '../out', '--', 'hook'],
      rc: 0,
      check: (t, r) => {
        const added = [...r.after.keys()].filter((p) => !r.before.has(p));
        t.same(added, ['out', 'out/nocow-apply.sh'], 'the hook alone is written');
        t.same(under(r.after, 'srv'), under(r.before, 'srv'));
        dUnchanged(t, r);
      },
    },
    { argv: ['generate', '-o', '../out', '--', '-o'], rc: 2, err: /^nocow: error: unknown artifact "-o"; expected one of: posttrans, kickstart, tmpfiles, user-tmpfiles, hook, macros, defrag-timer, user-defrag-timer, repart, mkfs, kiwi, boot-unit, alpm-hook, pacman-install, ansible\n$/ },
    { argv: ['generate', '--debug=yes', '-o', '../out'], rc: 2, err: BOOL('--debug') },
    { argv: ['generate', '--no-debug', '-o', '../out'], rc: 2, err: NO('debug') },
    { argv: ['generate', '-o', '../out', 'frob'], rc: 2, err: /^nocow: error: unknown artifact "frob"; expected one of: posttrans, kickstart, / },
    {
      argv: ['generate', '-o', '../out', '--frobnicate'],
      rc: 2,
      err: "nocow: error: unknown option '--frobnicate'; nocow generate takes: --profile (-p), --config (-c), --output (-o), --kickstart-log, --repart-definition, --debug, --help (-h)\n",
    },
    { argv: ['generate', '-p', 'libvirt', '-o'], rc: 2, err: "nocow: error: option '-o' needs a value (write -o DIR)\n" },
    { argv: ['generate', '-o', '--kickstart-log', '/x'], rc: 2, err: "nocow: error: option '-o' needs a value, and \"--kickstart-log\" is not taken as one (write --output=--kickstart-log if you mean it)\n" },
  ]);
});

t.test('status: -- P reports P, not the declared target; a flag with a value is refused; nothing changes', async (t) => {
  await runCases(t, [
    { argv: ['status', '--', '-cow'], rc: 1, check: reportsP },
    { argv: ['status', '-c', '../d.yaml', '--', '-cow'], rc: 1, check: reportsP },
    { argv: ['status', '--json=x', './-cow'], rc: 2, err: BOOL('--json') },
    { argv: ['status', '--json=false', './-cow'], rc: 2, err: BOOL('--json') },
    { argv: ['status', '--no-json'], rc: 2, err: NO('json') },
    { argv: ['status', '-p'], rc: 2, err: "nocow: error: option '-p' needs a value (write -p P)\n" },
    { argv: ['status', '--', ''], rc: 2, err: 'nocow: error: an empty PATH names nothing (write . for the current directory)\n' },
    { argv: ['status', '--home=', './-cow'], rc: 2, err: 'nocow: error: --home "": an empty path names nothing (write . for the current directory)\n' },
  ]);
});

t.test('apply: a flag with a value, --no-dry-run or an operand is refused and changes nothing; --dry-run changes nothing', async (t) => {
  await runCases(t, [
    { argv: ['apply', '--dry-run=yes'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['apply', '--dry-run=1'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['apply', '--dry-run=maybe'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['apply', '-n=yes'], rc: 2, err: BOOL('-n') },
    { argv: ['apply', '--json=x'], rc: 2, err: BOOL('--json') },
    { argv: ['apply', '--no-dry-run'], rc: 2, err: NO('dry-run') },
    { argv: ['apply', '--dryRun=yes'], rc: 2, err: /^nocow: error: unknown option '--dryRun'; nocow apply takes: /m },
    { argv: ['apply', '--', './-cow'], rc: 2, err: 'nocow: error: unexpected operand "./-cow": nocow apply takes none\n' },
    { argv: ['apply', '-n', '--', '-cow'], rc: 2, err: 'nocow: error: unexpected operand "-cow": nocow apply takes none\n' },
    { argv: ['apply', '--dry-run'], rc: 1, err: '', check: (t, r) => (unchanged(t, r), t.match(r.out, /: set-nocow: \+C on \S+ for new files; 2 existing files keep copy-on-write/)) },
  ]);
});

t.test('migrate: -- P rewrites P alone; -c with -- P, a flag with a value, --no-FLAG are refused and rewrite nothing', async (t) => {
  await runCases(t, [
    {
      argv: ['migrate', '--', '-cow'],
      rc: 0,
      check: (t, r) => {
        dUnchanged(t, r);
        for (const file of ['disk.img', 'notes.txt']) {
          const [before, after] = [r.before.get(`${P}/${file}`)!, r.after.get(`${P}/${file}`)!];
          t.match(after, /attrs \S*C/, `P/${file} has +C`);
          t.not(/inode (\d+)/.exec(after)?.[1], /inode (\d+)/.exec(before)?.[1], `P/${file} was rewritten (a new inode)`);
          t.equal(/sha256 (\S+)/.exec(after)?.[1], /sha256 (\S+)/.exec(before)?.[1], `P/${file}: the same bytes`);
        }
      },
    },
    { argv: ['migrate', '-n', '--', '-cow'], rc: 0, check: reportsP },
    {
      argv: ['migrate', '-c', '../d.yaml', '--', '-cow'],
      rc: 2,
      err: "nocow: error: give PATHs or --profile/--config, not both: without PATH, migrate takes the declared targets' directories\n",
    },
    { argv: ['migrate', '--dry-run=yes', './-cow'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['migrate', '--dry-run=1', './-cow'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['migrate', '-n=yes', './-cow'], rc: 2, err: BOOL('-n') },
    { argv: ['migrate', '--force=yes', '-n', './-cow'], rc: 2, err: BOOL('--force') },
    { argv: ['migrate', '--json=x', '-n', './-cow'], rc: 2, err: BOOL('--json') },
    { argv: ['migrate', '--no-dry-run', './-cow'], rc: 2, err: NO('dry-run') },
    { argv: ['migrate', '--dry-run', 'false'], rc: 2, err: /^nocow: error: .*false/ },
  ]);
});

t.test('revert: -- P takes P alone (nothing there has +C: nothing to revert); -c with -- P, a flag with a value, --no-FLAG, migrate\'s --force-nocow are refused and change nothing', async (t) => {
  await runCases(t, [
    { argv: ['revert', '--', '-cow'], rc: 0, err: '', check: (t, r) => (unchanged(t, r), t.equal(r.out, 'nocow: nothing to revert: no file has +C\n')) },
    {
      argv: ['revert', '-c', '../d.yaml', '--', '-cow'],
      rc: 2,
      err: "nocow: error: give PATHs or --profile/--config, not both: without PATH, revert takes the declared targets' directories\n",
    },
    { argv: ['revert', '--dry-run=yes', './-cow'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['revert', '--no-dry-run', './-cow'], rc: 2, err: NO('dry-run') },
    { argv: ['revert', '--force-nocow', './-cow'], rc: 2, err: /^nocow: error: unknown option '--force-nocow'; nocow revert takes: /m },
  ]);
});

t.test('convert: -- -NAME converts that directory alone; a flag with a value or no PATH is refused and converts nothing', async (t) => {
  await runCases(t, [
    {
      argv: ['convert', '--', '-cow'],
      rc: 0,
      check: (t, r) => {
        dUnchanged(t, r);
        t.match(r.after.get(P), /attrs \S*C\S* subvolume/, 'P is a subvolume with +C');
        t.notMatch(r.before.get(P), /subvolume/, 'it was a plain directory');
        for (const file of ['disk.img', 'notes.txt']) t.equal(/sha256 (\S+)/.exec(r.after.get(`${P}/${file}`)!)?.[1], /sha256 (\S+)/.exec(r.before.get(`${P}/${file}`)!)?.[1], `P/${file}: the same bytes`);
      },
    },
    { argv: ['convert', '-n', '--', '-cow'], rc: 0, check: reportsP },
    { argv: ['convert', '--dry-run=yes', './-cow'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['convert', '--dry-run=1', './-cow'], rc: 2, err: BOOL('--dry-run') },
    { argv: ['convert', '-n=yes', './-cow'], rc: 2, err: BOOL('-n') },
    { argv: ['convert', '--force-nocow=no', '-n', './-cow'], rc: 2, err: BOOL('--force-nocow') },
    { argv: ['convert', '-c', '../d.yaml', '--json=x', '-n', './-cow'], rc: 2, err: BOOL('--json') },
    { argv: ['convert'], rc: 2, err: 'nocow: error: no PATH given: nocow convert needs at least one\n' },
    { argv: ['convert', '--', ''], rc: 2, err: 'nocow: error: an empty PATH names nothing (write . for the current directory)\n' },
  ]);
});

t.test('defrag: -- P defragments P alone; -c with -- P, a flag with a value, a --min-extents that is no number are refused and change nothing', async (t) => {
  const extents = (snap: Snapshot, path: string) => Number(/extents (\d+)$/.exec(snap.get(path) ?? '')?.[1]);
  await runCases(
    t,
    [
      {
        argv: ['defrag', '--', '-cow'],
        rc: 0,
        check: (t, r) => {
          dUnchanged(t, r);
          const [before, after] = [extents(r.before, `${P}/disk.img`), extents(r.after, `${P}/disk.img`)];
          t.ok(before > 256, `P/disk.img fragmented before: ${before} extents`);
          t.ok(after * 4 < before, `and defragmented: ${after} extents`);
        },
      },
      { argv: ['defrag', '-n', '--', '-cow'], rc: 0, check: reportsP },
      {
        argv: ['defrag', '-c', '../d.yaml', '--', '-cow'],
        rc: 2,
        err: "nocow: error: give PATHs or --profile/--config, not both: without PATH, defrag takes the declared targets' directories\n",
      },
      { argv: ['defrag', '--dry-run=yes', './-cow'], rc: 2, err: BOOL('--dry-run') },
      { argv: ['defrag', '--force-shared=yes', './-cow'], rc: 2, err: BOOL('--force-shared') },
      { argv: ['defrag', '--ignore-missing=1', './-cow'], rc: 2, err: BOOL('--ignore-missing') },
      { argv: ['defrag', '--min-extents', 'abc', './-cow'], rc: 2, err: 'nocow: error: --min-extents abc: not a number; expected a whole number of extents, at least 1\n' },
      { argv: ['defrag', './-cow', '--if-redundant'], rc: 2, err: "nocow: error: option '--if-redundant' needs a value (write --if-redundant PATH)\n" },
      // An empty PATH would resolve to the working directory, here full of fragmented files.
      { argv: ['defrag', '--if-redundant='], rc: 2, err: 'nocow: error: --if-redundant "": an empty path names nothing (write . for the current directory)\n' },
      { argv: ['defrag', '--root=', './-cow'], rc: 2, err: 'nocow: error: --root "": an empty path names nothing (write . for the current directory)\n' },
    ],
    { FRAG: '1', MIB: '4' },
  );
});
