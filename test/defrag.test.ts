// nocow defrag on real Btrfs (issue 9, item 2; issue 14, item 4): a fio-fragmented image on a
// two-device raid1 drops below the threshold with its checksums kept (scrub repairs a corrupted copy
// afterwards); reflinked copies are left alone (the space used does not grow), by design (exit 0); a
// file some process writes is left for later; a partly preallocated image is defragmented once and
// then left as it is; a file defragmenting cannot bring under its threshold is recorded and not
// rewritten again until it changes; a compressed file stays compressed; and the generated units pass
// systemd-analyze verify. Hostile names: test/defrag-names.test.ts.
import t from 'tap';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const CLI = builtCli();
const NC = `node ${CLI}`;

// The fragmentation: fio's random 4 KiB writes (O_DIRECT, so each is an extent of its own) into an
// image preallocated and written whole, as a VM's disk is rewritten in place.
const COMMON = String.raw`
set +e  # each script records the exit statuses it asserts on
extents() { filefrag "$1" | sed -E 's/.*: ([0-9]+) extents? found/\1/'; }
flags() { lsattr -d "$1" | cut -d' ' -f1; }
sum() { sha256sum <"$1" | cut -c1-64; }
fragment() {  # PATH MIB SEED
  fallocate -l "$2M" "$1"
  fio --name=fill --filename="$1" --rw=write --bs=1M --size="$2M" --direct=1 --ioengine=psync --output=/dev/null
  fio --name=frag --filename="$1" --rw=randwrite --bs=4k --size="$2M" --io_size=16M --direct=1 --ioengine=psync \
    --randrepeat=1 --randseed="$3" --norandommap --output=/dev/null
}
data_used() { sync; btrfs filesystem df -b "$MNT" | sed -nE 's/^Data, [^:]*: total=[0-9]+, used=([0-9]+)$/\1/p'; }
run() {  # LABEL ARGS…: the built CLI; one line "LABEL rc ms" then LABEL.out and LABEL.err, newlines as |
  label=$1; shift; start=$(date +%s%N)
  $NC "$@" >"$MNT/$label.out" 2>"$MNT/$label.err"; rc=$?
  echo "$label $rc $(( ($(date +%s%N) - start) / 1000000 ))"
  echo "$label.out $(tr '\n' '|' <"$MNT/$label.out")"
  echo "$label.err $(tr '\n' '|' <"$MNT/$label.err")"
}
`;

/** The value of the line "KEY value" (the first one). */
function field(stdout: string, key: string): string {
  const line = stdout.split('\n').find((l) => l === key || l.startsWith(`${key} `));
  if (line === undefined) throw new Error(`no line "${key}" in:\n${stdout}`);
  return line.slice(key.length + 1);
}

/** A run's exit status, time, and output lines. */
function ran(stdout: string, label: string) {
  const [rc, ms] = field(stdout, label).split(' ').map(Number);
  const lines = (key: string) => field(stdout, `${label}.${key}`).split('|').filter(Boolean);
  return { rc, ms: ms!, out: lines('out'), err: lines('err') };
}

