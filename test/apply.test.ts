// nocow apply on real loop-mounted file systems: the generated nocow-apply.sh run through
// the built CLI inside each test's mount namespace; --dry-run proven to change nothing.
import t, { type Test } from 'tap';
import { cp, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PRELUDE, renderFor } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
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

const WOULD = /^nocow: [^:]+: would: /;

t.test('GIVEN targets in every starting state WHEN apply --dry-run runs THEN nothing changes, and it prints the commands it would run and the lines apply then prints', async (t) => {
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
  const [heading, ...planned] = dry.out.split('\n');
  t.equal(heading, `nocow apply --dry-run: the plan for root ${R}; nothing is changed`);
  t.same(
    planned.filter((l) => WOULD.test(l)),
    [
      `nocow: vm: would: btrfs subvolume create -- ${R}/var/lib/libvirt/images.nocow-new`,
      `nocow: vm: would: chown --reference=${R}/var/lib/libvirt/images -- ${R}/var/lib/libvirt/images.nocow-new`,
      `nocow: vm: would: chmod --reference=${R}/var/lib/libvirt/images -- ${R}/var/lib/libvirt/images.nocow-new`,
      `nocow: vm: would: chattr +C -- ${R}/var/lib/libvirt/images.nocow-new`,
      `nocow: vm: would: touch -r ${R}/var/lib/libvirt/images -- ${R}/var/lib/libvirt/images.nocow-new`,
      `nocow: vm: would: mv -T -- ${R}/var/lib/libvirt/images ${R}/var/lib/libvirt/images.nocow-old`,
      `nocow: vm: would: mv -T -- ${R}/var/lib/libvirt/images.nocow-new ${R}/var/lib/libvirt/images`,
      `nocow: vm: would: rmdir -- ${R}/var/lib/libvirt/images.nocow-old`,
      `nocow: db: would: chattr +C -- ${R}/var/lib/mysql`,
      `nocow: new: would: btrfs subvolume create -- ${R}/srv/new images`,
      `nocow: new: would: chmod -- 0755 ${R}/srv/new images`,
      `nocow: new: would: chown -- 0:0 ${R}/srv/new images`,
      `nocow: new: would: chattr +C -- ${R}/srv/new images`,
      `nocow: plain: would: mkdir -- ${R}/srv/plain`,
      `nocow: plain: would: chmod -- 0700 ${R}/srv/plain`,
      `nocow: plain: would: chown -- 0:0 ${R}/srv/plain`,
      `nocow: plain: would: chattr +C -- ${R}/srv/plain`,
    ],
    'the commands apply then runs, nothing for done and masked',
  );
  // What the dry run said, the generated script then did (its own lines, passed through): the same lines.
  const lines = [
    `nocow: vm: converted: empty directory ${R}/var/lib/libvirt/images into a subvolume with +C`,
    `nocow: db: set-nocow: +C on ${R}/var/lib/mysql for new files; 2 existing files keep copy-on-write (nocow migrate rewrites them)`,
    `nocow: new: created: subvolume ${R}/srv/new images`,
    `nocow: new: set-nocow: +C on ${R}/srv/new images`,
    'nocow: masked: opted-out: by the masked /etc/tmpfiles.d/nocow-masked.conf; doing nothing',
    `nocow: plain: created: directory ${R}/srv/plain`,
    `nocow: plain: set-nocow: +C on ${R}/srv/plain`,
    '',
  ].join('\n');
  t.equal(planned.filter((l) => !WOULD.test(l)).join('\n'), lines);
  t.same(await s.out('apply'), {
    out: lines,
    err: 'nocow: boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n',
    rc: 0,
  });
  t.equal(await s.file('obs'), 'yes ---------------C------ no ---------------C------\n');
  t.same(await s.out('again'), {
    out: 'nocow: masked: opted-out: by the masked /etc/tmpfiles.d/nocow-masked.conf; doing nothing\n',
    err: 'nocow: boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n',
    rc: 0,
  }, 'a second apply changes nothing');
  const dryAfter = await s.out('dry-after');
  t.equal(dryAfter.rc, 0, 'once applied, the dry run finds nothing to change: 0');
  t.equal(dryAfter.out, `nocow apply --dry-run: the plan for root ${R}; nothing is changed\nnocow: masked: opted-out: by the masked /etc/tmpfiles.d/nocow-masked.conf; doing nothing\n`);
  const states = Object.fromEntries((await s.json('status')).targets.map((x) => [x.name, x.state]));
  t.same(states, { vm: 'as-declared', db: 'deviates', new: 'as-declared', done: 'as-declared', masked: 'opted-out', plain: 'as-declared', boxes: 'skipped' });
});

