// The shell library tried as an adversary and a bad day would: a writer racing a conversion,
// two runs at once (with flock and with the mkdir lock), a killed run's lock, names at
// NAME_MAX, system directories, pseudo file systems, and the warnings that say the true cause.
// Real Btrfs, real dash/bash/busybox sh, the generated hook and kickstart section.
import t, { type Test } from 'tap';
import { TEMP_SUFFIX, temporaryName } from '../src/facts.js';
import { PRELUDE, SHELLS, renderFor, result, readArtifactFile, type Rendered } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs } from './helpers/fs.js';

const P = '/var/lib/libvirt/images';

async function rendered(tt: Test, targets: ReturnType<typeof target>[]): Promise<Rendered> {
  const a = await renderFor(targets, tt);
  return a;
}

/**
 * Bash for a scenario: `shim_btrfs` puts a wrapper over the real btrfs (inside the test's mount
 * namespace only) that, after `btrfs subvolume create …nocow-new` succeeds, sources $A/after-create.sh.
 * `hide TOOL…` makes tools unusable the way a minimal root lacks them.
 */
const TOOLS = String.raw`
shim_btrfs() {
  real=$(command -v btrfs)
  cp "$real" "$A/btrfs.real"
  printf '%s\n' '#!/bin/sh' \
    "\"$A/btrfs.real\" \"\$@\" || exit \$?" \
    "case \"\$*\" in 'subvolume create -- '*.nocow-new) [ ! -f \"$A/after-create.sh\" ] || . \"$A/after-create.sh\" ;; esac" \
    'exit 0' >"$A/btrfs.shim"
  chmod 755 "$A/btrfs.shim"
  mount --bind "$A/btrfs.shim" "$real"
}
hide() {
  : >"$A/hidden"; chmod 644 "$A/hidden"
  for tool; do mount --bind "$A/hidden" "$(command -v "$tool")"; done
}
waitfor() { n=0; while [ ! -e "$1" ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n + 1)); done; }
state() { echo "$(subvol "$1") $(flags "$1" | tr -d -) $(stat -c '%a %u %g' "$1") $(ls -A "$(dirname "$1")" | tr '\n' ' ')"; }
`;

async function inBtrfs(a: Rendered, script: string) {
  const fs = await runInFs({ fs: 'btrfs', script: `${PRELUDE}\n${TOOLS}\n${script}`, env: { A: a.dir } });
  if (fs.exitCode !== 0) throw new Error(`scenario script failed (${fs.exitCode}): ${fs.stderr}`);
  return fs;
}

t.test('GIVEN a writer that puts a file into the directory while it is being converted', async (t) => {
  for (const [i, shell] of SHELLS.entries()) {
    const runner = i % 2 === 0 ? 'hook' : 'kickstart';
    t.test(`[${shell}, ${runner}] WHEN the conversion swaps THEN the file keeps its bytes where it was written, the directory stays plain with +C, one line says so, nothing is left over`, async (t) => {
      const a = await rendered(t, [target({ path: P })]);
      await inBtrfs(a, String.raw`
        mkdir -p "$R${P}"; chmod 0711 "$R${P}"; chgrp 36 "$R${P}"
        shim_btrfs
        echo "head -c 1048576 /dev/urandom >'$R${P}/vm.img'; sha256sum <'$R${P}/vm.img' >'$A/written.sum'" >"$A/after-create.sh"
        run run1 '${shell}' ${runner}
        rm "$A/after-create.sh"
        sha256sum <"$R${P}/vm.img" >"$A/found.sum"
        state "$R${P}" >"$A/state"
        run run2 '${shell}' ${runner}`);
      const run1 = await result(a, 'run1');
      t.equal(run1.rc, 0);
      t.equal(run1.err, '', 'no warning: nothing went wrong, the conversion just gave way');
      t.match(run1.out, /^nocow: vm: reverted: left \S+\/var\/lib\/libvirt\/images a plain directory: files were written into it during the conversion\nnocow: vm: set-nocow: \+C on \S+ for new files; 1 existing file keeps copy-on-write/);
      t.equal(await readArtifactFile(a, 'found.sum'), await readArtifactFile(a, 'written.sum'), 'every byte of vm.img is where it was written');
      t.equal(await readArtifactFile(a, 'state'), 'no C 711 0 36 images \n', 'plain directory, +C, mode and group kept, no .nocow-new or .nocow-old');
      t.same(await result(a, 'run2'), { out: '', err: '', rc: 0 }, 'a second run changes nothing');
    });
  }
});