t.test('GIVEN a fio-fragmented image on a two-device raid1 declared with the default defrag: auto WHEN nocow defrag runs THEN it drops below the threshold with its checksums kept, and a second run has nothing to do', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    raid1: true,
    env: { NC },
    script: String.raw`${COMMON}
      D="$MNT/images"; mkdir "$D"
      printf 'targets:\n  - name: images\n    path: %s\n' "$D" >"$MNT/nocow.yaml"
      fragment "$D/disk.raw" 64 42
      echo "profile $(btrfs filesystem df "$MNT" | head -1)"
      echo "before $(extents "$D/disk.raw") $(sum "$D/disk.raw") $(flags "$D") $(flags "$D/disk.raw")"
      run first defrag -c "$MNT/nocow.yaml"
      echo "after $(extents "$D/disk.raw") $(sum "$D/disk.raw") $(flags "$D") $(flags "$D/disk.raw")"
      btrfs scrub start -B "$MNT" >"$MNT/scrub1" 2>&1; echo "scrub1 $? $(grep -c 'no errors found' "$MNT/scrub1")"
      # Checksums of the rewritten extents: one mirror of the file's first block corrupted, scrub repairs it from the other.
      sync  # btrfs-map-logical reads the chunk tree on disk
      block=$(filefrag -v "$D/disk.raw" | awk '$1 == "0:" { sub(/\.\./, "", $4); print $4 }')
      dev=$(btrfs filesystem show "$MNT" | awk '/devid/ { print $NF; exit }')
      phys=$(btrfs-map-logical -l $((block * 4096)) -b 4096 "$dev" 2>/dev/null | awk -v d="$dev" '$0 ~ "device " d "$" { print $6; exit }')
      echo "mapped $block $dev ${'$'}{phys:-none}"
      dd if=/dev/urandom of="$dev" bs=4096 count=1 seek=$((phys / 4096)) conv=notrunc oflag=direct status=none
      echo 3 >/proc/sys/vm/drop_caches
      btrfs scrub start -B "$MNT" >"$MNT/scrub2" 2>&1
      echo "scrub2 $(tr '\n' '|' <"$MNT/scrub2")"
      echo "repaired $(sum "$D/disk.raw")"
      run second defrag -c "$MNT/nocow.yaml"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.match(field(run.stdout, 'profile'), /^Data, RAID1:/);
  const [extentsBefore, sumBefore, dirBefore, fileBefore] = field(run.stdout, 'before').split(' ');
  const [extentsAfter, sumAfter, dirAfter, fileAfter] = field(run.stdout, 'after').split(' ');
  t.ok(Number(extentsBefore) > 1000, `fragmented: ${extentsBefore} extents`);
  const first = ran(run.stdout, 'first');
  t.equal(first.rc, 0, first.err.join('\n'));
  t.same(first.err, []);
  t.match(first.out, [new RegExp(`^nocow: \\S+/images/disk\\.raw: defragmented: extents ${extentsBefore} → ${extentsAfter} \\(64\\.0 MiB in \\d+\\.\\d s\\)$`)]);
  t.ok(Number(extentsAfter) <= 256, `below the threshold: ${extentsAfter} extents (${first.ms} ms)`);
  t.equal(sumAfter, sumBefore, 'the same bytes');
  for (const flags of [dirBefore, fileBefore, dirAfter, fileAfter]) t.notMatch(flags, /C/, 'no +C: copy-on-write and checksums kept');
  t.equal(field(run.stdout, 'scrub1'), '0 1', 'scrub clean');
  t.match(field(run.stdout, 'mapped'), /^\d+ \/dev\/loop\d+ \d+$/, 'the first block found on one device');
  t.match(field(run.stdout, 'scrub2'), /Error summary: +csum=1\|\s*Corrected: +1\|\s*Uncorrectable: +0\|/, 'a corrupted copy is repaired from its checksum');
  t.equal(field(run.stdout, 'repaired'), sumBefore);
  const second = ran(run.stdout, 'second');
  t.same(second, { ...second, rc: 0, err: [], out: ['nocow: 1 file at or below the threshold (256 extents per GiB, at least 256): left as it is'] });
});

t.test('GIVEN a fragmented image and its reflinked copy WHEN nocow defrag runs THEN both are named as skipped for being shared, by design (exit 0), and the space used does not grow; --force-shared unshares', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    raid1: true,
    env: { NC },
    script: String.raw`${COMMON}
      R="$MNT/copies"; mkdir "$R"
      fragment "$R/a.raw" 32 7
      cp --reflink=always "$R/a.raw" "$R/b.raw"
      echo "before $(data_used) $(extents "$R/a.raw") $(extents "$R/b.raw")"
      run shared defrag "$R"
      echo "after $(data_used) $(extents "$R/a.raw") $(extents "$R/b.raw")"
      run forced defrag --force-shared "$R/b.raw"
      echo "unshared $(data_used) $(extents "$R/a.raw") $(extents "$R/b.raw") $(cmp "$R/a.raw" "$R/b.raw" && echo same)"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const [usedBefore, aBefore, bBefore] = field(run.stdout, 'before').split(' ').map(Number);
  t.ok(aBefore! > 256 && aBefore === bBefore, `both fragmented alike: ${aBefore} extents`);
  const shared = ran(run.stdout, 'shared');
  t.equal(shared.rc, 0, 'skipped by design: no failure, so the timer unit does not fail every week');
  t.same(shared.out, []);
  t.match(shared.err, [
    new RegExp(`^nocow: \\S+/a\\.raw: skipped: ${aBefore} of its extents are shared with another file or a snapshot \\(a reflinked copy\\): defragmenting would unshare them, taking up to 32\\.0 MiB more space \\(--force-shared overrides\\)$`),
    /\/b\.raw: skipped: \d+ of its extents are shared/,
  ]);
  t.equal(shared.err.length, 2, 'each file named once');
  t.same(field(run.stdout, 'after').split(' ').map(Number), [usedBefore, aBefore, bBefore], 'the same space used, the same extents');
  const forced = ran(run.stdout, 'forced');
  t.equal(forced.rc, 0, forced.err.join('\n'));
  t.match(forced.out, [/\/b\.raw: defragmented: extents \d+ → \d+ /]);
  const [usedForced, aForced, bForced, same] = field(run.stdout, 'unshared').split(' ');
  t.ok(Number(usedForced) - usedBefore! >= 24 * 1024 * 1024, `unsharing takes the space again: ${usedBefore} → ${usedForced} bytes`);
  t.equal(Number(aForced), aBefore, 'the original is untouched');
  t.ok(Number(bForced) <= 256, `the copy is defragmented: ${bForced} extents`);
  t.equal(same, 'same');
});

