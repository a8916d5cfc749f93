import t, { type Test } from 'tap';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtCli } from './helpers/cli.js';
import { NOCOW_FN, readRan, runBuilt, runMain } from './helpers/capture.js';
import { parseTree, runInFs, section } from './helpers/fs.js';

t.test('GIVEN no arguments WHEN generate runs THEN stdout has %posttrans, a closed %post --nochroot and v/h lines for libvirt', async (t) => {
  const ran = await runMain(['generate']);
  t.equal(ran.rc, 0);
  t.equal(ran.err, '');
  t.match(ran.out, /^%posttrans$/m);
  t.match(ran.out, /^Requires\(posttrans\): e2fsprogs$/m);
  t.match(ran.out, /^%post --nochroot\n[^]*?^%end$/m);
  t.match(ran.out, /^v \/var\/lib\/libvirt\/images 0711 root root -$/m);
  t.match(ran.out, /^h \/var\/lib\/libvirt\/images - - - - \+C$/m);
  t.match(ran.out, /^# ==> nocow-posttrans\.spec <==$/m, 'each file is delimited');
  t.notMatch(ran.out, /nocow-apply\.sh/, 'the hook is produced only on request');
});

t.test('GIVEN -o DIR WHEN generate runs THEN each artifact is written to its conventional name and nothing goes to stdout', async (t) => {
  const dir = t.testdir();
  const ran = await runMain(['generate', '--profile', 'libvirt', '--profile', 'gnome-boxes', 'tmpfiles', 'user-tmpfiles', 'hook', '-o', dir]);
  t.equal(ran.rc, 0);
  t.equal(ran.out, '');
  t.same((await readdir(dir, { recursive: true })).sort(), [
    'nocow-apply.sh',
    'tmpfiles.d',
    'tmpfiles.d/nocow-libvirt.conf',
    'user-tmpfiles.d',
    'user-tmpfiles.d/nocow-gnome-boxes.conf',
  ]);
  t.match(await readFile(join(dir, 'user-tmpfiles.d/nocow-gnome-boxes.conf'), 'utf8'), /^v %h\/\.local\/share\/gnome-boxes\/images 0755 - - -$/m);
});

t.test('GIVEN a declaration with several mistakes WHEN generate runs THEN one error line each, status 2, nothing written', async (t) => {
  const dir = t.testdir({ 'bad.yaml': 'targets:\n  - name: x\n    path: relative/path\n    subvolume: yes\n    mode: 0711\n' });
  const out = join(dir, 'out');
  const ran = await runMain(['generate', '-c', join(dir, 'bad.yaml'), '-o', out]);
  t.equal(ran.rc, 2);
  const lines = ran.err.trimEnd().split('\n');
  t.ok(lines.length >= 3, 'one line per problem');
  for (const line of lines) t.match(line, /^nocow: error: .*bad\.yaml: targets\[0\]\.(path|subvolume|mode)/);
  t.equal(ran.out, '');
  await t.rejects(readdir(out), 'the output directory was not even created');
});

t.test('GIVEN an unknown artifact or option WHEN parsed THEN one usage error line and status 2', async (t) => {
  for (const argv of [['generate', 'rpmspec'], ['generate', '--frobnicate'], []]) {
    const ran = await runMain(argv);
    t.equal(ran.rc, 2, argv.join(' '));
    t.match(ran.err, /^nocow: error: /);
    t.notMatch(ran.err, /\n\s+at /, 'no stack without --debug');
  }
});

t.test('GIVEN --debug WHEN a command fails THEN the stack follows the error line', async (t) => {
  const ran = await runMain(['generate', '-o', '/proc/version', '--debug']);
  t.equal(ran.rc, 2);
  t.match(ran.err, /^nocow: error: -o \/proc\/version: exists and is not a directory\n/);
  t.match(ran.err, /\n\s+at /);
});

t.test('GIVEN --help WHEN asked of generate THEN it lists artifacts, options and examples', async (t) => {
  const ran = await runMain(['generate', '--help']);
  t.equal(ran.rc, 0);
  for (const word of ['posttrans', 'kickstart', 'user-tmpfiles', '--profile', '--config', '--output', 'Examples:', 'nocow generate -c nocow.yaml -o build/']) {
    t.match(ran.out, word);
  }
});

t.test('GIVEN a JSON declaration file WHEN combined with a profile THEN both targets are generated', async (t) => {
  const dir = t.testdir();
  await writeFile(join(dir, 'd.json'), JSON.stringify({ targets: [{ name: 'vm', path: '/srv/vm images', group: 'kvm' }] }));
  const ran = await runMain(['generate', 'tmpfiles', '-c', join(dir, 'd.json'), '-p', 'machines']);
  t.equal(ran.rc, 0);
  t.match(ran.out, /^v "\/srv\/vm images" 0755 root kvm -$/m);
  t.match(ran.out, /^v \/var\/lib\/machines 0700 root root -$/m);
});

// dist/ is built by `npm test` before tap starts (one build, no race between test files).
t.test('GIVEN the built package WHEN the nocow bin runs THEN it prints the artifacts and exits 0; a bad flag exits 2', async (t) => {
  const root = join(import.meta.dirname, '..');
  const ok = await execa('node', ['dist/bin/nocow.js', 'generate'], { cwd: root });
  t.match(ok.stdout, /^%post --nochroot$/m);
  const bad = await execa('node', ['dist/bin/nocow.js', 'generate', '--nope'], { cwd: root, reject: false });
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, /^nocow: error: unknown option '--nope'; nocow generate takes: --profile \(-p\), /m);
});