t.test('GIVEN two runs on the same target at once', async (t) => {
  t.test('WHEN the second starts while the first holds its new subvolume (deterministic, flock and mkdir lock, every shell) THEN the end state is the declared one and only one run converts', async (t) => {
    const a = await rendered(t, [target({ path: P })]);
    const cases = ['flock', 'mkdir'].flatMap((lock) => SHELLS.map((shell) => ({ shell, lock })));
    await inBtrfs(a, String.raw`
      shim_btrfs
      # The first run pauses just after creating PATH.nocow-new until the second has started, then a moment more.
      echo '[ -f "$A/pause" ] || exit 0; rm -f "$A/pause"; : >"$A/a-in"; n=0; while [ ! -e "$A/b-started" ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; sleep 0.5' >"$A/after-create.sh"
      i=0
      for c in ${cases.map((c) => `'${c.shell}:${c.lock}'`).join(' ')}; do
        i=$((i + 1)); sh=$(echo "$c" | cut -d: -f1); lock=$(echo "$c" | cut -d: -f2)
        [ "$lock" = flock ] || [ -f "$A/hidden" ] || hide flock
        if [ -d "$R${P}" ]; then btrfs subvolume delete "$R${P}" >/dev/null 2>&1 || rmdir "$R${P}"; fi
        mkdir -p "$R${P}"; chmod 0711 "$R${P}"; chgrp 36 "$R${P}"
        rm -f "$A/a-in" "$A/b-started"; : >"$A/pause"
        run a$i "$sh" hook & pa=$!
        waitfor "$A/a-in"
        run b$i "$sh" kickstart & pb=$!
        : >"$A/b-started"
        wait $pa $pb
        state "$R${P}" >"$A/state$i"
        ls -A "$R" "$(dirname "$R${P}")" >"$A/top$i"
      done`);
    cases.forEach(({ shell, lock }, n) => {
      t.test(`${shell}, ${lock}`, async (t) => {
        const [ra, rb] = await Promise.all([result(a, `a${n + 1}`), result(a, `b${n + 1}`)]);
        t.equal(await readArtifactFile(a, `state${n + 1}`), 'yes C 711 0 36 images \n', 'a +C subvolume, mode 0711, group kvm, nothing left beside it');
        t.equal(ra.err + rb.err, '', 'no warnings');
        t.match(ra.out, /^nocow: vm: converted: empty directory \S+ into a subvolume with \+C\n$/, 'the first run converts');
        t.equal(rb.out, '', 'the second waited, then found everything in place');
        t.match(await readArtifactFile(a, `top${n + 1}`), /^\S+\/root:\netc\nvar\n\n\S+\/libvirt:\nimages\n$/, 'the mkdir lock, in the directory holding the target, is gone afterwards');
      });
    });
  });

  t.test('WHEN 24 pairs of runs start together (free interleaving, every shell, both locks) THEN every time exactly one converts and the end state is the declared one', async (t) => {
    const a = await rendered(t, [target({ path: P })]);
    const fs = await inBtrfs(a, String.raw`
      for i in $(seq 1 24); do
        case $((i % 3)) in 0) sh=dash ;; 1) sh=bash ;; *) sh='busybox sh' ;; esac
        [ "$i" -le 12 ] || [ -f "$A/hidden" ] || hide flock
        if [ -d "$R${P}" ]; then btrfs subvolume delete "$R${P}" >/dev/null 2>&1 || rmdir "$R${P}"; fi
        mkdir -p "$R${P}"; chmod 0711 "$R${P}"; chgrp 36 "$R${P}"
        run a "$sh" hook & pa=$!
        run b "$sh" kickstart & pb=$!
        wait $pa $pb
        converted=$(cat "$A/a.out" "$A/b.out" | grep -c 'converted: empty directory' || :)
        echo "$i $(state "$R${P}")$converted $(cat "$A/a.err" "$A/b.err" | wc -c)"
      done`);
    const lines = fs.stdout.split('\n');
    t.equal(lines.length, 24);
    for (const line of lines) t.match(line, /^\d+ yes C 711 0 36 images 1 0$/, line);
  });

  t.test('WHEN a run was killed holding the lock THEN later runs are not blocked: flock drops with the shell, a dead owner\'s mkdir lock is taken over', async (t) => {
    const a = await rendered(t, [target({ path: P })]);
    await inBtrfs(a, String.raw`
      mkdir -p "$R${P}"
      shim_btrfs
      echo 'kill -9 $PPID; exit 0' >"$A/after-create.sh"
      run killed dash hook || :
      rm "$A/after-create.sh"
      run after-flock dash hook
      state "$R${P}" >"$A/state-flock"
      # The mkdir lock of a run that died: its PID names no live process.
      hide flock
      btrfs subvolume delete "$R${P}" >/dev/null; mkdir "$R${P}"
      sh -c 'exit 0' & dead=$!; wait $dead
      mkdir -p "$(dirname "$R${P}")/.nocow-kit.lock/$dead"
      run after-dir 'busybox sh' hook
      state "$R${P}" >"$A/state-dir"
      ls -A "$(dirname "$R${P}")" >"$A/top"`);
    t.equal((await result(a, 'killed')).rc, 137, 'the first run was killed mid-conversion');
    const flock = await result(a, 'after-flock');
    t.equal(flock.rc, 0);
    t.match(flock.out, /repaired: removed \S+\.nocow-new left by an interrupted conversion\n.*converted: empty directory/);
    t.equal(await readArtifactFile(a, 'state-flock'), 'yes C 755 0 0 images \n');
    t.match((await result(a, 'after-dir')).out, /converted: empty directory/);
    t.equal(await readArtifactFile(a, 'state-dir'), 'yes C 755 0 0 images \n');
    t.equal(await readArtifactFile(a, 'top'), 'images\n', 'the stale lock is gone');
  });
});

