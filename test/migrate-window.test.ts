// nocow migrate and a writer that opens the file by its path between the last checks and the
// rename (src/migrate/migrate.ts, step 8): the original keeps a second name across the rename,
// is looked at again after it, and is put back when it was reached; no write is lost. Then a
// kill between each step of that, and a re-run: the data intact, nothing left over.
//
// The window is made wide and fixed: strace holds migrate's first rename(2) (the copy over
// PATH) for 3 s on entry, and the writers start once strace shows that call begun.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

const SETUP = String.raw`
set +e  # each script records what it asserts on
TRACED='-e trace=rename,link,unlink'
HOLD='-e inject=rename:delay_enter=3000000:when=1'
make() {  # NAME: a directory with log.txt, 1,000 lines written before the directory got +C
  D=$MNT/$1; F=$D/log.txt; T=$D/.log.txt.nocow-migrate
  mkdir "$D"; seq 1 1000 | sed 's/^/old /' >"$F"; sync; chattr +C "$D"
  sum=$(sha256sum <"$F")
}
wait_for() {  # COMMAND…: until it succeeds, for at most 20 s
  n=0; until "$@" || [ $n -ge 2000 ]; do sleep 0.01; n=$((n + 1)); done
}
in_rename() { grep -q '^rename(' "$D.trace" 2>/dev/null; }
appender() {  # PREFIX: 5 lines appended by path, each write opening the file anew; says whether the rename was still held
  for i in 1 2 3 4 5; do echo "$1 $i" >>"$F"; done
  [ -e "$T" ] && echo "$1 during" || echo "$1 after"
}
lines() {  # FILE PREFIX: how many of the 5 lines PREFIX 1..5 FILE holds, and of the 1,000 old ones
  echo "$(grep -c "^$2 [1-5]$" "$1") $(grep -c '^old [0-9]*$' "$1")"
}
flags() { lsattr "$1" | cut -d' ' -f1; }
left() { ls -A "$D" | tr '\n' ' '; }
`;

const line = (stdout: string, key: string) => stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);

t.test('GIVEN a writer that opens the file by its path after the last checks, before the rename, and appends 5 lines WHEN migrate runs THEN every line is in the file at PATH, migrate reports the original put back, nothing is left over, and a re-run migrates it', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: SETUP + String.raw`
      make w
      strace -qq -o "$D.trace" $TRACED $HOLD $NC migrate "$D" >"$MNT/out" 2>"$MNT/err" & nc=$!
      wait_for in_rename; appender new >"$MNT/writer"
      wait $nc; echo "rc $?"; echo "out $(cat "$MNT/out")"; echo "err $(cat "$MNT/err")"
      echo "writer $(cat "$MNT/writer")"
      echo "lines $(lines "$F" new)"; echo "flags $(flags "$F")"; echo "left $(left)"
      $NC migrate "$D" >"$MNT/out" 2>"$MNT/err"; echo "rerun $?"; echo "rerun-out $(cat "$MNT/out")"
      echo "after $(lines "$F" new) $(flags "$F")"; echo "left-after $(left)"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const l = (key: string) => line(run.stdout, key);
  t.equal(l('writer'), 'new during', 'the writer wrote while the rename was held');
  t.equal(l('rc'), '1');
  t.equal(l('out'), '', 'nothing reported rewritten');
  t.match(l('err'), /^nocow: \S+\/w\/log\.txt: not rewritten: it was opened or written during its rename; original put back$/);
  t.equal(l('lines'), '5 1000', 'every line written, and every old one, in the file at PATH');
  t.equal(l('flags'), '-'.repeat(22), 'the original, still CoW');
  t.equal(l('left'), 'log.txt ', 'no copy, no second name left');
  t.equal(l('rerun'), '0');
  t.match(l('rerun-out'), /^nocow: \S+\/w\/log\.txt: rewritten as NOCOW/);
  t.match(l('after'), /^5 1000 \S*C\S*$/, 'rewritten with every line');
  t.equal(l('left-after'), 'log.txt ');
});

t.test('GIVEN a writer that opens the file by its path in the same window and holds it, writing only after migrate has ended WHEN migrate runs THEN the original is put back and the late lines land in the file at PATH', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: SETUP + String.raw`
      make h
      strace -qq -o "$D.trace" $TRACED $HOLD $NC migrate "$D" >"$MNT/out" 2>"$MNT/err" & nc=$!
      wait_for in_rename
      { exec 3>>"$F"; [ -e "$T" ] && echo during || echo after; wait_for test -e "$MNT/done"
        for i in 1 2 3 4 5; do echo "held $i" >&3; done; exec 3>&-; } >"$MNT/writer" & writer=$!
      wait $nc; echo "rc $?"; touch "$MNT/done"; wait $writer
      echo "err $(cat "$MNT/err")"; echo "writer $(cat "$MNT/writer")"
      echo "lines $(lines "$F" held)"; echo "flags $(flags "$F")"; echo "left $(left)"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const l = (key: string) => line(run.stdout, key);
  t.equal(l('writer'), 'during', 'the file was opened while the rename was held');
  t.equal(l('rc'), '1');
  t.match(l('err'), /^nocow: \S+\/h\/log\.txt: not rewritten: it was opened or written during its rename; original put back$/);
  t.equal(l('lines'), '5 1000', 'the lines written through the descriptor are in the file at PATH');
  t.equal(l('flags'), '-'.repeat(22));
  t.equal(l('left'), 'log.txt ');
});

