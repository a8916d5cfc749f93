// nocow revert on real Btrfs: +C files rewritten as copy-on-write files with every byte, hole
// and attribute kept, +C off the directory (a subvolume stays one), open files refused, a kill
// mid-copy or at the rename leaves the original intact and a re-run finishes, bad input one
// line with nothing changed.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

/** A +C subvolume D holding +C files made there: what migrate or apply leaves, and what revert undoes. */
const SETUP = String.raw`
D=$MNT/images
btrfs subvolume create "$D" >/dev/null; chattr +C "$D"
describe() {  # PATH: what revert must keep
  echo "$(sha256sum <"$1" | cut -d' ' -f1) $(stat -c '%s %a %u:%g %y' "$1") $(getfattr -n user.origin --only-values "$1" 2>/dev/null)"
}
flags() { lsattr -d "$1" | cut -d' ' -f1; }
snapshot() {  # everything revert could change below D: names, inodes, flags, data, times
  (cd "$D" && find . -printf '%p %i %s %b %T@ %C@\n' | sort; lsattr -R -a . 2>/dev/null | sort; find . -type f -exec sha256sum {} + | sort)
}
set +e  # each script records the exit statuses it asserts on
`;

const btrfs = (script: string, extra: { sizeMiB?: number } = {}) => runInFs({ fs: 'btrfs', script: SETUP + script, env: { NC }, ...extra });
const lineOf = (stdout: string, key: string) => stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);

t.test('GIVEN a +C subvolume with dense, large, sparse and preallocated +C files WHEN reverted THEN each is copy-on-write with the same bytes, attributes, holes and allocation, the directory has no +C and is still a subvolume, and a second run has nothing to do', async (t) => {
  const run = await btrfs(String.raw`
    head -c 20000 /dev/urandom >"$D/small.conf"; chmod 0640 "$D/small.conf"; chown 107:36 "$D/small.conf"
    setfattr -n user.origin -v kept "$D/small.conf"; touch -d '2020-05-06 07:08:09' "$D/small.conf"
    head -c 12582912 /dev/urandom >"$D/large.img"
    truncate -s 64M "$D/sparse.img"; head -c 1048576 /dev/urandom | dd of="$D/sparse.img" bs=1M seek=10 conv=notrunc status=none
    fallocate -l 16M "$D/prealloc.img"; head -c 1048576 /dev/urandom | dd of="$D/prealloc.img" bs=1M conv=notrunc status=none
    mkdir "$D/sub"; head -c 5000 /dev/urandom >"$D/sub/inner.dat"
    sync
    for f in small.conf large.img sparse.img prealloc.img sub/inner.dat; do echo "before $f $(describe "$D/$f") $(stat -c %b "$D/$f") $(flags "$D/$f")"; done
    echo "dirs-before $(flags "$D") $(flags "$D/sub")"
    $NC revert "$D" >"$MNT/out" 2>"$MNT/err"; echo "rc $?"; sync
    for f in small.conf large.img sparse.img prealloc.img sub/inner.dat; do echo "after $f $(describe "$D/$f") $(stat -c %b "$D/$f") $(flags "$D/$f")"; done
    echo "dirs-after $(flags "$D") $(flags "$D/sub")"
    btrfs subvolume show "$D" >/dev/null 2>&1 && echo "subvolume yes"
    head -c 100 /dev/urandom >"$D/new.file"; echo "new-file $(flags "$D/new.file")"; rm "$D/new.file"
    echo "left $(ls -A "$D" | tr '\n' ' ')"
    sed 's/^/out /' "$MNT/out"; sed 's/^/err /' "$MNT/err"
    $NC revert "$D"; echo "again $?"`);
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(lineOf(run.stdout, 'rc'), '0');
  for (const f of ['small.conf', 'large.img', 'sparse.img', 'prealloc.img', 'sub/inner.dat']) {
    const before = lineOf(run.stdout, `before ${f}`)!.split(' ');
    const after = lineOf(run.stdout, `after ${f}`)!.split(' ');
    t.match(before.at(-1), /C/, `${f}: +C before`);
    t.notMatch(after.at(-1), /C/, `${f}: no +C after (copy-on-write, with checksums)`);
    t.same(after.slice(0, -2), before.slice(0, -2), `${f}: same sha256, size, mode, owner, mtime, xattr`);
    const [blocksBefore, blocksAfter] = [Number(before.at(-2)), Number(after.at(-2))];
    if (f === 'sparse.img') t.ok(blocksAfter * 512 <= 2 * 1024 * 1024, `sparse: ${blocksAfter * 512} bytes allocated for 1 MiB of data in 64 MiB (holes kept)`);
    if (f === 'prealloc.img') t.ok(blocksAfter * 512 >= 16 * 1024 * 1024, `preallocated: ${blocksAfter * 512} bytes allocated, as before (${blocksBefore * 512})`);
  }
  t.match(lineOf(run.stdout, 'dirs-before'), /^\S*C\S* \S*C\S*$/);
  t.match(lineOf(run.stdout, 'dirs-after'), /^[^C\s]+ [^C\s]+$/, 'the directory and the one below it lost +C');
  t.equal(lineOf(run.stdout, 'subvolume'), 'yes', 'still a subvolume');
  t.match(lineOf(run.stdout, 'new-file'), /^[^C]+$/, 'a new file there is copy-on-write');
  t.equal(lineOf(run.stdout, 'left'), 'large.img prealloc.img small.conf sparse.img sub ', 'no temporary name left');
  t.match(run.stdout, /^out nocow: \S*\/images: cleared \+C on the directory \(new files copy-on-write\)$/m);
  t.match(run.stdout, /^out nocow: \S*\/images\/large\.img: rewritten as copy-on-write, with checksums \(12\.0 MiB; extents \d+ → \d+\)$/m);
  t.notMatch(run.stdout, /^err /m, 'nothing on stderr');
  t.match(run.stdout, /^nocow: nothing to revert: no file has \+C\nagain 0$/m, 'a second run has nothing to do');
});

