// The npm package: `npm pack` of this checkout holds the built dist/ and what the
// command reads at run time, nothing of the development; `npm install -g` of that
// tarball into a fresh prefix needs no build step and no dev dependency, and the
// installed `nocow` behaves byte for byte as the repository's build.
import t from 'tap';
import { execa } from 'execa';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, realpath } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { builtCli } from './helpers/cli.js';
import { runInFs } from './helpers/fs.js';

const REPO = join(import.meta.dirname, '..');
interface PackageJson {
  name: string;
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  man?: string[];
}
const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as PackageJson;
const CLI = builtCli();

const WORK = await mkdtemp(join(tmpdir(), 'nocow-npm-pack-'));
t.teardown(() => rmSync(WORK, { recursive: true, force: true }));
const PREFIX = join(WORK, 'prefix');
const INSTALLED = join(PREFIX, 'lib/node_modules', pkg.name);
const BIN = join(PREFIX, 'bin/nocow');

// npm as a user runs it: none of the npm_* variables of an `npm test` around this run
// (they are npm configuration); npm's default cache, which `npm ci` filled.
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
const npm = (args: string[], cwd: string) => execa('npm', args, { cwd, env: cleanEnv, extendEnv: false, reject: false });

// Only Node: the directory of this node, the system's; outside the repository, so no
// node_modules of the checkout can serve a missing dependency.
const runEnv = { PATH: `${dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: WORK, LANG: 'C.UTF-8' };
const run = (cmd: string, args: string[], env: Record<string, string> = runEnv) => execa(cmd, args, { cwd: WORK, env, extendEnv: false, reject: false });
const installed = (args: string[]) => run(BIN, args);
const repo = (args: string[]) => run(process.execPath, [CLI, ...args]);

/** npm install -g of the tarball into prefix; --foreground-scripts prints any script it runs. */
async function globalInstall(prefix: string, tgz: string) {
  const install = await npm(['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tgz], WORK);
  if (install.exitCode !== 0) throw new Error(`npm install -g ${tgz} failed (${install.exitCode}):\n${install.stdout}\n${install.stderr}`);
  return install;
}

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string }[];
}

/** Once for the file: the tarball, and its global install into PREFIX. */
async function setUp() {
  // --ignore-scripts: prepare would rebuild dist/ under the other test files running now;
  // `npm test` built it, and builtCli() checked that it is not older than src/.
  const pack = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', WORK], REPO);
  if (pack.exitCode !== 0) throw new Error(`npm pack failed (${pack.exitCode}):\n${pack.stderr}`);
  const [packed] = JSON.parse(pack.stdout) as Packed[];
  if (!packed) throw new Error(`npm pack printed no package:\n${pack.stdout}`);
  const tgz = join(WORK, packed.filename);
  const started = Date.now();
  const install = await globalInstall(PREFIX, tgz);
  const seconds = (Date.now() - started) / 1000;
  return { packed, tgz, install, seconds };
}
const ready = setUp().catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
/** Every test fails, with the cause, when the setup did. */
async function setup() {
  const s = await ready;
  if (s instanceof Error) throw s;
  return s;
}

/** Every file below dir, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

t.test('GIVEN npm pack WHEN the tarball is listed THEN it holds dist/, templates/, docs/ and the documents, and nothing of the development', async (t) => {
  const { packed } = await setup();
  t.comment(`${packed.filename}: ${packed.size} bytes, ${packed.unpackedSize} unpacked, ${packed.files.length} files`);
  const files = packed.files.map((f) => f.path).sort();
  t.same([...new Set(files.map((f) => f.split('/')[0]))].sort(), ['LICENSE', 'README.md', 'SECURITY.md', 'dist', 'docs', 'package.json', 'templates'], 'top level: exactly these');
  for (const f of ['LICENSE', 'README.md', 'SECURITY.md', 'docs/design.md', 'dist/bin/nocow.js', 'templates/nocow-lib.sh.ejs']) {
    t.ok(files.includes(f), `has ${f}`);
  }
  for (const f of ['dist/man/nocow.1', 'dist/completions/nocow.bash', 'dist/completions/_nocow']) {
    t.ok(files.includes(f), `has ${f} (npm run build makes it)`);
  }
  const built = (await tree(join(REPO, 'dist'))).map((f) => `dist/${f}`).filter((f) => !f.endsWith('.map') && !f.startsWith('dist/scripts/'));
  t.same(files.filter((f) => f.startsWith('dist/')), built, 'dist/: every file of the build but source maps and dist/scripts/');
  t.same(files.filter((f) => f.startsWith('templates/')), (await tree(join(REPO, 'templates'))).map((f) => `templates/${f}`), 'templates/: all of them');
  t.same(
    files.filter((f) => /^(test|src|bench|scriptlets|kickstart|node_modules|\.ci)\//.test(f) || /\.(ts|map)$/.test(f) || /^dist\/scripts\//.test(f) || /^(tsconfig.*\.json|\.taprc|\.gitignore|package-lock\.json|BENCHMARKS\.md)$/.test(f)),
    [],
    'no test/, src/, bench/, TypeScript, source maps, build scripts, lock file or tool configuration',
  );
});

t.test('GIVEN the tarball WHEN installed with npm install -g --prefix THEN no build step runs, only the production dependencies come, and bin/nocow links to dist/bin/nocow.js', async (t) => {
  const { tgz, install, seconds } = await setup();
  t.comment(`npm install -g: ${seconds.toFixed(1)} s`);
  // npm runs prepare for a directory or git dependency, never for a tarball: dist/ comes
  // built (and prepare would fail: tsc is a dev dependency). npm 11.19 still names it in
  // its "not yet covered by allowScripts" warning, while running install scripts.
  const banner = new RegExp(`^> ${pkg.name}@${pkg.version.replaceAll('.', '\\.')} (prepare|preinstall|install|postinstall)$`, 'm');
  t.notMatch(`${install.stdout}\n${install.stderr}`, banner, 'no lifecycle script ran (--foreground-scripts prints "> nocow-kit@VERSION SCRIPT" for one)');
  t.equal(await readlink(BIN), `../lib/node_modules/${pkg.name}/dist/bin/nocow.js`);

  // The installed files are the tarball's, byte for byte: nothing was built or changed.
  const unpacked = join(WORK, 'unpacked');
  await mkdir(unpacked);
  await execa('tar', ['-xzf', tgz, '-C', unpacked]);
  const packedFiles = await tree(join(unpacked, 'package'));
  const installedFiles = (await tree(INSTALLED)).filter((f) => !f.startsWith('node_modules/'));
  t.same(installedFiles, packedFiles, 'the same files as the tarball');
  const differing: string[] = [];
  for (const f of packedFiles) {
    if (!(await readFile(join(INSTALLED, f))).equals(await readFile(join(unpacked, 'package', f)))) differing.push(f);
  }
  t.same(differing, [], 'with the same bytes');

  for (const [name, version] of Object.entries(pkg.dependencies)) {
    const dep = JSON.parse(await readFile(join(INSTALLED, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
    t.equal(dep.version, version, `dependency ${name}@${version}`);
  }
  const devPresent: string[] = [];
  for (const d of Object.keys(pkg.devDependencies)) {
    if (await readdir(join(INSTALLED, 'node_modules', d)).then(() => true, () => false)) devPresent.push(d);
  }
  t.same(devPresent, [], `no dev dependency (${Object.keys(pkg.devDependencies).join(', ')})`);
});

t.test('GIVEN the installed nocow WHEN --version and generate run THEN the version is package.json\'s and the artifacts are the repository build\'s bytes', async (t) => {
  await setup();
  const version = await installed(['--version']);
  t.same({ rc: version.exitCode, out: version.stdout, err: version.stderr }, { rc: 0, out: pkg.version, err: '' }, `--version: ${pkg.version}`);

  const exact = { cwd: WORK, env: runEnv, extendEnv: false, stripFinalNewline: false, encoding: 'buffer' } as const;
  const [mine, theirs] = await Promise.all([execa(BIN, ['generate'], exact), execa(process.execPath, [CLI, 'generate'], exact)]);
  t.equal(mine.exitCode, 0);
  t.ok(mine.stdout.length > 0 && Buffer.from(mine.stdout).equals(Buffer.from(theirs.stdout)), `generate (default profile) to stdout: the same ${mine.stdout.length} bytes`);
  t.ok(Buffer.from(mine.stderr).equals(Buffer.from(theirs.stderr)), 'and the same stderr');

  const [a, b] = [join(WORK, 'gen-installed'), join(WORK, 'gen-repo')];
  await Promise.all([mkdir(a), mkdir(b)]);
  const [ga, gb] = await Promise.all([installed(['generate', '-o', a]), repo(['generate', '-o', b])]);
  t.same([ga.exitCode, gb.exitCode], [0, 0], `${ga.stderr}${gb.stderr}`);
  const files = await tree(a);
  t.same(files, await tree(b), `generate -o DIR: the same files (${files.join(', ')})`);
  t.ok(files.length > 0);
  for (const f of files) t.ok((await readFile(join(a, f))).equals(await readFile(join(b, f))), `${f}: the same bytes`);
});

t.test('GIVEN a temporary root off Btrfs WHEN the installed nocow runs status --root and apply --dry-run --root THEN it says and exits as the repository build does', async (t) => {
  await setup();
  const root = await mkdtemp(join(WORK, 'root-'));
  for (const args of [
    ['status', '--root', root],
    ['apply', '--dry-run', '--root', root],
  ]) {
    const [mine, theirs] = await Promise.all([installed(args), repo(args)]);
    t.same({ rc: mine.exitCode, out: mine.stdout, err: mine.stderr }, { rc: theirs.exitCode, out: theirs.stdout, err: theirs.stderr }, `nocow ${args.join(' ')}: as the repository's build`);
    if (args[0] === 'status') t.match(mine.stdout, /\/var\/lib\/libvirt\/images/, 'about the libvirt target');
  }
  const status = await installed(['status', '--root', root]);
  t.match(status.stdout, /not-applicable/, 'status: not on Btrfs, nothing expected');
  t.equal(status.exitCode, 0);
  const plan = await installed(['apply', '--dry-run', '--root', root]);
  t.match(plan.stdout, /nothing is changed/);
  t.notMatch(plan.stdout, /would:/, 'off Btrfs the script would run nothing');
  t.equal(plan.exitCode, 0);
  t.same(await readdir(root), [], 'the dry run changed nothing');
});

