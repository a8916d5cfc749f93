// Every file migrate and convert are asked about is handled or named with its reason, whatever
// bytes its name holds (issue 14, item 5; defrag's own case is test/defrag-names.test.ts): each
// file's outcome on disk (lsattr, inode, bytes) is checked against what the command reported.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { NC, line } from './helpers/convert.js';

// A tree of hostile names: a line break, a tab, a leading dash, one that mimics lsattr's output,
// 250 bytes, Latin-1 bytes (not UTF-8) for a file and for a directory holding a file.
const TREE = String.raw`
hostile() {  # DIR [latin1]: the tree, every file 64 KiB of random data without +C
  local d=$1 n
  mkdir -p "$d"
  for n in "$(printf 'new\nline.img')" "$(printf 'tab\there.img')" "-rf.img" "--------------C------ x.img" "$(printf 'L%.0s' $(seq 1 246)).img" plain.img; do
    head -c 64K /dev/urandom >"$d/$n"
  done
  if [ "$#" -gt 1 ] && [ "$2" = latin1 ]; then
    head -c 64K /dev/urandom >"$d/$(printf 'caf\351.img')"
    mkdir "$d/$(printf 'dir\377')"; head -c 64K /dev/urandom >"$d/$(printf 'dir\377')/inside.img"
  fi
  sync
}
report() {  # DIR: per file, in name order (bytes, escaped by od): +C or not, inode, checksum
  find "$1" -type f -print0 | sort -z | while IFS= read -r -d '' f; do
    printf '%s %s %s %s\n' "$(printf '%s' "$f" | od -An -c | tr -d ' \n')" "$(lsattr -d -- "$f" | cut -c1-22 | tr -d -c C)x" "$(stat -c %i -- "$f")" "$(sha256sum <"$f" | cut -c1-16)"
  done
}
set +e
`;

t.test('GIVEN a tree of hostile names, two of them not UTF-8 WHEN migrated THEN every UTF-8 name is rewritten +C with its bytes, and each other one is named (as \\xHH) with its reason and left as it was', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`${TREE}
      D="$MNT/vm"; hostile "$D" latin1
      report "$D" >"$MNT/before"
      $NC migrate "$D" >"$MNT/out" 2>"$MNT/err"; echo "rc $?"
      report "$D" >"$MNT/after"
      echo "rewritten $(grep -c ': rewritten' "$MNT/out")"
      echo "refused $(grep -c 'not rewritten' "$MNT/err")"
      grep -F 'caf\xe9.img: not rewritten: its name is not UTF-8' "$MNT/err" >/dev/null && echo "named-file yes"
      grep -F 'dir\xff/: not rewritten: a directory whose name is not UTF-8' "$MNT/err" >/dev/null && echo "named-dir yes"
      # Each file: +C and the same bytes where the name is UTF-8; untouched (no +C, same inode) where not.
      paste -d'|' "$MNT/before" "$MNT/after" | while IFS='|' read -r b a; do
        set -- $b; name=$1 bflag=$2 bino=$3 bsum=$4
        set -- $a; aflag=$2 aino=$3 asum=$4
        case $name in *351* | *377*) want="untouched"; [ "$aflag" = x ] && [ "$aino" = "$bino" ] && [ "$asum" = "$bsum" ] && got=untouched || got=changed ;;
        *) want="rewritten"; [ "$aflag" = Cx ] && [ "$asum" = "$bsum" ] && got=rewritten || got=other ;;
        esac
        echo "file $([ "$want" = "$got" ] && echo ok || echo "WRONG $name $got")"
      done
      echo "files $(wc -l <"$MNT/after")"
      `,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(line(run.stdout, 'rc'), '1', 'exit 1: some files refused');
  t.equal(line(run.stdout, 'files'), '8');
  t.same(run.stdout.split('\n').filter((l) => l.startsWith('file ')), Array(8).fill('file ok'), 'each file: rewritten with its bytes, or untouched');
  t.equal(line(run.stdout, 'rewritten'), '6', 'the six UTF-8 names rewritten');
  t.equal(line(run.stdout, 'refused'), '2', 'the file and the directory whose names are not UTF-8, each on a line');
  t.equal(line(run.stdout, 'named-file'), 'yes');
  t.equal(line(run.stdout, 'named-dir'), 'yes');
});

t.test('GIVEN a tree of hostile names WHEN converted THEN every file is in the subvolume with its bytes; with a name that is not UTF-8 THEN it is refused naming it, nothing changed', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`${TREE}
      A="$MNT/a"; hostile "$A"; report "$A" | cut -d' ' -f1,4 >"$MNT/a.before"
      $NC convert "$A" >/dev/null 2>"$MNT/a.err"; echo "a-rc $?"
      echo "a-inode $(stat -c %i "$A")"
      report "$A" | cut -d' ' -f1,4 | cmp -s - "$MNT/a.before" && echo "a-same yes"
      B="$MNT/b"; hostile "$B" latin1; report "$B" >"$MNT/b.before"
      $NC convert "$B" >/dev/null 2>"$MNT/b.err"; echo "b-rc $?"
      echo "b-inode $(stat -c %i "$B")"
      report "$B" | cmp -s - "$MNT/b.before" && echo "b-same yes"
      echo "b-err $(cat "$MNT/b.err")"
      `,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(line(run.stdout, 'a-rc'), '0');
  t.equal(line(run.stdout, 'a-inode'), '256', 'a subvolume');
  t.equal(line(run.stdout, 'a-same'), 'yes', 'every name, every byte');
  t.equal(line(run.stdout, 'b-rc'), '1');
  t.not(line(run.stdout, 'b-inode'), '256', 'not converted');
  t.equal(line(run.stdout, 'b-same'), 'yes', 'nothing changed');
  t.match(line(run.stdout, 'b-err'), /not converted: .*not UTF-8/, 'the refusal names why');
});