for (const [where, inject] of [
  ['mid-copy (at its third data write)', '-e trace=pwrite64 -e inject=pwrite64:signal=KILL:when=3'],
  ['at the rename over the original', '-f -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=KILL'],
] as const) {
  t.test(`GIVEN a revert killed ${where} WHEN it is run again THEN the original was intact meanwhile and the re-run finishes the job`, async (t) => {
    const run = await btrfs(String.raw`
      head -c 12582912 /dev/urandom >"$D/disk.img"; setfattr -n user.origin -v kept "$D/disk.img"; sync
      echo "before $(describe "$D/disk.img")"
      rc=0; strace -qq -o /dev/null ${inject} $NC revert "$D" >/dev/null 2>&1 || rc=$?
      echo "killed $rc"
      echo "meanwhile $(describe "$D/disk.img") $(flags "$D/disk.img")"
      $NC revert "$D" >/dev/null; echo "rerun $?"
      echo "after $(describe "$D/disk.img") $(flags "$D/disk.img") $(flags "$D")"
      echo "left $(ls -A "$D" | tr '\n' ' ')"`);
    t.equal(run.exitCode, 0, run.stderr);
    t.equal(lineOf(run.stdout, 'killed'), '137', 'killed by SIGKILL');
    const before = lineOf(run.stdout, 'before')!;
    t.match(lineOf(run.stdout, 'meanwhile'), new RegExp(`^${before.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\S*C\\S*$`), 'the original: same bytes and attributes, still +C');
    t.equal(lineOf(run.stdout, 'rerun'), '0');
    t.match(lineOf(run.stdout, 'after'), new RegExp(`^${before.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} [^C\\s]+ [^C\\s]+$`), 'rewritten without +C, same bytes and attributes; the directory without +C');
    t.equal(lineOf(run.stdout, 'left'), 'disk.img ', 'nothing of the killed run left');
  });
}

t.test('GIVEN a +C file some process holds open WHEN reverted THEN it is refused naming the process and left intact; --force rewrites it', async (t) => {
  const run = await btrfs(String.raw`
    head -c 1048576 /dev/urandom >"$D/busy.img"; before=$(describe "$D/busy.img")
    exec 3<"$D/busy.img"
    $NC revert "$D" >/dev/null 2>"$MNT/err"; echo "rc $?"; echo "err $(cat "$MNT/err")"
    echo "flags $(flags "$D/busy.img")"; [ "$(describe "$D/busy.img")" = "$before" ] && echo intact
    $NC revert --force "$D" >/dev/null 2>&1; echo "forced $? $(flags "$D/busy.img")"
    exec 3<&-`);
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(lineOf(run.stdout, 'rc'), '1');
  t.match(lineOf(run.stdout, 'err'), /^nocow: \S*\/busy\.img: not rewritten: open by process \d+ \(--force overrides\)$/);
  t.match(lineOf(run.stdout, 'flags'), /C/, 'still +C');
  t.match(run.stdout, /^intact$/m);
  t.match(lineOf(run.stdout, 'forced'), /^0 [^C]+$/);
});

