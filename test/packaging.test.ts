// The RPM packaging of nocow-kit itself (packaging/): build-rpm.sh builds the source RPM
// and the three noarch packages from this checkout, signed with a throwaway key; rpmlint
// finds no error in them; rpm installs them into a scratch root, where the nocow command,
// its man page and the hook run; and a downstream spec that BuildRequires nocow-rpm-macros
// builds against the macro file as that package installed it, and its %posttrans makes a
// +C subvolume on a real Btrfs root. The nocow-kit package ships the command as one
// bundle (npm run bundle), no node_modules tree.
import t from 'tap';
import { execa, type Options } from 'execa';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { builtCli } from './helpers/cli.js';
import { parseObservations, runInFs } from './helpers/fs.js';

const REPO = join(import.meta.dirname, '..');
const CHROOT_SH = join(import.meta.dirname, 'helpers', 'chroot.sh');
const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const lock = JSON.parse(await readFile(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; dev?: boolean; license?: string }> };
const V = pkg.version;
const RELEASE = '1';

const WORK = await mkdtemp(join(tmpdir(), 'nocow-packaging-'));
const GNUPGHOME = join(WORK, 'gnupg');
const OUT = join(WORK, 'out');
const SCRATCH = join(WORK, 'scratch');
const KEY = 'nocow-kit packaging test <nocow-kit-packaging@example.invalid>';
const KEY_EMAIL = 'nocow-kit-packaging@example.invalid';
t.teardown(async () => {
  // rpmsign's gpg started an agent for this GNUPGHOME: end it, then remove everything.
  await execa('gpgconf', ['--kill', 'gpg-agent'], { env: { GNUPGHOME }, reject: false });
  rmSync(WORK, { recursive: true, force: true });
});

const RPMS = {
  src: join(OUT, `nocow-kit-${V}-${RELEASE}.src.rpm`),
  kit: join(OUT, `nocow-kit-${V}-${RELEASE}.noarch.rpm`),
  macros: join(OUT, `nocow-rpm-macros-${V}-${RELEASE}.noarch.rpm`),
  hook: join(OUT, `nocow-apply-hook-${V}-${RELEASE}.noarch.rpm`),
};
const BINARY = [RPMS.kit, RPMS.macros, RPMS.hook];

/** The repository's own build (dist/), for what the packages must reproduce. */
const CLI = builtCli();

/** rpm against SCRATCH's database, where Fedora keeps it (Debian's rpm defaults to ~/.rpmdb). */
const rpmScratch = (args: string[], opts: Options = {}) =>
  execa('rpm', ['--force-debian', '--root', SCRATCH, '--dbpath', '/var/lib/rpm', ...args], { reject: false, ...opts });