t.test('GIVEN --version WHEN run THEN it prints the package version alone', async (t) => {
  const ran = await runMain(['--version']);
  t.equal(ran.rc, 0);
  t.match(ran.out, /^\d+\.\d+\.\d+\n$/);
});

t.test('GIVEN --config - WHEN a declaration comes on stdin THEN it is used, and its problems are named as coming from -', async (t) => {
  const root = join(import.meta.dirname, '..');
  const ok = await execa('node', ['dist/bin/nocow.js', 'generate', 'tmpfiles', '-c', '-'], { cwd: root, input: 'targets:\n  - {name: vm, path: /srv/vm}\n' });
  t.match(ok.stdout, /^v \/srv\/vm 0755 root root -$/m);
  const bad = await execa('node', ['dist/bin/nocow.js', 'generate', '-c', '-'], { cwd: root, input: 'targets:\n  - {name: vm, path: srv}\n', reject: false });
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, /^nocow: error: -: targets\[0\]\.path: "srv" is not allowed; expected an absolute path/m);
});

// ---- The CLI's own output and errors (issue 7, item 8): the built CLI as a subprocess ----

const cli = builtCli();

const nocow = (args: string[], input = '') => runBuilt(args, { input });

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Every entry under dir, sorted: relative path, kind, mode and, for a file, its sha256 and inode. */
async function snapshot(dir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const rel of (await readdir(dir, { recursive: true })).sort()) {
    const path = join(dir, rel);
    const st = await stat(path);
    const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    const sum = st.isFile() ? ` ${createHash('sha256').update(await readFile(path)).digest('hex')} inode ${st.ino}` : '';
    lines.push(`${rel} ${kind} ${(st.mode & 0o7777).toString(8)}${sum}`);
  }
  return lines;
}

const tempsUnder = async (dir: string): Promise<string[]> => (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.nocow-tmp'));

t.test('GIVEN -o under /proc WHEN generate runs THEN it fails at once with one line naming -o, status 1, instead of spinning for ever', async (t) => {
  const r = await nocow(['generate', '-o', '/proc/x']);
  t.equal(r.rc, 1, 'exits (a hang is killed after 20 s and gives no status)');
  t.equal(r.err, 'nocow: error: -o /proc/x: cannot write /proc/x/nocow-requires.spec: cannot create directory /proc/x: the file system does not allow it\n');
  t.equal(r.out, '');
  await t.rejects(stat('/proc/x'));
});

t.test('GIVEN -o twice WHEN generate runs THEN one error line naming both values, status 2, neither directory made', async (t) => {
  const dir = await tempDir(t);
  const [a, b] = [join(dir, 'a'), join(dir, 'b')];
  const r = await nocow(['generate', '-o', a, '-o', b]);
  t.equal(r.rc, 2);
  t.equal(r.err, `nocow: error: -o given twice (${a}, ${b}): name one output directory\n`);
  t.equal(r.out, '');
  t.same(await readdir(dir), []);
  const long = await nocow(['generate', '--output', a, '-o', b]);
  t.equal(long.err, `nocow: error: -o given twice (${a}, ${b}): name one output directory\n`, '--output and -o are the same option');
});

t.test('GIVEN -o DIR whose tmpfiles.d is a regular file WHEN generate runs THEN nothing is written (not even the first files), status 2, one line', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'tmpfiles.d'), 'not a directory\n');
  await writeFile(join(dir, 'nocow-requires.spec'), 'an older version\n');
  const before = await snapshot(dir);
  const r = await nocow(['generate', '-o', dir]);
  t.equal(r.rc, 2);
  t.equal(r.err, `nocow: error: -o ${dir}: cannot write ${dir}/tmpfiles.d/nocow-libvirt.conf: ${dir}/tmpfiles.d is not a directory\n`);
  t.equal(r.out, '');
  t.same(await snapshot(dir), before, 'the same files, bytes, modes and inodes');
  t.same(await tempsUnder(dir), []);
});