t.test('GIVEN --dry-run and --json WHEN revert runs THEN the dry run lists the directory and the files and changes nothing, and --json reports each', async (t) => {
  const run = await btrfs(String.raw`
    head -c 1048576 /dev/urandom >"$D/a.img"; head -c 3000 /dev/urandom >"$D/b.txt"
    before=$(snapshot)
    $NC revert -n "$D" >"$MNT/dry"; echo "dry $?"
    $NC revert -n --json "$D" >"$MNT/dry.json"; echo "dry-json $?"
    [ "$(snapshot)" = "$before" ] && echo unchanged
    $NC revert --json "$D" >"$MNT/real.json"; echo "real $?"
    sed 's/^/dryline /' "$MNT/dry"
    echo "=== dry.json"; cat "$MNT/dry.json"; echo "=== real.json"; cat "$MNT/real.json"`);
  t.equal(run.exitCode, 0, run.stderr);
  const [head, dryJson, realJson] = run.stdout.split(/\n=== \S+\n/);
  t.match(head, /^dry 0\ndry-json 0\nunchanged\nreal 0$/m, 'exit 0 and nothing changed by the dry runs');
  t.match(head, /^dryline nocow: \S*\/images: would clear \+C on the directory \(new files copy-on-write\)\ndryline nocow: \S*\/images\/a\.img: would rewrite \(1\.0 MiB, \d+ extents?\)\ndryline nocow: \S*\/images\/b\.txt: would rewrite \(2\.9 KiB, 1 extent\)$/m);
  const dry = JSON.parse(dryJson!);
  t.match(dry, { version: 1, dryRun: true, state: 'would-rewrite', skipped: [], leftovers: [] });
  t.match(dry.directories, [{ path: /\/images$/, result: 'would-clear', reason: null }]);
  t.match(dry.files, [
    { path: /\/a\.img$/, result: 'would-rewrite', reason: null, sizeBytes: 1048576, extentsAfter: null },
    { path: /\/b\.txt$/, result: 'would-rewrite', reason: null, sizeBytes: 3000 },
  ]);
  const real = JSON.parse(realJson!);
  t.match(real, { version: 1, dryRun: false, state: 'rewritten' });
  t.match(real.directories, [{ path: /\/images$/, result: 'cleared', reason: null }]);
  t.match(real.files, [
    { path: /\/a\.img$/, result: 'rewritten', reason: null, extentsAfter: Number },
    { path: /\/b\.txt$/, result: 'rewritten', reason: null },
  ]);
});

t.test('GIVEN bad input (a system path among the operands, a missing path, a flag with a value, PATH with --profile) WHEN revert runs THEN one line, exit 2, nothing changed', async (t) => {
  const run = await btrfs(String.raw`
    head -c 4096 /dev/urandom >"$D/a.img"
    before=$(snapshot)
    for args in "$D /usr" "/etc" "$D $MNT/nope" "--dry-run=yes $D" "--force-nocow $D" "-p libvirt $D"; do
      # shellcheck disable=SC2086 # the words of each case are meant to be split
      $NC revert $args >"$MNT/out" 2>"$MNT/err"; rc=$?
      echo "case $rc $(wc -l <"$MNT/err") $(wc -c <"$MNT/out") $(head -1 "$MNT/err")"
    done
    [ "$(snapshot)" = "$before" ] && echo unchanged`);
  t.equal(run.exitCode, 0, run.stderr);
  const cases = run.stdout.split('\n').filter((l) => l.startsWith('case '));
  t.equal(cases.length, 6);
  const expected = [
    /^case 2 1 0 nocow: error: \/usr: refused: \/usr belongs to the system/,
    /^case 2 1 0 nocow: error: \/etc: refused: \/etc belongs to the system/,
    /^case 2 1 0 nocow: error: \S*\/nope: no such file or directory$/,
    /^case 2 1 0 nocow: error: option '--dry-run' doesn't allow an argument/,
    /^case 2 1 0 nocow: error: unknown option '--force-nocow'/,
    /^case 2 1 0 nocow: error: give PATHs or --profile\/--config, not both: without PATH, revert takes the declared targets' directories$/,
  ];
  cases.forEach((line, i) => t.match(line, expected[i]!, `case ${i}: one line, exit 2, nothing on stdout`));
  t.match(run.stdout, /^unchanged$/m, 'the directory and its file as they were (+C kept)');
});

