// An immutable (chattr +i) or append-only (chattr +a) target: an admin froze it, so every artifact
// and command leaves it entirely alone (its attributes and ctime unchanged) and says so in one
// warning naming the attribute. The shell library in dash, bash and busybox sh; nocow apply (and
// its dry run), convert and migrate through the built CLI.
import t from 'tap';
import { PRELUDE, SHELLS, readArtifactFile, renderFor, result } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const CLI = builtCli();

const TARGETS = [
  target({ name: 'imm-empty', path: '/data/imm-empty' }),
  target({ name: 'imm', path: '/data/imm' }),
  target({ name: 'app', path: '/data/app' }),
];

/** The targets frozen: an empty plain directory (else converted) and a filled one (else given +C), immutable; a filled one append-only. */
const SETUP = String.raw`
mkdir -p "$R/data/imm-empty" "$R/data/imm" "$R/data/app"
head -c 1M /dev/urandom >"$R/data/imm/disk.img"; head -c 1M /dev/urandom >"$R/data/app/disk.img"
chattr +i "$R/data/imm-empty" "$R/data/imm"; chattr +a "$R/data/app"
look() { for d in imm-empty imm app; do echo "$d $(lsattr -d "$R/data/$d" | cut -d' ' -f1) $(stat -c %z "$R/data/$d") $(ls -A "$R/data/$d" | tr '\n' ' ')"; done; ls -A "$R/data" | tr '\n' ' '; echo; }
unfreeze() { chattr -i "$R/data/imm-empty" "$R/data/imm"; chattr -a "$R/data/app"; }
`;

const WARNINGS = /^nocow: imm-empty: warning: \S+\/data\/imm-empty is immutable \(chattr \+i\); left alone\nnocow: imm: warning: \S+\/data\/imm is immutable \(chattr \+i\); left alone\nnocow: app: warning: \S+\/data\/app is append-only \(chattr \+a\); left alone\n$/;

for (const [i, shell] of SHELLS.entries()) {
  const runner = i % 2 === 0 ? 'hook' : 'kickstart';
  t.test(`GIVEN immutable and append-only targets WHEN ${shell} runs the ${runner} artifact, twice THEN each is left alone (attributes and ctime unchanged, no +C, no subvolume, nothing beside it) with one warning naming the attribute`, async (t) => {
    const a = await renderFor(TARGETS, t);
    const run = await runInFs({
      fs: 'btrfs',
      env: { A: a.dir },
      script: `${PRELUDE}${SETUP}
        look >"$A/before"
        run run1 '${shell}' ${runner}
        run run2 '${shell}' ${runner}
        look >"$A/after"
        unfreeze`,
    });
    t.equal(run.exitCode, 0, run.stderr);
    const [before, after] = await Promise.all(['before', 'after'].map((f) => readArtifactFile(a, f)));
    t.equal(after, before, 'attributes, ctime, entries: unchanged');
    t.match(before, /^imm-empty -*i-* /m, 'immutable as set up');
    for (const label of ['run1', 'run2']) {
      const r = await result(a, label);
      t.equal(r.rc, 0, `${label}: exit 0`);
      t.equal(r.out, '', `${label}: no change said`);
      t.match(r.err, WARNINGS, `${label}: one warning per target, naming the attribute`);
    }
  });
}

