// %nocow_posttrans end to end: the generated macros.nocow loaded by rpmbuild, a spec using
// it built into real packages, which rpm installs, upgrades and erases in a chroot-able
// root on a real Btrfs (and ext4) file system; rpm --eval for what the macro refuses.
import t from 'tap';
import { execa } from 'execa';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planArtifacts } from '../src/plan.js';
import { renderLibrary, renderPlan, rpmLibraryMacros } from '../src/render/render.js';
import { loadTemplates } from '../src/templates.js';
import { validateDeclaration } from '../src/declaration/validate.js';
import { target } from './helpers/target.js';
import { runInFs, type FsType } from './helpers/fs.js';
import { CAPTURE_FN, readRan } from './helpers/capture.js';

const CHROOT_SH = join(import.meta.dirname, 'helpers', 'chroot.sh');
const WORK = await mkdtemp(join(tmpdir(), 'nocow-rpm-'));
t.teardown(() => rmSync(WORK, { recursive: true, force: true }));

const templates = await loadTemplates();
const [macros] = renderPlan(planArtifacts({ sources: ['config:rpm.yaml'], targets: [target()] }, ['macros'], 'test'), templates);
const MACROS = join(WORK, 'macros.nocow');
await writeFile(MACROS, macros!.content);

const PLAIN = '/var/lib/nocow-test/images';
// Spaces, %, a quote and a command substitution: all literal. (A literal %{…} in a path
// reaches the scriptlet too, see the rpm --eval test, but rpm's %files cannot package one.)
const HOSTILE = "/srv/vm images/100% it's $(touch /tmp/pwned)";

/** In spec text, a literal % is %%. */
const specText = (s: string) => s.replaceAll('%', '%%');
const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

interface Package {
  name: string;
  version: string;
  path: string;
  /** What the spec writes after %nocow_posttrans, before the path. */
  options: string;
}

function spec(p: Package): string {
  return `Name: ${p.name}
Version: ${p.version}
Release: 1
Summary: Test package for the nocow-kit RPM macros
License: MIT
Group: System/Test
Packager: nocow-kit tests <nocow-kit@example.invalid>
URL: https://example.invalid/nocow-kit
BuildArch: noarch
%nocow_requires

%description
Owns one directory, made a NOCOW subvolume on Btrfs.

%install
mkdir -p ${sq(`%{buildroot}${specText(p.path)}`)}

%files
%dir %attr(0711,root,kvm) "${specText(p.path)}"

%posttrans
%nocow_posttrans ${p.options} ${specText(p.path)}

%changelog
* Thu Jan 01 2026 nocow-kit tests <nocow-kit@example.invalid> - ${p.version}-1
- Test build.
`;
}