t.test('GIVEN one writer appending to the original in the window and another appending through PATH just after the rename WHEN migrate runs THEN both versions are kept, the line names where each is, and a re-run keeps both', async (t) => {
  // The rename held on entry (the original's window) and on exit (the copy's, before migrate looks again).
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: SETUP + String.raw`
      make b
      strace -qq -o "$D.trace" $TRACED -e inject=rename:delay_enter=3000000:delay_exit=3000000:when=1 $NC migrate "$D" >"$MNT/out" 2>"$MNT/err" & nc=$!
      wait_for in_rename; appender a >"$MNT/writer"
      wait_for test ! -e "$T"; appender b >>"$MNT/writer"
      wait $nc; echo "rc $?"; echo "err $(cat "$MNT/err")"; echo "writer $(cat "$MNT/writer" | tr '\n' ' ')"
      echo "at-path $(lines "$F" b) $(lines "$F" a) $(flags "$F")"
      echo "original $(lines "$D/.log.txt.nocow-original" a) $(lines "$D/.log.txt.nocow-original" b)"
      echo "left $(left)"
      $NC migrate "$D" >"$MNT/out" 2>"$MNT/err"; echo "rerun $?"; echo "rerun-err $(cat "$MNT/err")"; echo "left-after $(left)"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const l = (key: string) => line(run.stdout, key);
  t.equal(l('writer'), 'a during b after ', 'a wrote before the rename, b after it');
  t.equal(l('rc'), '1');
  const both = (d: string) =>
    new RegExp(
      `^nocow: \\S+/${d}/log\\.txt: not rewritten: writes reached both the original and its new copy: \\S+/${d}/log\\.txt is the copy, ` +
        `the original is kept as \\S+/${d}/\\.log\\.txt\\.nocow-original; keep the one wanted and remove the other$`,
    );
  t.match(l('err'), both('b'));
  t.match(l('at-path'), /^5 1000 0 1000 \S*C\S*$/, "PATH: the copy, with b's lines");
  t.equal(l('original'), '5 1000 0 1000', "the original: a's lines");
  t.equal(l('left'), '.log.txt.nocow-original log.txt ');
  t.equal(l('rerun'), '1', 'a re-run cannot tell which to keep either');
  t.match(l('rerun-err'), both('b'));
  t.equal(l('left-after'), '.log.txt.nocow-original log.txt ', 'both kept');
});

interface Point {
  name: string;
  /** strace's options for the killed run: where it is killed. */
  inject: string;
  /** A writer reaches the original in the window, so the run puts it back: the kill falls in that. */
  writer: boolean;
  /** Killed from outside once this name exists (strace holds the run there). */
  killWhen?: string;
  /** What the killed run leaves beside log.txt. */
  left: string;
}

// The calls, in order: unlink(copy's name, left by a killed run), link(the original's second
// name), rename(copy over PATH); then either unlink(the original's second name), or, to put it
// back, link(the copy's second name), rename(the original back over PATH), unlink(the copy's).
const POINTS: Point[] = [
  { name: 'at-link', inject: '-e inject=link:signal=KILL:when=1', writer: false, left: 'log.txt ' },
  { name: 'at-rename', inject: '-e inject=rename:signal=KILL:when=1', writer: false, left: '.log.txt.nocow-migrate .log.txt.nocow-original log.txt ' },
  { name: 'at-unlink', inject: '-e inject=unlink:signal=KILL:when=2', writer: false, left: '.log.txt.nocow-original log.txt ' },
  { name: 'back-at-link', inject: '$HOLD -e inject=link:signal=KILL:when=2', writer: true, left: '.log.txt.nocow-original log.txt ' },
  {
    name: 'back-after-link',
    inject: '$HOLD -e inject=link:delay_exit=3000000:when=2',
    writer: true,
    killWhen: '.log.txt.nocow-rewritten',
    left: '.log.txt.nocow-original .log.txt.nocow-rewritten log.txt ',
  },
  { name: 'back-at-unlink', inject: '$HOLD -e inject=unlink:signal=KILL:when=2', writer: true, left: '.log.txt.nocow-rewritten log.txt ' },
];

t.test('GIVEN migrate killed at each step around the rename (and around putting the original back after a writer reached it) WHEN it is run again THEN the data is intact, every line written is there, nothing is left over, and the file is rewritten', async (t) => {
  const script = POINTS.map(
    (p) => String.raw`
      make ${p.name}
      strace -qq -o "$D.trace" $TRACED ${p.inject} $NC migrate "$D" >/dev/null 2>&1 & sp=$!
      ${p.writer ? 'wait_for in_rename; appender new >/dev/null' : ':'}
      ${p.killWhen ? `wait_for test -e "$D/${p.killWhen}"; kill -9 $(pgrep -P $sp)` : ':'}
      wait $sp; echo "${p.name} killed $?"
      echo "${p.name} left $(left)"
      ${p.writer ? '' : '[ "$(sha256sum <"$F")" = "$sum" ] && echo "' + p.name + ' meanwhile intact"'}
      $NC migrate "$D" >/dev/null 2>"$MNT/err"; echo "${p.name} rerun $? $(cat "$MNT/err")"
      echo "${p.name} lines $(lines "$F" new) $(flags "$F")"
      ${p.writer ? '' : '[ "$(sha256sum <"$F")" = "$sum" ] && echo "' + p.name + ' after intact"'}
      echo "${p.name} end $(left)"`,
  ).join('\n');
  const run = await runInFs({ fs: 'btrfs', env: { NC }, script: SETUP + script });
  t.equal(run.exitCode, 0, run.stderr);
  for (const p of POINTS) {
    const l = (key: string) => line(run.stdout, `${p.name} ${key}`);
    t.equal(l('killed'), '137', `${p.name}: killed by SIGKILL`);
    t.equal(l('left'), p.left, `${p.name}: the state it was killed in`);
    if (!p.writer) t.match(run.stdout, new RegExp(`^${p.name} meanwhile intact$`, 'm'), `${p.name}: the file at PATH had the same bytes meanwhile`);
    t.equal(l('rerun'), '0 ', `${p.name}: the re-run succeeds, with nothing to say on stderr`);
    t.match(l('lines'), new RegExp(`^${p.writer ? 5 : 0} 1000 \\S*C\\S*$`), `${p.name}: rewritten as NOCOW with ${p.writer ? 'every line the writer wrote' : 'every line'}`);
    if (!p.writer) t.match(run.stdout, new RegExp(`^${p.name} after intact$`, 'm'), `${p.name}: the same bytes`);
    t.equal(l('end'), 'log.txt ', `${p.name}: nothing left over`);
  }
});