/** Once for the file: a signing key, the build, the scratch root with the three packages. */
async function setUp() {
  await mkdir(GNUPGHOME, { mode: 0o700 });
  await execa('gpg', ['--batch', '--quiet', '--passphrase', '', '--quick-gen-key', KEY, 'rsa2048', 'sign', 'never'], { env: { GNUPGHOME } });
  const publicKey = join(WORK, 'key.asc');
  await writeFile(publicKey, (await execa('gpg', ['--armor', '--export', KEY_EMAIL], { env: { GNUPGHOME } })).stdout);

  const started = Date.now();
  const build = await execa('sh', [join(REPO, 'packaging/build-rpm.sh'), '--no-build', '--sign', KEY_EMAIL, OUT], { env: { GNUPGHOME }, reject: false });
  const seconds = (Date.now() - started) / 1000;
  if (build.exitCode !== 0) throw new Error(`packaging/build-rpm.sh failed (${build.exitCode}):\n${build.stderr}`);

  // A database holding the signing key, for rpm -K as rpmlint runs it.
  const keyDb = join(WORK, 'keydb');
  await execa('rpm', ['--dbpath', keyDb, '--initdb']);
  await execa('rpm', ['--dbpath', keyDb, '--import', publicKey]);

  await mkdir(SCRATCH);
  await execa('rpm', ['--root', SCRATCH, '--dbpath', '/var/lib/rpm', '--initdb']);
  await execa('rpm', ['--root', SCRATCH, '--dbpath', '/var/lib/rpm', '--import', publicKey]);
  const install = await rpmScratch(['-i', '--nodeps', ...BINARY]);

  // What npm run bundle writes, for the file list the package must have (esbuild's output is
  // the same for the same sources: build-rpm.sh's bundle has these names).
  const bundle = join(WORK, 'bundle');
  await execa('npm', ['run', '--silent', 'bundle', '--', bundle], { cwd: REPO });
  const bundleFiles = (await readdir(join(bundle, 'dist'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(bundle.length + 1));
  return { build, seconds, keyDb, install, bundleFiles };
}
const ready = setUp().catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
/** Every test fails, with the cause, when the setup did. */
async function setup() {
  const s = await ready;
  if (s instanceof Error) throw s;
  return s;
}

const qp = async (file: string, format: string) => (await execa('rpm', ['-qp', '--qf', format, file])).stdout;
/** Files only (directories and %license/%doc directories left out), path and mode. */
const payload = async (file: string) =>
  (await qp(file, '[%{FILEMODES:perms} %{FILENAMES}\n]'))
    .split('\n')
    .filter((l) => l && !l.startsWith('d'))
    .map((l) => l.replace(/^\S+ /, ''));
const requires = async (file: string) =>
  (await qp(file, '[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('rpmlib('));

t.test('GIVEN the checkout WHEN packaging/build-rpm.sh builds it THEN a source RPM and three signed noarch packages, each holding what it should', async (t) => {
  const { build, seconds, bundleFiles } = await setup();
  t.comment(`build-rpm.sh: ${seconds.toFixed(1)} s`);
  t.same(build.stdout.split('\n').sort(), Object.values(RPMS).sort(), 'it prints the path of each package it wrote, and writes those four');
  for (const file of Object.values(RPMS)) {
    t.match(await qp(file, '%{RSAHEADER:pgpsig}'), /^RSA\/SHA\d+, .*, Key ID [0-9a-f]{16}$/, `${file}: signed (--sign)`);
  }

  const license = (name: string) => new RegExp(`^/usr/share/licenses/${name}(-${V.replaceAll('.', '\\.')})?/LICENSE$`);
  const macroFiles = await payload(RPMS.macros);
  t.equal(macroFiles.length, 2, `nocow-rpm-macros: macros.nocow and its license, nothing else\n${macroFiles.join('\n')}`);
  t.equal(macroFiles[0], '/usr/lib/rpm/macros.d/macros.nocow');
  t.match(macroFiles[1], license('nocow-rpm-macros'));
  t.same(await requires(RPMS.macros), [], 'nocow-rpm-macros requires nothing (no Node.js)');
  t.equal(await qp(RPMS.macros, '%{ARCH}'), 'noarch');

  const hookFiles = await payload(RPMS.hook);
  t.equal(hookFiles.length, 2, `nocow-apply-hook: the hook and its license\n${hookFiles.join('\n')}`);
  t.equal(hookFiles[0], '/usr/libexec/nocow-kit/nocow-apply.sh');
  t.match(hookFiles[1], license('nocow-apply-hook'));
  const hookRequires = await requires(RPMS.hook);
  t.notOk(hookRequires.some((r) => /node/.test(r)), `nocow-apply-hook: no Node.js (${hookRequires.join(', ')})`);
  t.same(hookRequires, ['/bin/sh', 'coreutils', 'e2fsprogs', 'findutils'], 'the shell and the tools of %nocow_requires');

  const kitFiles = await payload(RPMS.kit);
  for (const f of [
    '/usr/bin/nocow',
    '/usr/lib/nocow-kit/package.json',
    '/usr/lib/nocow-kit/dist/bin/nocow.js',
    '/usr/lib/nocow-kit/templates/nocow-lib.sh.ejs',
    '/usr/share/man/man1/nocow.1.gz',
    '/usr/share/bash-completion/completions/nocow',
    '/usr/share/zsh/site-functions/_nocow',
  ]) {
    t.ok(kitFiles.includes(f), `nocow-kit has ${f}`);
  }
  t.ok(kitFiles.some((f) => license('nocow-kit').test(f)), 'its license');
  for (const doc of ['README.md', 'SECURITY.md', 'docs/design.md']) {
    t.ok(kitFiles.some((f) => new RegExp(`^/usr/share/doc/nocow-kit[^/]*/${doc}$`).test(f)), `%doc ${doc}`);
  }
  const outside = kitFiles.filter((f) => !/^\/usr\/(bin\/nocow$|lib\/nocow-kit\/|share\/(man\/man1\/nocow\.1\.gz|bash-completion\/completions\/nocow|zsh\/site-functions\/_nocow|doc\/nocow-kit[^/]*\/|licenses\/nocow-kit[^/]*\/))/.test(f));
  t.same(outside, [], 'nothing else');
  const app = kitFiles.filter((f) => f.startsWith('/usr/lib/nocow-kit/')).map((f) => f.slice('/usr/lib/nocow-kit/'.length));
  const listed = (await execa('rpm', ['-qlp', RPMS.kit])).stdout.split('\n');
  t.same(listed.filter((f) => /(^|\/)node_modules(\/|$)/.test(f)), [], 'rpm -qlp: no node_modules path');
  const templates = (await readdir(join(REPO, 'templates'))).map((f) => `templates/${f}`);
  t.same(app.sort(), ['package.json', ...templates, ...bundleFiles].sort(), '/usr/lib/nocow-kit: exactly what npm run bundle writes in dist/ (the command, yargs\'s message catalogs), the templates and package.json');
  // 81 files for 0.1.0 (a node_modules tree made it 1,721): 18 of JavaScript, 29 message
  // catalogs of yargs, 16 templates, package.json, the link, man page, 2 completions, 11
  // documents, 2 license files. 100 leaves room for a few more documents or templates.
  t.ok(kitFiles.length <= 100, `nocow-kit: ${kitFiles.length} files, at most 100`);
  const jsFiles = app.filter((f) => f.endsWith('.js'));
  t.ok(jsFiles.length <= 25, `the command in ${jsFiles.length} JavaScript files, at most 25: the bundle, split where start-up needs it`);
  // Not "nodejs >= 20": Fedora's nodejs has Epoch 1, and nodejs-1:18 would meet that.
  t.ok((await requires(RPMS.kit)).includes('nodejs(engine) >= 20'), 'Requires: nodejs(engine) >= 20');
  const provides = (await qp(RPMS.kit, '[%{PROVIDENAME} %{PROVIDEFLAGS:depflags} %{PROVIDEVERSION}\n]')).split('\n').map((l) => l.trim());
  for (const [name, version] of Object.entries(pkg.dependencies)) {
    t.ok(provides.includes(`bundled(nodejs-${name}) = ${version}`), `Provides: bundled(nodejs-${name}) = ${version}`);
  }
  const pinned = new Set(Object.entries(lock.packages).filter(([key, e]) => key.startsWith('node_modules/') && !e.dev).map(([key, e]) => `${key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length)} ${e.version}`));
  const bundled = provides.filter((p) => p.startsWith('bundled(')).map((p) => p.replace(/^bundled\(nodejs-(\S+)\) = (\S+)$/, '$1 $2'));
  t.same(bundled.filter((b) => !pinned.has(b)), [], `each of the ${bundled.length} bundled() Provides: a production package at the version package-lock.json pins`);
  // License: ours (MIT) and every license of a bundled package, as package-lock.json records it.
  const lockLicense = new Map(Object.entries(lock.packages).filter(([key]) => key.startsWith('node_modules/')).map(([key, e]) => [`${key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length)} ${e.version}`, e.license]));
  const bundledLicenses = new Set(bundled.map((b) => lockLicense.get(b)));
  t.ok(bundledLicenses.has('Apache-2.0') && bundledLicenses.has('ISC'), `the bundle holds Apache-2.0 (ejs) and ISC (yaml) code: ${[...bundledLicenses].join(', ')}`);
  t.equal(await qp(RPMS.kit, '%{LICENSE}'), ['MIT', ...[...bundledLicenses].filter((l) => l !== 'MIT').sort()].join(' AND '), 'License: MIT and every bundled package\'s license');
  t.equal(await qp(RPMS.macros, '%{LICENSE}'), 'MIT', 'nocow-rpm-macros: our text only');
  t.ok(kitFiles.some((f) => /^\/usr\/share\/licenses\/nocow-kit[^/]*\/bundled-licenses\.txt$/.test(f)), '%license bundled-licenses.txt: the license files of the bundled packages');
  t.equal(await qp(RPMS.kit, '%{ARCH}'), 'noarch');
  // Published nowhere yet: no URL rather than one naming a page that does not exist.
  t.equal(await qp(RPMS.kit, '%{URL}'), '(none)', 'no URL while the package is unpublished');

  const lint = await execa('shellcheck', ['--shell=sh', '--severity=style', join(REPO, 'packaging/build-rpm.sh')], { reject: false });
  t.equal(lint.exitCode, 0, `build-rpm.sh is shellcheck-clean\n${lint.stdout}`);

  const srpmFiles = (await execa('rpm', ['-qpl', RPMS.src])).stdout.split('\n').sort();
  t.same(srpmFiles, [`nocow-kit-${V}-bundle.tgz`, `nocow-kit-${V}-bundled.txt`, `nocow-kit-${V}.tgz`, 'nocow-kit.spec'], 'the source RPM: the spec and the three sources, so it rebuilds offline');
});

t.test('GIVEN the source RPM WHEN rebuilt by rpmbuild --rebuild without a network THEN the same three packages, file for file and byte for byte', async (t) => {
  await setup();
  const top = join(WORK, 'rebuild');
  const started = Date.now();
  // unshare --net: a network namespace with only a loopback, which is down.
  const rebuild = await execa('unshare', ['--net', 'rpmbuild', '--rebuild', '--nodeps', '--quiet', '--define', `_topdir ${top}`, RPMS.src], { reject: false });
  t.equal(rebuild.exitCode, 0, `rpmbuild --rebuild, offline\n${rebuild.stderr}`);
  t.comment(`rpmbuild --rebuild: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const digests = (file: string) => qp(file, '[%{FILENAMES} %{FILEMODES:perms} %{FILEDIGESTS} %{FILELINKTOS}\n]');
  for (const file of BINARY) {
    const again = join(top, 'RPMS/noarch', file.slice(OUT.length + 1));
    t.equal(await digests(again), await digests(file), `${again.slice(top.length + 1)}: the same paths, modes, contents and links`);
  }
});

t.test('GIVEN the four packages WHEN checked by rpmlint THEN it reports no error', async (t) => {
  const { keyDb } = await setup();
  // rpmlint checks the signature with rpm -K, against rpm's default database: the key's, here.
  const lint = await execa(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-euc', 'mount --bind "$KEYDB" "$(rpm --eval %_dbpath)"; exec rpmlint -r "$RC" "$@"', 'sh', ...Object.values(RPMS)],
    { env: { KEYDB: keyDb, RC: join(REPO, 'packaging/nocow-kit.rpmlintrc') }, reject: false },
  );
  const findings = lint.stdout.split('\n').filter((l) => /^\S+: [EW]: /.test(l));
  t.match(lint.stdout, /4 packages and 0 specfiles checked; 0 errors,/, 'rpmlint: 0 errors');
  if (!/ 0 errors,/.test(lint.stdout)) t.comment(`${lint.stdout}\n${lint.stderr}`);
  t.same(findings.filter((l) => / E: /.test(l)), [], 'no E: line (unused-rpmlintrc-filter would be one)');
  // A node_modules tree made hundreds (identical LICENSE files, .d.ts and .d.cts twins); the
  // bundled packages' licenses are one text.
  t.same(findings.filter((l) => / W: files-duplicate/.test(l)), [], 'no files-duplicate');
  const warnings = [...new Set(findings.map((l) => l.replace(/^(\S+: W: \S+).*/, '$1')))].sort();
  t.comment(`rpmlint warnings (kinds): ${warnings.join('; ')}`);
  t.equal(lint.exitCode, 0, 'exit status 0');
});

t.test('GIVEN the packages installed with rpm -i --root into a scratch root THEN rpm lists and verifies them, and /usr/bin/nocow runs', async (t) => {
  const { install } = await setup();
  t.same({ rc: install.exitCode, out: install.stdout, err: install.stderr }, { rc: 0, out: '', err: '' }, 'rpm -i: exit 0, silent (signatures checked against the imported key)');
  const q = await rpmScratch(['-q', 'nocow-kit', 'nocow-rpm-macros', 'nocow-apply-hook']);
  t.equal(q.stdout, [`nocow-kit-${V}-${RELEASE}.noarch`, `nocow-rpm-macros-${V}-${RELEASE}.noarch`, `nocow-apply-hook-${V}-${RELEASE}.noarch`].join('\n'));
  const verify = await rpmScratch(['-V', '--nodeps', 'nocow-kit', 'nocow-rpm-macros', 'nocow-apply-hook']);
  t.same({ rc: verify.exitCode, out: verify.stdout }, { rc: 0, out: '' }, 'rpm -V: every file as packaged');

  const bin = join(SCRATCH, 'usr/bin/nocow');
  t.equal(await readlink(bin), '../lib/nocow-kit/dist/bin/nocow.js', 'a relative symlink');
  const entry = join(SCRATCH, 'usr/lib/nocow-kit/dist/bin/nocow.js');
  t.equal((await readFile(entry, 'utf8')).split('\n')[0], '#!/usr/bin/node', 'run by /usr/bin/node');
  t.equal((await stat(entry)).mode & 0o777, 0o755);
  // The host's node, outside the repository: only the bundled node_modules can serve it.
  const env = { PATH: `${dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: WORK };
  const run = (args: string[]) => execa(bin, args, { cwd: WORK, env, extendEnv: false, reject: false });
  const version = await run(['--version']);
  t.same({ rc: version.exitCode, out: version.stdout, err: version.stderr }, { rc: 0, out: V, err: '' }, `nocow --version: ${V}`);

  const generated = join(WORK, 'generated');
  await mkdir(generated);
  const gen = await run(['generate', 'macros', 'hook', '-o', generated]);
  t.equal(gen.exitCode, 0, gen.stderr);
  const repoGenerated = join(WORK, 'generated-repo');
  await mkdir(repoGenerated);
  await execa(process.execPath, [CLI, 'generate', 'macros', 'hook', '-o', repoGenerated]);
  for (const [file, installed] of [
    ['macros.nocow', 'usr/lib/rpm/macros.d/macros.nocow'],
    ['nocow-apply.sh', 'usr/libexec/nocow-kit/nocow-apply.sh'],
  ] as const) {
    const shipped = await readFile(join(SCRATCH, installed));
    t.ok(shipped.equals(await readFile(join(repoGenerated, file))), `${installed}: what the repository's build generates`);
    t.ok(shipped.equals(await readFile(join(generated, file))), `${installed}: what the installed nocow generates`);
  }
  t.equal((await stat(join(SCRATCH, 'usr/libexec/nocow-kit/nocow-apply.sh'))).mode & 0o777, 0o755, 'the hook is executable');
});

t.test('GIVEN the installed command WHEN it gives help (in German too), reads a YAML declaration, inspects and applies THEN it opens no node_modules file and prints what the repository\'s build prints', async (t) => {
  await setup();
  const bin = join(SCRATCH, 'usr/bin/nocow');
  const root = await mkdtemp(join(WORK, 'installed-root-'));
  const declaration = join(WORK, 'installed.yaml');
  await writeFile(declaration, 'targets:\n  - name: disks\n    path: /srv/disks\n    mode: "0750"\n');
  const env = { PATH: `${dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: WORK };
  const trace = join(WORK, 'installed.trace');
  // Each line exercises one bundled package besides the core: yargs (help, and its message
  // catalogs), yaml and zod (the declaration), execa (apply runs the shell script).
  const lines: [string[], Record<string, string>][] = [
    [['--help'], {}],
    [['generate', '--help'], {}],
    [['status', '--help'], { LANG: 'de_DE.UTF-8' }],
    [['generate', '-c', declaration, 'tmpfiles', 'macros'], {}],
    [['generate', '-c', declaration, '--kickstart-log', 'x'], {}],
    [['generate'], {}],
    [['status', '--json', '--root', root], {}],
    [['apply', '--root', root, '-c', declaration], {}],
  ];
  for (const [args, extra] of lines) {
    // env -u NODE_OPTIONS: without the --import of tap's process tracking, which loads from node_modules.
    const installed = await execa('env', ['-u', 'NODE_OPTIONS', 'strace', '-f', '-qq', '-e', 'trace=openat,open,stat,statx,newfstatat', '-o', trace, bin, ...args], { cwd: WORK, env: { ...env, ...extra }, extendEnv: false, reject: false });
    const repo = await execa(process.execPath, [CLI, ...args], { cwd: WORK, env: { ...env, ...extra }, extendEnv: false, reject: false });
    const label = `${Object.entries(extra).map(([k, v]) => `${k}=${v} `).join('')}nocow ${args.join(' ')}`;
    t.same({ rc: installed.exitCode, out: installed.stdout, err: installed.stderr }, { rc: repo.exitCode, out: repo.stdout, err: repo.stderr }, `${label}: the same status and output as the repository's build`);
    const traced = await readFile(trace, 'utf8');
    const looked = traced.match(/"[^"]*node_modules[^"]*"/g) ?? [];
    t.same([...new Set(looked)], [], `${label}: no node_modules path looked up or opened`);
    if ((args[0] === 'generate' && args.length === 1) || (args[0] === 'status' && !args.includes('--help'))) {
      // The fast path of the bundle as of the npm build: the core alone, no yargs, yaml or execa.
      const loaded = [...traced.matchAll(/open(?:at)?\(.*"[^"]*\/usr\/lib\/nocow-kit\/(dist\/[^"]*\.js)".*\) = \d+$/gm)].map((m) => m[1]);
      t.same([...new Set(loaded)].sort(), ['dist/bin/nocow.js', 'dist/nocow-core.js'], `${label}: the fast path, loading the core alone`);
    }
  }
  t.match((await execa(bin, ['status', '--help'], { cwd: WORK, env: { ...env, LANG: 'de_DE.UTF-8' }, extendEnv: false })).stdout, /^Optionen:$/m, 'yargs\'s German catalog, from the package\'s own copy');
});

t.test('GIVEN the installed man page and completions THEN man renders the page with its NAME section, and the completions are in place', async (t) => {
  await setup();
  const man = await execa('man', ['-l', join(SCRATCH, 'usr/share/man/man1/nocow.1.gz')], { env: { MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80' }, reject: false });
  t.equal(man.exitCode, 0, man.stderr);
  t.match(man.stdout, /^NAME\n\s+nocow\b/m, `the NAME section names nocow\n${man.stdout.slice(0, 400)}`);
  const bash = join(SCRATCH, 'usr/share/bash-completion/completions/nocow');
  const syntax = await execa('bash', ['-n', bash], { reject: false });
  t.equal(syntax.exitCode, 0, `bash completion parses\n${syntax.stderr}`);
  t.match(await readFile(join(SCRATCH, 'usr/share/zsh/site-functions/_nocow'), 'utf8'), /^#compdef nocow\b/, 'zsh completion: #compdef nocow, so compinit autoloads it');
});

t.test('GIVEN a Btrfs root WHEN the installed /usr/libexec/nocow-kit/nocow-apply.sh runs with --root THEN /var/lib/libvirt/images there is a +C subvolume, and a second run changes nothing', async (t) => {
  await setup();
  const hook = join(SCRATCH, 'usr/libexec/nocow-kit/nocow-apply.sh');
  const A = await mkdtemp(join(WORK, 'hook-'));
  const run = await runInFs({
    fs: 'btrfs',
    script: String.raw`
echo "$MNT" >"$A/mnt"
R=$MNT/r
mkdir -p "$R/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
rc=0; "$HOOK" --root "$R" >"$A/out" 2>"$A/err" || rc=$?; echo "$rc" >"$A/rc"
observe "$R/var/lib/libvirt/images"
btrfs subvolume show "$R/var/lib/libvirt/images" >"$A/show"
rc=0; "$HOOK" --root "$R" >"$A/out2" 2>"$A/err2" || rc=$?; echo "$rc" >"$A/rc2"`,
    env: { HOOK: hook, A },
  });
  t.equal(run.exitCode, 0, run.stderr);
  const read = (name: string) => readFile(join(A, name), 'utf8');
  const images = '/var/lib/libvirt/images';
  const where = `${(await read('mnt')).trim()}/r${images}`;
  t.same(
    { rc: await read('rc'), out: await read('out'), err: await read('err') },
    { rc: '0\n', out: `nocow: libvirt: created: subvolume ${where}\nnocow: libvirt: set-nocow: +C on ${where}\n`, err: '' },
    'exit 0, one line per change',
  );
  const o = parseObservations(run.stdout).get(`/r${images}`);
  t.same(
    { kind: o?.kind, inode: o?.inode, subvol: o?.subvol, nocow: o?.nocow, mode: o?.mode, uid: o?.uid, gid: o?.gid },
    { kind: 'dir', inode: 256, subvol: true, nocow: true, mode: 0o711, uid: 0, gid: 0 },
    'a subvolume (inode 256) with +C, 0711 root:root as the libvirt profile declares',
  );
  t.match(await read('show'), /Subvolume ID:\s+\d+/, 'btrfs subvolume show knows it');
  t.same({ rc: await read('rc2'), out: await read('out2'), err: await read('err2') }, { rc: '0\n', out: '', err: '' }, 'second run: silent');
});

const DOWNSTREAM_PATH = '/srv/downstream/images';
const DOWNSTREAM_SPEC = `Name: nocow-downstream
Version: 1
Release: 1
Summary: Downstream package of the nocow-kit packaging test
License: MIT
Group: System/Test
URL: https://example.invalid/nocow-downstream
BuildArch: noarch
BuildRequires: nocow-rpm-macros
%nocow_requires

%description
Owns ${DOWNSTREAM_PATH}, which its posttrans makes a NOCOW subvolume on Btrfs.

%install
mkdir -p %{buildroot}${DOWNSTREAM_PATH}

%files
%dir /srv/downstream
%dir ${DOWNSTREAM_PATH}

%posttrans
%nocow_posttrans ${DOWNSTREAM_PATH}

%changelog
* Sun Nov 29 2026 nocow-kit tests <nocow-kit@example.invalid> - 1-1
- Test build.
`;

// In a private mount namespace: rpm's macros.d with the scratch root's (an overlay, the
// host's own files stay visible), and, with DB=yes, the scratch root's database as rpm's
// default one, so that the BuildRequires check sees the installed nocow-rpm-macros.
const DOWNSTREAM_BUILD = String.raw`
macrosd=$(rpm --eval %_rpmmacrodir)
mount -t overlay overlay -o "lowerdir=$SCRATCH/usr/lib/rpm/macros.d:$macrosd" "$macrosd"
if [ "$DB" = yes ]; then mount --bind "$SCRATCH/var/lib/rpm" "$(rpm --eval %_dbpath)"; fi
exec rpmbuild -bb --quiet --define "_topdir $TOP" "$SPEC"`;

t.test('GIVEN a spec with BuildRequires: nocow-rpm-macros and %nocow_posttrans WHEN built against the macros as that package installed them THEN rpm installs it on Btrfs and its %posttrans makes a +C subvolume', async (t) => {
  await setup();
  const dir = await mkdtemp(join(WORK, 'downstream-'));
  const spec = join(dir, 'nocow-downstream.spec');
  await writeFile(spec, DOWNSTREAM_SPEC);
  const build = (db: 'yes' | 'no', top: string) =>
    execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-euc', DOWNSTREAM_BUILD], {
      env: { SCRATCH, DB: db, TOP: join(dir, top), SPEC: spec },
      reject: false,
    });

  const without = await build('no', 'top-nodb');
  t.not(without.exitCode, 0, 'control: with the macros but without the package in the database, rpmbuild refuses');
  t.match(without.stderr, /Failed build dependencies:\s+nocow-rpm-macros is needed by nocow-downstream/, 'for the BuildRequires (no --nodeps anywhere)');

  const built = await build('yes', 'top');
  t.equal(built.exitCode, 0, `rpmbuild -bb, its BuildRequires met by the installed nocow-rpm-macros\n${built.stderr}`);
  const rpmFile = join(dir, 'top/RPMS/noarch/nocow-downstream-1-1.noarch.rpm');
  const scripts = (await execa('rpm', ['-qp', '--scripts', rpmFile])).stdout;
  t.match(scripts, /^posttrans scriptlet \(using \/bin\/sh\):\n# %nocow_posttrans of nocow-kit /, 'the %posttrans is the installed macro file\'s');
  t.match(scripts, /\nnocow_target 'srv-downstream-images' '\/srv\/downstream\/images' 'auto' 'yes' '0755' 'root' 'root' 'keep-checksums'$/);
  const required = await requires(rpmFile);
  t.same(required.filter((r) => !r.startsWith('/bin/sh')), ['coreutils', 'e2fsprogs', 'findutils'], '%nocow_requires: Requires(posttrans) coreutils e2fsprogs findutils');

  const A = await mkdtemp(join(WORK, 'downstream-install-'));
  const run = await runInFs({
    fs: 'btrfs',
    script: String.raw`
. "$CHROOT_SH"
R=$MNT/root
make_root "$R"
rc=0; rpm_root "$R" -i "$PKG" >"$A/out" 2>"$A/err" || rc=$?; echo "$rc" >"$A/rc"
P=$R$DOWNSTREAM_PATH
observe "$P"
lsattr -d "$P" | cut -d' ' -f1 >"$A/lsattr"
btrfs subvolume show "$P" >"$A/show"
rpm --root "$R" --dbpath /var/lib/rpm -q nocow-downstream >"$A/q"`,
    env: { A, CHROOT_SH, PKG: rpmFile, DOWNSTREAM_PATH },
  });
  t.equal(run.exitCode, 0, run.stderr);
  const read = (name: string) => readFile(join(A, name), 'utf8');
  t.same(
    { rc: await read('rc'), out: await read('out'), err: await read('err') },
    { rc: '0\n', out: `nocow: srv-downstream-images: converted: empty directory ${DOWNSTREAM_PATH} into a subvolume with +C\n`, err: '' },
    'rpm -i: exit 0, the one line of the %posttrans',
  );
  t.equal(await read('q'), 'nocow-downstream-1-1.noarch\n');
  const o = parseObservations(run.stdout).get(`/root${DOWNSTREAM_PATH}`);
  t.same({ kind: o?.kind, inode: o?.inode, subvol: o?.subvol, nocow: o?.nocow }, { kind: 'dir', inode: 256, subvol: true, nocow: true }, 'a subvolume with +C');
  t.match(await read('lsattr'), /^\S*C\S*\n$/, 'lsattr -d: C');
  t.match(await read('show'), /Subvolume ID:\s+\d+/, 'btrfs subvolume show knows it');
});

const APPLY_IMAGES = '/var/lib/libvirt/images';
const APPLY_DISKS = '/srv/apply/disks';
const applySpec = (call: string) => `Name: nocow-downstream-apply
Version: 1
Release: 1
Summary: Downstream package of the nocow-kit packaging test, calling the helper
License: MIT
Group: System/Test
URL: https://example.invalid/nocow-downstream-apply
BuildArch: noarch
BuildRequires: nocow-rpm-macros
%nocow_apply_requires

%description
Owns ${APPLY_DISKS}; its posttrans has the packaged helper make it and ${APPLY_IMAGES} NOCOW subvolumes on Btrfs.

%install
mkdir -p %{buildroot}${APPLY_DISKS}

%files
%dir /srv/apply
%dir ${APPLY_DISKS}

%posttrans
${call}

%changelog
* Sun Nov 29 2026 nocow-kit tests <nocow-kit@example.invalid> - 1-1
- Test build.
`;

// The root's /usr is the host's, read-only (make_root): writable_usr lets rpm install the hook
// package's /usr/libexec/nocow-kit/nocow-apply.sh.
const APPLY_INSTALL = String.raw`
. "$CHROOT_SH"
R=$MNT/root
make_root "$R"
writable_usr "$R"
rpm --root "$R" --dbpath /var/lib/rpm --import "$KEY"
rc=0; rpm_root "$R" -i "$HOOK_RPM" "$PKG" >"$A/out" 2>"$A/err" || rc=$?; echo "$rc" >"$A/rc"
rc=0; "$R/usr/libexec/nocow-kit/nocow-apply.sh" --root "$R" --check -m 0711 "$IMAGES" /srv/apply/new >"$A/check" 2>&1 || rc=$?; echo "$rc" >"$A/check-rc"
for p in "$R$IMAGES" "$R$DISKS" "$R/srv/apply/new"; do observe "$p"; done
rpm --root "$R" --dbpath /var/lib/rpm -q nocow-apply-hook nocow-downstream-apply >"$A/q"`;

t.test('GIVEN a spec with %nocow_apply -m 0711 and two paths WHEN built against the installed macros and installed with nocow-apply-hook THEN one call of at most 512 bytes makes both +C subvolumes on Btrfs, and nothing on ext4', async (t) => {
  await setup();
  const dir = await mkdtemp(join(WORK, 'downstream-apply-'));
  const build = async (name: string, call: string) => {
    const spec = join(dir, `${name}.spec`);
    await writeFile(spec, applySpec(call));
    return execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-euc', DOWNSTREAM_BUILD], {
      env: { SCRATCH, DB: 'yes', TOP: join(dir, name), SPEC: spec },
      reject: false,
    });
  };

  const bad = await build('bad', `%nocow_apply -m 9999 ${APPLY_IMAGES}`);
  t.not(bad.exitCode, 0, 'a bad value stops rpmbuild');
  t.match(bad.stderr, /%nocow_apply: -m 9999: expected 3 or 4 octal digits/, 'with the rule\'s words');

  const built = await build('top', `%nocow_apply -m 0711 ${APPLY_IMAGES} ${APPLY_DISKS}`);
  t.equal(built.exitCode, 0, `rpmbuild -bb\n${built.stderr}`);
  const rpmFile = join(dir, 'top/RPMS/noarch/nocow-downstream-apply-1-1.noarch.rpm');
  const scripts = (await execa('rpm', ['-qp', '--scripts', rpmFile])).stdout;
  const body = scripts.replace(/^posttrans scriptlet \(using \/bin\/sh\):\n/, '');
  t.equal(
    body.trim(),
    `/usr/libexec/nocow-kit/nocow-apply.sh --scriptlet -m '0711' -- '${APPLY_IMAGES}' '${APPLY_DISKS}' || :`,
    'the %posttrans is one call of the helper, ending || :',
  );
  t.ok(Buffer.byteLength(body) <= 512, `at most 512 bytes (${Buffer.byteLength(body)})`);
  const required = await requires(rpmFile);
  t.ok(required.includes('nocow-apply-hook'), `%nocow_apply_requires: nocow-apply-hook (${required.join(', ')})`);

  for (const fs of ['btrfs', 'ext4'] as const) {
    const A = await mkdtemp(join(WORK, `downstream-apply-${fs}-`));
    const run = await runInFs({ fs, script: APPLY_INSTALL, env: { A, CHROOT_SH, KEY: join(WORK, 'key.asc'), PKG: rpmFile, HOOK_RPM: RPMS.hook, IMAGES: APPLY_IMAGES, DISKS: APPLY_DISKS } });
    t.equal(run.exitCode, 0, run.stderr);
    const read = (name: string) => readFile(join(A, name), 'utf8');
    t.equal(await read('q'), `nocow-apply-hook-${V}-${RELEASE}.noarch\nnocow-downstream-apply-1-1.noarch\n`, `${fs}: both installed`);
    const images = parseObservations(run.stdout).get(`/root${APPLY_IMAGES}`);
    const disks = parseObservations(run.stdout).get(`/root${APPLY_DISKS}`);
    if (fs === 'btrfs') {
      t.same(
        { rc: await read('rc'), out: (await read('out')).split('\n').filter(Boolean).map((l) => l.replace(/: [^:]*$/, '')), err: await read('err') },
        { rc: '0\n', out: ['nocow: var-lib-libvirt-images: created', 'nocow: var-lib-libvirt-images: set-nocow', 'nocow: srv-apply-disks: converted'], err: '' },
        'btrfs: rpm -i exit 0, one line per change of each target',
      );
      t.same(
        { kind: images?.kind, inode: images?.inode, subvol: images?.subvol, nocow: images?.nocow, mode: images?.mode },
        { kind: 'dir', inode: 256, subvol: true, nocow: true, mode: 0o711 },
        'btrfs: the created path is a +C subvolume with -m 0711',
      );
      t.same({ kind: disks?.kind, inode: disks?.inode, subvol: disks?.subvol, nocow: disks?.nocow }, { kind: 'dir', inode: 256, subvol: true, nocow: true }, 'btrfs: the packaged path a +C subvolume');
      const check = (await read('check')).split('\n').filter(Boolean);
      t.equal(await read('check-rc'), '1\n', 'btrfs: --check with operands: exit 1, a PATH would change');
      t.ok(check.length > 0 && check.every((l) => l.startsWith('nocow: srv-apply-new: ')), `btrfs: --check speaks of the missing PATH only\n${check.join('\n')}`);
      t.ok(check.some((l) => l.startsWith('nocow: srv-apply-new: would: ')), 'btrfs: with would lines');
      t.equal(parseObservations(run.stdout).get('/root/srv/apply/new')?.kind, 'missing', 'btrfs: --check created nothing');
    } else {
      t.same({ rc: await read('rc'), out: await read('out'), err: await read('err') }, { rc: '0\n', out: '', err: '' }, 'ext4: rpm -i exit 0, silent');
      t.equal(images?.kind, 'missing', 'ext4: the helper created nothing');
      t.same({ kind: disks?.kind, nocow: disks?.nocow }, { kind: 'dir', nocow: false }, 'ext4: the packaged directory as rpm made it, without +C');
    }
  }
});

t.test('GIVEN the installed helper WHEN given a bad value THEN one line, exit 0 with --scriptlet and exit 2 without', async (t) => {
  await setup();
  const hook = join(SCRATCH, 'usr/libexec/nocow-kit/nocow-apply.sh');
  const root = await mkdtemp(join(WORK, 'bad-value-'));
  for (const shell of ['dash', 'bash', 'busybox']) {
    const argv = shell === 'busybox' ? ['sh', hook] : [hook];
    for (const [flags, rc] of [[['--scriptlet'], 0], [[], 2]] as const) {
      const run = await execa(shell, [...argv, '--root', root, ...flags, '-m', '9999', APPLY_IMAGES], { reject: false });
      t.same(
        { rc: run.exitCode, out: run.stdout, err: run.stderr },
        { rc, out: '', err: 'nocow-apply.sh: -m 9999: expected 3 or 4 octal digits' },
        `${shell} ${flags.join(' ')}: one line, exit ${rc}`,
      );
    }
  }
});

t.test('GIVEN the installed helper WHEN an option that takes a value is given an empty one THEN one line naming it, exit 2 (0 with --scriptlet), nothing created: never the default in disguise', async (t) => {
  await setup();
  const hook = join(SCRATCH, 'usr/libexec/nocow-kit/nocow-apply.sh');
  const root = await mkdtemp(join(WORK, 'empty-value-'));
  for (const shell of ['dash', 'bash', 'busybox']) {
    const argv = shell === 'busybox' ? ['sh', hook] : [hook];
    for (const option of [['-m', ''], ['-o', ''], ['-g', ''], ['-s', ''], ['-c', ''], ['--name', ''], ['--name='], ['--root=']]) {
      for (const [flags, rc] of [[['--scriptlet'], 0], [[], 2]] as const) {
        const run = await execa(shell, [...argv, '--root', root, ...flags, ...option, APPLY_IMAGES], { reject: false });
        const name = option[0]!.replace(/=$/, '');
        t.same({ rc: run.exitCode, out: run.stdout }, { rc, out: '' }, `${shell} ${flags.join(' ')} ${option.join(' ')}: exit ${rc}, nothing on stdout`);
        t.match(run.stderr, new RegExp(`^nocow-apply\\.sh: ${name} '': expected a value, not an empty one \\(usage: [^\\n]+\\)$`), `${shell} ${option.join(' ')}: one line naming the option`);
      }
    }
  }
  t.same(await readdir(root), [], 'nothing created under the root');
});
