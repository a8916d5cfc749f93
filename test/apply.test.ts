// nocow apply on real loop-mounted file systems: the generated nocow-apply.sh run through
// the built CLI inside each test's mount namespace; --dry-run proven to change nothing.
import t from 'tap';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PRELUDE } from './helpers/artifacts.js';
import { runInFs, type FsType } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';
import { NOCOW_FN, readRan, runMain } from './helpers/capture.js';

const cli = builtCli();

async function scenario(fs: FsType, script: string, files: Record<string, string> = {}, raid1 = false) {
  const a = await mkdtemp(join(tmpdir(), 'nocow-apply-a-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) await writeFile(join(a, name), content);
  const run = await runInFs({ fs, raid1, env: { A: a, CLI: cli }, script: `${PRELUDE}${NOCOW_FN}echo "$R" >"$A/root"\n${script}` });
  if (run.exitCode !== 0) throw new Error(`scenario script failed (${run.exitCode}): ${run.stderr}`);
  const file = (name: string) => readFile(join(a, name), 'utf8');
  const root = (await file('root')).trim();
  return {
    root,
    file,
    out: (label: string) => readRan(a, label),
    json: async (label: string) => JSON.parse(await file(`${label}.out`)) as { targets: Record<string, unknown>[] },
  };
}

const DECLARATION = `targets:
  - { name: vm, path: /var/lib/libvirt/images, mode: "0711" }
  - { name: db, path: /var/lib/mysql }
  - { name: new, path: /srv/new images }
  - { name: done, path: /var/lib/machines }
  - { name: masked, path: /srv/masked }
  - { name: plain, path: /srv/plain, subvolume: never, mode: "0700" }
  - { name: boxes, scope: user, path: ~/.local/share/gnome-boxes/images }
`;

const SETUP = String.raw`
mkdir -p "$R/var/lib/libvirt/images" "$R/var/lib/mysql" "$R/srv/masked" "$R/etc/tmpfiles.d"
head -c 100000 /dev/urandom >"$R/var/lib/mysql/ibdata1"; echo x >"$R/var/lib/mysql/ib_logfile0"
btrfs subvolume create "$R/var/lib/machines" >/dev/null; chattr +C "$R/var/lib/machines"
ln -s /dev/null "$R/etc/tmpfiles.d/nocow-masked.conf"
`;

t.test('GIVEN targets in every starting state WHEN apply --dry-run runs THEN nothing changes, and it prints per target what apply then does', async (t) => {
  const s = await scenario(
    'btrfs',
    `${SETUP}
    snap before
    nocow dry apply --root "$R" -c "$A/d.yaml" --dry-run
    snap after-dry
    nocow apply apply --root "$R" -c "$A/d.yaml"
    nocow again apply --root "$R" -c "$A/d.yaml"
    nocow dry-after apply --root "$R" -c "$A/d.yaml" --dry-run
    nocow status status --root "$R" -c "$A/d.yaml" --json
    echo "$(subvol "$R/var/lib/libvirt/images") $(flags "$R/var/lib/libvirt/images") $(subvol "$R/srv/plain") $(flags "$R/srv/plain")" >"$A/obs"`,
    { 'd.yaml': DECLARATION },
  );
  t.equal(await s.file('after-dry.snap'), await s.file('before.snap'), 'dry run: same entries, inodes, modes, ctimes, flags, xattrs');
  const R = s.root;
  const dry = await s.out('dry');
  t.equal(dry.rc, 1, 'like git diff --exit-code: 1, something would change');
  t.equal(dry.err, 'nocow: boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n');
  t.equal(
    dry.out,
    [
      `nocow apply --dry-run: the plan for root ${R}; nothing is changed`,
      'vm: /var/lib/libvirt/images: would convert the empty directory into a subvolume, keeping its mode, owner, ACLs, xattrs and times, with +C',
      'db: /var/lib/mysql: would set +C on the directory; 2 existing files keep copy-on-write (not empty, so it stays a plain directory)',
      'new: /srv/new images: would create a subvolume with mode 0755, owner root:root, and set +C',
      'done: /var/lib/machines: nothing to change',
      `masked: /srv/masked: nothing: opted out by the masked ${R}/etc/tmpfiles.d/nocow-masked.conf`,
      'plain: /srv/plain: would create a directory with mode 0700, owner root:root, and set +C',
      '',
    ].join('\n'),
  );
  // What the plan said, the generated script then did (its own lines, passed through).
  t.same(await s.out('apply'), {
    out: [
      `nocow: vm: converted empty directory ${R}/var/lib/libvirt/images into a subvolume with +C`,
      `nocow: db: set +C on ${R}/var/lib/mysql for new files; 2 existing files keep copy-on-write (nocow migrate rewrites them)`,
      `nocow: new: created subvolume ${R}/srv/new images`,
      `nocow: new: set +C on ${R}/srv/new images`,
      'nocow: masked: opted out by the masked /etc/tmpfiles.d/nocow-masked.conf; doing nothing',
      `nocow: plain: created directory ${R}/srv/plain`,
      `nocow: plain: set +C on ${R}/srv/plain`,
      '',
    ].join('\n'),
    err: 'nocow: boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n',
    rc: 0,
  });
  t.equal(await s.file('obs'), 'yes ---------------C------ no ---------------C------\n');
  t.same(await s.out('again'), {
    out: 'nocow: masked: opted out by the masked /etc/tmpfiles.d/nocow-masked.conf; doing nothing\n',
    err: 'nocow: boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n',
    rc: 0,
  }, 'a second apply changes nothing');
  const dryAfter = await s.out('dry-after');
  t.equal(dryAfter.rc, 0, 'once applied, the dry run finds nothing to change: 0');
  t.match(dryAfter.out, /^done: \/var\/lib\/machines: nothing to change$/m);
  t.notMatch(dryAfter.out, /: would /);
  const states = Object.fromEntries((await s.json('status')).targets.map((x) => [x.name, x.state]));
  t.same(states, { vm: 'as-declared', db: 'deviates', new: 'as-declared', done: 'as-declared', masked: 'opted-out', plain: 'as-declared', boxes: 'skipped' });
});

t.test('GIVEN NOCOW_DISABLE=1 WHEN apply runs THEN the script’s one line passes through and nothing is created', async (t) => {
  const s = await scenario('btrfs', `NOCOW_DISABLE=1 nocow off apply --root "$R"; ls -A "$R" >"$A/ls"`);
  t.same(await s.out('off'), { out: 'nocow: NOCOW_DISABLE=1: doing nothing\n', err: '', rc: 0 });
  t.equal(await s.file('ls'), 'etc\n');
});

t.test('GIVEN an ext4 root WHEN apply runs, and apply --dry-run THEN nothing changes, the run is silent, the plan says why', async (t) => {
  const s = await scenario(
    'ext4',
    `mkdir -p "$R/var/lib/libvirt/images"; snap before
    nocow dry apply --root "$R" --dry-run
    nocow apply apply --root "$R"
    snap after`,
  );
  t.equal(await s.file('after.snap'), await s.file('before.snap'));
  t.same(await s.out('apply'), { out: '', err: '', rc: 0 });
  t.same(await s.out('dry'), {
    out: `nocow apply --dry-run: the plan for root ${s.root}; nothing is changed\nlibvirt: /var/lib/libvirt/images: nothing: not on Btrfs (ext2/ext3)\n`,
    err: '',
    rc: 0,
  });
});

t.test('GIVEN a two-device raid1 Btrfs WHEN apply and status run with redundancy keep-checksums, then force-nocow THEN +C is skipped and not a deviation, then set, and required', async (t) => {
  const P = '/var/lib/libvirt/images';
  const yaml = (redundancy: string) => `targets:\n  - { name: vm, path: ${P}, redundancy: ${redundancy} }\n`;
  const s = await scenario(
    'btrfs',
    `btrfs filesystem df "$MNT" | head -1 >"$A/profile"
    nocow dry apply --root "$R" -c "$A/keep.yaml" --dry-run
    nocow keep apply --root "$R" -c "$A/keep.yaml"
    echo "$(subvol "$R${P}") $(flags "$R${P}")" >"$A/obs.keep"
    nocow status-keep status --root "$R" -c "$A/keep.yaml" --json
    nocow status-force-before status --root "$R" -c "$A/force.yaml" --json
    nocow force apply --root "$R" -c "$A/force.yaml"
    echo "$(subvol "$R${P}") $(flags "$R${P}")" >"$A/obs.force"
    nocow status-force status --root "$R" -c "$A/force.yaml" --json`,
    { 'keep.yaml': yaml('keep-checksums'), 'force.yaml': yaml('force-nocow') },
    true,
  );
  t.match(await s.file('profile'), /^Data, RAID1:/);
  const skipped = '+C skipped: raid1 keeps checksums for self-healing (redundancy: force-nocow overrides)';
  t.equal((await s.out('dry')).out.split('\n')[1], `vm: ${P}: would create a subvolume with mode 0755, owner root:root; ${skipped}`);
  t.same(await s.out('keep'), {
    out: `nocow: vm: created subvolume ${s.root}${P}\nnocow: vm: +C not set: the data profile is raid1, and nocow would remove the checksums its self-healing needs (redundancy: force-nocow overrides)\n`,
    err: '',
    rc: 0,
  });
  t.equal(await s.file('obs.keep'), 'yes ----------------------\n');
  t.equal((await s.out('status-keep')).rc, 0, 'keep-checksums: the missing +C is as declared');
  t.match((await s.json('status-keep')).targets[0], { dataProfile: 'raid1', subvolume: true, nocow: false, expected: { subvolume: true, nocow: false }, state: 'as-declared', deviations: [], notes: [skipped] });
  t.equal((await s.out('status-force-before')).rc, 1, 'force-nocow: the same directory deviates');
  t.match((await s.json('status-force-before')).targets[0], { expected: { nocow: true }, state: 'deviates', deviations: ['no +C on the directory (nocow apply sets it)'], notes: [] });
  t.same(await s.out('force'), { out: `nocow: vm: set +C on ${s.root}${P}\n`, err: '', rc: 0 });
  t.equal(await s.file('obs.force'), 'yes ---------------C------\n');
  t.equal((await s.out('status-force')).rc, 0);
});

t.test('GIVEN only user-scope targets WHEN apply runs THEN one line per target says why it is skipped, nothing is done, exit 0', async (t) => {
  const dir = t.testdir();
  for (const extra of [[], ['--dry-run']]) {
    const ran = await runMain(['apply', '--root', dir, '-p', 'gnome-boxes', ...extra]);
    t.equal(ran.rc, 0);
    t.equal(ran.out, '');
    t.equal(ran.err, 'nocow: gnome-boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n');
  }
  t.same(await readdir(dir), []);
});

t.test('GIVEN bad usage WHEN apply runs THEN one error line, status 2, nothing done', async (t) => {
  const dir = t.testdir({ file: 'x' });
  for (const [argv, message] of [
    [['apply', '--root', join(dir, 'missing')], `--root ${join(dir, 'missing')}: does not exist`],
    [['apply', '--root', join(dir, 'file')], `--root ${join(dir, 'file')}: not a directory`],
    [['apply', '--root', dir, '/var/lib/mysql'], 'unexpected operand "/var/lib/mysql": nocow apply takes none'],
    [['apply', '--root', dir, '--frobnicate'], /^unknown option '--frobnicate'; nocow apply takes: --profile \(-p\), /],
    [['apply', '--root'], "option '--root' needs a value (write --root DIR)"],
    [['apply', '--root', dir, '-p', 'nope'], /^unknown profile "nope"; expected one of: /],
  ] as const) {
    const ran = await runMain([...argv]);
    t.equal(ran.rc, 2, argv.join(' '));
    t.equal(ran.out, '');
    t.match(ran.err, /^nocow: error: [^\n]*\n$/, 'one line');
    t.match(ran.err.slice('nocow: error: '.length, -1), message);
  }
  t.same((await readdir(dir)).sort(), ['file']);
});

interface ApplyJson {
  version: number;
  root: string;
  dryRun: boolean;
  state: string;
  targets: { name: string; scope: string; path: string; state: string; plan: string | null; changes: string[]; warnings: string[]; errors: string[] }[];
  errors: string[];
}

t.test('GIVEN targets in every starting state WHEN apply --json, --dry-run --json, and both again run THEN one JSON object says per target what changed (or would) and what went wrong, and the second runs say unchanged', async (t) => {
  const s = await scenario(
    'btrfs',
    `${SETUP}
    nocow plan apply --root "$R" -c "$A/d.yaml" --dry-run --json
    nocow run apply --root "$R" -c "$A/d.yaml" --json
    nocow again apply --root "$R" -c "$A/d.yaml" --json
    nocow plan-again apply --root "$R" -c "$A/d.yaml" --dry-run --json`,
    { 'd.yaml': `${DECLARATION}  - { name: own, path: /srv/own, user: nobody, subvolume: never }\n` },
  );
  const R = s.root;
  const parse = async (label: string) => {
    const o = await s.out(label);
    return { ...o, json: JSON.parse(o.out) as ApplyJson };
  };
  const skippedLine = 'nocow: boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n';
  const noUser = `user nobody is not in ${R}/etc/passwd; owner left as root`;

  const plan = await parse('plan');
  t.equal(plan.rc, 1, '--dry-run: something would change');
  t.equal(plan.err, skippedLine);
  t.match(plan.json, { version: 1, root: R, dryRun: true, state: 'would-change', errors: [] });
  t.same(Object.keys(plan.json.targets[0]!), ['name', 'scope', 'path', 'state', 'plan', 'changes', 'warnings', 'errors'], 'fields in a fixed order');
  t.same(
    plan.json.targets.map((x) => [x.name, x.state, x.plan]),
    [
      ['vm', 'would-change', 'would convert the empty directory into a subvolume, keeping its mode, owner, ACLs, xattrs and times, with +C'],
      ['db', 'would-change', 'would set +C on the directory; 2 existing files keep copy-on-write (not empty, so it stays a plain directory)'],
      ['new', 'would-change', 'would create a subvolume with mode 0755, owner root:root, and set +C'],
      ['done', 'unchanged', 'nothing to change'],
      ['masked', 'opted-out', `nothing: opted out by the masked ${R}/etc/tmpfiles.d/nocow-masked.conf`],
      ['plain', 'would-change', 'would create a directory with mode 0700, owner root:root, and set +C'],
      ['boxes', 'skipped', null],
      ['own', 'would-change', 'would create a directory with mode 0755, owner nobody:root, and set +C'],
    ],
  );

  const run = await parse('run');
  t.equal(run.rc, 0);
  t.equal(run.err, `${skippedLine}nocow: own: warning: ${noUser}\n`, 'warnings still go to stderr, for people');
  t.match(run.json, { version: 1, root: R, dryRun: false, state: 'changed', errors: [] });
  t.same(
    run.json.targets.map((x) => [x.name, x.scope, x.path, x.state, x.changes, x.warnings]),
    [
      ['vm', 'system', '/var/lib/libvirt/images', 'changed', [`converted empty directory ${R}/var/lib/libvirt/images into a subvolume with +C`], []],
      ['db', 'system', '/var/lib/mysql', 'changed', [`set +C on ${R}/var/lib/mysql for new files; 2 existing files keep copy-on-write (nocow migrate rewrites them)`], []],
      ['new', 'system', '/srv/new images', 'changed', [`created subvolume ${R}/srv/new images`, `set +C on ${R}/srv/new images`], []],
      ['done', 'system', '/var/lib/machines', 'unchanged', [], []],
      ['masked', 'system', '/srv/masked', 'opted-out', [], []],
      ['plain', 'system', '/srv/plain', 'changed', [`created directory ${R}/srv/plain`, `set +C on ${R}/srv/plain`], []],
      ['boxes', 'user', '~/.local/share/gnome-boxes/images', 'skipped', [], []],
      ['own', 'system', '/srv/own', 'changed', [`created directory ${R}/srv/own`, `set +C on ${R}/srv/own`], [noUser]],
    ],
  );

  const again = await parse('again');
  t.equal(again.rc, 0);
  t.equal(again.json.state, 'unchanged', 'automation can tell a no-op from a change');
  t.same(again.json.targets.map((x) => [x.name, x.state, x.changes]), [
    ['vm', 'unchanged', []],
    ['db', 'unchanged', []],
    ['new', 'unchanged', []],
    ['done', 'unchanged', []],
    ['masked', 'opted-out', []],
    ['plain', 'unchanged', []],
    ['boxes', 'skipped', []],
    ['own', 'unchanged', []],
  ]);
  const planAgain = await parse('plan-again');
  t.equal(planAgain.rc, 0, '--dry-run: nothing would change');
  t.equal(planAgain.json.state, 'unchanged');
});

t.test('GIVEN NOCOW_DISABLE=1 WHEN apply --json runs THEN every system target is opted-out and nothing changed', async (t) => {
  const s = await scenario('btrfs', `NOCOW_DISABLE=1 nocow off apply --root "$R" -p libvirt,mariadb --json`);
  const off = await s.out('off');
  t.equal(off.rc, 0);
  t.equal(off.err, '');
  const json = JSON.parse(off.out) as ApplyJson;
  t.equal(json.state, 'unchanged');
  t.same(json.targets.map((x) => [x.name, x.state]), [['libvirt', 'opted-out'], ['mariadb', 'opted-out']]);
});

t.test('GIVEN a root whose name holds control characters WHEN apply and apply --dry-run run THEN every line shows them escaped, as status does', async (t) => {
  const s = await scenario(
    'btrfs',
    `E="$MNT/r$(printf '\\033')[31m$(printf '\\t')x"; mkdir -p "$E"; echo "$MNT" >"$A/mnt"
    nocow dry apply --root "$E" -c "$A/one.yaml" --dry-run
    nocow esc apply --root "$E" -c "$A/one.yaml"`,
    { 'one.yaml': 'targets:\n  - { name: vm, path: /srv/vm }\n' },
  );
  const shown = `${(await s.file('mnt')).trim()}/r\\u001b[31m\\tx`;
  t.same(await s.out('esc'), { out: `nocow: vm: created subvolume ${shown}/srv/vm\nnocow: vm: set +C on ${shown}/srv/vm\n`, err: '', rc: 0 });
  const dry = await s.out('dry');
  t.equal(dry.out.split('\n')[0], `nocow apply --dry-run: the plan for root ${shown}; nothing is changed`);
  t.notMatch(dry.out + dry.err, /[\u0000-\u0009\u000b-\u001f]/, 'no control character but the newlines');
});
