// The Arch path (docs/arch.md), with Debian's pacman 6.0.2 and makepkg: packages built by makepkg
// (as nobody: it refuses root) from the artifacts nocow generate writes (alpm-hook, pacman-install,
// hook), installed with pacman --root into a chroot-able root on a real Btrfs or ext4 loop device.
// pacman runs the hooks after the transaction and the .install functions after extracting each
// package, both chrooted into the root: the helper they call is the packaged one, run by the root's
// /bin/sh with its tools (the host's /usr, see test/helpers/chroot.sh).
import t from 'tap';
import { execa } from 'execa';
import { rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtCli } from './helpers/cli.js';
import { parseObservations, runInFs, section, type FsType, type Observation } from './helpers/fs.js';

const CLI = builtCli();
const CHROOT_SH = join(import.meta.dirname, 'helpers', 'chroot.sh');
const WORK = await mkdtemp(join(tmpdir(), 'nocow-arch-'));
t.teardown(() => rmSync(WORK, { recursive: true, force: true }));

/** nobody's uid and gid, who runs makepkg. */
const NOBODY = 65534;

// Hook targets: shipped empty by the downstream package (a subvolume is made), a path the hook's
// Exec= and Target= must quote and escape (a blank, both quotes, "!", glob characters, a trailing
// backslash), and one the package fills (only +C: a filled directory is never moved).
const IMAGES = '/srv/arch/images';
const ODD = `/srv/arch/it's "a b" !x*[?]\\`;
const FILLED = '/srv/arch/filled';
// .install targets: shipped empty by the package, and one it does not ship (the helper creates it).
const INSTALLED = '/srv/arch/installed';
const CREATED = '/srv/arch/created';

const HOOKS_YAML = `targets:
  - {name: images, path: ${IMAGES}, mode: "0711", group: kvm}
  - {name: odd, path: ${JSON.stringify(ODD)}}
  - {name: filled, path: ${FILLED}}
`;
const INSTALL_YAML = `targets:
  - {name: installed, path: ${INSTALLED}}
  - {name: created, path: ${CREATED}, mode: "0700"}
`;

const sq = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A split PKGBUILD: the helper's package, and the downstream packages of the test. */
function pkgbuild(sources: Record<string, string>): string {
  const names = Object.keys(sources);
  return `pkgbase=nocow-arch-test
pkgname=(nocow-apply-hook nocow-arch-downstream nocow-arch-install nocow-arch-unrelated)
pkgver=1
pkgrel=1
pkgdesc='nocow-kit Arch test packages'
arch=(any)
license=(MIT)
# No tidying to do: no binaries, man pages or documentation (emptydirs stays: the targets ship empty).
options=(!strip !zipman !purge !docs)
source=(${names.map(sq).join(' ')})
sha256sums=(${names.map((n) => sq(sources[n]!)).join(' ')})

package_nocow-apply-hook() {
  pkgdesc='nocow-kit helper and its alpm hooks'
  install -Dm755 nocow-apply.sh "$pkgdir/usr/libexec/nocow-kit/nocow-apply.sh"
  install -Dm644 -t "$pkgdir/usr/share/libalpm/hooks" nocow-images.hook nocow-odd.hook nocow-filled.hook
}

package_nocow-arch-downstream() {
  pkgdesc='ships the hook targets'
  install -d "$pkgdir"${sq(IMAGES)} "$pkgdir"${sq(ODD)}
  install -Dm644 /dev/null "$pkgdir"${sq(FILLED)}/README
  echo 'shipped by nocow-arch-downstream' >"$pkgdir"${sq(FILLED)}/README
}

package_nocow-arch-install() {
  pkgdesc='ships a target and makes it NOCOW from its .install file'
  depends=(nocow-apply-hook)
  install=nocow.install
  install -d "$pkgdir"${sq(INSTALLED)}
}

package_nocow-arch-unrelated() {
  pkgdesc='ships a file beside the targets, in a directory whose name starts like one'
  install -Dm644 /dev/null "$pkgdir"${sq(IMAGES)}-old/file
}
`;
}

