// Compression against +C (issue 9, item 3): a directory with +c or a compression property
// makes chattr +C fail with "Invalid argument", and a compress-force mount stores +C files
// uncompressed. The scriptlet and apply say so in one line; status names it. Real Btrfs.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PRELUDE, renderFor, result } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { builtCli } from './helpers/cli.js';
import { NOCOW_FN } from './helpers/capture.js';
import { runInFs } from './helpers/fs.js';

const cli = builtCli();

t.test('GIVEN directories with +c, with a compression property, and a compress-force mount WHEN the hook, apply and status run THEN each says what stands in the way, in one line', async (t) => {
  const targets = [
    target({ name: 'flag', path: '/srv/flag', subvolume: 'never' }),
    target({ name: 'prop', path: '/srv/prop', subvolume: 'never' }),
  ];
  const a = await renderFor(targets, t);
  const forced = await renderFor([target({ name: 'forced', path: '/srv/forced', subvolume: 'never' })], t);
  const declaration = 'targets:\n  - {name: flag, path: /srv/flag, subvolume: never}\n  - {name: prop, path: /srv/prop, subvolume: never}\n';
  const fs = await runInFs({
    fs: 'btrfs',
    env: { A: a.dir, F: forced.dir, CLI: cli },
    script: String.raw`${PRELUDE}${NOCOW_FN}
      printf '%s' '${declaration}' >"$A/decl.yaml"
      mkdir -p "$R/srv/flag" "$R/srv/prop" "$R/srv/forced"
      chattr +c "$R/srv/flag"
      btrfs property set "$R/srv/prop" compression zstd
      run hook dash hook
      run hook2 dash hook
      nocow apply apply --root "$R" -c "$A/decl.yaml"
      nocow status status --root "$R" -c "$A/decl.yaml"
      nocow json status --root "$R" -c "$A/decl.yaml" --json
      echo "$(lsattr -d "$R/srv/flag" | cut -d' ' -f1) $(lsattr -d "$R/srv/prop" | cut -d' ' -f1)" >"$A/flags"
      mount -o remount,compress-force=zstd "$MNT"
      A=$F run forced dash hook`,
  });
  t.equal(fs.exitCode, 0, fs.stderr);
  const hook = await result(a, 'hook');
  t.equal(hook.rc, 0);
  t.equal(hook.out, '');
  t.match(
    hook.err,
    /^nocow: flag: warning: cannot set \+C on \S+\/srv\/flag: \S+\/srv\/flag is marked for compression \(\+c, compression=zlib\), which \+C cannot be set with: chattr -c it, or declare nocow: false\nnocow: prop: warning: cannot set \+C on \S+\/srv\/prop: \S+\/srv\/prop is marked for compression \(\+c, compression=zstd\), which \+C cannot be set with: chattr -c it, or declare nocow: false\n$/,
    'one line each, naming the cause and the way out, not a raw chattr error',
  );
  t.same(await result(a, 'hook2'), hook, 'the same on every run, no more');
  const read = (name: string) => readFile(join(a.dir, name), 'utf8');
  t.equal(await read('apply.err'), hook.err, 'apply says exactly what the hook says');
  t.equal(await read('status.rc'), '1\n', 'status: the targets deviate');
  const status = await read('status.out');
  t.match(status, /no \+C on the directory: it is marked for compression \(\+c, compression=zlib\), which \+C cannot be set with \(chattr -c \S+\/srv\/flag, then nocow apply\)/);
  t.match(status, /no \+C on the directory: it is marked for compression \(\+c, compression=zstd\), which \+C cannot be set with \(chattr -c \S+\/srv\/prop, then nocow apply\)/);
  t.match(await read('json.out'), /"no \+C on the directory: it is marked for compression \(\+c, compression=zlib\)/, 'and in --json');
  t.equal(await read('flags'), '--------c------------- --------c-------------\n', 'nothing changed: +c and the property stay');
  t.match((await result(forced, 'forced')).out, /^nocow: forced: set-nocow: \+C on \S+\/srv\/forced \(the file system is mounted compress-force: files with \+C there are stored uncompressed\)\n$/);
});

t.test('GIVEN a compress-force Btrfs mounted at a mount point whose name holds a space, on top of a tmpfs WHEN the hook sets +C below it THEN it notes compress-force, as status does: the mount table\'s \\040 is read as the space it stands for', async (t) => {
  const forced = await renderFor([target({ name: 'forced', path: '/srv/forced', subvolume: 'never' })], t);
  const fs = await runInFs({
    fs: 'btrfs',
    env: { A: forced.dir, CLI: cli },
    script: String.raw`${PRELUDE}${NOCOW_FN}
      printf 'targets:\n  - {name: forced, path: /srv/forced, subvolume: never}\n' >"$A/decl.yaml"
      mkdir -p "$MNT/inner/srv/forced" "$MNT/t"
      mount -t tmpfs none "$MNT/t"
      mkdir "$MNT/t/with space"
      mount --bind "$MNT/inner" "$MNT/t/with space"
      mount -o remount,compress-force=zstd "$MNT"
      grep -c 'with\\040space btrfs .*compress-force' /proc/self/mounts >"$A/listed"
      R="$MNT/t/with space"
      nocow status status --root "$R" -c "$A/decl.yaml"
      run forced dash hook`,
  });
  t.equal(fs.exitCode, 0, fs.stderr);
  t.equal(await readFile(join(forced.dir, 'listed'), 'utf8'), '1\n', 'the mount table names the mount point with \\040');
  t.match(await readFile(join(forced.dir, 'status.out'), 'utf8'), /compress-force/, 'status: the mount is compress-force');
  const hook = await result(forced, 'forced');
  t.match(hook, { err: '', rc: 0 });
  t.match(hook.out, / \(the file system is mounted compress-force: files with \+C there are stored uncompressed\)\n$/, 'the note of the mount point with a space, not of the tmpfs below it');
  t.match(hook.out, /^nocow: forced: set-nocow: \+C on \S+\/t\/with space\/srv\/forced \(the file system is mounted compress-force: files with \+C there are stored uncompressed\)\n$/);
});