t.test('GIVEN immutable and append-only targets WHEN nocow apply, apply --dry-run, convert and migrate run THEN each is left alone, unchanged, and each says which attribute froze it', async (t) => {
  const a = await renderFor(TARGETS, t);
  const declaration = `targets:\n${TARGETS.map((x) => `  - { name: ${x.name}, path: ${x.path} }`).join('\n')}\n`;
  const run = await runInFs({
    fs: 'btrfs',
    env: { A: a.dir, CLI, DECLARATION: declaration },
    script: String.raw`${PRELUDE}${SETUP}
      set +e
      printf '%s' "$DECLARATION" >"$A/decl.yaml"
      mkdir "$R/data/files"; head -c 1M /dev/urandom >"$R/data/files/frozen.img"; head -c 1M /dev/urandom >"$R/data/files/plain.img"; chattr +i "$R/data/files/frozen.img"
      before=$(look; stat -c '%z' "$R/data/files/frozen.img")
      node "$CLI" apply --dry-run --root "$R" -c "$A/decl.yaml" >"$A/dry.out" 2>&1; echo "dry $?"; sed 's/^/plan /' "$A/dry.out"
      node "$CLI" apply --root "$R" -c "$A/decl.yaml" >"$A/apply.out" 2>"$A/apply.err"; echo "apply $? $(cat "$A/apply.out")"; sed 's/^/apply-err /' "$A/apply.err"
      for d in imm-empty imm app; do node "$CLI" convert "$R/data/$d" >/dev/null 2>"$A/err"; echo "convert-$d $? $(cat "$A/err")"; done
      node "$CLI" migrate "$R/data/app" >/dev/null 2>"$A/err"; echo "migrate-app $? $(cat "$A/err")"
      node "$CLI" migrate "$R/data/imm" >/dev/null 2>"$A/err"; echo "migrate-imm $? $(cat "$A/err")"
      node "$CLI" migrate "$R/data/files" >"$A/out" 2>"$A/err"; echo "migrate-files $? $(cat "$A/out") | $(cat "$A/err")"
      after=$(look; stat -c '%z' "$R/data/files/frozen.img")
      [ "$after" = "$before" ] && echo "unchanged" || { echo "changed"; echo "$before"; echo "$after"; }
      echo "files $(ls -A "$R/data/files" | tr '\n' ' ')"
      chattr -i "$R/data/files/frozen.img"; unfreeze`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const out = run.stdout;
  const line = (key: string) => out.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  t.equal(line('dry'), '0', 'the dry run: nothing would change');
  const plan = out.split('\n').filter((l) => l.startsWith('plan ')).map((l) => l.slice('plan '.length));
  t.match(plan[0], /^nocow apply --dry-run: the plan for root \S+; nothing is changed$/, 'the dry run: its header');
  t.match(plan.slice(1).join('\n') + '\n', WARNINGS, 'the dry run: the warnings the run would give, one per target, naming the attribute, and no would line');
  t.equal(line('apply'), '0 ', 'apply: exit 0, no change');
  t.match(out.split('\n').filter((l) => l.startsWith('apply-err ')).map((l) => l.slice('apply-err '.length)).join('\n') + '\n', WARNINGS, 'apply: one warning per target, naming the attribute');
  t.match(line('convert-imm-empty'), /^1 nocow: \S+\/imm-empty: not converted: \. is immutable \(chattr \+i\): chattr -i it first$/);
  t.match(line('convert-imm'), /^1 nocow: \S+\/imm: not converted: \. is immutable \(chattr \+i\): chattr -i it first$/);
  t.match(line('convert-app'), /^1 nocow: \S+\/app: not converted: \. is append-only \(chattr \+a\): chattr -a it first$/);
  t.match(line('migrate-app'), /^1 nocow: \S+\/app\/disk\.img: not rewritten: its directory \S+\/app is append-only \(chattr \+a\): left alone$/);
  t.match(line('migrate-imm'), /^1 nocow: \S+\/imm\/disk\.img: not rewritten: its directory \S+\/imm is immutable \(chattr \+i\): left alone$/);
  t.match(line('migrate-files'), /^1 nocow: \S+\/files\/plain\.img: rewritten as NOCOW .* \| nocow: \S+\/files\/frozen\.img: not rewritten: it is immutable \(chattr \+i\): left alone$/, 'an immutable file is left alone, the others rewritten');
  t.match(out, /^unchanged$/m, 'every frozen directory and file: attributes, ctime and entries unchanged');
  t.equal(line('files'), 'frozen.img plain.img ', 'no copy left beside the files');
});