t.test('GIVEN -o DIR where a file to write is a directory WHEN generate runs THEN nothing is written, status 2', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'nocow-post-chroot.ks'));
  const before = await snapshot(dir);
  const r = await nocow(['generate', '-o', dir]);
  t.equal(r.rc, 2);
  t.equal(r.err, `nocow: error: -o ${dir}: cannot write ${dir}/nocow-post-chroot.ks: a directory of that name is in the way\n`);
  t.same(await snapshot(dir), before);
});

t.test('GIVEN -o DIR below a regular file WHEN generate runs THEN the file is named, status 2, nothing made', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'f'), 'x');
  const before = await snapshot(dir);
  const r = await nocow(['generate', '-o', join(dir, 'f', 'out')]);
  t.equal(r.rc, 2);
  t.equal(r.err, `nocow: error: -o ${dir}/f/out: cannot write ${dir}/f/out/nocow-requires.spec: ${dir}/f is not a directory\n`);
  t.same(await snapshot(dir), before);
});

t.test('GIVEN -o DIR with a .nocow-tmp left by a killed run WHEN generate runs THEN every file is replaced and no temporary file is left', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'nocow-requires.spec.nocow-tmp'), 'half');
  await writeFile(join(dir, 'nocow-requires.spec'), 'old');
  const r = await nocow(['generate', '-o', dir, 'posttrans', 'hook']);
  t.equal(r.rc, 0);
  t.equal(r.err, ['nocow-requires.spec', 'nocow-posttrans.spec', 'nocow-apply.sh'].map((f) => `nocow: wrote ${dir}/${f}\n`).join(''), 'each line prefixed nocow:');
  t.same(await tempsUnder(dir), []);
  t.match(await readFile(join(dir, 'nocow-requires.spec'), 'utf8'), /^Requires\(posttrans\): /m);
  t.equal((await stat(join(dir, 'nocow-apply.sh'))).mode & 0o777, 0o755);
  t.equal((await stat(join(dir, 'nocow-requires.spec'))).mode & 0o777, 0o644);
});

t.test('GIVEN -o "" WHEN generate runs THEN it is refused rather than writing to the current directory', async (t) => {
  const dir = await tempDir(t);
  const r = await execa('node', [cli, 'generate', '-o', ''], { cwd: dir, reject: false });
  t.equal(r.exitCode, 2);
  t.equal(r.stderr, 'nocow: error: -o "": no directory name; for the current directory write -o .');
  t.same(await readdir(dir), []);
});

t.test('GIVEN -o a path that is not UTF-8 WHEN generate runs THEN it is refused: the U+FFFD Node puts in its place would name another directory', async (t) => {
  const dir = await tempDir(t);
  const r = await execa('sh', ['-c', 'exec node "$0" generate -o "$1/$(printf "x\\377")"', cli, dir], { reject: false });
  t.equal(r.exitCode, 2);
  t.equal(r.stderr, `nocow: error: -o "${dir}/x\\ufffd": not valid UTF-8 (or contains U+FFFD); give a path whose name is UTF-8`);
  t.same(await readdir(dir), []);
});

t.test('GIVEN -p "" WHEN generate runs THEN an error names --profile and the value, status 2, instead of the default profile', async (t) => {
  const r = await nocow(['generate', '-p', '']);
  t.equal(r.rc, 2);
  t.equal(
    r.err,
    'nocow: error: --profile "": no profile name; expected one of: libvirt, machines, mariadb, postgresql, gnome-boxes, gnome-boxes-flatpak (comma-separated, or --profile repeated)\n',
  );
  t.equal(r.out, '');
  const trailing = await nocow(['generate', '-p', 'libvirt,']);
  t.equal(trailing.rc, 2);
  t.match(trailing.err, /^nocow: error: --profile libvirt,: an empty profile name between commas; expected one of: libvirt, /);
  const bare = await nocow(['status', '-p']);
  t.equal(bare.rc, 2);
  t.equal(bare.err, "nocow: error: option '-p' needs a value (write -p P)\n");
});

