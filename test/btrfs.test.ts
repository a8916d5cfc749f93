// docs/design.md's per-target algorithm, rule by rule, executed by dash, bash and busybox sh
// on real loop-mounted Btrfs; every case checks lsattr, stat and btrfs subvolume show.
import t, { type Test } from 'tap';
import { existsSync, rmSync } from 'node:fs';
import { PRELUDE, SHELLS, renderFor, result, readArtifactFile, type Runner, type Shell } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs } from './helpers/fs.js';

const HOSTILE = '/srv/vm images/$(touch /tmp/pwned)';
const runners: Runner[] = ['kickstart', 'hook'];

/** Runs setup, the artifact twice (run1, run2) with snapshots before/after, then checks. */
async function scenario(shell: Shell, runner: Runner, targets: ReturnType<typeof target>[], setup: string, checks = '', env = '') {
  const a = await renderFor(targets, t);
  const script = `${PRELUDE}
${setup}
snap before
run run1 '${shell}' ${runner} ${env}
snap after1
run run2 '${shell}' ${runner} ${env}
snap after2
${checks}`;
  const fs = await runInFs({ fs: 'btrfs', script, env: { A: a.dir } });
  if (fs.exitCode !== 0) throw new Error(`scenario script failed (${fs.exitCode}): ${fs.stderr}`);
  return {
    fs,
    run1: await result(a, 'run1'),
    run2: await result(a, 'run2'),
    snap: async (label: string) => readArtifactFile(a, `${label}.snap`),
    file: async (name: string) => readArtifactFile(a, name),
  };
}

/** THEN for every case: a second run changes nothing and says nothing. */
async function assertIdempotent(t: Test, s: Awaited<ReturnType<typeof scenario>>) {
  t.same(s.run2, { out: '', err: '', rc: 0 }, 'second run: silent, exit 0');
  t.equal(await s.snap('after2'), await s.snap('after1'), 'second run: same inodes, ctimes, flags, xattrs');
}