t.test('GIVEN a last path segment too long for PATH.nocow-new (250 bytes, and 255 bytes of UTF-8)', async (t) => {
  const ascii = `/srv/${'a'.repeat(250)}`;
  const utf8 = `/srv/${'é'.repeat(127)}x`;
  const a = await rendered(t, [target({ name: 'ascii', path: ascii }), target({ name: 'utf8', path: utf8 })]);
  const leftover = temporaryName(`${'$R'}${ascii}`, TEMP_SUFFIX.new);
  await inBtrfs(a, String.raw`
    mkdir -p "$R${ascii}" "$R${utf8}"
    for sh in dash bash 'busybox sh'; do
      btrfs subvolume create "${leftover}" >/dev/null   # as a killed run leaves it
      run "conv-$sh" "$sh" hook
      state "$R${ascii}" >"$A/state-ascii-$sh"; state "$R${utf8}" >"$A/state-utf8-$sh"
      btrfs subvolume delete "$R${ascii}" "$R${utf8}" >/dev/null; mkdir "$R${ascii}" "$R${utf8}"
    done`);
  for (const shell of SHELLS) {
    const r = await result(a, `conv-${shell}`);
    t.equal(r.err, '', `${shell}: no error`);
    t.match(r.out, /^nocow: ascii: repaired: removed \S+\/\.nocow-\d+\.nocow-new left by an interrupted conversion\nnocow: ascii: converted: empty directory .* with \+C\nnocow: utf8: converted: empty directory .* with \+C\n$/, `${shell}: the same short temporary name as the TypeScript's`);
    t.match(await readArtifactFile(a, `state-ascii-${shell}`), /^yes C 755 0 0 \S+ \S+ \n$/, `${shell}: converted, nothing left`);
    t.match(await readArtifactFile(a, `state-utf8-${shell}`), /^yes C 755 0 0 \S+ \S+ \n$/, `${shell}: converted (bytes counted, not characters)`);
  }
});

t.test('GIVEN system directories and pseudo file systems reached anyway (a declaration that skipped validation, a symlink, a mount)', async (t) => {
  const a = await rendered(t, [
    target({ name: 'etc', path: '/etc' }),
    target({ name: 'proc', path: '/proc' }),
    target({ name: 'link', path: '/srv/link/images' }),
    target({ name: 'tmpfs', path: '/srv/tmpfs' }),
    target({ name: 'bind', path: '/srv/bind' }),
  ]);
  await inBtrfs(a, String.raw`
    mkdir -p "$R/proc" "$R/srv/tmpfs" "$R/srv/bind" "$R/srv/src"
    ln -s ../etc "$R/srv/link"
    mount -t tmpfs none "$R/srv/tmpfs"
    mount --bind "$R/srv/src" "$R/srv/bind"
    snap before
    run run1 bash hook
    snap after
    echo "$(subvol "$R/srv/bind") $(stat -c %i "$R/srv/src")" >"$A/bind"`);
  const r = await result(a, 'run1');
  t.equal(r.rc, 0);
  t.match(
    r.err,
    /^nocow: etc: warning: \/etc is a system directory, never a target; left alone\nnocow: proc: warning: \/proc is a system directory, never a target; left alone\nnocow: link: warning: \S+\/srv\/link is a symlink leading to the system directory \/etc\/images; left alone\n$/,
  );
  t.match(r.out, /^nocow: bind: set-nocow: \+C on \S+\/srv\/bind\n$/, 'the bind mount point gets +C but is never converted; the tmpfs is not Btrfs: silence');
  const [before, after] = await Promise.all([readArtifactFile(a, 'before.snap'), readArtifactFile(a, 'after.snap')]);
  const unchanged = (snap: string) => snap.split('\n').filter((l) => !/\bsrv\/(bind|src)\b/.test(l)).join('\n');
  t.equal(unchanged(after), unchanged(before), '/etc, /proc and the tmpfs are untouched: no +C, no subvolume, no new entry');
  t.match(await readArtifactFile(a, 'bind'), /^no \d+\n$/, 'the bind mount is still a plain directory');
});