/** Once for the file: the artifacts, and the four packages makepkg builds from them. */
async function setUp() {
  await chmod(WORK, 0o755);
  const gen = join(WORK, 'gen');
  await mkdir(gen);
  await writeFile(join(WORK, 'hooks.yaml'), HOOKS_YAML);
  await writeFile(join(WORK, 'install.yaml'), INSTALL_YAML);
  await execa(process.execPath, [CLI, 'generate', 'alpm-hook', 'hook', '-c', join(WORK, 'hooks.yaml'), '-o', gen]);
  await execa(process.execPath, [CLI, 'generate', 'pacman-install', '-c', join(WORK, 'install.yaml'), '-o', gen]);

  const build = join(WORK, 'build');
  const out = join(WORK, 'pkgs');
  await mkdir(build);
  await mkdir(out);
  const sources: Record<string, string> = {};
  for (const name of ['nocow-apply.sh', 'nocow-images.hook', 'nocow-odd.hook', 'nocow-filled.hook']) {
    const content = await readFile(join(gen, name));
    await writeFile(join(build, name), content);
    sources[name] = sha256(content);
  }
  // install= names a file beside the PKGBUILD, not a source.
  await writeFile(join(build, 'nocow.install'), await readFile(join(gen, 'nocow.install')));
  await writeFile(join(build, 'PKGBUILD'), pkgbuild(sources));
  for (const dir of [build, out]) await chown(dir, NOBODY, NOBODY);
  for (const name of [...Object.keys(sources), 'nocow.install', 'PKGBUILD']) await chown(join(build, name), NOBODY, NOBODY);

  const started = Date.now();
  // --nodeps: the build host's pacman database is empty; the dependencies are checked where pacman installs.
  const makepkg = await execa(
    'runuser',
    ['-u', 'nobody', '--', 'env', `HOME=${build}`, 'LC_ALL=C', 'PKGEXT=.pkg.tar', `PKGDEST=${out}`, 'makepkg', '--nodeps', '--noconfirm', '--nocolor'],
    { cwd: build, reject: false },
  );
  const seconds = (Date.now() - started) / 1000;
  if (makepkg.exitCode !== 0) throw new Error(`makepkg failed (${makepkg.exitCode}):\n${makepkg.stdout}\n${makepkg.stderr}`);
  const pkg = (name: string) => join(out, `${name}-1-1-any.pkg.tar`);
  return {
    gen,
    seconds,
    hook: pkg('nocow-apply-hook'),
    downstream: pkg('nocow-arch-downstream'),
    install: pkg('nocow-arch-install'),
    unrelated: pkg('nocow-arch-unrelated'),
  };
}
const ready = setUp().catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
/** Every test fails, with the cause, when the setup did. */
async function setup() {
  const s = await ready;
  if (s instanceof Error) throw s;
  return s;
}

// pacman against the root's database, hooks, cache and log only (the host's /etc/pacman.d/hooks
// never runs), offline: no sync database, no signatures. Each transaction's output and status go
// to $A/NAME and $A/NAME.rc.
const PACMAN = String.raw`
. "$CHROOT_SH"
R=$MNT/root
make_root "$R"
writable_usr "$R"
mkdir -p "$R/var/lib/pacman" "$R/var/log" "$R/var/cache/pacman/pkg" "$R/etc/pacman.d/hooks"
printf '[options]\nSigLevel = Never\nLocalFileSigLevel = Never\n' >"$A/pacman.conf"
pm() {
  local name=$1 rc=0
  shift
  LC_ALL=C pacman --root "$R" --dbpath "$R/var/lib/pacman" --cachedir "$R/var/cache/pacman/pkg" \
    --hookdir "$R/etc/pacman.d/hooks" --gpgdir "$R/etc/pacman.d/gnupg" --logfile "$R/var/log/pacman.log" \
    --config "$A/pacman.conf" --noconfirm --noprogressbar "$@" >"$A/$name" 2>&1 || rc=$?
  echo "$rc" >"$A/$name.rc"
}
`;