t.test('GIVEN a file open for writing and one open for reading WHEN nocow defrag runs THEN the written one is skipped by design (exit 0), naming the process, and the read one defragmented (--json)', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`${COMMON}
      W="$MNT/w"; mkdir "$W"
      fragment "$W/written.raw" 32 3; fragment "$W/read.raw" 32 4
      exec 3<>"$W/written.raw" 4<"$W/read.raw"
      echo "pid $$"
      run busy defrag --json "$W"
      exec 3>&- 4<&-`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const busy = ran(run.stdout, 'busy');
  t.equal(busy.rc, 0, 'left for later by design: no failure');
  t.same(busy.err, [], '--json: no lines');
  const report = JSON.parse(busy.out.join('\n')) as { state: string; files: { path: string; result: string; reason: string | null; extentsBefore: number; extentsAfter: number | null }[] };
  t.equal(report.state, 'defragmented');
  const [read, written] = report.files;
  t.match(read, { path: /\/w\/read\.raw$/, result: 'defragmented', reason: null });
  t.ok(read!.extentsBefore > 256 && read!.extentsAfter! <= 256, `read: ${read!.extentsBefore} → ${read!.extentsAfter}`);
  t.match(written, {
    path: /\/w\/written\.raw$/,
    result: 'skipped',
    reason: `open for writing by process ${field(run.stdout, 'pid')} (bash): its writes would stall behind the defragmentation and fragment it again`,
    extentsAfter: null,
  });
});