t.test('GIVEN NOCOW_DISABLE=1 WHEN apply runs THEN the script’s one line passes through and nothing is created', async (t) => {
  const s = await scenario('btrfs', `NOCOW_DISABLE=1 nocow off apply --root "$R"; ls -A "$R" >"$A/ls"`);
  t.same(await s.out('off'), { out: 'nocow: NOCOW_DISABLE=1: opted-out: doing nothing\n', err: '', rc: 0 });
  t.equal(await s.file('ls'), 'etc\n');
});

t.test('GIVEN an ext4 root WHEN apply runs, and apply --dry-run THEN nothing changes, both are silent but for the plan\'s heading', async (t) => {
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
    out: `nocow apply --dry-run: the plan for root ${s.root}; nothing is changed\n`,
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
  const kept = `nocow: vm: created: subvolume ${s.root}${P}\nnocow: vm: skipped: +C not set: the data profile is raid1, and nocow would remove the checksums its self-healing needs (redundancy: force-nocow overrides)\n`;
  t.equal((await s.out('dry')).out.split('\n').filter((l) => !WOULD.test(l)).slice(1).join('\n'), kept, 'the dry run: the lines of the run');
  t.notMatch((await s.out('dry')).out, /chattr/, 'and no chattr among its commands');
  t.same(await s.out('keep'), {
    out: kept,
    err: '',
    rc: 0,
  });
  t.equal(await s.file('obs.keep'), 'yes ----------------------\n');
  t.equal((await s.out('status-keep')).rc, 0, 'keep-checksums: the missing +C is as declared');
  t.match((await s.json('status-keep')).targets[0], { dataProfile: 'raid1', subvolume: true, nocow: false, expected: { subvolume: true, nocow: false }, state: 'as-declared', deviations: [], notes: [skipped] });
  t.equal((await s.out('status-force-before')).rc, 1, 'force-nocow: the same directory deviates');
  t.match((await s.json('status-force-before')).targets[0], { expected: { nocow: true }, state: 'deviates', deviations: ['no +C on the directory (nocow apply sets it)'], notes: [] });
  t.same(await s.out('force'), { out: `nocow: vm: set-nocow: +C on ${s.root}${P}\n`, err: '', rc: 0 });
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
  targets: { name: string; scope: string; path: string; state: string; plan: string[] | null; changes: string[]; warnings: string[]; errors: string[] }[];
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
  t.equal(plan.err, `${skippedLine}nocow: own: warning: ${noUser}\n`, 'the dry run warns as the run does');
  t.match(plan.json, { version: 1, root: R, dryRun: true, state: 'would-change', errors: [] });
  t.same(Object.keys(plan.json.targets[0]!), ['name', 'scope', 'path', 'state', 'plan', 'changes', 'warnings', 'errors'], 'fields in a fixed order');
  t.same(
    plan.json.targets.map((x) => [x.name, x.state, x.plan?.length ?? null, x.plan?.at(-1) ?? null]),
    [
      ['vm', 'would-change', 8, `rmdir -- ${R}/var/lib/libvirt/images.nocow-old`],
      ['db', 'would-change', 1, `chattr +C -- ${R}/var/lib/mysql`],
      ['new', 'would-change', 4, `chattr +C -- ${R}/srv/new images`],
      ['done', 'unchanged', 0, null],
      ['masked', 'opted-out', 0, null],
      ['plain', 'would-change', 4, `chattr +C -- ${R}/srv/plain`],
      ['boxes', 'skipped', null, null],
      ['own', 'would-change', 4, `chattr +C -- ${R}/srv/own`],
    ],
  );
  t.same(plan.json.targets.map((x) => x.warnings), [[], [], [], [], [], [], [], [noUser]]);

  const run = await parse('run');
  t.equal(run.rc, 0);
  t.equal(run.err, `${skippedLine}nocow: own: warning: ${noUser}\n`, 'warnings still go to stderr, for people');
  t.match(run.json, { version: 1, root: R, dryRun: false, state: 'changed', errors: [] });
  t.same(
    run.json.targets.map((x) => [x.name, x.scope, x.path, x.state, x.changes, x.warnings]),
    [
      ['vm', 'system', '/var/lib/libvirt/images', 'changed', [`converted: empty directory ${R}/var/lib/libvirt/images into a subvolume with +C`], []],
      ['db', 'system', '/var/lib/mysql', 'changed', [`set-nocow: +C on ${R}/var/lib/mysql for new files; 2 existing files keep copy-on-write (nocow migrate rewrites them)`], []],
      ['new', 'system', '/srv/new images', 'changed', [`created: subvolume ${R}/srv/new images`, `set-nocow: +C on ${R}/srv/new images`], []],
      ['done', 'system', '/var/lib/machines', 'unchanged', [], []],
      ['masked', 'system', '/srv/masked', 'opted-out', [], []],
      ['plain', 'system', '/srv/plain', 'changed', [`created: directory ${R}/srv/plain`, `set-nocow: +C on ${R}/srv/plain`], []],
      ['boxes', 'user', '~/.local/share/gnome-boxes/images', 'skipped', [], []],
      ['own', 'system', '/srv/own', 'changed', [`created: directory ${R}/srv/own`, `set-nocow: +C on ${R}/srv/own`], [noUser]],
    ],
  );
  t.same(plan.json.targets.map((x) => [x.name, x.changes]), run.json.targets.map((x) => [x.name, x.changes]), 'the dry run said what the run did');

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
  t.same(await s.out('esc'), { out: `nocow: vm: created: subvolume ${shown}/srv/vm\nnocow: vm: set-nocow: +C on ${shown}/srv/vm\n`, err: '', rc: 0 });
  const dry = await s.out('dry');
  t.equal(dry.out.split('\n')[0], `nocow apply --dry-run: the plan for root ${shown}; nothing is changed`);
  t.notMatch(dry.out + dry.err, /[\u0000-\u0009\u000b-\u001f]/, 'no control character but the newlines');
});