const INSTALL_SCRIPT = String.raw`${PACMAN}
# The .install package before the helper's on the command line, and a package beside the targets:
# pacman installs the helper's first (depends), post_install runs, no hook fires.
pm first -U "$INSTALL_PKG" "$UNRELATED_PKG" "$HOOK_PKG"
section first; observe "$R$IMAGES" "$R$ODD" "$R$FILLED" "$R$INSTALLED" "$R$CREATED"
btrfs subvolume show "$R$INSTALLED" >"$A/show-installed" 2>&1 || :
cmp "$R/usr/share/libalpm/hooks/nocow-images.hook" "$GEN/nocow-images.hook"
cmp "$R/usr/libexec/nocow-kit/nocow-apply.sh" "$GEN/nocow-apply.sh"
# The package shipping the hooks' targets: the hooks run after the transaction.
pm downstream -U "$DOWNSTREAM_PKG"
section downstream; observe "$R$IMAGES" "$R$ODD" "$R$FILLED" "$R$FILLED/README"
btrfs subvolume show "$R$IMAGES" >"$A/show-images" 2>&1 || :
sha256sum <"$R$FILLED/README" >"$A/readme"
# Both reinstalled (an upgrade to pacman), with CREATED gone: the Upgrade trigger and post_upgrade
# run, and only CREATED changes.
if [ -d "$R$CREATED" ]; then btrfs subvolume delete "$R$CREATED" >/dev/null 2>&1 || rmdir "$R$CREATED"; fi
pm upgrade -U "$DOWNSTREAM_PKG" "$INSTALL_PKG"
section upgrade; observe "$R$IMAGES" "$R$INSTALLED" "$R$CREATED"
`;

/** The script's run on FS, once for the tests that read it. */
async function installOnce(fs: FsType) {
  const s = await setup();
  const A = await mkdtemp(join(WORK, `${fs}-`));
  const run = await runInFs({
    fs,
    script: INSTALL_SCRIPT,
    env: {
      A,
      CHROOT_SH,
      GEN: s.gen,
      HOOK_PKG: s.hook,
      UNRELATED_PKG: s.unrelated,
      DOWNSTREAM_PKG: s.downstream,
      INSTALL_PKG: s.install,
      IMAGES,
      ODD,
      FILLED,
      INSTALLED,
      CREATED,
    },
  });
  const read = (name: string) => readFile(join(A, name), 'utf8');
  const pm = async (name: string) => ({ rc: (await read(`${name}.rc`)).trim(), out: await read(name) });
  return { run, read, pm };
}
const runs = new Map<FsType, ReturnType<typeof installOnce>>();
const install = (fs: FsType) => {
  if (!runs.has(fs)) runs.set(fs, installOnce(fs));
  return runs.get(fs)!;
};

/** The lines the helper printed (nocow: NAME: EVENT: …); it runs chrooted, so its paths are the root's own. */
const helperLines = (out: string) => out.split('\n').filter((l) => l.startsWith('nocow:'));
/** The hooks pacman says it ran, by description. */
const hooksRan = (out: string) => out.split('\n').filter((l) => /^\(\d+\/\d+\) /.test(l));
/** The observations of one section of the script's output, by path. */
const observed = (stdout: string, name: string) => parseObservations(section(stdout, name));
const state = (o: Observation | undefined) => ({ kind: o?.kind, subvol: o?.subvol, nocow: o?.nocow });