t.test('GIVEN things in the way of a change WHEN applied THEN each warning says the true cause, once', async (t) => {
  const a = await rendered(t, [
    target({ name: 'imm', path: '/srv/imm/x' }),
    target({ name: 'blocked', path: '/srv/blocked' }),
    target({ name: 'inherit', path: '/srv/nocowparent/x', subvolume: 'never' }),
  ]);
  const ro = await rendered(t, [target({ name: 'ro', path: '/srv/ro/x', subvolume: 'never' })]);
  const plain = await rendered(t, [target({ name: 'plain', path: '/srv/plain', subvolume: 'never' })]);
  await inBtrfs(a, String.raw`
    mkdir -p "$R/srv/imm" "$R/srv/blocked" "$R/srv/nocowparent" "$R/srv/ro" "$R/srv/plain"
    chattr +i "$R/srv/imm"
    echo data >"$R/srv/blocked.nocow-new"
    chattr +C "$R/srv/nocowparent"
    run warn1 dash hook
    run warn2 dash hook
    chattr -i "$R/srv/imm"
    # Read-only: a read-only bind of the root. Unprivileged: nobody, on a root-owned tree.
    mount --bind "$R" "$R" && mount -o remount,ro,bind "$R"
    A=${ro.dir} run ro dash hook
    umount "$R"
    chmod 755 "$MNT" "$(dirname "$MNT")" "${ro.dir}"
    A=${ro.dir} run nobody 'runuser -u nobody -- dash' hook
    # nodatacow, and chattr/lsattr missing.
    mount -o remount,nodatacow "$MNT"
    A=${plain.dir} run nodatacow dash hook
    chattr -C "$R/srv/plain"
    hide chattr lsattr
    A=${plain.dir} run nochattr dash hook`);
  const w1 = await result(a, 'warn1');
  t.equal(w1.rc, 0);
  t.match(w1.err, /^nocow: imm: warning: cannot create subvolume \S+\/srv\/imm\/x: \S+\/srv\/imm is immutable \(chattr \+i\)\n/);
  t.match(w1.err, /\nnocow: blocked: warning: \S+\/srv\/blocked\.nocow-new is in the way of the conversion \(this tool did not leave it\); \S+\/srv\/blocked not converted\n$/);
  t.equal(w1.err.split('\n').length - 1, 2, 'one line each');
  t.match(w1.out, /^nocow: blocked: set-nocow: \+C on \S+\/srv\/blocked\nnocow: inherit: created: directory \S+\/srv\/nocowparent\/x with \+C \(inherited from \S+\/srv\/nocowparent\)\n$/);
  const w2 = await result(a, 'warn2');
  t.equal(w2.out, '', 'second run: nothing changes');
  t.equal(w2.err, w1.err, 'second run: the same one line per problem, no more');
  t.match((await result(ro, 'ro')).err, /^nocow: ro: warning: cannot create \S+\/srv\/ro\/x: read-only file system\n$/);
  t.match((await result(ro, 'nobody')).err, /^nocow: ro: warning: cannot create \S+\/srv\/ro\/x: permission denied \(not run as root\?\)\n$/);
  t.match((await result(plain, 'nodatacow')).out, /^nocow: plain: set-nocow: \+C on \S+\/srv\/plain \(the file system is mounted nodatacow: new files there were NOCOW already; \+C keeps them so without it\)\n$/);
  t.same(await result(plain, 'nochattr'), { out: '', err: 'nocow: plain: warning: chattr and lsattr (e2fsprogs) are not installed; +C not set\n', rc: 0 }, 'one plain line, no shell line-number prefix');
});
