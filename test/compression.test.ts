// Compression against +C (issue 9, item 3): a directory with +c or a compression property
// makes chattr +C fail with "Invalid argument", and a compress-force mount stores +C files
// uncompressed. The scriptlet and apply say so in one line; status names it. Real Btrfs.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PRELUDE, renderFor, result, target } from './helpers/artifacts.js';
import { builtCli, NOCOW_FN } from './helpers/cli.js';
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
