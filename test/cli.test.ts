import t from 'tap';
import { execa } from 'execa';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../src/main.js';
import type { Io } from '../src/io.js';

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}

t.test('GIVEN no arguments WHEN generate runs THEN stdout has %posttrans, a closed %post --nochroot and v/h lines for libvirt', async (t) => {
  const io = capture();
  t.equal(await main(['generate'], io), 0);
  t.equal(io.stderr, '');
  t.match(io.stdout, /^%posttrans$/m);
  t.match(io.stdout, /^Requires\(posttrans\): e2fsprogs$/m);
  t.match(io.stdout, /^%post --nochroot\n[^]*?^%end$/m);
  t.match(io.stdout, /^v \/var\/lib\/libvirt\/images 0711 root root -$/m);
  t.match(io.stdout, /^h \/var\/lib\/libvirt\/images - - - - \+C$/m);
  t.match(io.stdout, /^# ==> nocow-posttrans\.spec <==$/m, 'each file is delimited');
  t.notMatch(io.stdout, /nocow-apply\.sh/, 'the hook is produced only on request');
});

t.test('GIVEN -o DIR WHEN generate runs THEN each artifact is written to its conventional name and nothing goes to stdout', async (t) => {
  const dir = t.testdir();
  const io = capture();
  t.equal(await main(['generate', '--profile', 'libvirt', '--profile', 'gnome-boxes', 'tmpfiles', 'user-tmpfiles', 'hook', '-o', dir], io), 0);
  t.equal(io.stdout, '');
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
  const io = capture();
  t.equal(await main(['generate', '-c', join(dir, 'bad.yaml'), '-o', out], io), 2);
  const lines = io.stderr.trimEnd().split('\n');
  t.ok(lines.length >= 3, 'one line per problem');
  for (const line of lines) t.match(line, /^nocow: error: .*bad\.yaml: targets\[0\]\.(path|subvolume|mode)/);
  t.equal(io.stdout, '');
  await t.rejects(readdir(out), 'the output directory was not even created');
});

t.test('GIVEN an unknown artifact or option WHEN parsed THEN one usage error line and status 2', async (t) => {
  for (const argv of [['generate', 'rpmspec'], ['generate', '--frobnicate'], []]) {
    const io = capture();
    t.equal(await main(argv, io), 2, argv.join(' '));
    t.match(io.stderr, /^nocow: error: /);
    t.notMatch(io.stderr, /\n\s+at /, 'no stack without --debug');
  }
});

t.test('GIVEN --debug WHEN a command fails THEN the stack follows the error line', async (t) => {
  const io = capture();
  t.equal(await main(['generate', '-o', '/proc/version', '--debug'], io), 2);
  t.match(io.stderr, /^nocow: error: -o \/proc\/version: exists and is not a directory\n/);
  t.match(io.stderr, /\n\s+at /);
});

t.test('GIVEN --help WHEN asked of generate THEN it lists artifacts, options and examples', async (t) => {
  const io = capture();
  t.equal(await main(['generate', '--help'], io), 0);
  for (const word of ['posttrans', 'kickstart', 'user-tmpfiles', '--profile', '--config', '--output', 'Examples:', 'nocow generate -c nocow.yaml -o build/']) {
    t.match(io.stdout, word);
  }
});

t.test('GIVEN a JSON declaration file WHEN combined with a profile THEN both targets are generated', async (t) => {
  const dir = t.testdir();
  await writeFile(join(dir, 'd.json'), JSON.stringify({ targets: [{ name: 'vm', path: '/srv/vm images', group: 'kvm' }] }));
  const io = capture();
  t.equal(await main(['generate', 'tmpfiles', '-c', join(dir, 'd.json'), '-p', 'machines'], io), 0);
  t.match(io.stdout, /^v "\/srv\/vm images" 0755 root kvm -$/m);
  t.match(io.stdout, /^v \/var\/lib\/machines 0700 root root -$/m);
});

// dist/ is built by `npm test` before tap starts (one build, no race between test files).
t.test('GIVEN the built package WHEN the nocow bin runs THEN it prints the artifacts and exits 0; a bad flag exits 2', async (t) => {
  const root = join(import.meta.dirname, '..');
  const ok = await execa('node', ['dist/bin/nocow.js', 'generate'], { cwd: root });
  t.match(ok.stdout, /^%post --nochroot$/m);
  const bad = await execa('node', ['dist/bin/nocow.js', 'generate', '--nope'], { cwd: root, reject: false });
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, /^nocow: error: Unknown argument: nope$/m);
});

t.test('GIVEN --version WHEN run THEN it prints the package version alone', async (t) => {
  const io = capture();
  t.equal(await main(['--version'], io), 0);
  t.match(io.stdout, /^\d+\.\d+\.\d+\n$/);
});

t.test('GIVEN --config - WHEN a declaration comes on stdin THEN it is used, and its problems are named as coming from -', async (t) => {
  const root = join(import.meta.dirname, '..');
  const ok = await execa('node', ['dist/bin/nocow.js', 'generate', 'tmpfiles', '-c', '-'], { cwd: root, input: 'targets:\n  - {name: vm, path: /srv/vm}\n' });
  t.match(ok.stdout, /^v \/srv\/vm 0755 root root -$/m);
  const bad = await execa('node', ['dist/bin/nocow.js', 'generate', '-c', '-'], { cwd: root, input: 'targets:\n  - {name: vm, path: srv}\n', reject: false });
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, /^nocow: error: -: targets\[0\]\.path: "srv" is not allowed; expected an absolute path/m);
});
