// Crash safety (docs/design.md): killed at any point, the next run repairs, and nothing
// holding data is ever deleted. strace kills the artifact's shell with SIGKILL at its
// Nth fork, i.e. just before its Nth command, for every N until a run gets through.
import t from 'tap';
import { PRELUDE, SHELLS, renderFor, readArtifactFile, result } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs } from './helpers/fs.js';

const P = '/var/lib/libvirt/images';

for (const shell of SHELLS) {
  t.test(`GIVEN an empty directory being converted by ${shell} WHEN the run is killed before each of its commands THEN the next run always ends in the declared state with the metadata kept`, async (t) => {
    const a = await renderFor([target({ path: P })], t);
    const script = `
      FORKS='clone,clone3,fork,vfork'
      n=0
      while [ $n -lt 80 ]; do
        n=$((n + 1)); R=$MNT/r$n
        mkdir -p "$R$P"; chmod 0750 "$R$P"; setfattr -n user.origin -v kept "$R$P"
        rc=0
        ANA_INSTALL_PATH="$R" strace -qq -o /dev/null -e trace=$FORKS -e inject=$FORKS:signal=KILL:when=$n ${shell} "$A/kickstart.sh" >/dev/null 2>&1 || rc=$?
        ANA_INSTALL_PATH="$R" ${shell} "$A/kickstart.sh" >"$A/recover.out" 2>"$A/recover.err" || :
        leftovers=$(cd "$R/var/lib/libvirt" && ls -A | tr '\\n' ' ')
        printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' $n $rc \\
          "$(btrfs subvolume show "$R$P" >/dev/null 2>&1 && echo subvolume || echo directory) $(lsattr -d "$R$P" | cut -d' ' -f1) $(stat -c %a "$R$P") $(getfattr -n user.origin --only-values "$R$P")" \\
          "$leftovers" "$(cat "$A/recover.err")" "$(tr '\\n' '|' <"$A/recover.out")"
        [ $rc -ne 0 ] || break
      done >"$A/crash.tsv"`;
    const fs = await runInFs({ fs: 'btrfs', script, env: { A: a.dir, P } });
    t.equal(fs.exitCode, 0, fs.stderr);
    const rows = (await readArtifactFile(a, 'crash.tsv')).replace(/\n$/, '').split('\n').map((l) => l.split('\t'));
    t.ok(rows.length >= 5, `killed at ${rows.length - 1} points before one run got through`);
    t.equal(rows.at(-1)![1], '0', 'the last run was not killed');
    for (const [n, rc, state, leftovers, err] of rows) {
      t.match(state, /^subvolume \S*C\S* 750 kept$/, `killed before command ${n} (rc ${rc}): a +C subvolume, mode and xattr kept`);
      t.equal(leftovers, 'images ', `killed before command ${n}: no .nocow-new or .nocow-old left`);
      t.equal(err, '', `killed before command ${n}: the repairing run warns of nothing`);
    }
  });
}

t.test('GIVEN leftovers of an interrupted conversion WHEN applied THEN each is repaired as docs/design.md says and anything holding data survives', async (t) => {
  const cases = [
    ['new subvolume left beside the directory', 'mkdir -p "$R$P"; btrfs subvolume create "$R$P.nocow-new" >/dev/null', /repaired: removed .*images\.nocow-new left by an interrupted conversion\n.*converted: empty directory/],
    ['directory moved aside, no new one', 'mkdir -p "$R$P.nocow-old"', /repaired: restored .*images after an interrupted conversion\n.*converted: empty directory/],
    ['killed between the two renames', 'mkdir -p "$R$P.nocow-old"; btrfs subvolume create "$R$P.nocow-new" >/dev/null; chattr +C "$R$P.nocow-new"', /repaired: completed an interrupted conversion of .*images\n.*removed .*images\.nocow-old/],
    ['old directory not yet removed', 'mkdir -p "$R$P.nocow-old" "${R}/var/lib/libvirt"; btrfs subvolume create "$R$P" >/dev/null; chattr +C "$R$P"', /^nocow: vm: repaired: removed .*images\.nocow-old left by an interrupted conversion\n$/],
  ] as const;
  for (const [what, setup, out] of cases) {
    const a = await renderFor([target({ path: P })], t);
    const fs = await runInFs({
      fs: 'btrfs',
      env: { A: a.dir, P },
      script: `${PRELUDE}
        mkdir -p "$R/var/lib/libvirt"; ${setup}
        run run1 dash kickstart
        echo "$(subvol "$R$P") $(flags "$R$P") $(cd "$R/var/lib/libvirt" && ls -A | tr '\\n' ' ')" >"$A/obs"`,
    });
    t.equal(fs.exitCode, 0, fs.stderr);
    const run1 = await result(a, 'run1');
    t.match(run1.out, out, `${what}: what the run says`);
    t.equal(run1.err, '', `${what}: no warning`);
    t.match(await readArtifactFile(a, 'obs'), /^yes \S*C\S* images \n$/, `${what}: a +C subvolume, no leftovers`);
  }

  for (const leftover of ['nocow-new', 'nocow-old']) {
    const a = await renderFor([target({ path: P })], t);
    const fs = await runInFs({
      fs: 'btrfs',
      env: { A: a.dir, P },
      script: `${PRELUDE}
        mkdir -p "$R$P" "$R$P.${leftover}"; echo precious >"$R$P.${leftover}/disk.img"
        run run1 bash hook
        cat "$R$P.${leftover}/disk.img" >"$A/data"`,
    });
    t.equal(fs.exitCode, 0, fs.stderr);
    const run1 = await result(a, 'run1');
    t.equal(await readArtifactFile(a, 'data'), 'precious\n', `${leftover} holding data: the data survives`);
    t.match(run1.err, new RegExp(`^nocow: vm: warning: .*images\\.${leftover} is left from an interrupted conversion but is not empty; left alone\\n$`));
    t.equal(run1.rc, 0);
  }
});