t.test('GIVEN a terminal WHEN revert rewrites a file THEN a progress bar shows bytes and throughput; without a terminal there is none', async (t) => {
  const run = await btrfs(String.raw`
    head -c 24M /dev/urandom >"$D/a.img"; head -c 24M /dev/urandom >"$D/b.img"
    script -qfec "$NC revert $D/a.img" /dev/null >"$MNT/tty" </dev/null; echo "tty $?"
    $NC revert "$D/b.img" >"$MNT/pipe" 2>&1; echo "pipe $?"
    echo "dir $(flags "$D") files $(flags "$D/a.img") $(flags "$D/b.img")"
    tr '\r' '\n' <"$MNT/tty" | grep -a 'MiB/s' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
    echo "---"; cat "$MNT/pipe"`);
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^tty 0\npipe 0\n/);
  t.match(lineOf(run.stdout, 'dir'), /^\S*C\S* files [^C\s]+ [^C\s]+$/, 'the files lost +C; file PATHs leave their directory\'s +C alone');
  t.match(run.stdout, /\d+% \| (\d+ B|\d+\.\d [KMG]iB)\/24\.0 MiB \| (\d+ B|\d+\.\d [KMG]iB)\/s \| .*a\.img/, 'bar: percentage, bytes, throughput, file');
  t.match(run.stdout, /---\nnocow: \S*b\.img: rewritten as copy-on-write, with checksums \(24\.0 MiB; extents \d+ → \d+\)\n?$/, 'no bar when output is not a terminal');
});

t.test('GIVEN a block of the copy changed on the disk once the copy is synced WHEN revert reads the copy back THEN it reads the disk, sees it and refuses: the original unchanged, still +C, the copy removed', async (t) => {
  const run = await btrfs(String.raw`
    dev=$(findmnt -no SOURCE "$MNT")
    readback() {  # TRACE COPY: which open of COPY (counting those strace saw) reads it back: the first for reading
      grep -F "openat(AT_FDCWD, \"$2\"," "$1" | grep -n 'O_RDONLY' | head -1 | cut -d: -f1
    }
    corrupt() {  # COPY: its first block changed on the device, under the file system and its page cache
      local logical physical
      sync -f "$MNT"  # btrfs-map-logical reads the trees on the device
      logical=$(filefrag -v -b1 "$1" | awk '$1 == "0:" { sub(/\.\.$/, "", $4); print $4 }')
      physical=$(btrfs-map-logical -l "$logical" -b 4096 "$dev" | awk '/^mirror 1 / { print $6; exit }')
      [ -n "$physical" ] || return 1
      head -c 4096 /dev/urandom | dd of="$dev" bs=4096 seek=$((physical / 4096)) count=1 oflag=direct conv=notrunc status=none
    }
    R=$MNT/ref; mkdir "$R"; chattr +C "$R"; head -c 4M /dev/urandom >"$R/disk.img"; head -c 4M /dev/urandom >"$D/disk.img"; sync
    strace -qq -o "$MNT/ref.trace" -P "$R/.disk.img.nocow-migrate" -e trace=openat $NC revert "$R/disk.img" >/dev/null 2>&1
    n=$(readback "$MNT/ref.trace" "$R/.disk.img.nocow-migrate"); echo "open $n"
    copy=$D/.disk.img.nocow-migrate; before="$(stat -c %i "$D/disk.img") $(describe "$D/disk.img")"
    strace -qq -o "$MNT/run.trace" -P "$copy" -e trace=openat -e inject=openat:signal=STOP:when=$n $NC revert "$D/disk.img" >"$MNT/out" 2>"$MNT/err" & tracer=$!
    for i in $(seq 1 600); do grep -q '^--- stopped by SIGSTOP' "$MNT/run.trace" 2>/dev/null && break; sleep 0.1; done
    echo "paused $(grep -c '^--- stopped by SIGSTOP' "$MNT/run.trace") $(grep '^openat(' "$MNT/run.trace" | tail -1 | grep -o 'O_RDONLY[A-Z_|]*')"
    corrupt "$copy"; echo "corrupted $?"
    kill -CONT $(ps -o pid= --ppid $tracer); wait $tracer
    echo "revert $? $(cat "$MNT/out") | $(cat "$MNT/err")"
    [ "$(stat -c %i "$D/disk.img") $(describe "$D/disk.img")" = "$before" ] && echo unchanged
    echo "state $(flags "$D/disk.img") $(ls -A "$D" | tr '\n' ' ')"`);
  t.equal(run.exitCode, 0, run.stderr);
  t.ok(Number(lineOf(run.stdout, 'open')) >= 2, `the read-back is open ${lineOf(run.stdout, 'open')} of the copy`);
  t.match(lineOf(run.stdout, 'paused'), /^1 O_RDONLY\|O_DIRECT\|O_NOATIME\|O_CLOEXEC$/, 'paused once, as it opened the copy to read it back (O_DIRECT)');
  t.equal(lineOf(run.stdout, 'corrupted'), '0');
  t.match(lineOf(run.stdout, 'revert'), /^1 {2}\| nocow: \S+\/images\/disk\.img: not rewritten: the copy cannot be read back from the disk \(I\/O error\); original kept$/, 'revert refuses, in one line: the copy fails its checksum');
  t.match(run.stdout, /^unchanged$/m, 'the original as it was: inode, bytes, mode, times, xattr');
  t.match(lineOf(run.stdout, 'state'), /^\S*C\S* disk\.img $/, 'still +C, the copy removed');
});