// How fio, or qemu-img create -o preallocation=falloc followed by a guest's writes, leave an image: preallocated
// whole, then written in scattered 4 KiB blocks. Written where it was preallocated (in place), or, while a snapshot
// or a reflinked copy shares the preallocation, elsewhere (copy-on-write), as the image was: 4,365 unwritten
// ranges among 5,124 written extents, which defragmenting took from 9,485 to 8,740 extents as filefrag counts them,
// then 8,740 → 8,740 on every later run (here: 3,507 among 5,093, 8,600 → 7,027, then 7,027 → 7,027).
const PREALLOCATED = String.raw`
preallocated() {  # PATH SEED: 64 MiB preallocated (unless it is), then written in scattered 4 KiB blocks
  [ -e "$1" ] || fallocate -l 64M "$1"
  fio --name=scatter --filename="$1" --rw=randwrite --bs=4k --size=64M --io_size=24M --direct=1 --ioengine=psync \
    --randrepeat=1 --randseed="$2" --norandommap --output=/dev/null
}
written() { filefrag -v "$1" | awk '/^ *[0-9]+:/ { if ($0 ~ /unwritten/) u++; else w++ } END { print w + 0, u + 0 }'; }
layout() { filefrag -v "$1" | sed 1d | sha256sum | cut -c1-16; }  # where every extent lies
state() { echo "$1 $(written "$2") $(extents "$2") $(layout "$2") $(stat -c %Z.%z "$2" | tr ' ' _) $(sum "$2")"; }
`;