/** One run of apply --dry-run, then apply, on the same tree: the declaration's arguments, the root, and the environment. */
interface Round {
  label: string;
  args: string;
  root?: string;
  env?: string;
  /** The system targets' paths, each observed before and after the run. */
  paths: string[];
}

/**
 * Runs each round's apply --dry-run --json, then apply --json, on the same tree, and checks that they agree:
 * per target, the lines the dry run said the run would print are the ones it printed (event and text), it
 * would change exactly the targets whose tree the run then changed, warned alike, and changed nothing itself.
 */
async function agree(t: Test, fs: FsType, rounds: Round[], setup = '', files: Record<string, string> = {}, raid1 = false) {
  const script = rounds
    .map((r, i) => {
      const root = r.root ?? '"$R"';
      const observe = (label: string) => `for p in ${r.paths.map((p) => `'${p}'`).join(' ')}; do printf '@@ %s\\n' "$p"; observe_tree ${root}"$p"; done >"$A/${i}-${label}.obs"`;
      return `${observe('before')}
      observe_tree ${root} >"$A/${i}-before.snap"
      ${r.env ?? ''} nocow ${i}-dry apply --root ${root} ${r.args} --dry-run --json
      observe_tree ${root} >"$A/${i}-after-dry.snap"
      ${r.env ?? ''} nocow ${i}-run apply --root ${root} ${r.args} --json
      ${observe('after')}`;
    })
    .join('\n');
  const s = await scenario(fs, `${setup}\n${script}`, files, raid1);
  for (const [i, r] of rounds.entries()) {
    const dry = await s.out(`${i}-dry`);
    const ran = await s.out(`${i}-run`);
    const plan = JSON.parse(dry.out) as ApplyJson;
    const run = JSON.parse(ran.out) as ApplyJson;
    t.equal(await s.file(`${i}-after-dry.snap`), await s.file(`${i}-before.snap`), `${r.label}: the dry run changed nothing`);
    t.equal(ran.rc, 0, `${r.label}: the run ends`);
    const split = (obs: string) => Object.fromEntries(obs.split(/^@@ /m).slice(1).map((o) => [o.slice(0, o.indexOf('\n')), o]));
    const [before, after] = [split(await s.file(`${i}-before.obs`)), split(await s.file(`${i}-after.obs`))];
    const changedTree = run.targets.filter((x) => x.scope === 'system').map((x) => [x.name, before[x.path] !== after[x.path]]);
    t.same(plan.targets.map((x) => [x.name, x.changes, x.warnings]), run.targets.map((x) => [x.name, x.changes, x.warnings]), `${r.label}: the dry run said the lines the run printed, warnings included`);
    t.same(plan.targets.map((x) => [x.name, x.state.replace('would-change', 'changed')]), run.targets.map((x) => [x.name, x.state]), `${r.label}: the same states`);
    t.same(changedTree, run.targets.filter((x) => x.scope === 'system').map((x) => [x.name, x.state === 'changed']), `${r.label}: the run changed the tree of exactly the targets it said it changed`);
    t.same(plan.targets.map((x) => [x.name, (x.plan?.length ?? 0) > 0]), plan.targets.map((x) => [x.name, x.state === 'would-change']), `${r.label}: a command planned for every target that would change, and no other`);
    t.equal(dry.rc, run.state === 'changed' ? 1 : 0, `${r.label}: --dry-run exits 1 exactly when the run changes something`);
    t.equal(dry.err, ran.err, `${r.label}: the same lines on stderr`);
  }
}