/** rpmbuild with macros.nocow loaded at build time only, as a packager's build root has it. */
async function build(p: Package): Promise<string> {
  const dir = join(WORK, `${p.name}-${p.version}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'test.spec'), spec(p));
  await execa('rpmbuild', ['--quiet', '--load', MACROS, '--define', `_topdir ${dir}/top`, '-bb', join(dir, 'test.spec')]);
  return join(dir, `top/RPMS/noarch/${p.name}-${p.version}-1.noarch.rpm`);
}

const plain1: Package = { name: 'nocow-test', version: '1', path: PLAIN, options: '-m 0711 -g kvm' };
const plain2: Package = { ...plain1, version: '2' };
const hostile: Package = { name: 'nocow-hostile', version: '1', path: HOSTILE, options: '-n vm -m 0711 -g kvm' };
const [PKG1, PKG2, HOSTILE_PKG] = await Promise.all([build(plain1), build(plain2), build(hostile)]);

const lib = renderLibrary(templates.lib);
const expectedScriptlet = (name: string, path: string) =>
  `posttrans scriptlet (using /bin/sh):\n# %nocow_posttrans of nocow-kit test (macros.nocow)\n${lib}nocow_init '/'\n` +
  '# shellcheck disable=SC2016 # the values are single-quoted on purpose: nothing in them may expand\n' +
  `nocow_target '${name}' ${sq(path)} 'auto' 'yes' '0711' 'root' 'kvm' 'keep-checksums'`;

t.test('GIVEN a spec using %nocow_posttrans WHEN built with rpmbuild THEN rpm -qp --scripts shows the library and the one call with the path single-quoted', async (t) => {
  const { stdout } = await execa('rpm', ['-qp', '--scripts', PKG1]);
  t.equal(stdout, expectedScriptlet('var-lib-nocow-test-images', PLAIN), 'the whole scriptlet: the library verbatim, nothing cut or added');
  const { stdout: hostileScripts } = await execa('rpm', ['-qp', '--scripts', HOSTILE_PKG]);
  t.equal(hostileScripts, expectedScriptlet('vm', HOSTILE), 'a path with spaces, %, a quote and $(…) arrives as exactly one quoted word');
  const shellcheck = await execa('shellcheck', ['--shell=sh', '--severity=style', '-'], { input: hostileScripts.replace(/^.*\n/, ''), reject: false });
  t.equal(shellcheck.exitCode, 0, `the scriptlet is shellcheck-clean\n${shellcheck.stdout}`);
  const { stdout: requires } = await execa('rpm', ['-qp', '--qf', '[%{REQUIREFLAGS:deptype} %{REQUIRENAME}\n]', PKG1]);
  t.same(
    requires.split('\n').filter((l) => l.startsWith('posttrans ')),
    ['posttrans coreutils', 'posttrans e2fsprogs', 'posttrans findutils'],
    '%nocow_requires: the Requires(posttrans) of nocow-requires.spec',
  );
  const [requiresSpec] = renderPlan(planArtifacts({ sources: ['x'], targets: [target()] }, ['posttrans'], 'test'), templates);
  t.same(
    requiresSpec!.content.split('\n').filter((l) => l.startsWith('Requires(posttrans): ')).map((l) => `posttrans ${l.split(' ')[1]}`),
    ['posttrans coreutils', 'posttrans e2fsprogs', 'posttrans findutils'],
    'the same list as the posttrans artifact',
  );
});

/** Installs PKG1, upgrades to PKG2, erases; records rpm's output and the directory after each step. */
const LIFECYCLE = String.raw`${CAPTURE_FN}
. "$CHROOT_SH"
R=$MNT/root
make_root "$R"
P=$R$PLAIN
step() {
  label=$1; shift
  capture "$label" rpm_root "$R" "$@"
  if [ -e "$P" ]; then
    if btrfs subvolume show "$P" >/dev/null 2>&1; then kind=subvolume; else kind=directory; fi
    echo "$kind $(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%i %a %u %g' "$P") $(btrfs subvolume show "$P" 2>/dev/null | awk '$1 == "Subvolume" && $2 == "ID:" { print $3 }')" >"$A/$label.obs"
  else
    echo missing >"$A/$label.obs"
  fi
  rpm_root "$R" -V nocow-test >"$A/$label.verify" 2>&1 || :
}
step install -i "$PKG1"
step upgrade -U "$PKG2"
rpm --root "$R" --dbpath /var/lib/rpm -q nocow-test >"$A/q.out"
step erase -e nocow-test
ls -A "$R/var/lib/nocow-test" >"$A/leftovers"
`;

async function lifecycle(fs: FsType) {
  const A = await mkdtemp(join(WORK, `life-${fs}-`));
  const run = await runInFs({ fs, script: LIFECYCLE, env: { A, CHROOT_SH, PLAIN, PKG1, PKG2 } });
  if (run.exitCode !== 0) throw new Error(`lifecycle script failed (${run.exitCode}): ${run.stderr}`);
  const read = (name: string) => readFile(join(A, name), 'utf8');
  const step = async (label: string) => ({
    ...(await readRan(A, label)),
    obs: (await read(`${label}.obs`)).trim(),
    verify: await read(`${label}.verify`),
  });
  return { install: await step('install'), upgrade: await step('upgrade'), erase: await step('erase'), q: await read('q.out'), leftovers: await read('leftovers') };
}

t.test('GIVEN a Btrfs root WHEN the package is installed, upgraded and erased by rpm THEN the directory is a +C subvolume keeping the packaged mode and owner, upgrade changes nothing, erase removes it', async (t) => {
  const life = await lifecycle('btrfs');
  t.same(
    { rc: life.install.rc, out: life.install.out, err: life.install.err },
    { rc: 0, out: `nocow: var-lib-nocow-test-images: converted: empty directory ${PLAIN} into a subvolume with +C\n`, err: '' },
    'install: exit 0, our one line for the one change',
  );
  const [kind, flags, inode, mode, uid, gid, id] = life.install.obs.split(' ');
  t.same({ kind, nocow: flags!.includes('C'), inode, mode, uid, gid }, { kind: 'subvolume', nocow: true, inode: '256', mode: '711', uid: '0', gid: '36' });
  t.match(id, /^[0-9]+$/, `btrfs subvolume show gives its id (${id})`);
  t.equal(life.install.verify, '', 'rpm -V: mode, owner and group as packaged');

  t.same({ rc: life.upgrade.rc, out: life.upgrade.out, err: life.upgrade.err }, { rc: 0, out: '', err: '' }, 'upgrade: exit 0, nothing printed');
  t.equal(life.upgrade.obs, life.install.obs, `upgrade: the same subvolume (id ${id}), inode 256, +C, mode and owner`);
  t.equal(life.upgrade.verify, '', 'rpm -V after the upgrade');
  t.equal(life.q, 'nocow-test-2-1.noarch\n');

  t.same({ rc: life.erase.rc, out: life.erase.out, err: life.erase.err, obs: life.erase.obs }, { rc: 0, out: '', err: '', obs: 'missing' }, 'erase: rpm removes the empty subvolume');
  t.equal(life.leftovers, '', 'no .nocow-new or .nocow-old left beside it');
});

t.test('GIVEN an ext4 root WHEN the package is installed and upgraded THEN the directory stays a plain directory without +C, and nothing is printed', async (t) => {
  const life = await lifecycle('ext4');
  for (const step of ['install', 'upgrade'] as const) {
    t.same({ rc: life[step].rc, out: life[step].out, err: life[step].err }, { rc: 0, out: '', err: '' }, `${step}: exit 0, silent`);
    const [kind, flags, , mode, uid, gid] = life[step].obs.split(' ');
    t.same({ kind, nocow: flags!.includes('C'), mode, uid, gid }, { kind: 'directory', nocow: false, mode: '711', uid: '0', gid: '36' }, `${step}: as rpm left it`);
    t.equal(life[step].verify, '', `${step}: rpm -V clean`);
  }
  t.same({ rc: life.erase.rc, obs: life.erase.obs }, { rc: 0, obs: 'missing' });
});

t.test('GIVEN a packaged path with spaces, %, a quote and $(…) WHEN installed on Btrfs THEN exactly that directory is a +C subvolume and nothing in the path ran', async (t) => {
  rmSync('/tmp/pwned', { force: true });
  const A = await mkdtemp(join(WORK, 'hostile-'));
  const run = await runInFs({
    fs: 'btrfs',
    script: String.raw`${CAPTURE_FN}
. "$CHROOT_SH"
R=$MNT/root
make_root "$R"
capture install rpm_root "$R" -i "$PKG"
P=$R$HOSTILE
if btrfs subvolume show "$P" >/dev/null 2>&1; then kind=subvolume; else kind=directory; fi
echo "$kind $(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%i %a %u %g' "$P")" >"$A/obs"
(cd "$R" && find srv | sort) >"$A/ls"
ls -A "$R/tmp" >"$A/tmp"
rpm_root "$R" -V nocow-hostile >"$A/verify" 2>&1 || :`,
    env: { A, CHROOT_SH, PKG: HOSTILE_PKG, HOSTILE },
  });
  if (run.exitCode !== 0) throw new Error(`script failed (${run.exitCode}): ${run.stderr}`);
  const read = (name: string) => readFile(join(A, name), 'utf8');
  t.same(await readRan(A, 'install'), { rc: 0, out: `nocow: vm: converted: empty directory ${HOSTILE} into a subvolume with +C\n`, err: '' });
  t.match(await read('obs'), /^subvolume \S*C\S* 256 711 0 36\n$/, 'subvolume, +C, inode 256, mode 0711, root:kvm');
  t.equal(await read('ls'), "srv\nsrv/vm images\nsrv/vm images/100% it's $(touch \nsrv/vm images/100% it's $(touch /tmp\nsrv/vm images/100% it's $(touch /tmp/pwned)\n", 'exactly the packaged path, nothing else');
  t.equal(await read('tmp'), '', 'the $(…) in the path never ran in the root');
  t.notOk(existsSync('/tmp/pwned'), 'nor on the host');
  t.equal(await read('verify'), '', 'rpm -V clean');
});

t.test('GIVEN the built package WHEN checked by rpmlint THEN nothing it reports concerns the scriptlet', async (t) => {
  const lint = await execa('rpmlint', [PKG1], { reject: false });
  t.match(lint.stdout, /1 packages and 0 specfiles checked/, `rpmlint ran\n${lint.stderr}`);
  const findings = lint.stdout
    .split('\n')
    .filter((l) => /^\S+: [EW]: /.test(l))
    .map((l) => l.replace(/^\S+: /, ''));
  // What rpmlint says about the test package itself, not about %nocow_posttrans:
  const EXPECTED = [
    'E: no-signature', // test packages are not signed
    `E: non-standard-dir-perm ${PLAIN} 711`, // the test's own %attr(0711): a mode the scriptlet must keep
    `W: non-standard-gid ${PLAIN} kvm`, // the test's own %attr group, for the same reason
    'W: invalid-license MIT', // rpmlint's default list has SPDX-less names only
    'W: no-documentation',
    // No dangerous-command-in-%posttrans: PostCheck looks for mv, cp, chmod, chown at the start of a
    // command, and the library runs every change through its one door (nocow_try mv …).
  ];
  t.same(findings.filter((l) => l.includes('posttrans')), [], 'in %posttrans: no syntax, percent, tmp, home, selinux or dangerous-command finding');
  t.same([...findings].sort(), [...EXPECTED].sort(), lint.stdout);
});

t.test('GIVEN a value the scriptlet could not carry WHEN the macro is expanded THEN rpm stops with the reason, and blanks in a path are the documented single space', async (t) => {
  const evaluate = (call: string) => execa('rpm', ['--load', MACROS, '--eval', call], { reject: false });
  for (const [args, reason] of [
    ['', 'expected a PATH'],
    ['var/lib/x', 'var/lib/x: expected an absolute path starting with "/"'],
    ['/', 'expected a path below "/"'],
    ['/var/lib/x/', 'expected a path without a trailing "/"'],
    ['/var/lib/../x', 'expected a path without "." or ".." segments'],
    ['/var//x', 'expected a path without empty segments'],
    ['/.hidden', 'name .hidden: expected 1 to 64 letters'],
    ['-n a/b /var/x', 'name a/b: expected 1 to 64 letters'],
    ['-m 999 /var/x', '-m 999: expected 3 or 4 octal digits'],
    ['-u a:b /var/x', '-u a:b: expected a user name'],
    ['-x /var/x', 'Unknown option x'],
    ['/etc', '/etc: expected a directory of its own, not a system one (/etc and everything below it belongs to the system)'],
    ['/etc/foo bar', '/etc/foo bar: expected a directory of its own, not a system one (/etc and everything below it'],
    ['/usr/lib/x', '(/usr and everything below it belongs to the system)'],
    ['/proc', '(/proc and everything below it belongs to the system)'],
    ['/var/lib', '/var/lib: expected a directory of its own, not a system one (/var/lib is a system directory)'],
    ['/home', '(/home is a system directory)'],
  ] as const) {
    const r = await evaluate(`%nocow_posttrans ${args}`);
    t.not(r.exitCode, 0, `${args || '(nothing)'}: rpm fails`);
    t.match(r.stderr, reason, `${args || '(nothing)'}: ${reason}`);
    t.notMatch(r.stdout, /nocow_target/, 'and expands to no call');
  }
  const last = async (call: string) => (await evaluate(call)).stdout.trimEnd().split('\n').at(-1);
  t.equal(await last('%nocow_posttrans /srv/%%{_topdir} 100%%'), "nocow_target 'srv-___topdir__100_' '/srv/%{_topdir} 100%' 'auto' 'yes' '0755' 'root' 'root' 'keep-checksums'", '%% is a literal %, even before {');
  t.equal(await last('%nocow_posttrans /srv/a  b\tc'), "nocow_target 'srv-a_b_c' '/srv/a b c' 'auto' 'yes' '0755' 'root' 'root' 'keep-checksums'", 'rpm splits on blanks: runs become one space');
  t.equal(await last('%nocow_posttrans -S -C -f -n db -u mysql -g 27 -- /var/lib/-mysql'), "nocow_target 'db' '/var/lib/-mysql' 'never' 'no' '0755' 'mysql' '27' 'force-nocow'", 'every option');
});

t.test('GIVEN a path over NAME_MAX or PATH_MAX, or not UTF-8 WHEN a spec\'s %nocow_posttrans names it THEN rpmbuild stops, in the words nocow generate refuses the path with', async (t) => {
  const cases: [string, Buffer][] = [
    ['a segment of 256 bytes', Buffer.from(`/srv/${'a'.repeat(256)}`)],
    ['4,200 bytes in segments of 200', Buffer.from(`/srv${`/${'b'.repeat(199)}`.repeat(21)}`)],
    ['U+FFFD', Buffer.from('/srv/a\ufffdb')],
    ['a byte that is not UTF-8', Buffer.concat([Buffer.from('/srv/a'), Buffer.from([0xff]), Buffer.from('b')])],
  ];
  for (const [what, path] of cases) {
    // The declaration gets the path as Node decodes it (a byte that is not UTF-8 as U+FFFD).
    const { problems } = validateDeclaration({ targets: [{ name: 'x', path: path.toString() }] }, 'config:t.yaml', 't.yaml');
    t.equal(problems.length, 1, `${what}: the declaration refuses it`);
    const expected = problems[0]!.replace(/^.*?; expected /, 'expected ');
    const dir = join(WORK, `refused-${cases.findIndex(([w]) => w === what)}`);
    await mkdir(dir, { recursive: true });
    const specFile = join(dir, 'test.spec');
    const head = spec({ name: 'nocow-refused', version: '1', path: '/srv/unused', options: '' }).split('%posttrans')[0]!;
    await writeFile(specFile, Buffer.concat([Buffer.from(`${head}%posttrans\n%nocow_posttrans `), path, Buffer.from('\n')]));
    const r = await execa('rpmbuild', ['--quiet', '--load', MACROS, '--define', `_topdir ${dir}/top`, '-bb', specFile], { reject: false, encoding: 'buffer' });
    const stderr = Buffer.from(r.stderr).toString();
    t.not(r.exitCode, 0, `${what}: rpmbuild fails`);
    t.ok(stderr.includes(`%nocow_posttrans: ${path.toString()}: ${expected}`), `${what}: ${expected}`, { stderr: stderr.slice(-300) });
    t.notOk(existsSync(join(dir, 'top/RPMS/noarch/nocow-refused-1-1.noarch.rpm')), `${what}: no package`);
  }
});

t.test('GIVEN a library far over rpm\'s 16 KiB per definition WHEN cut into macros THEN rpm expands them back to exactly the same text', async (t) => {
  const paragraph = (i: number) =>
    `# part ${i}: 100% of ${'x'.repeat(i % 7)} it's\nf${i}() {\n\tprintf '%s\\n' 'a'\\''b' "\${x%%/*}" %{not_a_macro} \\\n\t\tcontinued\n\n\techo inner blank line above\n}`;
  const fake = Array.from({ length: 400 }, (_, i) => paragraph(i)).join('\n\n') + '\n';
  t.ok(fake.length > 3 * 16384, `${fake.length} bytes`);
  const { definitions, references } = rpmLibraryMacros(fake, '_t_lib');
  t.ok(definitions.split('\n%_t_lib').length >= 6, 'several macros');
  const file = join(WORK, 'macros.big');
  await writeFile(file, `${definitions}\n%_t_all ${references}\n`);
  const { stdout } = await execa('rpm', ['--load', file, '--eval', '%{_t_all}'], { stripFinalNewline: false });
  t.equal(stdout, fake, 'identical, % and \\ included');
});
