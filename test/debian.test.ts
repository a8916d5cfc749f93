// The Debian packaging (packaging/build-deb.sh, packaging/dh-nocow/): the two .debs it builds,
// lintian on them, and the add-on at work: a downstream source package with
// `Build-Depends: dh-sequence-nocow` built by Debian 12's own debhelper (dpkg-buildpackage in a
// throwaway root that has the host's /usr and dpkg database, with dh-nocow and nocow-apply-hook
// installed there by dpkg --root from the built .debs; the machine's own dpkg database is never
// touched), then installed with the hook into a root on real Btrfs (+C subvolumes) and on ext4
// (nothing from the helper), and purged (the data stays).
import t from 'tap';
import { execa } from 'execa';
import { rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtCli } from './helpers/cli.js';
import { parseObservations, runInFs, section } from './helpers/fs.js';

const REPO = join(import.meta.dirname, '..');
const CHROOT_SH = join(import.meta.dirname, 'helpers', 'chroot.sh');
const V = (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const HOOK = '/usr/libexec/nocow-kit/nocow-apply.sh';

const WORK = await mkdtemp(join(tmpdir(), 'nocow-debian-'));
t.teardown(() => rmSync(WORK, { recursive: true, force: true }));
const OUT = join(WORK, 'out');
const DEBS = { hook: join(OUT, `nocow-apply-hook_${V}_all.deb`), addon: join(OUT, `dh-nocow_${V}_all.deb`) };
const CLI = builtCli();

/** Once for the file: the two .debs. */
async function setUp() {
  const started = Date.now();
  const build = await execa('sh', [join(REPO, 'packaging/build-deb.sh'), '--no-build', OUT], { reject: false });
  if (build.exitCode !== 0) throw new Error(`packaging/build-deb.sh failed (${build.exitCode}):\n${build.stderr}`);
  return { build, seconds: (Date.now() - started) / 1000 };
}
const ready = setUp().catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
/** Every test fails, with the cause, when the setup did. */
async function setup() {
  const s = await ready;
  if (s instanceof Error) throw s;
  return s;
}

const field = async (deb: string, name: string) => (await execa('dpkg-deb', ['-f', deb, name])).stdout;
/** Regular files of a .deb, as absolute paths with their modes. */
const files = async (deb: string) =>
  (await execa('dpkg-deb', ['-c', deb])).stdout
    .split('\n')
    .filter((l) => l.startsWith('-'))
    .map((l) => `${l.split(/\s+/)[0]} ${l.replace(/^.* \.\//, '/')}`);
/** A control file of a .deb (postinst, postrm, …), or undefined when it has none. */
async function controlFile(deb: string, name: string): Promise<string | undefined> {
  const dir = await mkdtemp(join(WORK, 'control-'));
  await execa('dpkg-deb', ['-e', deb, dir]);
  return readFile(join(dir, name), 'utf8').catch(() => undefined);
}

t.test('GIVEN the checkout WHEN packaging/build-deb.sh builds it THEN nocow-apply-hook and dh-nocow, all, each holding what it should', async (t) => {
  const { build, seconds } = await setup();
  t.comment(`build-deb.sh: ${seconds.toFixed(1)} s`);
  t.same(build.stdout.split('\n').sort(), Object.values(DEBS).sort(), 'it prints the path of each package it wrote, and writes those two');
  t.equal(build.stderr, '', 'silent on stderr');

  for (const deb of Object.values(DEBS)) t.equal(await field(deb, 'Architecture'), 'all', `${deb}: Architecture: all`);
  t.same(await files(DEBS.hook), [
    `-rwxr-xr-x ${HOOK}`,
    '-rw-r--r-- /usr/share/doc/nocow-apply-hook/changelog.gz',
    '-rw-r--r-- /usr/share/doc/nocow-apply-hook/copyright',
  ], 'nocow-apply-hook: the helper, executable, and what every package carries');
  t.equal(await field(DEBS.hook, 'Depends'), 'e2fsprogs', 'the tools it needs that are not Essential (coreutils, findutils are)');
  const generated = await mkdtemp(join(WORK, 'generated-'));
  await execa(process.execPath, [CLI, 'generate', 'hook', '-o', generated]);
  const extracted = await mkdtemp(join(WORK, 'hook-x-'));
  await execa('dpkg-deb', ['-x', DEBS.hook, extracted]);
  t.ok((await readFile(join(extracted, HOOK))).equals(await readFile(join(generated, 'nocow-apply.sh'))), 'the helper is what nocow generate hook writes');

  t.same(await files(DEBS.addon), [
    '-rwxr-xr-x /usr/bin/dh_nocow',
    '-rw-r--r-- /usr/share/debhelper/autoscripts/postinst-nocow',
    '-rw-r--r-- /usr/share/doc/dh-nocow/changelog.gz',
    '-rw-r--r-- /usr/share/doc/dh-nocow/copyright',
    '-rw-r--r-- /usr/share/man/man1/dh_nocow.1.gz',
    '-rw-r--r-- /usr/share/perl5/Debian/Debhelper/Sequence/nocow.pm',
  ], 'dh-nocow: the program, its man page, its sequence and its postinst snippet');
  t.equal(await field(DEBS.addon, 'Provides'), 'dh-sequence-nocow', 'Provides: dh-sequence-nocow');
  t.equal(await field(DEBS.addon, 'Depends'), `debhelper (>= 13), nocow-apply-hook (= ${V})`, 'debhelper 13, and the helper it checks lines with');
  const addon = await mkdtemp(join(WORK, 'addon-x-'));
  await execa('dpkg-deb', ['-x', DEBS.addon, addon]);
  const man = await execa('man', ['-l', join(addon, 'usr/share/man/man1/dh_nocow.1.gz')], { env: { MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80' }, reject: false });
  t.equal(man.exitCode, 0, man.stderr);
  t.match(man.stdout, /^NAME\n\s+dh_nocow - /m, 'man renders the POD page, NAME first');
  t.match(man.stdout, /debian\/package\.nocow/, 'it documents debian/PACKAGE.nocow');
  const snippet = await readFile(join(addon, 'usr/share/debhelper/autoscripts/postinst-nocow'), 'utf8');
  t.notMatch(snippet, /@[A-Z]+@/, 'no placeholder left in the snippet');
  t.notMatch(await readFile(join(addon, 'usr/bin/dh_nocow'), 'utf8'), /@[A-Z]+@/, 'nor in dh_nocow');

  const lint = await execa('shellcheck', ['--shell=sh', '--severity=style', join(REPO, 'packaging/build-deb.sh')], { reject: false });
  t.equal(lint.exitCode, 0, `build-deb.sh is shellcheck-clean\n${lint.stdout}`);
  const lintSnippet = await execa('shellcheck', ['--shell=sh', '--severity=style', '-'], { input: snippet.replace('#ARGS#', "-m '0711' -- '/srv/a'"), reject: false });
  t.equal(lintSnippet.exitCode, 0, `the postinst snippet, filled in, is shellcheck-clean\n${lintSnippet.stdout}`);
  const perl = await execa('perl', ['-c', join(addon, 'usr/bin/dh_nocow')], { reject: false });
  t.equal(perl.exitCode, 0, `perl -c dh_nocow\n${perl.stderr}`);
  const pod = await execa('podchecker', [join(addon, 'usr/bin/dh_nocow')], { reject: false });
  t.equal(pod.exitCode, 0, `podchecker: no error or warning\n${pod.stderr}`);
});

// Each accepted warning, with why it stays.
const LINTIAN_ACCEPTED = [
  // The helper names /var/lib/dpkg in its list of system directories it never makes a target
  // (src/facts.ts REFUSED_SYSTEM_TARGETS); it never reads the database.
  'W: nocow-apply-hook: uses-dpkg-database-directly [usr/libexec/nocow-kit/nocow-apply.sh]',
];

t.test('GIVEN the two .debs WHEN checked by lintian (pedantic, info shown) THEN no error, and only the accepted warnings', async (t) => {
  await setup();
  const lint = await execa('lintian', ['--pedantic', '--display-info', '--display-experimental', DEBS.hook, DEBS.addon], { reject: false });
  const findings = lint.stdout.split('\n').filter(Boolean);
  t.same(findings.filter((l) => /^E: /.test(l)), [], 'no E: line');
  t.same(findings, LINTIAN_ACCEPTED, `only the accepted findings (no I:, P:, X: either)\n${lint.stderr}`);
  t.equal(lint.exitCode, 0, 'exit status 0');
});

const IMAGES = '/var/lib/libvirt/images';
const DISKS = '/srv/apply/disks';
/** Every character a tmpfiles.d field or glob reads specially that a .nocow word can hold. */
const ODD = `/srv/apply/o%d"d\\'s*?[1]{a,b}`;
const ODD_NAME = 'srv-apply-o_d_d__s___1__a_b_';

/** A native source package nocow-downstream whose debian/nocow-downstream.nocow is NOCOW. */
async function downstreamSource(dir: string, nocow: string, rules = '#!/usr/bin/make -f\n%:\n\tdh $@\n', compat = 13) {
  const debian = join(dir, 'debian');
  await mkdir(join(debian, 'source'), { recursive: true });
  await writeFile(join(debian, 'control'), `Source: nocow-downstream
Section: misc
Priority: optional
Maintainer: nocow-kit tests <nocow-kit@example.invalid>
Build-Depends: debhelper-compat (= ${compat}), dh-sequence-nocow
Standards-Version: 4.6.2
Rules-Requires-Root: no

Package: nocow-downstream
Architecture: all
Depends: \${misc:Depends}
Description: downstream package of the nocow-kit Debian test
 Owns ${DISKS}, which its postinst makes a NOCOW subvolume on Btrfs.
`);
  await writeFile(join(debian, 'changelog'), `nocow-downstream (1) unstable; urgency=medium

  * Test build.

 -- nocow-kit tests <nocow-kit@example.invalid>  Sun, 29 Nov 2026 00:00:00 +0000
`);
  await writeFile(join(debian, 'rules'), rules);
  await chmod(join(debian, 'rules'), 0o755);
  await writeFile(join(debian, 'source', 'format'), '3.0 (native)\n');
  await writeFile(join(debian, 'nocow-downstream.dirs'), `${DISKS.slice(1)}\n`);
  await writeFile(join(debian, 'nocow-downstream.nocow'), nocow);
}

const GOOD_NOCOW = `# The images, created by the helper, and the directory the package ships.
-m 0711 ${IMAGES} ${DISKS}

-s never -o 0 -g nocowtest -- ${ODD}
`;

// In the namespace runInFs makes: a root with the host's /usr under a writable overlay, its
// /etc/dpkg and a copy of its dpkg database (so Build-Depends are checked for real, against
// the host's debhelper), where dpkg --root installs the packages the test gives it.
const DPKG_ROOT_SH = String.raw`
. "$CHROOT_SH"
R=$MNT/root
make_root "$R"
mkdir "$MNT/usr-upper" "$MNT/usr-work" "$R/root" "$R/var/log" "$R/var/cache" "$R/build"
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$MNT/usr-upper,workdir=$MNT/usr-work" "$R/usr"
cp -a /etc/dpkg "$R/etc/"
# The host's users and groups (man-db's trigger runs as man), and the test's own group.
cp /etc/passwd /etc/group "$R/etc/"
echo 'nocowtest:x:4242:' >>"$R/etc/group"
cp -a /var/lib/dpkg "$R/var/lib/"
# in_root COMMAND…: COMMAND chrooted into R, with a clean environment.
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"; }
`;

const BUILD = String.raw`${DPKG_ROOT_SH}
# build NAME: dpkg-buildpackage -us -uc -b of the source $SRC/NAME inside R; its .deb into $A.
build() {
  cp -a "$SRC/$1" "$R/build/$1"
  rc=0; in_root sh -c 'cd "/build/$1" && exec dpkg-buildpackage -us -uc -b' sh "$1" >"$A/$1.out" 2>"$A/$1.err" || rc=$?; echo "$rc" >"$A/$1.rc"
  for deb in "$R/build/"*.deb; do [ ! -e "$deb" ] || mv "$deb" "$A/$1.deb"; done
}
build before
rc=0; dpkg --root "$R" -i "$HOOK_DEB" "$ADDON_DEB" >"$A/install.out" 2>"$A/install.err" || rc=$?; echo "$rc" >"$A/install.rc"
build good
build bad
build option
build noscripts
build compat12
dpkg --root "$R" --no-pager -l dh-nocow nocow-apply-hook | tail -n 2 | cut -c1-40 >"$A/installed"`;

/** The downstream package, built once: its .deb and the outputs of each build. */
async function buildDownstream() {
  await setup();
  const A = await mkdtemp(join(WORK, 'build-'));
  const SRC = await mkdtemp(join(WORK, 'src-'));
  await downstreamSource(join(SRC, 'before'), GOOD_NOCOW);
  await downstreamSource(join(SRC, 'good'), GOOD_NOCOW);
  await downstreamSource(join(SRC, 'bad'), `${IMAGES}\n-m 9999 ${DISKS}\n`);
  await downstreamSource(join(SRC, 'option'), `--root /x ${DISKS}\n`);
  await downstreamSource(join(SRC, 'compat12'), GOOD_NOCOW, undefined, 12);
  await downstreamSource(join(SRC, 'noscripts'), GOOD_NOCOW, '#!/usr/bin/make -f\n%:\n\tdh $@\noverride_dh_nocow:\n\tdh_nocow --noscripts\n');
  const started = Date.now();
  const run = await runInFs({ fs: 'btrfs', sizeMiB: 512, script: BUILD, env: { A, SRC, CHROOT_SH, HOOK_DEB: DEBS.hook, ADDON_DEB: DEBS.addon } });
  if (run.exitCode !== 0) throw new Error(`the downstream build failed:\n${run.stderr}`);
  const read = (name: string) => readFile(join(A, name), 'utf8');
  return { A, read, deb: join(A, 'good.deb'), seconds: (Date.now() - started) / 1000 };
}
const built = buildDownstream().catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
async function downstream() {
  const b = await built;
  if (b instanceof Error) throw b;
  return b;
}

t.test('GIVEN a source package with Build-Depends: dh-sequence-nocow and debian/PKG.nocow WHEN dpkg-buildpackage builds it with Debian 12\'s debhelper THEN its postinst calls the helper, its Depends has nocow-apply-hook, and a tmpfiles.d file per path is what nocow generate writes', async (t) => {
  const { read, deb, seconds } = await downstream();
  t.comment(`the root, dpkg --root -i of the add-on and six dpkg-buildpackage runs: ${seconds.toFixed(1)} s`);
  t.not(await read('before.rc'), '0\n', 'control: without dh-nocow installed, the build stops');
  t.match(await read('before.err'), /Unmet build dependencies: dh-sequence-nocow/, 'for the Build-Depends (the check is real: no -d)');
  // man-db's trigger (the man page) runs with the host's debconf answer, which may say no.
  const installErr = (await read('install.err')).split('\n').filter((l) => l && l !== "Not building database; man-db/auto-update is not 'true'.");
  t.same({ rc: await read('install.rc'), err: installErr }, { rc: '0\n', err: [] }, 'dpkg --root -i of the two .debs: exit 0, nothing on stderr but man-db\'s trigger');
  t.match(await read('installed'), /^ii {2}dh-nocow\s.*\nii {2}nocow-apply-hook\s/, 'both installed in the root\'s database');
  t.equal(await read('good.rc'), '0\n', `dpkg-buildpackage -us -uc -b\n${await read('good.err')}`);
  t.match(await read('good.out'), /dh_nocow/, 'dh ran dh_nocow');

  const depends = await field(deb, 'Depends');
  t.same(depends.split(/,\s*/), ['nocow-apply-hook'], `Depends: nocow-apply-hook, through \${misc:Depends} (${depends})`);
  const postinst = await controlFile(deb, 'postinst');
  const call = (args: string) => `if [ "$1" = "configure" ] && [ -x "$DPKG_ROOT${HOOK}" ]; then\n\t"$DPKG_ROOT${HOOK}" --scriptlet \${DPKG_ROOT:+--root="$DPKG_ROOT"} ${args} || :\nfi\n`;
  const odd = `'${ODD.replaceAll("'", `'\\''`)}'`;
  t.ok(postinst?.includes(`# Automatically added by dh_nocow/${V}\n${call(`'-m' '0711' -- '${IMAGES}' '${DISKS}'`)}# End automatically added section`), `the postinst calls the helper for the first line, on configure, when it is installed\n${postinst}`);
  t.ok(postinst?.includes(call(`'-s' 'never' '-o' '0' '-g' 'nocowtest' -- ${odd}`)), 'and for the second, each word single-quoted');
  t.ok((postinst?.indexOf('dh_nocow') ?? -1) < (postinst?.indexOf('dh_installtmpfiles') ?? -1), 'before dh_installtmpfiles\' systemd-tmpfiles --create, which activates the tmpfiles.d files');
  t.match(postinst, /systemd-tmpfiles .*--create nocow-srv-apply-disks\.conf nocow-srv-apply-o_d_d__s___1__a_b_\.conf nocow-var-lib-libvirt-images\.conf/, 'dh_installtmpfiles activates the three files');
  // SC1003 (info) misreads the quoted backslash before '\'' in the odd path's word as an attempt to escape a quote.
  const lint = await execa('shellcheck', ['--shell=sh', '--severity=style', '--exclude=SC1003', '-'], { input: postinst ?? '', reject: false });
  t.equal(lint.exitCode, 0, `the postinst is shellcheck-clean\n${lint.stdout}`);
  t.equal(await controlFile(deb, 'postrm'), undefined, 'no postrm: nothing of the add-on runs on remove or purge');

  const x = await mkdtemp(join(WORK, 'downstream-x-'));
  await execa('dpkg-deb', ['-x', deb, x]);
  t.same((await readdir(join(x, 'usr/lib/tmpfiles.d'))).sort(), ['nocow-srv-apply-disks.conf', `nocow-${ODD_NAME}.conf`, 'nocow-var-lib-libvirt-images.conf'], 'one tmpfiles.d file per path, named by the target\'s name');
  // The same targets declared for nocow generate tmpfiles: the lines must be the same.
  const decl = join(WORK, 'downstream.json');
  await writeFile(decl, JSON.stringify({ targets: [
    { name: 'var-lib-libvirt-images', path: IMAGES, mode: '0711' },
    { name: 'srv-apply-disks', path: DISKS, mode: '0711' },
    { name: ODD_NAME, path: ODD, subvolume: 'never', user: '0', group: 'nocowtest' },
  ] }));
  const generated = await mkdtemp(join(WORK, 'tmpfiles-'));
  const gen = await execa(process.execPath, [CLI, 'generate', 'tmpfiles', '-c', decl, '-o', generated], { reject: false });
  t.equal(gen.exitCode, 0, `nocow generate tmpfiles for the same targets\n${gen.stderr}`);
  const lines = (text: string) => text.split('\n').filter((l) => l && !l.startsWith('#'));
  for (const name of ['var-lib-libvirt-images', 'srv-apply-disks', ODD_NAME]) {
    const shipped = await readFile(join(x, `usr/lib/tmpfiles.d/nocow-${name}.conf`), 'utf8');
    t.same(lines(shipped), lines(await readFile(join(generated, `tmpfiles.d/nocow-${name}.conf`), 'utf8')), `nocow-${name}.conf: the lines nocow generate tmpfiles writes`);
  }
  t.equal(lines(await readFile(join(x, 'usr/lib/tmpfiles.d/nocow-var-lib-libvirt-images.conf'), 'utf8')).join('\n'), `v ${IMAGES} 0711 root root -\nh ${IMAGES} - - - - +C`, 'v and h +C');
});

t.test('GIVEN dh_nocow --noscripts in an override WHEN built THEN no call in the postinst, and still the dependency and the tmpfiles.d files', async (t) => {
  const { read, A } = await downstream();
  t.equal(await read('noscripts.rc'), '0\n', await read('noscripts.err'));
  const deb = join(A, 'noscripts.deb');
  t.notMatch((await controlFile(deb, 'postinst')) ?? '', /nocow-apply\.sh/, 'the postinst does not call the helper');
  t.equal(await field(deb, 'Depends'), 'nocow-apply-hook', 'Depends: nocow-apply-hook');
  t.match((await execa('dpkg-deb', ['-c', deb])).stdout, /\.\/usr\/lib\/tmpfiles\.d\/nocow-var-lib-libvirt-images\.conf/, 'the tmpfiles.d files');
});

t.test('GIVEN debhelper compat 12 WHEN built with dh-sequence-nocow THEN the sequence refuses, rather than leave dh_nocow out silently', async (t) => {
  const { read } = await downstream();
  t.not(await read('compat12.rc'), '0\n', 'the build stops');
  t.match(await read('compat12.err'), /dh-sequence-nocow needs debhelper compat level 13 or later/, 'with the reason');
});

t.test('GIVEN a .nocow line with a bad value, or an option %nocow_apply does not take WHEN built THEN dh_nocow stops the build with one line naming the file, the line and the rule', async (t) => {
  const { read } = await downstream();
  t.not(await read('bad.rc'), '0\n', 'a bad mode stops dpkg-buildpackage');
  const bad = (await read('bad.err')).split('\n').filter((l) => /dh_nocow/.test(l));
  t.same(bad, ['dh_nocow: error: debian/nocow-downstream.nocow:2: -m 9999: expected 3 or 4 octal digits'], 'one line: the file, line 2, the helper\'s words');
  t.not(await read('option.rc'), '0\n', 'an option of the helper but not of %nocow_apply stops it too');
  const option = (await read('option.err')).split('\n').filter((l) => /dh_nocow/.test(l));
  t.same(option, ['dh_nocow: error: debian/nocow-downstream.nocow:1: unknown option --root (expected [-m MODE] [-o OWNER] [-g GROUP] [-s auto|never] [--] PATH...)'], 'one line');
});

// Installs the hook and the downstream package into a fresh root (dpkg --root runs the
// maintainer scripts chrooted into it), writes data into both directories, then purges.
const INSTALL = String.raw`${DPKG_ROOT_SH}
rc=0; dpkg --root "$R" -i "$HOOK_DEB" "$PKG" >"$A/out" 2>"$A/err" || rc=$?; echo "$rc" >"$A/rc"
for p in "$R$IMAGES" "$R$DISKS" "$R$ODD"; do observe "$p"; done
lsattr -d "$R$IMAGES" "$R$DISKS" 2>/dev/null | cut -d' ' -f1 >"$A/lsattr" || :
stat -c '%a %U %G' "$R$IMAGES" >"$A/stat"
btrfs subvolume show "$R$IMAGES" >"$A/show-images" 2>&1 || :
btrfs subvolume show "$R$DISKS" >"$A/show-disks" 2>&1 || :
echo data >"$R$IMAGES/disk.img"
echo data >"$R$DISKS/disk.img"
rc=0; dpkg --root "$R" --purge nocow-downstream >"$A/purge.out" 2>"$A/purge.err" || rc=$?; echo "$rc" >"$A/purge.rc"
section purged
for p in "$R$IMAGES" "$R$DISKS"; do observe "$p"; done
cat "$R$IMAGES/disk.img" "$R$DISKS/disk.img" >"$A/data" 2>&1 || :
ls "$R/usr/lib/tmpfiles.d" >"$A/tmpfiles-left" 2>&1 || :
dpkg --root "$R" -s nocow-downstream >"$A/status" 2>&1 || :`;

t.test('GIVEN the built package and nocow-apply-hook WHEN dpkg --root installs them into a root on Btrfs, then on ext4, then purges THEN Btrfs: both paths +C subvolumes, the created one 0711; ext4: the helper does nothing and says nothing; purge leaves the directories and their data', async (t) => {
  const { deb } = await downstream();
  for (const fs of ['btrfs', 'ext4'] as const) {
    const A = await mkdtemp(join(WORK, `install-${fs}-`));
    const run = await runInFs({ fs, sizeMiB: fs === 'ext4' ? 256 : 512, script: INSTALL, env: { A, CHROOT_SH, HOOK_DEB: DEBS.hook, PKG: deb, IMAGES, DISKS, ODD } });
    t.equal(run.exitCode, 0, run.stderr);
    const read = (name: string) => readFile(join(A, name), 'utf8');
    const installed = parseObservations(run.stdout.split('SECTION\tpurged\n')[0]!);
    const purged = parseObservations(section(run.stdout, 'purged'));
    const images = installed.get(`/root${IMAGES}`);
    const disks = installed.get(`/root${DISKS}`);
    const odd = installed.get(`/root${ODD}`);
    const nocowLines = (await read('out')).split('\n').filter((l) => l.startsWith('nocow:'));
    t.equal(await read('rc'), '0\n', `${fs}: dpkg --root -i: exit 0\n${await read('err')}`);
    t.equal(await read('err'), '', `${fs}: nothing on stderr`);
    if (fs === 'btrfs') {
      t.same(
        nocowLines.map((l) => l.replace(/: [^:]*$/, '')),
        ['nocow: var-lib-libvirt-images: created', 'nocow: var-lib-libvirt-images: set-nocow', 'nocow: srv-apply-disks: converted', `nocow: ${ODD_NAME}: created`, `nocow: ${ODD_NAME}: set-nocow`],
        'btrfs: the postinst\'s helper, one line per change of each target',
      );
      t.same(
        { kind: images?.kind, inode: images?.inode, subvol: images?.subvol, nocow: images?.nocow, mode: images?.mode },
        { kind: 'dir', inode: 256, subvol: true, nocow: true, mode: 0o711 },
        'btrfs: the created path is a +C subvolume with -m 0711',
      );
      t.same({ kind: disks?.kind, inode: disks?.inode, subvol: disks?.subvol, nocow: disks?.nocow }, { kind: 'dir', inode: 256, subvol: true, nocow: true }, 'btrfs: the packaged path a +C subvolume');
      t.same({ kind: odd?.kind, subvol: odd?.subvol, nocow: odd?.nocow, uid: odd?.uid, gid: odd?.gid }, { kind: 'dir', subvol: false, nocow: true, uid: 0, gid: 4242 }, 'btrfs: -s never: a +C directory, not a subvolume, group nocowtest');
      t.match(await read('lsattr'), /^\S*C\S*\n\S*C\S*\n$/, 'lsattr -d: C on both');
      t.equal(await read('stat'), '711 root root\n', 'stat: 0711 root:root');
      t.match(await read('show-images'), /Subvolume ID:\s+\d+/, 'btrfs subvolume show knows the created one');
      t.match(await read('show-disks'), /Subvolume ID:\s+\d+/, 'and the packaged one');
    } else {
      t.same(nocowLines, [], 'ext4: the helper prints nothing');
      t.equal(disks?.nocow, false, 'ext4: the packaged directory as dpkg made it, without +C');
      // dh_installtmpfiles' systemd-tmpfiles --create makes the declared directories, as for any
      // tmpfiles.d file; its h +C has no effect on ext4, silently (its output goes to /dev/null).
      t.same({ kind: images?.kind, nocow: images?.nocow, mode: images?.mode }, { kind: 'dir', nocow: false, mode: 0o711 }, 'ext4: systemd-tmpfiles made the created path a plain directory, 0711, no +C');
    }
    t.equal(await read('purge.rc'), '0\n', `${fs}: dpkg --purge: exit 0\n${await read('purge.err')}`);
    t.same(
      (await read('purge.out')).split('\n').filter((l) => l.startsWith('nocow:')),
      [],
      `${fs}: purge runs nothing of the helper`,
    );
    t.match(await read('purge.err'), new RegExp(`directory '${DISKS}' not empty so not removed`), `${fs}: dpkg keeps the package's own directory, which holds data, and says so`);
    t.equal(await read('data'), 'data\ndata\n', `${fs}: the data in both directories is still there`);
    t.equal(purged.get(`/root${IMAGES}`)?.kind, 'dir', `${fs}: the directory the helper made is left`);
    if (fs === 'btrfs') t.same({ subvol: purged.get(`/root${IMAGES}`)?.subvol, nocow: purged.get(`/root${IMAGES}`)?.nocow }, { subvol: true, nocow: true }, 'btrfs: still a +C subvolume');
    t.notMatch(await read('tmpfiles-left'), /nocow-/, `${fs}: the package's tmpfiles.d files are gone`);
    t.match(await read('status'), /not installed|Status: (deinstall|purge) ok not-installed/, `${fs}: the package is purged`);
  }
});

t.test('GIVEN the packaged helper WHEN given --validate THEN the targets as lines, or one line and exit 2 for a bad value, touching nothing', async (t) => {
  await setup();
  const x = await mkdtemp(join(WORK, 'validate-'));
  await execa('dpkg-deb', ['-x', DEBS.hook, x]);
  const helper = join(x, HOOK);
  for (const shell of ['dash', 'bash', 'busybox']) {
    const argv = shell === 'busybox' ? ['sh', helper] : [helper];
    const good = await execa(shell, [...argv, '--validate', '-m', '0711', '-g', 'kvm', '--', IMAGES, ODD], { reject: false });
    t.same(
      { rc: good.exitCode, out: good.stdout, err: good.stderr },
      { rc: 0, out: `var-lib-libvirt-images\t${IMAGES}\tauto\t0711\troot\tkvm\n${ODD_NAME}\t${ODD}\tauto\t0711\troot\tkvm`, err: '' },
      `${shell}: one line per PATH: NAME PATH SUBVOLUME MODE OWNER GROUP`,
    );
    for (const [args, message] of [
      [['-m', '9999', IMAGES], '-m 9999: expected 3 or 4 octal digits'],
      [['/var/lib'], '/var/lib: expected a directory of its own, not a system one'],
      [['relative'], 'relative: expected an absolute path starting with "/"'],
    ] as const) {
      const bad = await execa(shell, [...argv, '--validate', ...args], { reject: false });
      t.same({ rc: bad.exitCode, out: bad.stdout, err: bad.stderr }, { rc: 2, out: '', err: `nocow-apply.sh: ${message}` }, `${shell} ${args.join(' ')}: one line, exit 2`);
    }
  }
});
