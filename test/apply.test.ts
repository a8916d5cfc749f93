// nocow apply on real loop-mounted file systems: the generated nocow-apply.sh run through
// the built CLI inside each test's mount namespace; --dry-run proven to change nothing.
import t from 'tap';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/main.js';
import type { Io } from '../src/io.js';
import { PRELUDE } from './helpers/artifacts.js';
import { runInFs, type FsType } from './helpers/fs.js';
import { builtCli, NOCOW_FN } from './helpers/cli.js';


const cli = builtCli();
const NOCOW = NOCOW_FN;

interface Output {
  out: string;
  err: string;
  rc: number;
}

async function scenario(fs: FsType, script: string, files: Record<string, string> = {}, raid1 = false) {
  const a = await mkdtemp(join(tmpdir(), 'nocow-apply-a-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) await writeFile(join(a, name), content);
  const run = await runInFs({ fs, raid1, env: { A: a, CLI: cli }, script: `${PRELUDE}${NOCOW}echo "$R" >"$A/root"\n${script}` });
  if (run.exitCode !== 0) throw new Error(`scenario script failed (${run.exitCode}): ${run.stderr}`);
  const file = (name: string) => readFile(join(a, name), 'utf8');
  const root = (await file('root')).trim();
  return {
    root,
    file,
    out: async (label: string): Promise<Output> => ({ out: await file(`${label}.out`), err: await file(`${label}.err`), rc: Number(await file(`${label}.rc`)) }),
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
    nocow status status --root "$R" -c "$A/d.yaml" --json
    echo "$(subvol "$R/var/lib/libvirt/images") $(flags "$R/var/lib/libvirt/images") $(subvol "$R/srv/plain") $(flags "$R/srv/plain")" >"$A/obs"`,
    { 'd.yaml': DECLARATION },
  );
  t.equal(await s.file('after-dry.snap'), await s.file('before.snap'), 'dry run: same entries, inodes, modes, ctimes, flags, xattrs');
  const R = s.root;
  const dry = await s.out('dry');
  t.equal(dry.rc, 0);
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
      `nocow: db: set +C on ${R}/var/lib/mysql for new files; 2 existing keep copy-on-write (nocow migrate rewrites them)`,
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
    out: `nocow: vm: created subvolume ${s.root}${P}\nnocow: vm: +C not set: the data profile is RAID1, and nocow would remove the checksums its self-healing needs (redundancy: force-nocow overrides)\n`,
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

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}

t.test('GIVEN only user-scope targets WHEN apply runs THEN one line per target says why it is skipped, nothing is done, exit 0', async (t) => {
  const dir = t.testdir();
  for (const extra of [[], ['--dry-run']]) {
    const io = capture();
    t.equal(await main(['apply', '--root', dir, '-p', 'gnome-boxes', ...extra], io), 0);
    t.equal(io.stdout, '');
    t.equal(io.stderr, 'nocow: gnome-boxes: skipped: a user-scope target is applied at each login by user tmpfiles.d\n');
  }
  t.same(await readdir(dir), []);
});

t.test('GIVEN bad usage WHEN apply runs THEN one error line, status 2, nothing done', async (t) => {
  const dir = t.testdir({ file: 'x' });
  for (const [argv, message] of [
    [['apply', '--root', join(dir, 'missing')], `--root ${join(dir, 'missing')}: does not exist`],
    [['apply', '--root', join(dir, 'file')], `--root ${join(dir, 'file')}: not a directory`],
    [['apply', '--root', dir, '/var/lib/mysql'], 'Unknown argument: /var/lib/mysql'],
    [['apply', '--root', dir, '--frobnicate'], 'Unknown argument: frobnicate'],
    [['apply', '--root'], 'Not enough arguments following: root'],
    [['apply', '--root', dir, '-p', 'nope'], /^unknown profile "nope"; expected one of: /],
  ] as const) {
    const io = capture();
    t.equal(await main([...argv], io), 2, argv.join(' '));
    t.equal(io.stdout, '');
    t.match(io.stderr, /^nocow: error: [^\n]*\n$/, 'one line');
    t.match(io.stderr.slice('nocow: error: '.length, -1), message);
  }
  t.same((await readdir(dir)).sort(), ['file']);
});
