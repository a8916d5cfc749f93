// nocow revert killed at every point of its swap (the shape of test/crash.test.ts): strace sends
// SIGKILL at the Nth call of each kind of syscall that moves a name or puts data on the disk (link,
// unlink, rename, fsync, in nocow or in a tool it runs), for every N until a run gets through.
// After each kill PATH holds the whole file, as it was; a re-run finishes: copy-on-write, the same
// bytes and xattr, nothing of the killed run left.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

t.test('GIVEN a +C directory with a large and a small +C file WHEN revert is killed at each link, unlink, rename and fsync THEN PATH always holds the whole original or its verified copy, and the re-run finishes with nothing left', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`
      set +e
      describe() { echo "$(sha256sum <"$1" | cut -d' ' -f1) $(stat -c '%s %a' "$1") $(getfattr -n user.origin --only-values "$1" 2>/dev/null)"; }
      flags() { lsattr -d "$1" | cut -d' ' -f1; }
      head -c 12582912 /dev/urandom >"$MNT/big.src"; head -c 6000 /dev/urandom >"$MNT/small.src"
      for CALLS in link,linkat unlink,unlinkat rename,renameat,renameat2 fsync,fdatasync,syncfs; do
      family=$(echo "$CALLS" | cut -d, -f1)
      n=0
      while [ $n -lt 8 ]; do
        n=$((n + 1)); D=$MNT/d$n
        mkdir "$D"; chattr +C "$D"
        cp "$MNT/big.src" "$D/big.img"; cp "$MNT/small.src" "$D/small.cfg"
        for f in big.img small.cfg; do setfattr -n user.origin -v kept "$D/$f"; done
        sync -f "$MNT"
        want_big=$(describe "$D/big.img"); want_small=$(describe "$D/small.cfg")
        rc=0; strace -qq -f -o /dev/null -e trace=$CALLS -e inject=$CALLS:signal=KILL:when=$n $NC revert "$D" >/dev/null 2>&1 || rc=$?
        whole=yes
        [ "$(describe "$D/big.img")" = "$want_big" ] && [ "$(describe "$D/small.cfg")" = "$want_small" ] || whole=no
        $NC revert "$D" >/dev/null 2>"$MNT/err"; rerun=$?
        same=yes
        [ "$(describe "$D/big.img")" = "$want_big" ] && [ "$(describe "$D/small.cfg")" = "$want_small" ] || same=no
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$family $n" $rc $whole $rerun $same \
          "$(flags "$D") $(flags "$D/big.img") $(flags "$D/small.cfg")" "$(ls -A "$D" | tr '\n' ' ')" "$(tr '\n' '|' <"$MNT/err")"
        rm -rf "$D"
        [ $rc -ne 0 ] || break
      done
      done`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const rows = run.stdout.split('\n').filter(Boolean).map((l) => l.split('\t'));
  for (const family of ['link', 'unlink', 'rename', 'fsync']) {
    const runs = rows.filter(([at]) => at!.startsWith(`${family} `));
    t.ok(runs.length >= 2, `${family}: killed at ${runs.length - 1} of its calls before one run got through`);
    t.equal(runs.at(-1)?.[1], '0', `${family}: the last run was not killed`);
    t.ok(runs.slice(0, -1).every(([, rc]) => rc !== '0'), `${family}: every other run was stopped`);
  }
  t.ok(rows.some(([, rc]) => rc === '137'), 'nocow itself was killed with SIGKILL');
  for (const [n, rc, whole, rerun, same, flags, left, err] of rows) {
    const at = `killed at ${n} (rc ${rc})`;
    t.equal(whole, 'yes', `${at}: both files whole at their paths, as they were`);
    t.equal(rerun, '0', `${at}: the re-run succeeds${err ? `: ${err}` : ''}`);
    t.equal(same, 'yes', `${at}: the same bytes, mode and xattr after the re-run`);
    t.match(flags, /^[^C\s]+ [^C\s]+ [^C\s]+$/, `${at}: the directory and both files without +C`);
    t.equal(left, 'big.img small.cfg ', `${at}: nothing of the killed run left`);
  }
});
