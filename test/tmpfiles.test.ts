// The tmpfiles.d and user tmpfiles.d output, applied by the real systemd-tmpfiles on Btrfs:
// hostile paths land exactly where declared, nothing in them runs, and the globs of `h`
// lines match the declared directory alone.
import t, { type Test } from 'tap';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Target } from '../src/declaration/types.js';
import { planArtifacts } from '../src/plan.js';
import { renderPlan } from '../src/render/render.js';
import { loadTemplates } from '../src/templates.js';
import { globEscape, TMPFILES_PATH_MAX, tmpfilesProblem } from '../src/formats.js';
import { target } from './helpers/target.js';
import { parseTree, runInFs } from './helpers/fs.js';

const HOSTILE = '/srv/vm images/$(touch /tmp/pwned)';

/** A directory for the test's files, removed when the test ends, passed or not; readable by nobody (the user-scope tests). */
async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-tmpfiles-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, 0o755);
  return dir;
}

async function snippets(t: Test, targets: Target[], artifacts: ('tmpfiles' | 'user-tmpfiles')[]): Promise<string> {
  const dir = await tempDir(t);
  for (const f of renderPlan(planArtifacts({ sources: ['config:test.yaml'], targets }, artifacts, 'test'), await loadTemplates())) {
    await writeFile(join(dir, f.file.replace(/^.*\//, '')), f.content);
  }
  return dir;
}

t.test('GIVEN a tmpfiles.d snippet for a path with spaces and $(…) WHEN systemd-tmpfiles --create --root runs on Btrfs THEN that exact path is a +C subvolume and nothing ran', async (t) => {
  rmSync('/tmp/pwned', { force: true });
  const dir = await snippets(t, [target({ path: HOSTILE, group: 'root' })], ['tmpfiles']);
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      btrfs subvolume create "$MNT/root" >/dev/null   # v makes subvolumes only below a subvolume root
      systemd-tmpfiles --create --root="$MNT/root" "$D/nocow-vm.conf"
      P="$MNT/root/srv/vm images/\$(touch /tmp/pwned)"
      (cd "$MNT/root" && find srv | sort)
      echo "$(btrfs subvolume show "$P" >/dev/null 2>&1 && echo subvolume) $(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%a %u %g' "$P")"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(
    run.stdout,
    'srv\nsrv/vm images\nsrv/vm images/$(touch \nsrv/vm images/$(touch /tmp\nsrv/vm images/$(touch /tmp/pwned)\n' +
      `subvolume ${'-'.repeat(15)}C${'-'.repeat(6)} 711 0 0`,
  );
  t.notOk(existsSync('/tmp/pwned'), 'the $(…) in the path never ran');
});

t.test('GIVEN a user tmpfiles.d snippet with %h WHEN an unprivileged user runs systemd-tmpfiles --user --create THEN the directory is made in that home with +C', async (t) => {
  rmSync('/tmp/pwned', { force: true });
  const path = '~/VM images/$(touch /tmp/pwned) 100%';
  const dir = await snippets(t, [target({ name: 'boxes', scope: 'user', path, user: '-', group: '-', mode: '0700' })], ['user-tmpfiles']);
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      chmod 0755 "$(dirname "$MNT")"   # let nobody reach the mount point
      mkdir -p "$MNT/home/n"; chown nobody: "$MNT/home/n"
      runuser -u nobody -- env HOME="$MNT/home/n" systemd-tmpfiles --user --create "$D/nocow-boxes.conf"
      P="$MNT/home/n/VM images/\$(touch /tmp/pwned) 100%"
      echo "$(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%a %U' "$P")"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.stdout, `${'-'.repeat(15)}C${'-'.repeat(6)} 700 nobody`);
  t.notOk(existsSync('/tmp/pwned'), 'the $(…) in the path never ran');
});

t.test('GIVEN a tmpfiles.d snippet WHEN systemd-tmpfiles runs on ext4 THEN the directory is made and +C is reported as unsupported, not applied', async (t) => {
  const dir = await snippets(t, [target({ path: '/var/lib/libvirt/images', group: 'root' })], ['tmpfiles']);
  const run = await runInFs({
    fs: 'ext4',
    env: { D: dir },
    script: String.raw`
      systemd-tmpfiles --create --root="$MNT/root" "$D/nocow-vm.conf" 2>/dev/null || :
      lsattr -d "$MNT/root/var/lib/libvirt/images" | cut -d' ' -f1`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.notMatch(run.stdout, /C/, 'no NOCOW flag outside Btrfs');
});

t.test('GIVEN the shipped gnome-boxes user tmpfiles.d snippet WHEN an unprivileged user logs in (systemd-tmpfiles --user --create) with a home on Btrfs THEN ~/.local/share/gnome-boxes/images exists with +C, owned by the user', async (t) => {
  const snippet = join(import.meta.dirname, '..', 'scriptlets', 'gnome-boxes', 'user-tmpfiles.d', 'nocow-gnome-boxes.conf');
  const dir = await tempDir(t);
  await copyFile(snippet, join(dir, 'nocow-gnome-boxes.conf')); // readable by nobody, unlike the work tree may be
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      chmod 0755 "$(dirname "$MNT")"
      mkdir -p "$MNT/home/n/.local/share"; chown -R nobody: "$MNT/home/n"
      login() { runuser -u nobody -- env HOME="$MNT/home/n" systemd-tmpfiles --user --create "$D/nocow-gnome-boxes.conf"; }
      login
      P="$MNT/home/n/.local/share/gnome-boxes/images"
      echo "$(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%a %U' "$P")"
      before=$(stat -c '%i %Z' "$P")
      login
      [ "$(stat -c '%i %Z' "$P")" = "$before" ] && echo "second login: unchanged"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.stdout, `${'-'.repeat(15)}C${'-'.repeat(6)} 755 nobody\nsecond login: unchanged`);
});

// systemd-tmpfiles globs the path of an `h` line (glob(3) with GLOB_BRACE, after its own
// C unescaping and specifiers). Each of these names is one directory, and beside it are
// the directories the name would match as a pattern: only the declared one may get +C.
const SEGMENT_255 = (() => {
  const head = '{x,y}*?[z]\\é ';
  return head + 'l'.repeat(255 - Buffer.byteLength(head));
})();
/** Declared names (below /srv, or ~), each with the look-alikes that must stay untouched. */
const GLOB_CASES: [declared: string, lookalikes: string[]][] = [
  ['g/*', ['g/a', 'g/b']],
  ['a\\x41', ['ax41', 'aA']],
  ['%{_bindir}', ['%_bindir', '_bindir']],
  ['${HOME}', ['$HOME']],
  ['[ab]', ['a', 'b']],
  ['{a,b}', []],
  ['{c}', ['c']],
  ['a?b', ['aXb']],
  ['back\\slash', ['backslash']],
  ['d\\/e', ['d/e']],
  ['x]y,z}', []],
  ['.h*dden', ['.hidden']],
  [`it's "q"`, []],
  ['100% %h', []],
  ['ünïcødé ☃ *', ['ünïcødé ☃ x']],
  ['-rf', []],
  [SEGMENT_255, [SEGMENT_255.replace('{x,y}*?[z]\\', 'xxzz')]],
];
const LOOKALIKES = GLOB_CASES.flatMap(([, l]) => l);

/** Every entry of an observe_tree, as "dir", "dir +C", "dir +C subvolume"… */
function observedTree(stdout: string): Record<string, string> {
  const got: Record<string, string> = {};
  for (const [path, e] of parseTree(stdout)) got[path] = `${e.kind}${e.nocow ? ' +C' : ''}${e.subvol ? ' subvolume' : ''}`;
  return got;
}

/** The tree that must be there: `.` as `self` says, the declared directories as `declared` says, every look-alike and parent a plain directory. */
function expectedTree(top: string, self: string, declared: (name: string) => string): Record<string, string> {
  const want: Record<string, string> = { '.': self };
  const under = (name: string) => (top === '' ? name : `${top}/${name}`);
  for (const name of [...LOOKALIKES, ...GLOB_CASES.map(([d]) => d)]) {
    const parts = under(name).split('/');
    for (let i = 1; i <= parts.length; i++) want[parts.slice(0, i).join('/')] = 'dir';
  }
  for (const [name] of GLOB_CASES) want[under(name)] = declared(name);
  return want;
}

/** The look-alikes, as shell words for mkdir -p in their top directory. */
const LOOKALIKE_WORDS = LOOKALIKES.map((d) => `'./${d.replace(/'/g, `'\\''`)}'`).join(' ');

t.test('GIVEN tmpfiles.d snippets for names with glob, brace, backslash, quote, % or 255 bytes WHEN systemd-tmpfiles --create --root runs on Btrfs THEN exactly the declared directories are +C subvolumes and their look-alikes are untouched', async (t) => {
  t.equal(Buffer.byteLength(SEGMENT_255), 255);
  // {c} as a `d` line (subvolume: never), the others as `v` lines.
  const targets = GLOB_CASES.map(([name], i) => target({ name: `g${i}`, path: `/srv/${name}`, group: 'root', subvolume: name === '{c}' ? 'never' : 'auto' }));
  const dir = await snippets(t, targets, ['tmpfiles']);
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      btrfs subvolume create "$MNT/root" >/dev/null
      mkdir -p "$MNT/root/srv" && (cd "$MNT/root/srv" && mkdir -p ${LOOKALIKE_WORDS})
      systemd-tmpfiles --create --root="$MNT/root" "$D"/*.conf
      observe_tree "$MNT/root"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.stderr, '', 'systemd-tmpfiles takes every line');
  t.same(observedTree(run.stdout), expectedTree('srv', 'dir subvolume', (name) => (name === '{c}' ? 'dir +C' : 'dir +C subvolume')));
});

t.test('GIVEN user tmpfiles.d snippets for the same names WHEN an unprivileged user runs systemd-tmpfiles --user --create THEN exactly the declared directories in the home are +C and their look-alikes are untouched', async (t) => {
  const targets = GLOB_CASES.map(([name], i) => target({ name: `g${i}`, scope: 'user', path: `~/${name}`, user: '-', group: '-', mode: '0700' }));
  const dir = await snippets(t, targets, ['user-tmpfiles']);
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      chmod 0755 "$(dirname "$MNT")"
      mkdir -p "$MNT/home/n" && (cd "$MNT/home/n" && mkdir -p ${LOOKALIKE_WORDS}) && chown -R nobody: "$MNT/home/n"
      runuser -u nobody -- env HOME="$MNT/home/n" systemd-tmpfiles --user --create "$D"/*.conf
      observe_tree "$MNT/home/n"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.stderr, '', 'systemd-tmpfiles takes every line');
  // Whether `v` makes a subvolume in a home depends on the host's / (tmpfiles asks whether it is one): not compared.
  const got = Object.fromEntries(Object.entries(observedTree(run.stdout)).map(([k, v]) => [k, v.replace(' subvolume', '')]));
  t.same(got, expectedTree('', 'dir', () => 'dir +C'));
});

/** A path below /srv whose h-line path (glob-escaped) takes exactly `bytes` bytes; no segment over 255. */
function pathEscapedTo(bytes: number): string {
  const escaped = (p: string) => Buffer.byteLength(globEscape(p));
  let p = '/srv';
  for (let i = 0; i < 8; i++) p += `/${'*'.repeat(100)}${'a'.repeat(155)}`;
  while (escaped(p) + 300 < bytes) p += `/${'b'.repeat(255)}`;
  return `${p}/${'c'.repeat(bytes - escaped(p) - 1)}`;
}

t.test(`GIVEN a path whose h line takes ${TMPFILES_PATH_MAX} bytes once glob-escaped, and one a byte longer WHEN systemd-tmpfiles runs THEN the first is a +C subvolume and the second's h line is refused by tmpfiles, as tmpfilesProblem says`, async (t) => {
  const fits = pathEscapedTo(TMPFILES_PATH_MAX);
  const over = pathEscapedTo(TMPFILES_PATH_MAX + 1);
  t.equal(tmpfilesProblem(fits), undefined);
  t.match(tmpfilesProblem(over), /at most 4095 bytes/);
  const dir = await snippets(t, [target({ name: 'fits', path: fits, group: 'root' }), target({ name: 'over', path: over, group: 'root' })], ['tmpfiles']);
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir, FITS: fits, OVER: over },
    script: String.raw`
      btrfs subvolume create "$MNT/root" >/dev/null
      mkdir -p "$MNT/root/etc/tmpfiles.d" && cp "$D"/*.conf "$MNT/root/etc/tmpfiles.d/"
      # As at boot: every file in the configuration directories.
      systemd-tmpfiles --create --root="$MNT/root" 2>"$MNT/err" || echo "exit $?"
      grep -o 'nocow-[a-z]*\.conf:[0-9]*: Failed to replace specifiers' "$MNT/err" || :
      for p in "$FITS" "$OVER"; do echo "$(lsattr -d "$MNT/root$p" | cut -d' ' -f1) $(stat -c %i "$MNT/root$p")"; done`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const flags = (c: string) => `${'-'.repeat(15)}${c}${'-'.repeat(6)}`;
  // The v line makes the directory; the h line is skipped: no +C, one error in the journal.
  const hLine = (await readFile(join(dir, 'nocow-over.conf'), 'utf8')).split('\n').findIndex((l) => l.startsWith('h ')) + 1;
  t.equal(run.stdout, `nocow-over.conf:${hLine}: Failed to replace specifiers\n${flags('C')} 256\n${flags('-')} 256`);
});