t.test('GIVEN a +C subdirectory made immutable (chattr +i) below PATH WHEN reverted (and dry-run first) THEN that directory keeps +C, as it keeps its files, with one line on stderr naming it, its file is left as it was, the rest is reverted, and the exit status is 1', async (t) => {
  const run = await btrfs(String.raw`
    mkdir "$D/frozen"; head -c 9000 /dev/urandom >"$D/frozen/kept.dat"; head -c 7000 /dev/urandom >"$D/free.dat"
    chattr +i "$D/frozen"; sync
    echo "kept-before $(describe "$D/frozen/kept.dat") $(flags "$D/frozen/kept.dat")"
    $NC revert --dry-run "$D" >"$MNT/dry.out" 2>"$MNT/dry.err"; echo "dry-rc $?"
    echo "dry-dirs $(flags "$D") $(flags "$D/frozen")"
    sed 's/^/dryerr /' "$MNT/dry.err"
    $NC revert "$D" >"$MNT/out" 2>"$MNT/err"; echo "rc $?"
    echo "kept-after $(describe "$D/frozen/kept.dat") $(flags "$D/frozen/kept.dat")"
    echo "dirs $(flags "$D") $(flags "$D/frozen") $(flags "$D/free.dat")"
    echo "left $(ls -A "$D/frozen" | tr '\n' ' ')"
    sed 's/^/out /' "$MNT/out"; sed 's/^/err /' "$MNT/err"
    chattr -i "$D/frozen"`);
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(lineOf(run.stdout, 'dry-rc'), '1', 'the dry run: exit 1 as the run will');
  t.match(lineOf(run.stdout, 'dry-dirs'), /^\S*C\S* \S*C\S*$/, 'the dry run changed no flag');
  const dryErr = run.stdout.split('\n').filter((l) => l.startsWith('dryerr ')).map((l) => l.slice(7));
  t.ok(dryErr.some((l) => /frozen: \+C not cleared on the directory: it is immutable \(chattr \+i\): left alone$/.test(l)), `the dry run says what the run will:\n${dryErr.join('\n')}`);
  t.equal(lineOf(run.stdout, 'rc'), '1', 'exit 1: a directory kept its +C');
  t.equal(lineOf(run.stdout, 'kept-after'), lineOf(run.stdout, 'kept-before'), 'the file in the frozen directory: the same bytes and attributes, still +C');
  const [top, frozen, free] = lineOf(run.stdout, 'dirs')!.split(' ');
  t.notMatch(top, /C/, 'PATH lost +C');
  t.match(frozen, /i/);
  t.match(frozen, /C/, 'the immutable directory kept +C');
  t.notMatch(free, /C/, 'the file outside it was reverted');
  t.equal(lineOf(run.stdout, 'left'), 'kept.dat ', 'nothing left over in the frozen directory');
  const err = run.stdout.split('\n').filter((l) => l.startsWith('err ')).map((l) => l.slice(4));
  t.ok(err.some((l) => /frozen: \+C not cleared on the directory: it is immutable \(chattr \+i\): left alone$/.test(l)), `one line names the directory:\n${err.join('\n')}`);
});