t.test('GIVEN the packages makepkg built WHEN listed THEN the helper package holds the helper and the three hooks, and the .install package its functions', async (t) => {
  const s = await setup();
  t.comment(`makepkg (four split packages): ${s.seconds.toFixed(1)} s`);
  const list = async (pkg: string) => (await execa('pacman', ['-Qlp', pkg])).stdout.split('\n').map((l) => l.replace(/^\S+ /, ''));
  const files = (await list(s.hook)).filter((f) => !f.endsWith('/'));
  t.same(
    files.sort(),
    ['/usr/libexec/nocow-kit/nocow-apply.sh', '/usr/share/libalpm/hooks/nocow-filled.hook', '/usr/share/libalpm/hooks/nocow-images.hook', '/usr/share/libalpm/hooks/nocow-odd.hook'],
    'nocow-apply-hook: the helper and one hook per target',
  );
  const info = (await execa('pacman', ['-Qip', s.install])).stdout;
  t.match(info, /^Depends On\s+: nocow-apply-hook$/m, 'the .install package depends on the helper\'s');
  const scriptlet = (await execa('bsdtar', ['-xOf', s.install, '.INSTALL'])).stdout;
  t.equal(`${scriptlet}\n`, await readFile(join(s.gen, 'nocow.install'), 'utf8'), '.INSTALL is the generated nocow.install');
});

t.test('GIVEN a Btrfs root WHEN pacman --root installs the helper package, then a package shipping the targets THEN its hooks run after the transaction: empty targets become +C subvolumes, a filled one gets +C', async (t) => {
  const { run, read, pm } = await install('btrfs');
  t.equal(run.exitCode, 0, run.stderr);

  const first = await pm('first');
  t.equal(first.rc, '0', `pacman -U nocow-arch-install nocow-arch-unrelated nocow-apply-hook\n${first.out}`);
  t.same(hooksRan(first.out), [], 'no hook fires for files beside the targets (images-old/ is not images/)');
  t.same([IMAGES, ODD, FILLED].map((p) => observed(run.stdout, 'first').get(`/root${p}`)?.kind), ['missing', 'missing', 'missing'], 'nothing made');

  const down = await pm('downstream');
  t.equal(down.rc, '0', `pacman -U nocow-arch-downstream\n${down.out}`);
  const lines = down.out.split('\n');
  t.ok(lines.indexOf(':: Running post-transaction hooks...') > lines.indexOf('installing nocow-arch-downstream...'), `the hooks run after the package is installed\n${down.out}`);
  t.same(
    hooksRan(down.out),
    ["(1/3) Making filled's directory NOCOW on Btrfs (nocow-kit)", "(2/3) Making images's directory NOCOW on Btrfs (nocow-kit)", "(3/3) Making odd's directory NOCOW on Btrfs (nocow-kit)"],
    'the three hooks, in the order of their file names',
  );
  t.same(
    helperLines(down.out),
    [
      `nocow: filled: set-nocow: +C on ${FILLED} for new files; 1 existing file keeps copy-on-write (nocow migrate rewrites it)`,
      `nocow: images: converted: empty directory ${IMAGES} into a subvolume with +C`,
      `nocow: odd: converted: empty directory ${ODD} into a subvolume with +C`,
    ],
    'one line per change, from the helper in the root',
  );
  const after = observed(run.stdout, 'downstream');
  t.same(state(after.get(`/root${IMAGES}`)), { kind: 'dir', subvol: true, nocow: true }, `${IMAGES}: a +C subvolume`);
  t.same(state(after.get(`/root${ODD}`)), { kind: 'dir', subvol: true, nocow: true }, 'the path quoted in Exec= and escaped in Target=: a +C subvolume');
  t.same(state(after.get(`/root${FILLED}`)), { kind: 'dir', subvol: false, nocow: true }, `${FILLED}, filled by the package: +C, not moved`);
  t.same(state(after.get(`/root${FILLED}/README`)), { kind: 'file', subvol: false, nocow: false }, 'its file as pacman wrote it, copy-on-write');
  t.equal((await read('readme')).split(' ')[0], sha256('shipped by nocow-arch-downstream\n'), 'with its bytes');
  t.match(await read('show-images'), /Subvolume ID:\s+\d+/, 'btrfs subvolume show knows it');
});

