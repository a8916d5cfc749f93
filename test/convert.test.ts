// nocow convert on real Btrfs: a filled plain directory becomes a +C subvolume with every byte
// and attribute kept; killed at each phase it loses nothing and a re-run finishes; it refuses
// what it must; it holds its target's lock while it works, and no other target waits for it.
import t, { type Test } from 'tap';
import { parseTree, runInFs, section, type TreeEntry } from './helpers/fs.js';
import { NC, SETUP, line } from './helpers/convert.js';

/** What a conversion keeps of each entry: everything observe_tree shows but the inode, ctime, flags and subvolume state. */
const kept = (e: TreeEntry) => ({ kind: e.kind, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, content: e.content, xattrs: e.xattrs });

function sameTree(t: Test, before: Map<string, TreeEntry>, after: Map<string, TreeEntry>, what: string) {
  t.same([...after.keys()], [...before.keys()], `${what}: the same names`);
  for (const [path, b] of before) {
    const a = after.get(path);
    if (!a) continue;
    t.same(kept(a), kept(b), `${what}: ${JSON.stringify(path)} keeps its type, mode, owner, mtime, bytes or link target, xattrs and ACLs`);
  }
}

t.test('GIVEN a plain directory holding a fragmented CoW image and a tree of every kind of entry WHEN nocow convert runs THEN it is a +C subvolume with every byte and attribute kept, hard links linked, holes and preallocation kept, the image defragmented, and nocow status exits 0', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: `${SETUP}
      P="$MNT/vm images"; mktree "$P" 8 300
      echo "extents-before $(extents "$P/disk.img")"
      nc status "$P" >"$MNT/status0"; echo "status-before $?"; echo "deviation $(grep 'deviation: *not a subvolume' "$MNT/status0")"
      section before; observe_tree "$P"
      nc convert "$P" >"$MNT/out" 2>"$MNT/err"; echo "rc $?"; echo "out $(cat "$MNT/out")"; echo "err $(cat "$MNT/err")"
      section after; observe_tree "$P"
      section end
      echo "subvolume $(subvol "$P") $(flags "$P")"
      echo "extents-after $(extents "$P/disk.img")"
      echo "sparse $(stat -c '%s' "$P/sparse.img") $(blocks "$P/sparse.img")"; echo "prealloc $(stat -c '%s' "$P/prealloc.img") $(blocks "$P/prealloc.img")"
      echo "left $(leftovers "$P")"; echo "marker $(getfattr -d -m trusted.nocow "$P" 2>/dev/null | wc -l)"
      nc status "$P" >/dev/null; echo "status-after $?"
      nc convert "$P"; echo "again $?"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const out = run.stdout;
  t.equal(line(out, 'status-before'), '1', 'status: the plain directory deviates');
  t.match(line(out, 'deviation'), /not a subvolume, and not empty \(nocow convert .* makes it one; nocow apply never moves data\)/, 'and names the command that fixes it');
  t.equal(line(out, 'rc'), '0');
  t.match(line(out, 'out'), /^nocow: \S*\/vm images: converted into a subvolume with \+C \(10 files, 88\.0 MiB copied and verified\)$/);
  t.equal(line(out, 'err'), '');
  const before = parseTree(section(out, 'before'));
  const after = parseTree(section(out, 'after'));
  sameTree(t, before, after, 'after');
  t.equal(after.get('.')!.subvol, true, 'the directory is a subvolume now (btrfs subvolume show)');
  t.equal(before.get('.')!.subvol, false);
  for (const [path, e] of after) if (e.kind === 'file' || e.kind === 'dir') t.ok(e.nocow, `${JSON.stringify(path)} has +C`);
  t.equal(after.get('hardlink')!.inode, after.get('sub dir/file')!.inode, 'the hard links are still one inode');
  t.notOk(before.get('disk.img')!.nocow, 'the image was copy-on-write before');
  t.match(line(out, 'subvolume'), /^subvolume \S*C\S*$/);
  const [extentsBefore, extentsAfter] = [Number(line(out, 'extents-before')), Number(line(out, 'extents-after'))];
  t.ok(extentsBefore >= 50, `fragmented before: ${extentsBefore} extents`);
  t.ok(extentsAfter * 10 <= extentsBefore, `after: ${extentsAfter} extents`);
  const [sparseSize, sparseBlocks] = line(out, 'sparse')!.split(' ').map(Number);
  t.equal(sparseSize, 64 * 1024 * 1024);
  t.ok(sparseBlocks! * 512 <= 2 * 1024 * 1024, `sparse: ${sparseBlocks! * 512} bytes allocated for 1 MiB of data in 64 MiB`);
  const [, preallocBlocks] = line(out, 'prealloc')!.split(' ').map(Number);
  t.ok(preallocBlocks! * 512 >= 16 * 1024 * 1024, `preallocated: ${preallocBlocks! * 512} bytes allocated, as before`);
  t.equal(line(out, 'left'), 'vm images ', 'no .nocow-new or .nocow-old left');
  t.equal(line(out, 'marker'), '0', 'the mark of the copy is gone');
  t.equal(line(out, 'status-after'), '0', 'status: as declared');
  t.match(out, /^nocow: \S*\/vm images: nothing to do: already a subvolume\nagain 0$/m, 'a second run has nothing to do');
});

// Each kill point: where strace stops the main thread, and what the killed run leaves.
const KILLS = [
  ['during the copy (its third data write)', '-e trace=pwrite64 -e inject=pwrite64:signal=KILL:when=3', 'plain new -'],
  ['after the copy, as verification starts (the image read back)', '-P "$P.nocow-new/disk.img" -e trace=openat -e inject=openat:signal=KILL:when=2', 'plain new -'],
  ['after verification, before the first rename', '-e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=KILL:when=1', 'plain new -'],
  ['between the two renames', '-e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=KILL:when=2', 'missing new old'],
  ['after the swap, before removing the old tree', '-e trace=unlink,unlinkat,rmdir -e inject=unlink,unlinkat,rmdir:signal=KILL:when=1', 'subvolume - old'],
  ['while removing the old tree', '-e trace=unlink,unlinkat,rmdir -e inject=unlink,unlinkat,rmdir:signal=KILL:when=4', 'subvolume - old'],
] as const;

/** An entry as it was meanwhile: PATH carries the mark of the copy until the old tree is gone. */
const unmarked = (tree: Map<string, TreeEntry>) => {
  const root = tree.get('.');
  if (root) root.xattrs = Object.fromEntries(Object.entries(root.xattrs).filter(([name]) => name !== 'trusted.nocow-kit.convert'));
  return tree;
};

t.test('GIVEN a conversion killed at each of its phases WHEN looked at, and WHEN run again THEN the data was complete somewhere meanwhile, and the re-run (or nocow apply, then a re-run) ends in the same +C subvolume with every byte and attribute kept', async (t) => {
  // The six cases run at once, each in its own directory: each conversion holds the lock of its own.
  const cases = KILLS.map(
    ([, inject], k) => String.raw`
    (
      P="$MNT/k${k}/images"; mkdir "$MNT/k${k}"; small "$P"
      section "before-${k}"; observe_tree "$P"
      strace -qq -o /dev/null ${inject} $NC convert "$P" >/dev/null 2>&1; echo "killed-${k} $?"
      p=missing; [ -d "$P" ] && p=$( [ "$(subvol "$P")" = subvolume ] && echo subvolume || echo plain)
      n=-; [ -e "$P.nocow-new" ] && n=new; o=-; [ -e "$P.nocow-old" ] && o=old
      echo "state-${k} $p $n $o"
      # Where the data is meanwhile: PATH while it exists, else the old tree.
      section "meanwhile-${k}"; if [ -d "$P" ]; then observe_tree "$P"; else observe_tree "$P.nocow-old"; fi
      section "rerun-${k}"
      if [ "$p" = missing ]; then
        printf 'targets:\n  - { name: vm, path: "%s" }\n' "$P" >"$MNT/decl${k}.yaml"
        nc apply -c "$MNT/decl${k}.yaml" >"$MNT/apply${k}.out" 2>"$MNT/apply${k}.err"; echo "apply-${k} $? $(cat "$MNT/apply${k}.out") | $(cat "$MNT/apply${k}.err")"
      fi
      nc convert "$P" >"$MNT/out${k}" 2>"$MNT/err${k}"; echo "rerun-${k} $? $(tr '\n' '|' <"$MNT/out${k}") $(cat "$MNT/err${k}")"
      section "after-${k}"; observe_tree "$P"
      section "end-${k}"
      echo "final-${k} $(subvol "$P") $(flags "$P") $(leftovers "$P")"
    ) >"$MNT/log${k}" 2>&1 &`,
  );
  const script = `${cases.join('\n')}\nwait\nfor k in ${KILLS.map((_, k) => k).join(' ')}; do cat "$MNT/log$k"; done`;
  const run = await runInFs({ fs: 'btrfs', sizeMiB: 1024, env: { NC }, script: SETUP + script });
  t.equal(run.exitCode, 0, run.stderr);
  const out = run.stdout;
  KILLS.forEach(([where, , state], k) => {
    t.test(`killed ${where}`, async (t) => {
      t.equal(line(out, `killed-${k}`), '137', 'killed by SIGKILL');
      t.equal(line(out, `state-${k}`), state, 'PATH, NEW and OLD as the table in src/convert/classify.ts says');
      const before = parseTree(section(out, `before-${k}`));
      sameTree(t, before, unmarked(parseTree(section(out, `meanwhile-${k}`))), 'meanwhile');
      if (state.startsWith('missing')) {
        t.match(line(out, `apply-${k}`), /^0 nocow: vm: repaired: completed an interrupted conversion of .*images \| nocow: vm: warning: (\S+)images\.nocow-old holds the old tree of an interrupted nocow convert; left alone: nocow convert \1images removes it$/, 'nocow apply completes the swap, leaves the old tree alone, and names the command that removes it');
      }
      t.match(line(out, `rerun-${k}`), /^0 .*nocow: \S+\/images: (converted into a subvolume with \+C|finished an interrupted conversion: removed \S+\.nocow-old, which \S+ holds in full)/);
      const after = parseTree(section(out, `after-${k}`));
      sameTree(t, before, after, 'after the re-run');
      t.equal(after.get('hardlink')!.inode, after.get('sub dir/file')!.inode, 'hard links still linked');
      for (const [path, e] of after) if (e.kind === 'file' || e.kind === 'dir') t.ok(e.nocow, `${JSON.stringify(path)} has +C`);
      t.match(line(out, `final-${k}`), /^subvolume \S*C\S* images $/, 'a +C subvolume, nothing left beside it');
    });
  });
});

t.test('GIVEN a conversion killed before each process it starts (the lock, the subvolume, its mark, cp, sync, the checks, taking the mark off) WHEN run again THEN the data was complete meanwhile and the re-run always ends in the same +C subvolume', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: String.raw`${SETUP}
      digest() {  # DIR: names, types, modes, owners, mtimes, sizes, link targets, checksums and xattrs (less the mark of the copy)
        ( cd "$1" || exit
          find . -printf '%p %y %m %U:%G %T@ %s %l %n\n' | LC_ALL=C sort
          find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
          getfattr -R -P -h -d -m - -e hex . 2>/dev/null | sed '/^trusted\.nocow-kit\.convert=/d' | awk 'BEGIN { RS = ""; FS = "\n" } { $1 = $1; print }' | LC_ALL=C sort
        ) | sha256sum | cut -c1-16
      }
      # The processes a run starts, in order: the sweep kills before each one from the first after
      # the subvolume is made (before it, nothing changes: the checks, without and then with the lock).
      mkdir "$MNT/s0"; small "$MNT/s0/p"
      # -z: only the execs that succeeded, each on one line (without it, a PATH lookup's failed try
      # on /usr/sbin, interleaved with another process, is printed "unfinished" and counted as a process).
      strace -f -qq -z -o "$MNT/s0/trace" -e trace=execve $NC convert "$MNT/s0/p" >/dev/null; echo "traced $?"
      grep -o 'execve("[^"]*", \[[^]]*' "$MNT/s0/trace" | sed 1d >"$MNT/s0/children"
      first=$(( $(grep -n 'subvolume", "create"' "$MNT/s0/children" | cut -d: -f1) + 1 )); total=$(wc -l <"$MNT/s0/children")
      echo "first $first"; echo "total $total"
      sweep() {  # N…: kill before process N, look, run again, look
        for n; do
          P="$MNT/s$n/p"; mkdir "$MNT/s$n"; small "$P"; before=$(digest "$P")
          rc=0; strace -qq -o /dev/null -e trace=clone -e inject=clone:signal=KILL:when=$n $NC convert "$P" >/dev/null 2>&1 || rc=$?
          p=missing; [ -d "$P" ] && p=$(subvol "$P"); marked=$(getfattr --only-values -n trusted.nocow-kit.convert "$P" >/dev/null 2>&1 && echo marked || echo -)
          if [ -d "$P" ]; then mid=$(digest "$P"); else mid=$(digest "$P.nocow-old"); fi
          left=$(leftovers "$P")
          nc convert "$P" >"$MNT/s$n/out" 2>"$MNT/s$n/err"; rerun=$?
          printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $n $rc "$p $marked $left" "$([ "$mid" = "$before" ] && echo same || echo different)" \
            "$rerun $(tr '\n' '|' <"$MNT/s$n/err")" "$([ "$(digest "$P")" = "$before" ] && echo same || echo different)" "$(subvol "$P") $(flags "$P") $(flags "$P/disk.img") $(flags "$P/sub dir") $(leftovers "$P")"
        done
      }
      # Two chains at once, each conversion in a directory of its own: neither waits for the other's lock.
      sweep $(seq "$first" 2 "$total") >"$MNT/even" 2>/dev/null & sweep $(seq $((first + 1)) 2 "$total") >"$MNT/odd" 2>/dev/null; wait
      sort -n "$MNT/even" "$MNT/odd"
`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const first = Number(line(run.stdout, 'first'));
  t.ok(first > 1, `the new subvolume is made by process ${first} of a run`);
  const rows = run.stdout.split('\n').filter((l) => /^\d+\t/.test(l)).map((l) => l.split('\t'));
  const total = Number(line(run.stdout, 'total'));
  t.equal(line(run.stdout, 'traced'), '0', `a run not killed starts ${total} processes`);
  t.same(rows.map((r) => Number(r[0])), Array.from({ length: total + 1 - first }, (_, i) => first + i), `killed before each of processes ${first} to ${total}`);
  t.same(rows.map((r) => r[1]), Array<string>(total + 1 - first).fill('137'), 'every run killed by SIGKILL');
  const states = new Set(rows.map((r) => r[2]));
  t.ok(states.has('directory - p p.nocow-new '), 'some kill left the unfinished copy beside the directory');
  t.ok(states.has('subvolume marked p '), 'some kill left the subvolume with its mark, the old tree gone');
  for (const [n, rc, state, meanwhile, rerun, after, final] of rows) {
    const what = `killed before process ${n} (rc ${rc}, left: ${state})`;
    t.equal(meanwhile, 'same', `${what}: the data complete meanwhile`);
    t.equal(rerun, '0 ', `${what}: the re-run exits 0 and warns of nothing`);
    t.equal(after, 'same', `${what}: the same bytes and attributes after it`);
    t.match(final, /^subvolume \S*C\S* \S*C\S* \S*C\S* p $/, `${what}: a +C subvolume, nothing left beside it`);
  }
});

t.test('GIVEN directories that must not be converted WHEN nocow convert runs THEN each is refused with one line and left as it was; a dry run and --json say what would happen and change nothing', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 256,
    env: { NC },
    script: `${SETUP}
      L="$MNT/log"; mkdir "$L"
      snap() { find "$MNT" -path "$L" -prune -o -printf '%i %C@ %s %p\\n' | sort | sha256sum; }
      refuse() { nc convert "$@" >"$L/out" 2>"$L/err"; echo "$? $(wc -l <"$L/err") $(cat "$L/err") | $(tr '\\n' '|' <"$L/out")"; }
      B="$MNT/busy"; mkdir "$B"; head -c 1M /dev/urandom >"$B/disk.img"; mkdir "$B/sub"; echo x >"$B/sub/f"
      sleep 1000 3<>"$B/disk.img" & holder=$!
      trap 'kill $holder 2>/dev/null; wait' EXIT
      M="$MNT/mounted"; mkdir "$M" "$MNT/elsewhere"; echo x >"$MNT/elsewhere/f"; mount --bind "$MNT/elsewhere" "$M"
      S="$MNT/subvol"; btrfs subvolume create "$S" >/dev/null; echo x >"$S/f"
      T="$MNT/tmpfs"; mkdir "$T"; mount -t tmpfs none "$T"; echo x >"$T/f"
      F="$MNT/full"; mkdir "$F"; fallocate -l 150M "$F/big.img"
      G="$MNT/good"; mkdir "$G"; head -c 2M /dev/urandom >"$G/a.img"
      until [ -e "/proc/$holder/fd/3" ]; do sleep 0.01; done; echo "holder $holder"
      before=$(snap)
      echo "busy $(refuse "$B")"
      echo "mounted $(refuse "$M")"
      echo "tmpfs $(refuse "$T")"
      echo "full $(refuse "$F")"
      echo "etc $(refuse /etc)"
      echo "below-etc $(refuse /etc/ssh)"
      echo "utf8 $(refuse "$(printf '%s/\\377' "$MNT")")"
      echo "missing $(refuse "$MNT/nope")"
      echo "file $(refuse "$G/a.img")"
      echo "dry $(refuse -n "$G" "$S")"
      nc convert -n --json "$G" "$B" >"$L/json" 2>"$L/json.err"; echo "json-rc $? $(tr '\\n' '|' <"$L/json.err")"
      [ "$(snap)" = "$before" ] && echo "nothing changed" || echo "changed"
      echo "subvolume $(refuse "$S")"
      kill $holder; wait $holder; trap - EXIT
      echo "released $(refuse "$B")"; echo "busy-after $(subvol "$B") $(flags "$B")"
      umount "$M" "$T"
      echo "---"; cat "$L/json"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const out = run.stdout.split('\n---\n')[0]!;
  const notConverted = (key: string, reason: string) =>
    t.match(line(out, key), new RegExp(`^1 1 nocow: \\S+: not converted: ${reason} \\| $`), `${key}: exit 1, one line`);
  notConverted('busy', `disk\\.img is open by process ${line(out, 'holder')} \\(sleep\\): stop it first`);
  notConverted('mounted', 'a mount point \\(a file system or a bind mount is mounted there\\): convert the directory it comes from');
  notConverted('tmpfs', 'not on Btrfs \\(tmpfs\\)');
  notConverted('full', 'not enough free space for the copy \\(\\d+\\.\\d MiB free, \\d+\\.\\d MiB needed\\)');
  t.match(line(out, 'etc'), /^2 1 nocow: error: \/etc: refused: \/etc belongs to the system, never a target \(see SECURITY\.md\) \| $/);
  t.match(line(out, 'below-etc'), /^2 1 nocow: error: \/etc\/ssh: refused: \/etc and everything below it belongs to the system/);
  t.match(line(out, 'utf8'), /^2 1 nocow: error: PATH ".*\\ufffd": not valid UTF-8/);
  t.match(line(out, 'missing'), /^2 1 nocow: error: \S+\/nope: no such directory \| $/);
  t.match(line(out, 'file'), /^2 1 nocow: error: \S+\/a\.img: not a directory \| $/);
  t.match(line(out, 'dry'), /^0 0 {2}\| nocow: \S+\/good: would convert into a subvolume with \+C \(1 file, 2\.0 MiB to copy\)\|nocow: \S+\/subvol: nothing to do: already a subvolume\|$/);
  t.match(line(out, 'json-rc'), /^1 nocow: \S+\/busy: not converted: disk\.img is open by process \d+ \(sleep\): stop it first\|$/, 'a dry run exits 1 when something would be refused, and says why on stderr');
  t.match(out, /^nothing changed$/m, 'no refusal and no dry run changed anything (inodes, ctimes, sizes)');
  t.match(line(out, 'subvolume'), /^0 0 {2}\| nocow: \S+\/subvol: nothing to do: already a subvolume\|$/);
  t.match(line(out, 'released'), /^0 0 {2}\| nocow: \S+\/busy: converted into a subvolume with \+C \(2 files, 1\.0 MiB copied and verified\)\|$/, 'once the holder is gone, it converts');
  t.match(line(out, 'busy-after'), /^subvolume \S*C\S*$/);
  const json = JSON.parse(run.stdout.split('\n---\n')[1]!) as { version: number; dryRun: boolean; state: string; targets: unknown[] };
  t.match(json, {
    version: 1,
    dryRun: true,
    state: 'incomplete',
    targets: [
      { path: /\/good$/, name: null, result: 'would-convert', reason: null, files: 1, bytes: 2097152 },
      { path: /\/busy$/, name: null, result: 'refused', reason: /^disk\.img is open by process \d+ \(sleep\): stop it first$/, files: 0, bytes: 0 },
    ],
  });
});

