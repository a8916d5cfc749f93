// nocow status on real loop-mounted file systems: the built CLI runs inside each test's
// mount namespace, against what the shell library (through nocow apply) leaves on disk.
import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PRELUDE } from './helpers/artifacts.js';
import { runInFs, type FsType } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';
import { NOCOW_FN, readRan, runMain } from './helpers/capture.js';
import { statusTable } from '../src/inspect/format.js';
import { judge } from '../src/inspect/evaluate.js';
import type { Facts } from '../src/inspect/inspect.js';
import { undeclaredSubject } from '../src/inspect/subject.js';

const P = '/var/lib/libvirt/images';

const cli = builtCli();

interface Scenario {
  out: (label: string) => Promise<{ out: string; err: string; rc: number }>;
  json: (label: string) => Promise<StatusJson>;
  file: (name: string) => Promise<string>;
}

interface StatusJson {
  version: number;
  root: string;
  home: string | null;
  state: string;
  targets: Record<string, unknown>[];
}

async function scenario(fs: FsType, script: string, files: Record<string, string> = {}, env: Record<string, string> = {}): Promise<Scenario> {
  const a = await mkdtemp(join(tmpdir(), 'nocow-status-a-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) await writeFile(join(a, name), content);
  const run = await runInFs({ fs, env: { A: a, CLI: cli, ...env }, script: `${PRELUDE}${NOCOW_FN}${script}` });
  if (run.exitCode !== 0) throw new Error(`scenario script failed (${run.exitCode}): ${run.stderr}`);
  const file = (name: string) => readFile(join(a, name), 'utf8');
  const out = (label: string) => readRan(a, label);
  return { out, file, json: async (label) => JSON.parse(await file(`${label}.out`)) as StatusJson };
}

t.test('GIVEN a VM image fragmented by 200 random in-place writes in a plain CoW directory WHEN status --json runs THEN the file is listed with its size and filefrag’s extent count, and status exits 1', async (t) => {
  const s = await scenario(
    'btrfs',
    `mkdir -p "$R${P}"; cd "$R${P}"
    for i in $(seq 200); do dd if=/dev/urandom of=disk.img bs=4k count=1 seek=$((RANDOM % 2000)) conv=notrunc 2>/dev/null; sync; done
    echo data >small.txt; sync
    filefrag disk.img >"$A/filefrag"; stat -c %s disk.img >"$A/size"; cd /
    nocow json status --root "$R" --json
    nocow text status --root "$R"`,
  );
  const extents = Number(/^disk\.img: (\d+) extents found$/m.exec(await s.file('filefrag'))?.[1]);
  t.comment(`disk.img: ${extents} extents before`);
  t.ok(extents >= 50, `the image really is fragmented (${extents} extents)`);
  const { rc, err } = await s.out('json');
  t.equal(rc, 1);
  t.equal(err, '');
  const report = await s.json('json');
  t.match(report, { version: 1, state: 'deviates' });
  t.same(Object.keys(report), ['version', 'root', 'home', 'state', 'targets'], 'stable field order (README)');
  t.equal(report.targets.length, 1);
  t.same(Object.keys(report.targets[0]!), [
    'name', 'declared', 'source', 'scope', 'path', 'location', 'declaration', 'fstype', 'exists', 'directory', 'subvolume',
    'nocow', 'dataProfile', 'optOut', 'leftovers', 'cowFiles', 'expected', 'state', 'deviations', 'notes', 'errors',
  ]);
  t.match(report.targets[0], {
    name: 'libvirt',
    declared: true,
    path: P,
    fstype: 'btrfs',
    exists: true,
    directory: true,
    subvolume: false,
    nocow: false,
    dataProfile: 'single',
    optOut: null,
    expected: { subvolume: true, nocow: true },
    state: 'deviates',
  });
  t.same(report.targets[0]!.cowFiles, [
    { path: 'disk.img', size: Number(await s.file('size')), extents },
    { path: 'small.txt', size: 5, extents: 1 },
  ]);
  t.match(report.targets[0]!.deviations, [/^not a subvolume, and not empty/, /^no \+C on the directory/, /^2 files without \+C/]);
  const text = await s.out('text');
  t.equal(text.rc, 1);
  t.match(text.out, /^libvirt: \/var\/lib\/libvirt\/images: deviates$/m);
  t.match(text.out, new RegExp(`^  file without \\+C: disk\\.img \\(\\d+\\.\\d [KM]iB, ${extents} extents\\)$`, 'm'), 'the size as every line shows sizes');
  t.match(text.out, /^  file without \+C: small\.txt \(5 B, 1 extent\)$/m);
});

t.test('GIVEN an empty target directory WHEN nocow apply has run THEN status says as-declared and exits 0, where it said convertible and exited 1 before', async (t) => {
  const s = await scenario(
    'btrfs',
    `mkdir -p "$R${P}"
    nocow before status --root "$R" --json
    nocow apply apply --root "$R"
    nocow after status --root "$R" --json
    nocow text status --root "$R"`,
  );
  t.equal((await s.out('before')).rc, 1);
  t.match((await s.json('before')).targets[0]!.deviations, ['not a subvolume (empty: nocow apply converts it)', 'no +C on the directory (nocow apply sets it)']);
  t.equal((await s.out('apply')).rc, 0);
  const after = await s.out('after');
  t.equal(after.rc, 0);
  t.equal(after.err, '');
  t.match((await s.json('after')).targets[0], { subvolume: true, nocow: true, cowFiles: [], state: 'as-declared', deviations: [] });
  const text = await s.out('text');
  t.equal(text.rc, 0);
  t.match(text.out, /^libvirt: \/var\/lib\/libvirt\/images: as-declared\n(?:  .*\n)*?  subvolume: +yes\n  \+C: +yes\n/m);
  t.match(text.out, /^1 target: 1 as-declared\n$/m);
});

t.test('GIVEN an ext4 root WHEN status runs THEN the file system is reported, nothing is expected, exit 0', async (t) => {
  const s = await scenario('ext4', `mkdir -p "$R${P}"; nocow json status --root "$R" --json; nocow text status --root "$R"`);
  const json = await s.out('json');
  t.equal(json.rc, 0);
  t.equal(json.err, '');
  t.match((await s.json('json')).targets[0], {
    fstype: 'ext2/ext3',
    exists: true,
    subvolume: null,
    nocow: null,
    cowFiles: null,
    expected: { subvolume: false, nocow: false },
    state: 'not-applicable',
    notes: ['not on Btrfs (ext2/ext3): nothing is expected'],
  });
  t.match((await s.out('text')).out, /^  file system: ext2\/ext3$/m);
});

t.test('GIVEN a masked tmpfiles snippet, or NOCOW_DISABLE=1 WHEN status runs on a plain directory THEN the opt-out is reported and nothing is expected of it', async (t) => {
  const s = await scenario(
    'btrfs',
    `mkdir -p "$R${P}" "$R/etc/tmpfiles.d"
    NOCOW_DISABLE=1 nocow env status --root "$R" --json
    ln -s /dev/null "$R/etc/tmpfiles.d/nocow-libvirt.conf"
    nocow mask status --root "$R" --json
    nocow text status --root "$R"
    echo "$R" >"$A/root"`,
  );
  const root = (await s.file('root')).trim();
  t.equal((await s.out('env')).rc, 0);
  t.match((await s.json('env')).targets[0], { optOut: { by: 'env', file: null }, state: 'opted-out', subvolume: false, nocow: false, notes: ['opted out by NOCOW_DISABLE=1'] });
  t.equal((await s.out('mask')).rc, 0);
  const mask = `${root}/etc/tmpfiles.d/nocow-libvirt.conf`;
  t.match((await s.json('mask')).targets[0], { optOut: { by: 'mask', file: mask }, state: 'opted-out', expected: { subvolume: false, nocow: false }, deviations: [] });
  t.match((await s.out('text')).out, `  opt-out:     masked ${mask}\n`);
});

t.test('GIVEN paths on the command line and a user-scope target WHEN status runs THEN only the named targets are inspected, an undeclared path with the defaults, never through a symlink out of the root, a user target only with --home', async (t) => {
  const s = await scenario(
    'btrfs',
    `mkdir -p "$R/var/lib/mysql" "$R/srv/other" "$R/home/u"; ln -s /var/lib "$R/srv/link"
    nocow one status --root "$R" -c "$A/d.yaml" --json /var/lib/mysql/ /srv/other /var/lib/mysql
    nocow link status --root "$R" --json /srv/link/images
    nocow all status --root "$R" -c "$A/d.yaml" --json
    nocow home status --root "$R" -c "$A/d.yaml" --json --home "$R/home/u"
    echo "$R" >"$A/root"`,
    {
      'd.yaml': `targets:
  - { name: db, path: /var/lib/mysql, subvolume: never }
  - { name: boxes, scope: user, path: ~/.local/share/gnome-boxes/images }
`,
    },
  );
  const root = (await s.file('root')).trim();
  const one = await s.json('one');
  t.equal((await s.out('one')).rc, 1, 'the undeclared /srv/other is not a +C subvolume');
  t.match(one.targets, [
    { name: 'db', declared: true, path: '/var/lib/mysql', state: 'deviates', deviations: ['no +C on the directory (nocow apply sets it)'] },
    { name: null, declared: false, source: null, path: '/srv/other', declaration: { subvolume: 'auto', nocow: true, redundancy: 'keep-checksums', compression: 'keep' }, state: 'deviates' },
  ]);
  t.equal(one.targets.length, 2, 'a path given twice is inspected once');
  t.equal((await s.out('link')).rc, 1);
  t.match((await s.json('link')).targets[0], {
    location: null,
    fstype: null,
    state: 'deviates',
    deviations: [`${root}/srv/link is a symlink leading out of ${root}: nocow apply leaves the target alone`],
  });
  const all = await s.json('all');
  t.match(all.targets[1], { name: 'boxes', scope: 'user', location: null, state: 'skipped', notes: [/give --home DIR/] });
  const home = await s.json('home');
  t.equal(home.home, `${root}/home/u`);
  t.match(home.targets[1], {
    name: 'boxes',
    location: `${root}/home/u/.local/share/gnome-boxes/images`,
    exists: false,
    state: 'deviates',
    deviations: ['missing (user tmpfiles.d creates it at the next login)'],
  });
});

t.test('GIVEN bad usage WHEN status runs THEN one error line, status 2, nothing on stdout', async (t) => {
  const dir = t.testdir({ file: 'x' });
  for (const [argv, message] of [
    [['status', '--root', join(dir, 'missing')], `--root ${join(dir, 'missing')}: does not exist`],
    [['status', '--root', join(dir, 'file')], `--root ${join(dir, 'file')}: not a directory`],
    [['status', '--root', dir, 'relative/path'], 'relative/path: with --root, give a path as seen under the root, starting with "/"'],
    [['status', '--home', join(dir, 'missing')], `--home ${join(dir, 'missing')}: does not exist`],
    [['status', '--frobnicate'], /^unknown option '--frobnicate'; nocow status takes: --profile \(-p\), /],
    [['status', '--root'], "option '--root' needs a value (write --root DIR)"],
    [['status', '-p', 'nope'], /^unknown profile "nope"; expected one of: /],
  ] as const) {
    const ran = await runMain([...argv]);
    t.equal(ran.rc, 2, argv.join(' '));
    t.equal(ran.out, '');
    t.match(ran.err, /^nocow: error: [^\n]*\n$/, 'one line');
    t.match(ran.err.slice('nocow: error: '.length, -1), message);
  }
});

t.test('GIVEN a terminal WHEN the report is a table THEN one row per target, and the copy-on-write files most fragmented first', async (t) => {
  const facts: Facts = {
    location: '/srv/vm',
    escapes: null,
    fstype: 'btrfs',
    exists: true,
    directory: true,
    subvolume: true,
    mountPoint: false,
    empty: false,
    nocow: true,
    dataProfile: 'raid1',
    btrfsProgs: true,
    optOut: null,
    leftovers: [],
    cowFiles: [
      { path: 'a.img', size: 1024, extents: 3 },
      { path: 'b\x1b[31m.img', size: 3 * 1024 * 1024, extents: 812 },
    ],
    problems: [],
  };
  const subject = undeclaredSubject('/srv/vm', '/');
  const text = statusTable('/', [{ subject, facts, judgement: judge(subject, facts) }]);
  t.equal(
    text,
    [
      'TARGET        PATH     FS     PROFILE  SUBVOLUME  +C   OPT-OUT  COW FILES  STATE',
      '(undeclared)  /srv/vm  btrfs  raid1    yes        yes  -                2  as-declared',
      '',
      '(undeclared)  /srv/vm',
      '  note: +C skipped: raid1 keeps checksums for self-healing (redundancy: force-nocow overrides)',
      '  note: +C on the directory: new files there get no checksums on the raid1 data profile (nocow revert /srv/vm clears it)',
      '     SIZE  EXTENTS  FILE WITHOUT +C',
      '  3.0 MiB      812  b\\u001b[31m.img',
      '  1.0 KiB        3  a.img',
      '',
      '1 target: 1 as-declared',
      '',
    ].join('\n'),
  );
});

t.test('GIVEN a target path that is a regular file on Btrfs WHEN status and apply --dry-run run THEN status reports the deviation (not an inspection error, exit 1) and apply would leave it alone (exit 0)', async (t) => {
  const s = await scenario(
    'btrfs',
    `mkdir -p "$R$(dirname ${P})"; echo x >"$R${P}"
    nocow st status --root "$R"
    nocow dry apply --dry-run --root "$R"`,
  );
  const st = await s.out('st');
  t.equal(st.rc, 1, st.err);
  t.equal(st.err, '');
  t.match(st.out, /exists and is not a directory/);
  const dry = await s.out('dry');
  t.equal(dry.rc, 0, `apply would change nothing: ${dry.err}`);
  t.match(dry.err, /^nocow: [^:]+: warning: \S+ exists and is not a directory; left alone$/m, 'the warning the run would give');
  t.notMatch(dry.out, /would:/, 'no command it would run');
});