t.test('GIVEN -p "machines, mariadb" WHEN generate runs THEN each name is trimmed and both profiles are used', async (t) => {
  const r = await nocow(['generate', 'tmpfiles', '-p', 'machines, mariadb ']);
  t.equal(r.rc, 0);
  t.equal(r.err, '');
  t.match(r.out, /^v \/var\/lib\/machines 0700 root root -$/m);
  t.match(r.out, /^v \/var\/lib\/mysql 0755 mysql mysql -$/m);
});

t.test('GIVEN an artifact the declaration cannot produce WHEN generate runs THEN status 2 (a usage error), one line', async (t) => {
  const r = await nocow(['generate', 'posttrans', '-p', 'gnome-boxes']);
  t.equal(r.rc, 2);
  t.equal(r.err, 'nocow: error: artifact posttrans needs a target of scope system; the declaration (profile:gnome-boxes) has none\n');
  t.equal(r.out, '');
});

t.test('GIVEN -c - twice WHEN any command runs THEN it refuses, naming --config, since stdin can be read once', async (t) => {
  for (const command of ['generate', 'status', 'apply']) {
    const r = await nocow([command, '-c', '-', '-c', '-'], 'targets:\n  - {name: vm, path: /srv/vm}\n');
    t.equal(r.rc, 2, command);
    t.equal(r.err, 'nocow: error: --config - given twice: stdin can be read once\n', command);
    t.equal(r.out, '', command);
  }
});

// chattr +i needs a file system that has the flag (not tmpfs): an ext4 image, loop-mounted in
// its own mount namespace; the flags are cleared by the script's EXIT trap whatever happens.
// A small tmpfs (7 inodes) runs out after this run has made two directories and five temporary
// files, so the undo of all of them is seen too.
t.test('GIVEN an immutable parent, an immutable subdirectory, or a full file system WHEN generate -o runs THEN one line naming -o and the file, status 1, nothing left behind', async (t) => {
  const a = await tempDir(t);
  const run = await runInFs({
    fs: 'ext4',
    env: { A: a, CLI: cli },
    script: `${NOCOW_FN}
trap 'chattr -i "$MNT/p" "$MNT/o/tmpfiles.d" 2>/dev/null || true' EXIT
echo "$MNT" >"$A/mnt"
mkdir -p "$MNT/p" "$MNT/o/tmpfiles.d" "$MNT/t"
printf 'old\\n' >"$MNT/o/nocow-requires.spec"
printf 'old conf\\n' >"$MNT/o/tmpfiles.d/nocow-libvirt.conf"
chattr +i "$MNT/p" "$MNT/o/tmpfiles.d"
mount -t tmpfs -o nr_inodes=7,size=1m tmpfs "$MNT/t"
section before; observe_tree "$MNT"
nocow parent generate -o "$MNT/p/out"
nocow sub generate -o "$MNT/o"
nocow full generate -o "$MNT/t/out"
section after; observe_tree "$MNT"
lsattr -d "$MNT/p" "$MNT/o/tmpfiles.d" >"$A/flags"
`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const mnt = (await readFile(join(a, 'mnt'), 'utf8')).trim();
  const result = (label: string) => readRan(a, label);
  t.same(await result('parent'), {
    rc: 1,
    out: '',
    err: `nocow: error: -o ${mnt}/p/out: cannot write ${mnt}/p/out/nocow-requires.spec: cannot create directory ${mnt}/p/out: operation not permitted (immutable?)\n`,
  });
  t.same(await result('sub'), {
    rc: 1,
    out: '',
    err: `nocow: error: -o ${mnt}/o: cannot write ${mnt}/o/tmpfiles.d/nocow-libvirt.conf: operation not permitted (immutable?)\n`,
  });
  t.same(await result('full'), {
    rc: 1,
    out: '',
    err: `nocow: error: -o ${mnt}/t/out: cannot write ${mnt}/t/out/tmpfiles.d/nocow-libvirt.conf: no space left on device\n`,
  });
  // Entries, kinds, modes, contents and the inodes of files: the same (directory times may move).
  const tree = (name: string) =>
    [...parseTree(section(run.stdout, name)).entries()].map(([path, e]) => `${path} ${e.kind} ${e.mode?.toString(8)} ${e.content} ${e.kind === 'file' ? e.inode : ''}`);
  const before = tree('before');
  t.ok(before.some((line) => line.startsWith('o/nocow-requires.spec file 644 ')), 'the snapshot sees the files');
  t.same(tree('after'), before);
  t.notMatch(run.stdout, /\.nocow-tmp/);
  t.match(await readFile(join(a, 'flags'), 'utf8'), /^-*i\S* \S*\/p\n-*i\S* \S*\/o\/tmpfiles\.d\n$/, 'still immutable when the runs ended');
});
