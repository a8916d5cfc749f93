// Advice that works: what an interrupted nocow convert or nocow migrate leaves behind, status lists
// with its size and the command that clears it, apply --dry-run and the shell library's warning
// name the same command, and running exactly that command clears it, every byte kept. Each
// leftover made by killing the real command where it leaves it (strace's signal injection).
import t from 'tap';
import { PRELUDE, renderFor } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const CLI = builtCli();

const DECLARATION = `targets:
  - { name: new, path: /data/new }
  - { name: old, path: /data/old }
  - { name: mig, path: /data/mig }
  - { name: busy, path: /data/busy }
`;

/** The command a line names in "(nocow COMMAND PATH removes it…)" (or "…; then nocow COMMAND PATH removes it…"), as a shell reads it. */
const NAMED = String.raw`named() { grep -F -- "$1" "$2" | sed -n 's/.*[(;:] *\(then \)\{0,1\}\(nocow [a-z]* [^ ;)]*\) removes it.*/\2/p' | head -n 1; }`;

const line = (stdout: string, key: string) => stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);

t.test('GIVEN the leftovers of an interrupted nocow convert (its unfinished copy, its old tree) and of an interrupted nocow migrate (its copy of a file) WHEN status, apply --dry-run and apply look at them, and WHEN the command they name is run THEN each leftover is listed with its size, every one of them names the same command, and that command removes it with every byte kept', async (t) => {
  const a = await renderFor([target({ name: 'new', path: '/data/new' }), target({ name: 'old', path: '/data/old' })], t);
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { A: a.dir, CLI, DECLARATION },
    script: String.raw`${PRELUDE}${NAMED}
      set +e  # the script records the exit statuses it asserts on
      nocow() { node "$CLI" "$@"; }
      printf '%s' "$DECLARATION" >"$A/decl.yaml"
      for d in new old mig busy; do mkdir -p "$R/data/$d"; head -c 16M /dev/urandom >"$R/data/$d/disk.img"; echo small >"$R/data/$d/small"; done
      sums() { (cd "$R/data/$1" && sha256sum disk.img small); }
      for d in new old mig busy; do sums $d >"$A/$d.sums"; done
      strace -qq -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=KILL:when=3 node "$CLI" convert "$R/data/new" >/dev/null 2>&1; echo "killed-new $?"
      strace -qq -o /dev/null -e trace=unlink,unlinkat,rmdir -e inject=unlink,unlinkat,rmdir:signal=KILL:when=1 node "$CLI" convert "$R/data/old" >/dev/null 2>&1; echo "killed-old $?"
      for d in mig busy; do strace -qq -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=KILL:when=3 node "$CLI" migrate "$R/data/$d" >/dev/null 2>&1; echo "killed-$d $?"; done
      present() { echo "$([ -d "$R/data/new.nocow-new" ] && echo new)$([ -d "$R/data/old.nocow-old" ] && echo ' old')$([ -f "$R/data/mig/.disk.img.nocow-migrate" ] && echo ' mig')$([ -f "$R/data/busy/.disk.img.nocow-migrate" ] && echo ' busy')"; }
      echo "left $(present)"
      nocow status --root "$R" -c "$A/decl.yaml" >"$A/status.out" 2>&1; echo "status $?"
      grep 'deviation:.*\(nocow-new\|nocow-old\|nocow-migrate\)' "$A/status.out" | sed 's/^ *deviation: */deviation /'
      nocow apply --dry-run --root "$R" -c "$A/decl.yaml" >"$A/dry.out" 2>&1; echo "dry $?"
      for d in new old; do echo "plan-$d $(grep "^nocow: $d: " "$A/dry.out" | LC_ALL=C sort | tr '\n' '|')"; done
      sh "$A/nocow-apply.sh" --root "$R" >"$A/hook.out" 2>"$A/hook.err"; echo "hook $? $(tr '\n' '|' <"$A/hook.err")"
      nocow apply --root "$R" -c "$A/decl.yaml" >"$A/apply.out" 2>"$A/apply.err"; echo "apply $? $(tr '\n' '|' <"$A/apply.err")"
      echo "after-apply $(present)"
      # Exactly the command status names, each run once; the busy one while a process holds its file open.
      for d in new old mig busy; do
        case $d in new) left="$R/data/new.nocow-new" ;; old) left="$R/data/old.nocow-old" ;; *) left="$R/data/$d/.disk.img.nocow-migrate" ;; esac
        cmd=$(named "$left" "$A/status.out"); echo "named-$d $cmd"
        echo "dry-names-$d $(named "$left" "$A/dry.out")"
        echo "hook-names-$d $(named "$left" "$A/hook.err")"
        [ "$d" != busy ] || { sleep 1000 3<"$R/data/busy/disk.img" & holder=$!; until [ -e "/proc/$holder/fd/3" ]; do sleep 0.01; done; }
        eval "$cmd" >"$A/$d.out" 2>"$A/$d.err"; echo "ran-$d $? $(tr '\n' '|' <"$A/$d.out") $(tr '\n' '|' <"$A/$d.err")"
        [ "$d" != busy ] || { kill $holder; wait $holder; }
        echo "gone-$d $([ -e "$left" ] && echo no || echo yes)"
        [ "$(sums $d)" = "$(cat "$A/$d.sums")" ] && echo "bytes-$d same" || echo "bytes-$d different"
      done
      nocow status --root "$R" -c "$A/decl.yaml" >"$A/status2.out" 2>&1
      echo "leftovers-after $(grep -c 'nocow-new\|nocow-old\|nocow-migrate' "$A/status2.out")"
      echo "final $(present)$(cd "$R/data" && ls -A . new old mig busy | tr '\n' ' ')"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const out = run.stdout;
  for (const d of ['new', 'old', 'mig', 'busy']) t.equal(line(out, `killed-${d}`), '137', `${d}: killed by SIGKILL`);
  t.equal(line(out, 'left'), 'new old mig busy', 'the kills left: the unfinished copy, the old tree, two copies of files');
  t.equal(line(out, 'status'), '1', 'status: the targets deviate');
  const deviations = out.split('\n').filter((l) => l.startsWith('deviation '));
  t.match(deviations, [
    /^deviation \S+\/data\/new\.nocow-new is the unfinished copy of an interrupted nocow convert, \d+\.\d MiB \(nocow convert \S+\/data\/new removes it\)$/,
    /^deviation \S+\/data\/old\.nocow-old is the old tree of an interrupted nocow convert, 16\.0 MiB \(nocow convert \S+\/data\/old removes it once the directory holds all of it\)$/,
    /^deviation \S+\/data\/mig\/\.disk\.img\.nocow-migrate is the copy an interrupted nocow migrate left, \d+\.\d MiB \(nocow migrate \S+\/data\/mig removes it\)$/,
    /^deviation \S+\/data\/busy\/\.disk\.img\.nocow-migrate is the copy an interrupted nocow migrate left, \d+\.\d MiB \(nocow migrate \S+\/data\/busy removes it\)$/,
  ]);
  t.equal(deviations.length, 4, 'one deviation per leftover');
  t.equal(line(out, 'dry'), '1');
  t.match(line(out, 'plan-new'), /^nocow: new: set-nocow: \+C on \S+\/data\/new for new files; 2 existing files keep copy-on-write \(nocow migrate rewrites them\)\|nocow: new: warning: \S+\/data\/new\.nocow-new holds the unfinished copy of an interrupted nocow convert; left alone: nocow convert \S+\/data\/new removes it\|nocow: new: would: chattr \+C -- \S+\/data\/new\|$/, 'the dry run says the copy is left alone, and names the command');
  t.match(line(out, 'plan-old'), /^nocow: old: warning: \S+\/data\/old\.nocow-old holds the old tree of an interrupted nocow convert; left alone: nocow convert \S+\/data\/old removes it\|$/);
  t.match(line(out, 'hook'), /^0 nocow: new: warning: (\S+)\/data\/new\.nocow-new holds the unfinished copy of an interrupted nocow convert; left alone: nocow convert \1\/data\/new removes it\|nocow: old: warning: \1\/data\/old\.nocow-old holds the old tree of an interrupted nocow convert; left alone: nocow convert \1\/data\/old removes it\|$/, 'the shell library names the command, once per leftover, and removes nothing');
  t.equal(line(out, 'apply'), line(out, 'hook'), 'nocow apply: the same warnings');
  t.equal(line(out, 'after-apply'), 'new old mig busy', 'neither removed any leftover: each holds data');
  for (const d of ['new', 'old', 'mig', 'busy']) {
    const named = line(out, `named-${d}`);
    const command = d === 'new' || d === 'old' ? `nocow convert ` : 'nocow migrate ';
    t.ok(named?.startsWith(command), `${d}: status names ${command.trim()} (${named})`);
    if (d === 'new' || d === 'old') {
      t.equal(line(out, `dry-names-${d}`), named, `${d}: apply --dry-run names the same command`);
      t.equal(line(out, `hook-names-${d}`), named, `${d}: the shell library's warning names the same command`);
    }
    t.match(line(out, `ran-${d}`), d === 'busy' ? /^1 .*removed the copy an interrupted nocow migrate left .*not rewritten: open by process/ : /^0 /, `${d}: ran ${named}`);
    t.equal(line(out, `gone-${d}`), 'yes', `${d}: the leftover is gone`);
    t.equal(line(out, `bytes-${d}`), 'same', `${d}: every byte kept`);
  }
  t.equal(line(out, 'leftovers-after'), '0', 'status lists no leftover any more');
  t.equal(line(out, 'final')?.trimEnd(), '.: busy mig new old  busy: disk.img small  mig: disk.img small  new: disk.img small  old: disk.img small', 'nothing is left beside the directories or the files');
});