t.test('GIVEN a Btrfs root WHEN pacman installs a package whose .install has the generated functions THEN post_install makes its targets +C subvolumes, and post_upgrade brings back one that went', async (t) => {
  const { run, read, pm } = await install('btrfs');
  t.equal(run.exitCode, 0, run.stderr);
  const first = await pm('first');
  t.equal(first.rc, '0', `pacman -U nocow-arch-install nocow-arch-unrelated nocow-apply-hook\n${first.out}`);
  const lines = first.out.split('\n');
  t.ok(
    lines.indexOf('installing nocow-apply-hook...') !== -1 && lines.indexOf('installing nocow-apply-hook...') < lines.indexOf('installing nocow-arch-install...'),
    'the helper\'s package first, named last: depends orders the transaction',
  );
  t.same(
    helperLines(first.out),
    [`nocow: installed: converted: empty directory ${INSTALLED} into a subvolume with +C`, `nocow: created: created: subvolume ${CREATED}`, `nocow: created: set-nocow: +C on ${CREATED}`],
    'post_install: one line per change',
  );
  const after = observed(run.stdout, 'first');
  t.same(state(after.get(`/root${INSTALLED}`)), { kind: 'dir', subvol: true, nocow: true }, `${INSTALLED}: a +C subvolume`);
  t.same({ ...state(after.get(`/root${CREATED}`)), mode: after.get(`/root${CREATED}`)?.mode }, { kind: 'dir', subvol: true, nocow: true, mode: 0o700 }, `${CREATED}: made a +C subvolume, 0700 as declared`);
  t.match(await read('show-installed'), /Subvolume ID:\s+\d+/);

  const up = await pm('upgrade');
  t.equal(up.rc, '0', `pacman -U (reinstall) nocow-arch-downstream nocow-arch-install\n${up.out}`);
  t.match(up.out, /^reinstalling nocow-arch-install\.\.\.$/m, 'an upgrade to pacman');
  t.same(
    helperLines(up.out),
    [`nocow: created: created: subvolume ${CREATED}`, `nocow: created: set-nocow: +C on ${CREATED}`],
    'post_upgrade ran: CREATED made again; the Upgrade trigger ran the hooks, silent where all is in place',
  );
  t.equal(hooksRan(up.out).length, 3, `the hooks ran on the upgrade\n${up.out}`);
  const again = observed(run.stdout, 'upgrade');
  for (const p of [IMAGES, INSTALLED, CREATED]) t.same(state(again.get(`/root${p}`)), { kind: 'dir', subvol: true, nocow: true }, `${p}: a +C subvolume`);
});

t.test('GIVEN an ext4 root WHEN the same packages are installed and upgraded THEN the hooks run and, with the .install functions, print nothing and change nothing', async (t) => {
  const { run, pm } = await install('ext4');
  t.equal(run.exitCode, 0, run.stderr);
  for (const name of ['first', 'downstream', 'upgrade']) {
    const r = await pm(name);
    t.equal(r.rc, '0', `${name}: exit 0\n${r.out}`);
    t.same(helperLines(r.out), [], `${name}: nothing from the helper`);
    t.notMatch(r.out, /error|warning: (?!nocow-arch-\S+ is up to date)/i, `${name}: no error or warning`);
  }
  t.equal(hooksRan((await pm('downstream')).out).length, 3, 'the hooks ran');
  const after = observed(run.stdout, 'upgrade');
  t.same(state(after.get(`/root${IMAGES}`)), { kind: 'dir', subvol: null, nocow: false }, `${IMAGES}: as pacman made it`);
  t.same(state(after.get(`/root${INSTALLED}`)), { kind: 'dir', subvol: null, nocow: false }, `${INSTALLED}: as pacman made it`);
  t.equal(after.get(`/root${CREATED}`)?.kind, 'missing', `${CREATED}: not made`);
});