t.test('GIVEN a raid1 Btrfs WHEN a directory is converted THEN it is refused by default (+C would drop the checksums), converted with --force-nocow, and a target declared nocow: false is converted without +C and without refusal', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    raid1: true,
    env: { NC },
    script: `${SETUP}
      A="$MNT/a"; mkdir "$A"; head -c 1M /dev/urandom >"$A/disk.img"
      C="$MNT/c"; mkdir "$C"; head -c 1M /dev/urandom >"$C/disk.img"
      nc convert "$A" >/dev/null 2>"$MNT/err"; echo "refused $? $(cat "$MNT/err") | $(subvol "$A")"
      nc convert --force-nocow "$A" >/dev/null; echo "forced $? $(subvol "$A") $(flags "$A") $(flags "$A/disk.img")"
      printf 'targets:\n  - { name: cow, path: "%s", nocow: false }\n' "$C" >"$MNT/decl.yaml"
      nc convert -c "$MNT/decl.yaml" "$C" >"$MNT/out"; echo "declared $? $(cat "$MNT/out") | $(subvol "$C") $(flags "$C") $(flags "$C/disk.img")"
      nc status -c "$MNT/decl.yaml" >/dev/null; echo "status $?"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.match(line(run.stdout, 'refused'), /^1 nocow: \S+\/a: not converted: the data profile is raid1: \+C would remove the checksums its self-healing needs \(--force-nocow overrides\) \| directory$/);
  t.match(line(run.stdout, 'forced'), /^0 subvolume \S*C\S* \S*C\S*$/);
  t.match(line(run.stdout, 'declared'), /^0 nocow: \S+\/c: converted into a subvolume \(1 file, 1\.0 MiB copied and verified\) \| subvolume -{22} -{22}$/, 'declared nocow: false: a subvolume, no +C, no refusal');
  t.equal(line(run.stdout, 'status'), '0', 'status: the declared target is as declared');
});

t.test('GIVEN the lock of the directory holding PATH WHEN another run holds it THEN convert waits for it, and converts once it is released; WHILE convert works THEN it holds it; on a terminal a progress bar shows the copy and the verification', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 1024,
    env: { NC },
    script: `${SETUP}
      A="$MNT/a"; mkdir "$A"; head -c 1M /dev/urandom >"$A/disk.img"
      # Another run holds the lock, as the shell library does (flock on the directory holding the target, fd 9), until convert says it waits.
      ( exec 9<"$MNT"; flock -x 9; : >"$MNT/locked"; exec sleep 60 ) & locker=$!
      trap 'kill $locker 2>/dev/null; wait' EXIT
      for i in $(seq 1 3000); do [ -e "$MNT/locked" ] && break; sleep 0.01; done
      ( $NC convert "$A" >"$MNT/out" 2>"$MNT/err"; echo $? >"$MNT/rc" ) & converter=$!
      for i in $(seq 1 600); do grep -q 'waiting for the lock' "$MNT/err" 2>/dev/null && break; sleep 0.05; done
      sleep 1; echo "while-held $(subvol "$A") $(leftovers "$A")"
      kill $locker; wait; trap - EXIT
      echo "waited $(cat "$MNT/rc") $(cat "$MNT/err") | $(cat "$MNT/out") | $(subvol "$A")"
      B="$MNT/b"; mkdir "$B"; fallocate -l 400M "$B/disk.img"
      # A pause hook: btrfs, as convert runs it to make the new subvolume (the lock held), waits for the
      # test to say go, so the lock is tried at the same point on every run, however busy the machine.
      real=$(readlink -f "$(command -v btrfs)"); cp "$real" "$MNT/btrfs.real"
      printf '#!/bin/sh\\n"%s" "$@" || exit\\ncase "$*" in "subvolume create -- %s.nocow-new") : >"%s/created"; until [ -e "%s/go" ]; do sleep 0.01; done ;; esac\\n' \\
        "$MNT/btrfs.real" "$B" "$MNT" "$MNT" >"$MNT/btrfs.shim"
      chmod 755 "$MNT/btrfs.shim"; mount --bind "$MNT/btrfs.shim" "$real"
      nc convert "$B" >/dev/null 2>&1 & converter=$!
      until [ -e "$MNT/created" ] || ! kill -0 $converter 2>/dev/null; do sleep 0.01; done
      flock -n -x "$MNT" true; echo "held $?"
      : >"$MNT/go"; wait $converter; echo "converted $? $(subvol "$B")"
      umount "$real"
      C="$MNT/c"; mkdir "$C"; head -c 48M /dev/urandom >"$C/disk.img"
      script -qfec "$NC convert '$C'" /dev/null >"$MNT/tty" </dev/null; echo "tty $?"
      # Frames are drawn over each other (cursor saved and restored): one line each.
      sed 's/\\x1b\\[[0-9;?]*[a-zA-Z]//g; s/\\x1b[78]//g; s/\\(copying\\|verifying\\|nocow:\\) /\\n\\1 /g' "$MNT/tty" | tr '\\r' '\\n' | grep -a '% |\\|^nocow:' | sed 's/^/bar /'`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(line(run.stdout, 'while-held'), 'directory a ', 'while another run holds the lock, convert has not begun: no copy beside the directory');
  t.match(line(run.stdout, 'waited'), /^0 nocow: waiting for the lock on \S+\/mnt \(another nocow run holds it; at most 5 minutes\) \| nocow: \S+\/a: converted into a subvolume with \+C \(1 file, 1\.0 MiB copied and verified\) \| subvolume$/, 'once it is released, convert converts');
  t.equal(line(run.stdout, 'held'), '1', 'flock -n on the directory holding PATH fails while convert copies');
  t.equal(line(run.stdout, 'converted'), '0 subvolume');
  t.equal(line(run.stdout, 'tty'), '0');
  const frames = run.stdout.split('\n').filter((l) => l.startsWith('bar '));
  t.ok(frames.length >= 4, `${frames.length} frames`);
  t.match(frames[0], /^bar copying \S+ 0% \| 0 B\/48\.0 MiB \| 0 B\/s \| disk\.img$/, 'the first frame names the file being copied');
  t.ok(frames.some((f) => /^bar copying \S+ \d+% \| \d+\.\d MiB\/48\.0 MiB \| \d+\.\d [KMG]iB\/s \| disk\.img$/.test(f)), 'copying: percentage, bytes, throughput, file');
  t.ok(frames.some((f) => /^bar verifying \S+ \d+% \| \d+\.\d MiB\/48\.0 MiB \| \d+\.\d [KMG]iB\/s \| disk\.img$/.test(f)), 'then verifying, the same');
  t.equal(frames.at(-1), `bar nocow: ${/^bar nocow: (\S+\/c):/.exec(frames.at(-1) ?? '')?.[1]}: converted into a subvolume with +C (1 file, 48.0 MiB copied and verified)`, 'then the line saying what was done');
});