for (const [i, shell] of SHELLS.entries()) {
  const runner = runners[i % 2]!;
  t.test(`[${shell}, ${runner}]`, async (t) => {
    t.test('GIVEN a missing path with spaces and $(…) WHEN applied THEN exactly that path is a +C subvolume with the declared mode and owner, and nothing ran', async (t) => {
      rmSync('/tmp/pwned', { force: true });
      const s = await scenario(shell, runner, [target({ path: HOSTILE })], '', `
        P="$R${HOSTILE.replace(/\$/g, '\\$')}"
        echo "$(subvol "$P") $(flags "$P") $(stat -c '%i %a %u %g' "$P")" >"$A/obs"
        (cd "$R" && find srv | sort) >"$A/ls"`);
      t.equal(s.run1.rc, 0);
      t.equal(s.run1.err, '');
      t.match(s.run1.out, /^nocow: vm: created: subvolume .*\/srv\/vm images\/\$\(touch \/tmp\/pwned\)\nnocow: vm: set-nocow: \+C on .*\n$/);
      t.match(await s.file('obs'), /^yes \S*C\S* 256 711 0 36\n$/, 'subvolume, +C, inode 256, mode 0711, root:kvm');
      t.equal(await s.file('ls'), 'srv\nsrv/vm images\nsrv/vm images/$(touch \nsrv/vm images/$(touch /tmp\nsrv/vm images/$(touch /tmp/pwned)\n', 'exactly the declared path, nothing else');
      t.notOk(existsSync('/tmp/pwned'), 'the $(…) in the path never ran');
      await assertIdempotent(t, s);
    });

    t.test('GIVEN an empty plain directory with mode, owner, xattr, ACL and times WHEN applied THEN it is a +C subvolume keeping all of them', async (t) => {
      const P = '/var/lib/libvirt/images';
      const s = await scenario(shell, runner, [target({ path: P })], `
        mkdir -p "$R${P}"; chmod 0750 "$R${P}"; chown 12:34 "$R${P}"
        setfattr -n user.origin -v kept "$R${P}"; setfacl -m u:5:rx "$R${P}"
        touch -d '2001-02-03 04:05:06.789' "$R${P}"
        stat -c '%a %u %g %y' "$R${P}" >"$A/meta.before"; getfacl -c "$R${P}" >"$A/acl.before"`, `
        stat -c '%a %u %g %y' "$R${P}" >"$A/meta.after"; getfacl -c "$R${P}" >"$A/acl.after"
        echo "$(subvol "$R${P}") $(flags "$R${P}") $(stat -c %i "$R${P}") $(getfattr -n user.origin --only-values "$R${P}")" >"$A/obs"
        ls -A "$R/var/lib/libvirt" >"$A/ls"`);
      t.equal(s.run1.rc, 0);
      t.equal(s.run1.err, '');
      t.match(s.run1.out, /^nocow: vm: converted: empty directory .*\/var\/lib\/libvirt\/images into a subvolume with \+C\n$/);
      t.match(await s.file('obs'), /^yes \S*C\S* 256 kept\n$/);
      t.equal(await s.file('meta.after'), await s.file('meta.before'), 'mode, owner and mtime kept');
      t.equal(await s.file('acl.after'), await s.file('acl.before'), 'ACL kept');
      t.equal(await s.file('ls'), 'images\n', 'no .nocow-new or .nocow-old left');
      await assertIdempotent(t, s);
    });

    t.test('GIVEN a non-empty directory WHEN applied THEN nothing inside moves or changes, the directory gets +C, and the line counts the CoW files', async (t) => {
      const P = '/var/lib/mysql';
      const s = await scenario(shell, runner, [target({ name: 'db', path: P })], `
        mkdir -p "$R${P}/sub"; head -c 300000 /dev/urandom >"$R${P}/ibdata1"; echo x >"$R${P}/sub/f"
        echo y >"$R${P}/two"$'\\n'"lines"   # a name with a newline still counts once
        (cd "$R${P}" && sha256sum ibdata1 sub/f && stat -c '%n %i' . ibdata1 sub/f) >"$A/files.before"`, `
        (cd "$R${P}" && sha256sum ibdata1 sub/f && stat -c '%n %i' . ibdata1 sub/f) >"$A/files.after"
        echo "$(subvol "$R${P}") $(flags "$R${P}") $(flags "$R${P}/ibdata1")" >"$A/obs"`);
      t.equal(s.run1.rc, 0);
      t.equal(s.run1.err, '');
      t.match(s.run1.out, /^nocow: db: set-nocow: \+C on .*\/var\/lib\/mysql for new files; 3 existing files keep copy-on-write \(nocow migrate rewrites them\)\n$/);
      t.equal(await s.file('files.after'), await s.file('files.before'), 'same checksums, same inodes');
      t.match(await s.file('obs'), /^no \S*C\S* [^C\s]+\n$/, 'not a subvolume; +C on the directory only');
      await assertIdempotent(t, s);
    });

    t.test('GIVEN the target already in its declared state WHEN applied THEN nothing changes at all', async (t) => {
      const P = '/var/lib/machines';
      const s = await scenario(shell, runner, [target({ name: 'm', path: P })], `
        mkdir -p "$R/var/lib"; btrfs subvolume create "$R${P}" >/dev/null; chattr +C "$R${P}"; touch "$R${P}/.keep"`);
      t.same(s.run1, { out: '', err: '', rc: 0 });
      t.equal(await s.snap('after1'), await s.snap('before'));
      await assertIdempotent(t, s);
    });

    for (const [how, mask] of [
      ['a link to /dev/null', 'ln -s /dev/null "$R/etc/tmpfiles.d/nocow-vm.conf"'],
      ['an empty file', ': >"$R/etc/tmpfiles.d/nocow-vm.conf"'],
    ] as const) {
      t.test(`GIVEN the tmpfiles snippet masked by ${how} WHEN applied THEN nothing changes and one line says why`, async (t) => {
        const s = await scenario(shell, runner, [target()], `mkdir -p "$R/etc/tmpfiles.d" "$R/var/lib/libvirt/images"; ${mask}`);
        t.same(s.run1, { out: 'nocow: vm: opted-out: by the masked /etc/tmpfiles.d/nocow-vm.conf; doing nothing\n', err: '', rc: 0 });
        t.equal(await s.snap('after2'), await s.snap('before'));
      });
    }

    t.test('GIVEN NOCOW_DISABLE=1 WHEN applied THEN nothing changes and one line says so, once for all targets', async (t) => {
      const s = await scenario(shell, runner, [target(), target({ name: 'db', path: '/var/lib/mysql' })], '', '', 'NOCOW_DISABLE=1');
      t.same(s.run1, { out: 'nocow: NOCOW_DISABLE=1: opted-out: doing nothing\n', err: '', rc: 0 });
      t.equal(await s.snap('after2'), await s.snap('before'));
    });

    t.test('GIVEN subvolume: never and nocow: false WHEN applied THEN plain directories, +C only where declared', async (t) => {
      const s = await scenario(
        shell,
        runner,
        [target({ name: 'plain', path: '/srv/plain', subvolume: 'never' }), target({ name: 'cow', path: '/srv/cow', nocow: false })],
        '',
        `echo "$(subvol "$R/srv/plain") $(flags "$R/srv/plain") $(subvol "$R/srv/cow") $(flags "$R/srv/cow")" >"$A/obs"`,
      );
      t.equal(s.run1.rc, 0);
      t.match(s.run1.out, /^nocow: plain: created: directory .*\/srv\/plain\nnocow: plain: set-nocow: \+C on .*\/srv\/plain\nnocow: cow: created: subvolume .*\/srv\/cow\n$/);
      t.match(await s.file('obs'), /^no \S*C\S* yes [^C\s]+\n$/);
      await assertIdempotent(t, s);
    });

    t.test('GIVEN a symlink that leaves the root WHEN applied THEN nothing outside is touched and one warning says why', async (t) => {
      const s = await scenario(shell, runner, [target({ path: '/srv/images' })], `mkdir -p "$MNT/outside"; ln -s "$MNT/outside" "$R/srv"`, `ls -A "$MNT/outside" >"$A/ls"`);
      t.equal(s.run1.rc, 0);
      t.equal(s.run1.out, '');
      t.match(s.run1.err, /^nocow: vm: warning: .*\/srv is a symlink leading out of .*; left alone\n$/);
      t.equal(await s.file('ls'), '');
    });

    t.test('GIVEN a read-only file system WHEN applied THEN nothing is created, one warning, exit 0', async (t) => {
      const s = await scenario(shell, runner, [target()], 'mount -o remount,ro "$MNT"', 'ls -A "$R" >"$A/ls"');
      t.equal(s.run1.rc, 0);
      t.equal(s.run1.out, '');
      // dash and bash see it in [ -w ] (access(2)); busybox's [ -w ] ignores the mount flag, so mkdir reports it.
      t.match(s.run1.err, /^nocow: vm: warning: [^\n]*[Rr]ead-only file system[^\n]*\n$/);
      t.equal(await s.file('ls'), 'etc\n');
    });
  });
}