t.test('GIVEN partly preallocated images, written in place and written while a reflinked copy shared them WHEN nocow defrag runs again and again THEN the first run joins their written extents, and every later one changes nothing and says so', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: String.raw`${COMMON}${PREALLOCATED}
      P="$MNT/images"; mkdir "$P"
      preallocated "$P/inplace.raw" 9
      # A reflinked copy shares the preallocation as a snapshot would (and goes at once when removed).
      fallocate -l 64M "$P/cow.raw"; cp --reflink=always "$P/cow.raw" "$MNT/copy.raw"
      preallocated "$P/cow.raw" 9
      rm "$MNT/copy.raw"; sync
      for f in inplace cow; do state "$f.0" "$P/$f.raw"; done
      run first defrag "$P"
      for f in inplace cow; do state "$f.1" "$P/$f.raw"; done
      sleep 0.01  # a rewrite would show in the ctime
      run second defrag "$P"
      for f in inplace cow; do state "$f.2" "$P/$f.raw"; done
      run third defrag --json "$P"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const state = (key: string) => {
    const [written, unwritten, found, layout, ctime, sum] = field(run.stdout, key).split(' ');
    return { written: Number(written), unwritten: Number(unwritten), found: Number(found), layout, ctime, sum };
  };
  const first = ran(run.stdout, 'first');
  const second = ran(run.stdout, 'second');
  t.equal(first.rc, 0, first.err.join('\n'));
  t.same(first.err, []);
  for (const [i, name] of ['cow', 'inplace'].entries()) {
    const [before, after, again] = [0, 1, 2].map((n) => state(`${name}.${n}`));
    t.ok(before!.unwritten > 1000 && before!.written > before!.unwritten + 256, `${name}: ${before!.written} written extents among ${before!.unwritten} unwritten; filefrag counts ${before!.found}`);
    t.match(first.out[i], new RegExp(`^nocow: \\S+/images/${name}\\.raw: defragmented: extents ${before!.written} → ${after!.written} \\(64\\.0 MiB in \\d+\\.\\d s; not counting ${after!.unwritten} preallocated ranges never written\\)$`));
    t.ok(after!.written < before!.written - 256, `${name}: written extents joined: ${before!.written} → ${after!.written} (filefrag: ${before!.found} → ${after!.found})`);
    t.equal(after!.unwritten, before!.unwritten, `${name}: the preallocated ranges are left where they are`);
    t.equal(after!.sum, before!.sum, `${name}: the same bytes`);
    t.match(second.out[i], new RegExp(`^nocow: \\S+/images/${name}\\.raw: left as it is: its ${after!.written} written extents lie in \\d+ stretches, parted by ${after!.unwritten} preallocated ranges never written or by holes, which defragmenting leaves where they are: at best it would bring them down to \\d+, and its threshold, counting one per stretch, is \\d+$`));
    t.same(again, after, `${name}: the second run changes nothing: the same extents in the same places, the same ctime`);
  }
  t.equal(second.rc, 0);
  t.same(second.err, []);
  t.equal(second.out.length, 2);
  const third = ran(run.stdout, 'third');
  t.equal(third.rc, 0);
  const report = JSON.parse(third.out.join('\n')) as { state: string; files: { result: string; extentsBefore: number; unwrittenExtents: number; threshold: number }[] };
  t.equal(report.state, 'unchanged');
  t.match(report.files, [
    { result: 'no-gain', extentsBefore: state('cow.1').written, unwrittenExtents: state('cow.1').unwritten },
    { result: 'no-gain', extentsBefore: state('inplace.1').written, unwrittenExtents: state('inplace.1').unwritten },
  ]);
});

t.test('GIVEN a file defragmenting cannot bring under its threshold (extents already as large as btrfs makes them) WHEN nocow defrag runs again THEN it is not rewritten again until it changes, and says why', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: String.raw`${COMMON}
      B="$MNT/big"; mkdir "$B"
      head -c 200M /dev/zero | tr '\0' x >"$B/file.raw"; sync  # btrfs's extents hold at most 128 MiB
      record() { getfattr --absolute-names --only-values -n user.nocow-kit.defrag "$1" 2>/dev/null || echo none; }
      echo "before $(extents "$B/file.raw") $(record "$B/file.raw")"
      run first defrag --min-extents 1 "$B"
      echo "recorded $(record "$B/file.raw")"
      echo "after $(extents "$B/file.raw") $(stat -c %Z.%z "$B/file.raw" | tr ' ' _)"
      sleep 0.01
      run second defrag --min-extents 1 "$B"
      echo "again $(extents "$B/file.raw") $(stat -c %Z.%z "$B/file.raw" | tr ' ' _)"
      run dry defrag -n --min-extents 1 "$B"
      touch "$B/file.raw"  # a write would do the same: the record no longer holds
      run changed defrag -n --min-extents 1 "$B"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const [before, none] = field(run.stdout, 'before').split(' ');
  t.ok(Number(before) > 1, `${before} extents`);
  t.equal(none, 'none');
  const first = ran(run.stdout, 'first');
  t.equal(first.rc, 0, first.err.join('\n'));
  t.match(first.out, [/^nocow: \S+\/big\/file\.raw: defragmented: extents \d+ → (\d+) \(200\.0 MiB in \d+\.\d s\); still above its threshold \(1\): not tried again until it changes \(user\.nocow-kit\.defrag\)$/]);
  const [after, ctime] = field(run.stdout, 'after').split(' ');
  t.match(field(run.stdout, 'recorded'), new RegExp(`^extents=${after} size=209715200 mtime=\\d+ before=\\d+ at=\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`));
  const second = ran(run.stdout, 'second');
  t.equal(second.rc, 0);
  t.same(second.err, []);
  t.match(second.out, [new RegExp(`^nocow: \\S+/big/file\\.raw: left as it is: defragmenting it at \\S+ took it from \\d+ to ${after} written extents, still above its threshold; unchanged since, it is not tried again until it changes \\(user\\.nocow-kit\\.defrag\\)$`)]);
  t.equal(field(run.stdout, 'again'), `${after} ${ctime}`, 'not rewritten: the same extents, the same ctime');
  t.match(ran(run.stdout, 'dry').out, [/: left as it is: defragmenting it at /]);
  t.match(ran(run.stdout, 'changed').out, [/\/big\/file\.raw: would defragment: \d+ extents, more than 1 /], 'a file that changed is looked at afresh');
});