t.test('GIVEN the trees of every apply test above WHEN apply --dry-run, then apply run on the same tree THEN the dry run said exactly what the run did, by events and by the tree', async (t) => {
  const SYSTEM = ['/var/lib/libvirt/images', '/var/lib/mysql', '/srv/new images', '/var/lib/machines', '/srv/masked', '/srv/plain', '/srv/own'];
  const decl = { 'd.yaml': `${DECLARATION}  - { name: own, path: /srv/own, user: nobody, subvolume: never }\n` };
  t.test('every starting state, then again', (t) =>
    agree(t, 'btrfs', [{ label: 'first', args: '-c "$A/d.yaml"', paths: SYSTEM }, { label: 'second', args: '-c "$A/d.yaml"', paths: SYSTEM }], SETUP, decl),
  );
  t.test('NOCOW_DISABLE=1', (t) => agree(t, 'btrfs', [{ label: 'off', args: '-p libvirt,mariadb', env: 'NOCOW_DISABLE=1', paths: ['/var/lib/libvirt/images', '/var/lib/mysql'] }]));
  t.test('ext4', (t) => agree(t, 'ext4', [{ label: 'ext4', args: '', paths: ['/var/lib/libvirt/images'] }], 'mkdir -p "$R/var/lib/libvirt/images"'));
  const yaml = (redundancy: string) => `targets:\n  - { name: vm, path: /var/lib/libvirt/images, redundancy: ${redundancy} }\n`;
  t.test('raid1, keep-checksums then force-nocow', (t) =>
    agree(
      t,
      'btrfs',
      [
        { label: 'keep', args: '-c "$A/keep.yaml"', paths: ['/var/lib/libvirt/images'] },
        { label: 'force', args: '-c "$A/force.yaml"', paths: ['/var/lib/libvirt/images'] },
      ],
      '',
      { 'keep.yaml': yaml('keep-checksums'), 'force.yaml': yaml('force-nocow') },
      true,
    ),
  );
  t.test('a root whose name holds control characters', (t) =>
    agree(t, 'btrfs', [{ label: 'escaped', args: '-c "$A/one.yaml"', root: '"$E"', paths: ['/srv/vm'] }], `E="$MNT/r$(printf '\\033')[31m$(printf '\\t')x"; mkdir -p "$E"`, {
      'one.yaml': 'targets:\n  - { name: vm, path: /srv/vm }\n',
    }),
  );
  t.end();
});

