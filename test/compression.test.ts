// Compression against +C (issue 9, item 3): a directory with +c or a compression property
// makes chattr +C fail with "Invalid argument", and a compress-force mount stores +C files
// uncompressed. The scriptlet and apply say so in one line; status names it. Real Btrfs.
import t from 'tap';
import { execa } from 'execa';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planArtifacts } from '../src/plan.js';
import { renderPlan } from '../src/render/render.js';
import { loadTemplates } from '../src/templates.js';
import { PRELUDE, SHELLS, renderFor, result } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { builtCli } from './helpers/cli.js';
import { NOCOW_FN, readRan } from './helpers/capture.js';
import { runInFs } from './helpers/fs.js';

const cli = builtCli();

t.test('GIVEN directories with +c, with a compression property, and a compress-force mount WHEN the hook, apply and status run THEN each says what stands in the way, in one line', async (t) => {
  const targets = [
    target({ name: 'flag', path: '/srv/flag', subvolume: 'never' }),
    target({ name: 'prop', path: '/srv/prop', subvolume: 'never' }),
  ];
  const a = await renderFor(targets, t);
  const forced = await renderFor([target({ name: 'forced', path: '/srv/forced', subvolume: 'never' })], t);
  const declaration = 'targets:\n  - {name: flag, path: /srv/flag, subvolume: never}\n  - {name: prop, path: /srv/prop, subvolume: never}\n';
  const fs = await runInFs({
    fs: 'btrfs',
    env: { A: a.dir, F: forced.dir, CLI: cli },
    script: String.raw`${PRELUDE}${NOCOW_FN}
      printf '%s' '${declaration}' >"$A/decl.yaml"
      mkdir -p "$R/srv/flag" "$R/srv/prop" "$R/srv/forced"
      chattr +c "$R/srv/flag"
      btrfs property set "$R/srv/prop" compression zstd
      run hook dash hook
      run hook2 dash hook
      nocow apply apply --root "$R" -c "$A/decl.yaml"
      nocow status status --root "$R" -c "$A/decl.yaml"
      nocow json status --root "$R" -c "$A/decl.yaml" --json
      echo "$(lsattr -d "$R/srv/flag" | cut -d' ' -f1) $(lsattr -d "$R/srv/prop" | cut -d' ' -f1)" >"$A/flags"
      mount -o remount,compress-force=zstd "$MNT"
      A=$F run forced dash hook`,
  });
  t.equal(fs.exitCode, 0, fs.stderr);
  const hook = await result(a, 'hook');
  t.equal(hook.rc, 0);
  t.equal(hook.out, '');
  t.match(
    hook.err,
    /^nocow: flag: warning: cannot set \+C on \S+\/srv\/flag: \S+\/srv\/flag is marked for compression \(\+c, compression=zlib\), which \+C cannot be set with: chattr -c it, declare compression: clear, or declare nocow: false\nnocow: prop: warning: cannot set \+C on \S+\/srv\/prop: \S+\/srv\/prop is marked for compression \(\+c, compression=zstd\), which \+C cannot be set with: chattr -c it, declare compression: clear, or declare nocow: false\n$/,
    'one line each, naming the cause and the way out, not a raw chattr error',
  );
  t.same(await result(a, 'hook2'), hook, 'the same on every run, no more');
  const read = (name: string) => readFile(join(a.dir, name), 'utf8');
  t.equal(await read('apply.err'), hook.err, 'apply says exactly what the hook says');
  t.equal(await read('status.rc'), '1\n', 'status: the targets deviate');
  const status = await read('status.out');
  t.match(status, /no \+C on the directory: it is marked for compression \(\+c, compression=zlib\), which \+C cannot be set with \(chattr -c \S+\/srv\/flag, then nocow apply\)/);
  t.match(status, /no \+C on the directory: it is marked for compression \(\+c, compression=zstd\), which \+C cannot be set with \(chattr -c \S+\/srv\/prop, then nocow apply\)/);
  t.match(await read('json.out'), /"no \+C on the directory: it is marked for compression \(\+c, compression=zlib\)/, 'and in --json');
  t.equal(await read('flags'), '--------c------------- --------c-------------\n', 'nothing changed: +c and the property stay');
  t.match((await result(forced, 'forced')).out, /^nocow: forced: set-nocow: \+C on \S+\/srv\/forced \(the file system is mounted compress-force: files with \+C there are stored uncompressed\)\n$/);
});

t.test('GIVEN a compress-force Btrfs mounted at a mount point whose name holds a space, on top of a tmpfs WHEN the hook sets +C below it THEN it notes compress-force, as status does: the mount table\'s \\040 is read as the space it stands for', async (t) => {
  const forced = await renderFor([target({ name: 'forced', path: '/srv/forced', subvolume: 'never' })], t);
  const fs = await runInFs({
    fs: 'btrfs',
    env: { A: forced.dir, CLI: cli },
    script: String.raw`${PRELUDE}${NOCOW_FN}
      printf 'targets:\n  - {name: forced, path: /srv/forced, subvolume: never}\n' >"$A/decl.yaml"
      mkdir -p "$MNT/inner/srv/forced" "$MNT/t"
      mount -t tmpfs none "$MNT/t"
      mkdir "$MNT/t/with space"
      mount --bind "$MNT/inner" "$MNT/t/with space"
      mount -o remount,compress-force=zstd "$MNT"
      grep -c 'with\\040space btrfs .*compress-force' /proc/self/mounts >"$A/listed"
      R="$MNT/t/with space"
      nocow status status --root "$R" -c "$A/decl.yaml"
      run forced dash hook`,
  });
  t.equal(fs.exitCode, 0, fs.stderr);
  t.equal(await readFile(join(forced.dir, 'listed'), 'utf8'), '1\n', 'the mount table names the mount point with \\040');
  t.match(await readFile(join(forced.dir, 'status.out'), 'utf8'), /compress-force/, 'status: the mount is compress-force');
  const hook = await result(forced, 'forced');
  t.match(hook, { err: '', rc: 0 });
  t.match(hook.out, / \(the file system is mounted compress-force: files with \+C there are stored uncompressed\)\n$/, 'the note of the mount point with a space, not of the tmpfs below it');
  t.match(hook.out, /^nocow: forced: set-nocow: \+C on \S+\/t\/with space\/srv\/forced \(the file system is mounted compress-force: files with \+C there are stored uncompressed\)\n$/);
});

// Issue 19, item 2: `compression: clear` clears the directory's compression marks just before +C.
const CLEARED = [
  target({ name: 'flag', path: '/srv/flag', subvolume: 'never', compression: 'clear' }),
  target({ name: 'prop', path: '/srv/prop', subvolume: 'never', compression: 'clear' }),
  target({ name: 'none', path: '/srv/none', subvolume: 'never', compression: 'clear' }),
  target({ name: 'conv', path: '/srv/conv', subvolume: 'auto', compression: 'clear' }),
  target({ name: 'made', path: '/srv/zparent/made', subvolume: 'never', compression: 'clear' }),
];

/** Bash: the marked directories of CLEARED under $R, afresh; `marks LABEL` records each one's flags, compression property, kind. */
const MARKED = String.raw`
marked() {
  rm -rf "$R/srv"
  mkdir -p "$R/srv/flag" "$R/srv/prop" "$R/srv/none" "$R/srv/conv" "$R/srv/zparent"
  chattr +c "$R/srv/flag"
  btrfs property set "$R/srv/prop" compression zstd
  head -c 65536 /dev/zero >"$R/srv/prop/file"
  btrfs property set "$R/srv/none" compression none
  btrfs property set "$R/srv/conv" compression zstd
  btrfs property set "$R/srv/zparent" compression zstd
}
marks() {
  for d in flag prop prop/file none conv zparent zparent/made; do
    if [ -e "$R/srv/$d" ]; then
      echo "$d $(lsattr -d "$R/srv/$d" | cut -d' ' -f1) [$(btrfs property get "$R/srv/$d" compression)] $(subvol "$R/srv/$d")"
    else
      echo "$d missing"
    fi
  done >"$A/$1.marks"
}
`;

for (const shell of SHELLS) {
  t.test(`GIVEN directories with +c, the compression property and compression: none, declared compression: clear WHEN the hook runs in ${shell} THEN --dry-run and --check change nothing and print the chattr -c; a run clears each directory's marks (not its files') and sets +C, saying so; a second run is silent`, async (t) => {
    const a = await renderFor(CLEARED, t);
    const fs = await runInFs({
      fs: 'btrfs',
      env: { A: a.dir, SH: shell },
      script: String.raw`${PRELUDE}${MARKED}
        marked
        marks before
        capture dry $SH "$A/nocow-apply.sh" --root "$R" --dry-run
        capture check $SH "$A/nocow-apply.sh" --root "$R" --check
        marks dry
        capture first $SH "$A/nocow-apply.sh" --root "$R"
        marks after
        capture second $SH "$A/nocow-apply.sh" --root "$R"`,
    });
    t.equal(fs.exitCode, 0, fs.stderr);
    const read = (name: string) => readFile(join(a.dir, name), 'utf8');
    const before = await read('before.marks');
    t.equal(
      before,
      'flag --------c------------- [compression=zlib] no\nprop --------c------------- [compression=zstd] no\nprop/file --------c------------- [compression=zstd] no\nnone ---------------------m [compression=none] no\nconv --------c------------- [compression=zstd] no\nzparent --------c------------- [compression=zstd] no\nzparent/made missing\n',
      'the marks as set up: +c, the property, +m',
    );
    const dry = await result(a, 'dry');
    t.match(dry, { rc: 0, err: '' });
    for (const d of ['flag', 'prop', 'none']) t.match(dry.out, new RegExp(`^nocow: ${d}: would: chattr -c -m -- \\S+/srv/${d}$`, 'm'), `dry: ${d}'s marks would be cleared`);
    t.match(dry.out, /^nocow: conv: would: chattr -c -m -- \S+\/srv\/conv\.nocow-new$/m, 'dry: the new subvolume would take the old one\'s property, and lose it');
    t.match(dry.out, /^nocow: made: would: chattr -c -m -- \S+\/srv\/zparent\/made$/m, 'dry: the new directory would inherit its parent\'s marks, and lose them');
    t.match(dry.out, /^nocow: flag: set-nocow: cleared compression \(\+c, compression=zlib\), then \+C on \S+\/srv\/flag$/m, 'dry: the line the run prints');
    t.match(await result(a, 'check'), { rc: 1, err: '' }, '--check: something would change');
    t.equal(await read('dry.marks'), before, 'nothing changed by --dry-run or --check');

    const first = await result(a, 'first');
    t.match(first, { rc: 0, err: '' });
    const lines = first.out.replace(/\S+\/srv\//g, '/srv/').split('\n');
    t.same(
      lines,
      [
        'nocow: flag: set-nocow: cleared compression (+c, compression=zlib), then +C on /srv/flag',
        'nocow: prop: set-nocow: cleared compression (+c, compression=zstd), then +C on /srv/prop for new files; 1 existing file keeps copy-on-write (nocow migrate rewrites it)',
        'nocow: none: set-nocow: cleared compression (+m, compression=none), then +C on /srv/none',
        'nocow: conv: converted: empty directory /srv/conv into a subvolume with +C (compression cleared first: +c, compression=zstd)',
        'nocow: made: created: directory /srv/zparent/made',
        'nocow: made: set-nocow: cleared compression (+c, compression=zstd), then +C on /srv/zparent/made',
        '',
      ],
      'one line per change, each saying what was cleared',
    );
    t.equal(
      await read('after.marks'),
      'flag ---------------C------ [] no\nprop ---------------C------ [] no\nprop/file --------c------------- [compression=zstd] no\nnone ---------------C------ [] no\nconv ---------------C------ [] yes\nzparent --------c------------- [compression=zstd] no\nzparent/made ---------------C------ [] no\n',
      'each target +C with no mark and no property left; the file inside and the parent keep theirs',
    );
    t.same(await result(a, 'second'), { rc: 0, out: '', err: '' }, 'the second run changes nothing and prints nothing');
  });
}

t.test('GIVEN the hook with -c clear, nocow apply with compression: clear, and each given a bad compression value WHEN run THEN status says apply clears the marks, and they are cleared before +C; a bad value is one line, exit 2, nothing changed', async (t) => {
  const a = await renderFor([target({ name: 'unused', path: '/srv/unused', subvolume: 'never' })], t);
  const fs = await runInFs({
    fs: 'btrfs',
    env: { A: a.dir, CLI: cli },
    script: String.raw`${PRELUDE}${NOCOW_FN}
      mkdir -p "$R/srv/op" "$R/srv/decl"
      chattr +c "$R/srv/op" "$R/srv/decl"
      capture bad dash "$A/nocow-apply.sh" --root "$R" -c bogus -s never -- /srv/op
      capture badsl dash "$A/nocow-apply.sh" --root "$R" --scriptlet -cbogus -- /srv/op
      printf 'targets:\n  - {name: decl, path: /srv/decl, subvolume: never, compression: bogus}\n' >"$A/bad.yaml"
      nocow applybad apply --root "$R" -c "$A/bad.yaml"
      echo "$(flags "$R/srv/op") $(flags "$R/srv/decl")" >"$A/untouched"
      capture op dash "$A/nocow-apply.sh" --root "$R" -c clear -s never -- /srv/op
      printf 'targets:\n  - {name: decl, path: /srv/decl, subvolume: never, compression: clear}\n' >"$A/good.yaml"
      nocow status status --root "$R" -c "$A/good.yaml"
      nocow statusjson status --root "$R" -c "$A/good.yaml" --json
      nocow apply apply --root "$R" -c "$A/good.yaml"
      echo "$(flags "$R/srv/op") $(flags "$R/srv/decl")" >"$A/cleared"`,
  });
  t.equal(fs.exitCode, 0, fs.stderr);
  const read = (name: string) => readFile(join(a.dir, name), 'utf8');
  t.same(await result(a, 'bad'), { rc: 2, out: '', err: 'nocow-apply.sh: -c bogus: expected one of: keep, clear\n' }, 'the hook: one line, exit 2');
  t.same(await result(a, 'badsl'), { rc: 0, out: '', err: 'nocow-apply.sh: -c bogus: expected one of: keep, clear\n' }, 'with --scriptlet: the same line, exit 0');
  const applybad = await result(a, 'applybad');
  t.not(applybad.rc, 0, 'nocow apply refuses the declaration');
  t.equal(applybad.out, '');
  t.match(applybad.err, /^nocow: error: \S+bad\.yaml: targets\[0\]\.compression: "bogus" is not allowed; expected one of: keep, clear\n$/, 'one line naming the field, the value and what is allowed');
  t.equal(await read('untouched'), '--------c------------- --------c-------------\n', 'nothing changed by a bad value');
  t.match(await result(a, 'op'), { rc: 0, err: '', out: /^nocow: srv-op: set-nocow: cleared compression \(\+c, compression=zlib\), then \+C on \S+\/srv\/op\n$/ });
  t.match(await result(a, 'status'), { rc: 1, out: /no \+C on the directory: it is marked for compression \(\+c, compression=zlib\), which \+C cannot be set with \(nocow apply clears it first: compression: clear\)/ }, 'status: apply will clear it');
  t.same(JSON.parse((await result(a, 'statusjson')).out).targets[0].declaration, { subvolume: 'never', nocow: true, redundancy: 'keep-checksums', compression: 'clear' }, 'status --json: the declared compression policy');
  t.match(await result(a, 'apply'), { rc: 0, err: '', out: /^nocow: decl: set-nocow: cleared compression \(\+c, compression=zlib\), then \+C on \S+\/srv\/decl\n$/ });
  t.equal(await read('cleared'), '---------------C------ ---------------C------\n', 'both +C, +c gone');
});

t.test('GIVEN a package whose %posttrans is %nocow_posttrans -c clear WHEN rpm installs it onto a Btrfs root where its directory already exists with +c THEN the directory becomes a +C subvolume without +c, and rpm prints the one line saying so', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'nocow-rpm-compress-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const [macros] = renderPlan(planArtifacts({ sources: ['config:rpm.yaml'], targets: [target()] }, ['macros'], 'test'), await loadTemplates());
  await writeFile(join(work, 'macros.nocow'), macros!.content);
  const path = '/var/lib/nocow-test/images';
  await writeFile(
    join(work, 'test.spec'),
    `Name: nocow-compress
Version: 1
Release: 1
Summary: Test package for the macros' compression option
License: MIT
BuildArch: noarch
%nocow_requires

%description
Owns one directory, made a NOCOW subvolume on Btrfs, its compression cleared first.

%install
mkdir -p %{buildroot}${path}

%files
%dir %attr(0711,root,kvm) ${path}

%posttrans
%nocow_posttrans -c clear -m 0711 -g kvm ${path}
`,
  );
  const rpmbuild = await execa('rpmbuild', ['--quiet', '--load', join(work, 'macros.nocow'), '--define', `_topdir ${work}/top`, '-bb', join(work, 'test.spec')], { reject: false });
  t.equal(rpmbuild.exitCode, 0, rpmbuild.stderr);
  const evaluate = (call: string) => execa('rpm', ['--load', join(work, 'macros.nocow'), '--eval', call], { reject: false });
  const lastLine = async (call: string) => (await evaluate(call)).stdout.trimEnd().split('\n').at(-1);
  t.equal(await lastLine('%nocow_posttrans -c clear /srv/x'), "nocow_target 'srv-x' '/srv/x' 'auto' 'yes' '0755' 'root' 'root' 'keep-checksums' 'clear'", '%nocow_posttrans -c clear: the target\'s ninth word');
  t.equal(await lastLine('%nocow_posttrans /srv/x'), "nocow_target 'srv-x' '/srv/x' 'auto' 'yes' '0755' 'root' 'root' 'keep-checksums'", 'without -c: the call as before');
  t.match(await lastLine('%nocow_apply -c clear -s never /srv/x'), / --scriptlet -s never -c clear -- '\/srv\/x' \|\| :$/, '%nocow_apply -c clear: passed to the helper');
  for (const call of ['%nocow_posttrans -c bogus /srv/x', '%nocow_apply -c bogus /srv/x']) {
    const r = await evaluate(call);
    t.not(r.exitCode, 0, `${call}: rpm fails`);
    t.match(r.stderr, /: -c bogus: expected one of: keep, clear/, `${call}: in the words of a declaration`);
  }
  const fs = await runInFs({
    fs: 'btrfs',
    env: { A: work, CHROOT_SH: join(import.meta.dirname, 'helpers', 'chroot.sh'), P: path, PKG: join(work, 'top/RPMS/noarch/nocow-compress-1-1.noarch.rpm') },
    script: String.raw`${NOCOW_FN}
      . "$CHROOT_SH"
      R=$MNT/root
      make_root "$R"
      mkdir -p "$R$P"
      chattr +c "$R$P"
      lsattr -d "$R$P" | cut -d' ' -f1 >"$A/before"
      capture install rpm_root "$R" -i "$PKG"
      echo "$(lsattr -d "$R$P" | cut -d' ' -f1) [$(btrfs property get "$R$P" compression)] $(stat -c '%i %a %g' "$R$P")" >"$A/after"`,
  });
  t.equal(fs.exitCode, 0, fs.stderr);
  const read = (name: string) => readFile(join(work, name), 'utf8');
  t.equal(await read('before'), '--------c-------------\n', 'the directory is marked for compression before the install');
  t.same(await readRan(work, 'install'), {
    rc: 0,
    out: `nocow: var-lib-nocow-test-images: converted: empty directory ${path} into a subvolume with +C (compression cleared first: +c, compression=zlib)\n`,
    err: '',
  });
  t.equal(await read('after'), '---------------C------ [] 256 711 36\n', '+C, no +c, no compression property; a subvolume with the packaged mode and group');
});