t.test('GIVEN a compressed file on a compress=zstd mount, fragmented, and defrag: on and auto targets on a single profile WHEN nocow defrag runs THEN the file is defragmented and stays compressed, and the auto target is skipped', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`${COMMON}
      mount -o remount,compress=zstd "$MNT"
      C="$MNT/logs"; A="$MNT/auto"; mkdir "$C" "$A"
      printf 'targets:\n  - {name: logs, path: %s, nocow: true, defrag: "on"}\n  - {name: auto, path: %s}\n' "$C" "$A" >"$MNT/nocow.yaml"
      { yes 'nocow-kit defragment test line, compressible' || true; } | head -c 32M >"$C/app.log"; sync
      fio --name=frag --filename="$C/app.log" --rw=randwrite --bs=4k --size=32M --io_size=4M --direct=1 --ioengine=psync \
        --buffer_pattern='"nocow-kit defragment test "' --randrepeat=1 --randseed=5 --norandommap --output=/dev/null
      sync
      compressed() { echo "$(extents "$1") $(filefrag -v "$1" | grep -c encoded) $(compsize "$1" | awk '$1 == "none" || $1 == "zstd" { printf "%s=%s ", $1, $4 }')"; }
      echo "before $(sum "$C/app.log") $(compressed "$C/app.log")"
      run declared defrag -c "$MNT/nocow.yaml"
      echo "after $(sum "$C/app.log") $(compressed "$C/app.log")"
      run redundant defrag --if-redundant "$C"
      run missing defrag "$MNT/nowhere"
      run ignored defrag --ignore-missing "$MNT/nowhere" "$C"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const [sumBefore, extentsBefore, encodedBefore, ...sizesBefore] = field(run.stdout, 'before').trim().split(' ');
  const [sumAfter, extentsAfter, encodedAfter, ...sizesAfter] = field(run.stdout, 'after').trim().split(' ');
  t.ok(Number(extentsBefore) > 512, `fragmented: ${extentsBefore} extents, ${encodedBefore} compressed; compsize ${sizesBefore.join(' ')}`);
  t.ok(sizesBefore.some((s) => /^none=/.test(s)), 'the 4 KiB rewrites are stored uncompressed');
  const declared = ran(run.stdout, 'declared');
  t.equal(declared.rc, 0, declared.err.join('\n'));
  t.match(declared.out, [
    new RegExp(`^nocow: \\S+/logs/app\\.log: defragmented: extents ${extentsBefore} → ${extentsAfter} \\(32\\.0 MiB in \\d+\\.\\d s; compressed with zstd \\(mount option compress=zstd:3\\)\\)$`),
  ]);
  t.same(declared.err, ['nocow: auto: skipped: defrag: auto, and the data profile is single: its files get +C instead, which keeps them from fragmenting (nocow migrate rewrites those that lack it)']);
  t.equal(sumAfter, sumBefore, 'the same bytes');
  // One compressed extent holds at most 128 KiB: 32 MiB stay 256 extents, every one "encoded".
  t.ok(Number(extentsAfter) <= 256 + 256 && Number(encodedAfter) >= 250, `compressed extents: ${encodedAfter} of ${extentsAfter}`);
  t.same(sizesAfter, ['zstd=32M'], `compsize: all of it zstd (before: ${sizesBefore.join(' ')})`);
  const redundant = ran(run.stdout, 'redundant');
  t.same(redundant, { ...redundant, rc: 0, out: [] });
  t.match(redundant.err, [/^nocow: \S+\/logs: skipped: the data profile is single, not redundant: there \+C keeps its files from fragmenting \(--if-redundant\)$/]);
  const missing = ran(run.stdout, 'missing');
  t.same(missing, { ...missing, rc: 2, out: [] });
  t.match(missing.err, [/^nocow: error: \S+\/nowhere: no such file or directory$/]);
  const ignored = ran(run.stdout, 'ignored');
  t.same(ignored, { ...ignored, rc: 0, out: ['nocow: 1 file at or below the threshold (256 extents per GiB, at least 256): left as it is'] });
  t.match(ignored.err, [/^nocow: \S+\/nowhere: skipped: does not exist$/]);
});

t.test('GIVEN a declaration with odd paths WHEN the defrag-timer units are generated THEN systemd-analyze verify accepts them, system and --user, and rejects a broken copy', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-units-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(
    join(dir, 'nocow.yaml'),
    [
      'targets:',
      `  - {name: vm, path: "/srv/vm images/$(touch /tmp/pwned)/it's 100%"}`,
      '  - {name: plain, path: /srv/plain, nocow: false}',
      '  - {name: off, path: /srv/off, nocow: false, defrag: "off"}',
      '  - {name: boxes, scope: user, path: "~/VM images/100% \\"x\\""}',
      '',
    ].join('\n'),
  );
  const generated = await execa('node', [CLI, 'generate', 'defrag-timer', 'user-defrag-timer', '-c', join(dir, 'nocow.yaml'), '-o', join(dir, 'out')], { reject: false });
  t.equal(generated.exitCode, 0, generated.stderr);
  const service = await readFile(join(dir, 'out/systemd/system/nocow-defrag.service'), 'utf8');
  t.match(service, /^ExecStart=\/usr\/bin\/nocow defrag --ignore-missing --if-redundant "\/srv\/vm images\/\$\$\(touch \/tmp\/pwned\)\/it's 100%%" "\/srv\/plain"$/m);
  t.notMatch(service, /\/srv\/off/, 'defrag: off is left out');
  const user = await readFile(join(dir, 'out/systemd/user/nocow-defrag.service'), 'utf8');
  t.match(user, /^ConditionPathIsDirectory=\|%h\/VM images\/100%% "x"$/m);
  t.match(user, /^ExecStart=\/usr\/bin\/nocow defrag --ignore-missing --if-redundant "%h\/VM images\/100%% \\"x\\""$/m);
  // verify checks that ExecStart's program exists and is executable, and that Documentation's man
  // page exists: /usr/bin/nocow is a stub running the built CLI, on an overlay of /usr/bin in this
  // test's own mount namespace (the host's /usr/bin is untouched), and MANPATH finds the built nocow(1).
  await writeFile(join(dir, 'stub'), `#!/bin/sh\nexec node '${CLI}' "$@"\n`);
  await chmod(join(dir, 'stub'), 0o755);
  const script = String.raw`
    set -u
    mkdir -p "$T/upper" "$T/work" "$T/man/man1" "$T/runtime" "$T/broken"
    cp "$T/stub" "$T/upper/nocow"
    cp "$CLI_DIR/../man/nocow.1" "$T/man/man1/"
    mount -t overlay overlay -o lowerdir=/usr/bin,upperdir="$T/upper",workdir="$T/work" /usr/bin || exit 9
    export MANPATH="$T/man" XDG_RUNTIME_DIR="$T/runtime"
    echo "stub $(/usr/bin/nocow --version)"
    cd "$T/out/systemd"
    systemd-analyze verify system/nocow-defrag.service system/nocow-defrag.timer; echo "system $?"
    systemd-analyze --user verify user/nocow-defrag.service user/nocow-defrag.timer; echo "user $?"
    sed 's/^ExecStart=.*/& "unbalanced/' system/nocow-defrag.service >"$T/broken/nocow-defrag.service"
    systemd-analyze verify "$T/broken/nocow-defrag.service" 2>"$T/broken.err"; echo "broken $? $(grep -c 'Unbalanced quoting' "$T/broken.err")"`;
  const verified = await execa('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script], {
    env: { T: dir, CLI_DIR: join(CLI, '..') },
    reject: false,
  });
  t.equal(verified.exitCode, 0, verified.stderr);
  t.equal(verified.stderr, '', 'verify says nothing about the generated units');
  t.match(field(verified.stdout, 'stub'), /^\d+\.\d+\.\d+/);
  t.equal(field(verified.stdout, 'system'), '0');
  t.equal(field(verified.stdout, 'user'), '0');
  t.equal(field(verified.stdout, 'broken'), '1 1', 'a broken unit fails verify: the check is not vacuous');
});