t.test('GIVEN the shell library with every message reworded but its events WHEN apply --json and --dry-run --json run THEN the JSON states are those of the library as shipped: they come from the events', async (t) => {
  // A copy of the built package whose library says everything in other words.
  const pkg = await mkdtemp(join(tmpdir(), 'nocow-reworded-'));
  t.teardown(() => rm(pkg, { recursive: true, force: true }));
  const repo = join(import.meta.dirname, '..');
  await cp(join(repo, 'dist'), join(pkg, 'dist'), { recursive: true });
  await cp(join(repo, 'templates'), join(pkg, 'templates'), { recursive: true });
  await cp(join(repo, 'package.json'), join(pkg, 'package.json'));
  await symlink(join(repo, 'node_modules'), join(pkg, 'node_modules'));
  const lib = join(pkg, 'templates', 'nocow-lib.sh.ejs');
  const shipped = await readFile(lib, 'utf8');
  const reworded = shipped
    .replace(/nocow_say (created|converted|set-nocow|skipped|opted-out) "/g, 'nocow_say $1 "in other words, ')
    .replace("opted-out: doing nothing\\n'", "opted-out: nothing done, as asked\\n'");
  t.equal(reworded.match(/in other words, /g)?.length, 6, 'every message of the cases below reworded');
  await writeFile(lib, reworded);
  const s = await scenario(
    'btrfs',
    `${SETUP}
    R0=$R; R=$R0.copy; mkdir -p "$R/etc"; cp "$R0/etc/passwd" "$R0/etc/group" "$R/etc/"
    ${SETUP}
    R=$R0
    nocow plan apply --root "$R" -c "$A/d.yaml" --dry-run --json
    nocow run apply --root "$R" -c "$A/d.yaml" --json
    CLI="$(cat "$A/cli")" nocow plan-reworded apply --root "$R.copy" -c "$A/d.yaml" --dry-run --json
    CLI="$(cat "$A/cli")" nocow run-reworded apply --root "$R.copy" -c "$A/d.yaml" --json
    NOCOW_DISABLE=1 CLI="$(cat "$A/cli")" nocow off-reworded apply --root "$R.copy" -c "$A/d.yaml" --json`,
    { 'd.yaml': DECLARATION, cli: join(pkg, 'dist', 'bin', 'nocow.js') },
  );
  const states = async (label: string) => {
    const json = JSON.parse((await s.out(label)).out) as ApplyJson;
    return { state: json.state, targets: json.targets.map((x) => [x.name, x.state, x.changes.length, x.plan?.length ?? null]), errors: json.errors };
  };
  const changes = (JSON.parse((await s.out('run-reworded')).out) as ApplyJson).targets.flatMap((x) => x.changes);
  t.ok(changes.length > 0 && changes.every((c) => /^[a-z-]+: in other words, /.test(c)), 'the reworded library ran');
  t.same(await states('plan-reworded'), await states('plan'), '--dry-run --json: the same');
  t.same(await states('run-reworded'), await states('run'), '--json: the same');
  t.same(await states('off-reworded'), { state: 'unchanged', targets: [['vm', 'opted-out', 0, null], ['db', 'opted-out', 0, null], ['new', 'opted-out', 0, null], ['done', 'opted-out', 0, null], ['masked', 'opted-out', 0, null], ['plain', 'opted-out', 0, null], ['boxes', 'skipped', 0, null]], errors: [] });
});

t.test('GIVEN the standalone hook WHEN run with --check, with --dry-run, then for real, then with --check again THEN --check exits 1 while something would change and 0 after the run, neither changes anything, and each shell agrees', async (t) => {
  const a = await renderFor([target({ name: 'vm', path: '/srv/vm images' })], t);
  const fs = await runInFs({
    fs: 'btrfs',
    env: { A: a.dir },
    script: String.raw`${PRELUDE}
      for sh in dash bash 'busybox sh'; do
        k=$(echo $sh | tr -d ' ')
        rm -rf "$R/srv"
        snap "$k-before"
        hook() { label=$1; shift; rc=0; $sh "$A/nocow-apply.sh" --root "$R" "$@" >"$A/$k-$label.out" 2>&1 || rc=$?; echo $rc >"$A/$k-$label.rc"; }
        hook check --check
        hook dry --dry-run
        snap "$k-after-dry"
        hook run
        hook again --check
      done`,
  });
  t.equal(fs.exitCode, 0, fs.stderr);
  const read = (name: string) => readFile(join(a.dir, name), 'utf8');
  for (const k of ['dash', 'bash', 'busyboxsh']) {
    t.equal(await read(`${k}-after-dry.snap`), await read(`${k}-before.snap`), `${k}: --check and --dry-run change nothing`);
    t.equal(await read(`${k}-check.rc`), '1\n', `${k}: --check: 1, something would change`);
    t.equal(await read(`${k}-dry.rc`), '0\n', `${k}: --dry-run: 0, as every run`);
    t.equal(await read(`${k}-check.out`), await read(`${k}-dry.out`), `${k}: the same lines`);
    const dry = (await read(`${k}-dry.out`)).split('\n');
    t.same(dry.filter((l) => !WOULD.test(l)).join('\n'), await read(`${k}-run.out`), `${k}: the dry run's lines but its commands are the run's`);
    t.match(dry.filter((l) => WOULD.test(l)), [/^nocow: vm: would: mkdir -p -- \S+\/srv$/, /^nocow: vm: would: btrfs subvolume create -- \S+\/srv\/vm images$/, /chmod -- 0711 /, /chown -- 0:36 /, /^nocow: vm: would: chattr \+C -- \S+\/srv\/vm images$/]);
    t.same([await read(`${k}-run.rc`), await read(`${k}-again.rc`), await read(`${k}-again.out`)], ['0\n', '0\n', ''], `${k}: the run exits 0; then --check finds nothing to do, silently`);
  }
});

t.test('GIVEN the shell library WHEN the events it prints are listed THEN they are exactly the vocabulary apply --json reads (docs/design.md lists the same)', async (t) => {
  const { EVENTS } = await import('../src/commands/apply.js');
  const lib = await readFile(join(import.meta.dirname, '..', 'templates', 'nocow-lib.sh.ejs'), 'utf8');
  const said = new Set([...lib.matchAll(/nocow_say ([a-z-]+) /g)].map((m) => m[1]!));
  for (const m of lib.matchAll(/printf 'nocow: NOCOW_DISABLE=1: ([a-z-]+): /g)) said.add(m[1]!);
  t.same([...said].sort(), [...EVENTS].sort());
  const design = await readFile(join(import.meta.dirname, '..', 'docs', 'design.md'), 'utf8');
  const table = [...design.matchAll(/^\| `([a-z-]+)` \| std(?:out|err) \|/gm)].map((m) => m[1]!);
  t.same(table.sort(), [...EVENTS].sort(), 'the table of docs/design.md');
});