t.test('GIVEN a file on ext4 WHEN the installed nocow migrate --dry-run runs on it THEN it is refused as not on Btrfs, exit 1, as the repository build does', async (t) => {
  await setup();
  const A = await mkdtemp(join(WORK, 'migrate-'));
  const result = await runInFs({
    fs: 'ext4',
    script: String.raw`
F=$MNT/disk.img
head -c 65536 /dev/urandom >"$F"
sha256sum <"$F" >"$A/before"
rc=0; "$BIN" migrate --dry-run "$F" >"$A/out" 2>"$A/err" || rc=$?; echo "$rc" >"$A/rc"
rc=0; node "$CLI" migrate --dry-run "$F" >"$A/repo.out" 2>"$A/repo.err" || rc=$?; echo "$rc" >"$A/repo.rc"
echo "$F" >"$A/file"
sha256sum <"$F" >"$A/after"`,
    env: { BIN, CLI, A },
  });
  t.equal(result.exitCode, 0, result.stderr);
  const read = (name: string) => readFile(join(A, name), 'utf8');
  const file = (await read('file')).trim();
  const mine = { rc: await read('rc'), out: await read('out'), err: await read('err') };
  t.equal(mine.rc, '1\n', 'exit 1: a file was refused');
  t.match(mine.err, `${file}: not rewritten: not on Btrfs`, 'the reason, naming the file');
  t.same(mine, { rc: await read('repo.rc'), out: await read('repo.out'), err: await read('repo.err') }, 'as the repository build');
  t.equal(await read('after'), await read('before'), 'the file is unchanged');
});

t.test('GIVEN package.json\'s man field WHEN installed THEN PREFIX/share/man/man1/nocow.1 renders with its NAME section; the completions are in the package', async (t) => {
  await setup();
  t.same(pkg.man, ['./dist/man/nocow.1'], 'package.json declares the man page');
  const page = join(PREFIX, 'share/man/man1/nocow.1');
  t.equal(await readlink(page), `../../../lib/node_modules/${pkg.name}/dist/man/nocow.1`, 'npm linked it into the prefix');
  const man = await run('man', ['-l', page], { ...runEnv, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80' });
  t.equal(man.exitCode, 0, man.stderr);
  t.match(man.stdout, /^NAME\n\s+nocow\b/m, 'the NAME section names nocow');
  const viaManpath = await run('man', ['-M', join(PREFIX, 'share/man'), '-w', 'nocow']);
  t.equal(viaManpath.stdout, await realpath(page), 'man finds it by name under PREFIX/share/man');
  for (const f of ['dist/completions/nocow.bash', 'dist/completions/_nocow']) {
    t.ok((await readFile(join(INSTALLED, f), 'utf8')).length > 0, `${f} is installed with the package`);
  }
});
