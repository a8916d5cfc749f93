// The copy engine (src/host/copy.ts) as nocow convert and nocow migrate use it, on real
// Btrfs: holes skipped and kept, preallocation kept, the copy read back from the disk (not from
// the page cache) once synced; convert's room for the copy checked once the data written
// meanwhile is on the disk; and a program either of them runs, killed by a signal, named so.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

const SETUP = String.raw`
nc() { $NC "$@"; }  # the built nocow (each run locks its own target's directory: no other test's run makes it wait)
blocks_at() {  # FILE BLOCK…: 4 KiB of random data at each 4 KiB block number
  local f=$1; shift
  node -e 'const fs = require("fs"), c = require("crypto"); const fd = fs.openSync(process.argv[1], "r+");
    for (const b of process.argv.slice(2)) fs.writeSync(fd, c.randomBytes(4096), 0, 4096, Number(b) * 4096);' "$f" "$@"
}
datasum() {  # FILE: the SHA-256 of its size and of its blocks that are not zeros with their offsets, reading its data only
  # (SEEK_DATA; sha256sum would read each GiB of holes for seconds): equal when the bytes are.
  python3 -c '
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
h, pos, zero = hashlib.sha256(str(size).encode()), 0, bytes(4096)
while pos < size:
    try:
        pos = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    end = os.lseek(fd, pos, os.SEEK_HOLE)
    while pos < end:
        data = os.pread(fd, min(1 << 20, end - pos), pos)
        for i in range(0, len(data), 4096):
            if data[i:i + 4096] != zero[:len(data[i:i + 4096])]:
                h.update(b"%d:" % (pos + i) + data[i:i + 4096])
        pos += len(data)
print(h.hexdigest()[:16])' "$1"
}
describe() {  # FILE: checksum (datasum), size, bytes allocated
  echo "$(datasum "$1") $(stat -c %s "$1") $(( $(stat -c %b "$1") * 512 ))"
}
unwritten() {  # FILE: MiB preallocated and not written (filefrag -v -b1048576: "ext: logical: physical: length: expected: flags")
  filefrag -v -b1048576 "$1" | sed -E -n 's/^ *[0-9]+: *[0-9]+\.\. *[0-9]+: *[0-9]+\.\. *[0-9]+: *([0-9]+):.*unwritten.*/\1/p' | awk '{ n += $1 } END { print n + 0 }'
}
subvol() { btrfs subvolume show "$1" >/dev/null 2>&1 && echo subvolume || echo directory; }
leftovers() { local b; b=$(basename "$1"); ls -A "$(dirname "$1")" | grep -Fx -e "$b" -e "$b.nocow-new" -e "$b.nocow-old" | tr '\n' ' '; }
snap() {  # DIR: inodes, ctimes, sizes and checksums below it, and what is beside it
  { find "$1" -printf '%i %C@ %s %p\n' | sort; find "$1" -type f -exec sha256sum {} + | sort; leftovers "$1"; } | sha256sum | cut -c1-16
}
# migrate gives the original a second name while it works (src/migrate/migrate.ts, step 1), which
# moves its ctime: what it keeps of a file it refuses is everything else.
fsnap() {  # FILE: inode, mode, owner, links, size, mtime, checksum, flags, and what is beside it
  { stat -c '%i %f %u %g %h %s %Y' "$1"; sha256sum <"$1"; lsattr -d "$1" | cut -d' ' -f1; ls -A "$(dirname "$1")"; } | sha256sum | cut -c1-16
}
# The programs convert runs are found in this PATH first (src/host/run.ts).
tool() { PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v "$1"; }
set +e  # each script records the exit statuses it asserts on
`;

const lineOf = (stdout: string) => (key: string) => stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);

t.test('GIVEN a 4 GiB sparse file holding three blocks, a 2 GiB one whose 600 scattered blocks a copy in whole MiB would not have room for, a sparse file with a preallocated range, and a file of holes alone WHEN converted THEN the holes are not read (the whole run reads under 64 MiB), each file has the same bytes and about the same allocation as before, and the preallocated range stays unwritten', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: String.raw`${SETUP}
      P="$MNT/images"; mkdir "$P"
      truncate -s 4G "$P/huge.img"; blocks_at "$P/huge.img" 25600 512000 1048575
      truncate -s 2G "$P/scattered.img"; blocks_at "$P/scattered.img" $(seq 0 768 $((599 * 768)))
      truncate -s 64M "$P/mixed.img"; head -c 1M /dev/urandom | dd of="$P/mixed.img" bs=1M seek=10 conv=notrunc status=none
      fallocate -o 32M -l 8M "$P/mixed.img"
      truncate -s 1G "$P/void.img"
      sync; echo "free $(( $(stat -f -c '%a * %S' "$P") ))"
      for f in huge scattered mixed void; do echo "$f before $(describe "$P/$f.img")"; done
      strace -f -qq -e trace=read,pread64 -o "$MNT/trace" $NC convert "$P" >"$MNT/out" 2>"$MNT/err"; echo "rc $? $(cat "$MNT/out") | $(grep -v 'waiting for the lock' "$MNT/err")"
      echo "read $(awk -F'= ' '/^[0-9]+ +(read|pread64)\(/ && $NF ~ /^[0-9]+$/ { n += $NF } END { print n + 0 }' "$MNT/trace")"
      sync
      for f in huge scattered mixed void; do echo "$f after $(describe "$P/$f.img")"; done
      echo "mixed-unwritten $(unwritten "$P/mixed.img")"
      echo "state $(subvol "$P") $(leftovers "$P")"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const line = lineOf(run.stdout);
  t.match(line('rc'), /^0 nocow: \S+\/images: converted into a subvolume with \+C \(4 files, 7\.1 GiB copied and verified\) \| $/);
  t.equal(line('state'), 'subvolume images ', 'a subvolume, nothing left beside it');
  // A copy in whole MiB (a MiB written for each block) would need 600 MiB: more than is free.
  t.ok(Number(line('free')) < 600 << 20, `${line('free')} bytes free: no room for 600 MiB`);
  for (const f of ['huge', 'scattered', 'mixed', 'void']) {
    const [before, after] = [line(`${f} before`)!.split(' '), line(`${f} after`)!.split(' ')];
    t.same(after.slice(0, 2), before.slice(0, 2), `${f}: same bytes (SHA-256 of its data) and size`);
    const [was, is] = [Number(before[2]), Number(after[2])];
    t.ok(is <= was + (64 << 10) && is * 2 >= was, `${f}: ${is} bytes allocated, ${was} before`);
  }
  t.ok(Number(line('mixed-unwritten')) >= 7, `mixed: ${line('mixed-unwritten')} MiB of its 8 MiB preallocated range still unwritten`);
  const read = Number(line('read'));
  t.ok(read < 64 << 20, `${read} bytes read by the whole run (programs and modules included) for 3.4 MiB of data in 7.1 GiB`);
});

t.test('GIVEN a block of the copy changed on the disk once the copy is synced, while the page cache may still hold what was written WHEN convert, and migrate, read the copy back THEN they read the disk, see the difference and refuse: the original is unchanged and the copy removed', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: String.raw`${SETUP}
      dev=$(findmnt -no SOURCE "$MNT")
      readback() {  # TRACE COPY: which open of COPY (counting those strace saw) reads it: the first for reading, after it was made
        grep -F "openat(AT_FDCWD, \"$2\"," "$1" | grep -n 'O_RDONLY' | head -1 | cut -d: -f1
      }
      corrupt() {  # COPY: its first block changed on the device, under the file system and its page cache
        local logical physical
        # btrfs-map-logical reads the trees on the device: a commit first (an fsync writes only the log).
        sync -f "$MNT"
        logical=$(filefrag -v -b1 "$1" | awk '$1 == "0:" { sub(/\.\.$/, "", $4); print $4 }')
        physical=$(btrfs-map-logical -l "$logical" -b 4096 "$dev" | awk '/^mirror 1 / { print $6; exit }')
        [ -n "$physical" ] || return 1
        head -c 4096 /dev/urandom | dd of="$dev" bs=4096 seek=$((physical / 4096)) count=1 oflag=direct conv=notrunc status=none
      }
      faulty() {  # NAME COPY N COMMAND…: COMMAND paused (SIGSTOP) at its Nth open of COPY, COPY corrupted, COMMAND continued
        local name=$1 copy=$2 n=$3 tracer; shift 3
        strace -qq -o "$MNT/$name.trace" -P "$copy" -e trace=openat -e inject=openat:signal=STOP:when=$n "$@" >"$MNT/$name.out" 2>"$MNT/$name.err" & tracer=$!
        for i in $(seq 1 600); do grep -q '^--- stopped by SIGSTOP' "$MNT/$name.trace" 2>/dev/null && break; sleep 0.1; done
        echo "$name-paused $(grep -c '^--- stopped by SIGSTOP' "$MNT/$name.trace") $(grep '^openat(' "$MNT/$name.trace" | tail -1 | grep -o 'O_RDONLY[A-Z_|]*')"
        corrupt "$copy"; echo "$name-corrupted $?"
        kill -CONT $(ps -o pid= --ppid $tracer); wait $tracer
        echo "$name $? $(cat "$MNT/$name.out") | $(grep -v 'waiting for the lock' "$MNT/$name.err")"
      }
      # Which open reads the copy back, from a run of each on a file like it.
      for x in ref images; do mkdir "$MNT/$x"; head -c 4M /dev/urandom >"$MNT/$x/disk.img"; echo x >"$MNT/$x/small"; done; sync
      strace -qq -o "$MNT/ref.trace" -P "$MNT/ref.nocow-new/disk.img" -e trace=openat $NC convert "$MNT/ref" >/dev/null 2>&1
      n=$(readback "$MNT/ref.trace" "$MNT/ref.nocow-new/disk.img"); echo "convert-open $n"
      P="$MNT/images"; before=$(snap "$P")
      faulty convert "$P.nocow-new/disk.img" "$n" $NC convert "$P"
      [ "$(snap "$P")" = "$before" ] && echo "convert-unchanged"; echo "convert-state $(subvol "$P") $(leftovers "$P")"
      for x in ref2 cow; do mkdir "$MNT/$x"; head -c 4M /dev/urandom >"$MNT/$x/disk.img"; done; sync
      strace -qq -o "$MNT/ref2.trace" -P "$MNT/ref2/.disk.img.nocow-migrate" -e trace=openat $NC migrate "$MNT/ref2/disk.img" >/dev/null 2>&1
      n=$(readback "$MNT/ref2.trace" "$MNT/ref2/.disk.img.nocow-migrate"); echo "migrate-open $n"
      D="$MNT/cow"; before=$(fsnap "$D/disk.img")
      faulty migrate "$D/.disk.img.nocow-migrate" "$n" $NC migrate "$D/disk.img"
      [ "$(fsnap "$D/disk.img")" = "$before" ] && echo "migrate-unchanged"; echo "migrate-left $(ls -A "$D" | tr '\n' ' ')"
      :`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const line = lineOf(run.stdout);
  for (const tool of ['convert', 'migrate']) {
    t.ok(Number(line(`${tool}-open`)) >= 2, `${tool}: the read-back is open ${line(`${tool}-open`)} of the copy`);
    t.match(line(`${tool}-paused`), /^1 O_RDONLY\|O_DIRECT\|O_NOATIME\|O_CLOEXEC$/, `${tool}: paused once, as it opened the copy to read it back (O_DIRECT)`);
    t.equal(line(`${tool}-corrupted`), '0');
  }
  t.match(line('convert'), /^1 {2}\| nocow: \S+\/images: not converted: verifying the copy: the copy is not the same \(disk\.img: the copy does not read back the same bytes\); \S+\/images is unchanged$/, 'convert refuses, in one line');
  t.match(run.stdout, /^convert-unchanged$/m, 'the directory as it was: inodes, ctimes, sizes, bytes');
  t.equal(line('convert-state'), 'directory images ', 'the copy removed');
  t.match(line('migrate'), /^1 {2}\| nocow: \S+\/cow\/disk\.img: not rewritten: the copy does not read back the same; original kept$/, 'migrate refuses, in one line');
  t.match(run.stdout, /^migrate-unchanged$/m, 'the original as it was');
  t.equal(line('migrate-left'), 'disk.img ', 'the copy removed');
});

t.test('GIVEN a directory just written (its data not yet on the disk) on a file system without room for a second copy of it WHEN converted THEN it is refused up front in one line, before anything is copied: nothing changed', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: String.raw`${SETUP}
      P="$MNT/data"; mkdir "$P"; echo x >"$P/small"; sync
      # statfs counts data out of the free space once it is written back: until then (seconds) it looks free.
      for try in 1 2 3; do
        head -c 280M /dev/urandom >"$P/fresh.img"
        free=$(( $(stat -f -c '%a * %S' "$MNT") ))
        [ "$free" -gt $(( 340 << 20 )) ] && break
        rm "$P/fresh.img"; sync
      done
      echo "looks-free $free"
      before=$(snap "$P")
      nc convert "$P" >"$MNT/out" 2>"$MNT/err"; echo "rc $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      [ "$(snap "$P")" = "$before" ] && echo "unchanged"; echo "state $(subvol "$P") $(leftovers "$P")"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const line = lineOf(run.stdout);
  t.ok(Number(line('looks-free')) > 340 << 20, `statfs showed ${line('looks-free')} bytes free while the data was not yet written back: room for the copy, seemingly`);
  t.match(line('rc'), /^1 1 nocow: \S+\/data: not converted: not enough free space for the copy \(\d+\.\d MiB free, 296\.\d MiB needed\) \| $/, 'refused up front, one line');
  t.match(run.stdout, /^unchanged$/m, 'nothing changed');
  t.equal(line('state'), 'directory data ', 'no copy was begun');
});

t.test('GIVEN a program convert or migrate runs killed by a signal WHEN they report it THEN the line names the signal, and nothing is changed', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`${SETUP}
      P="$MNT/data"; mkdir "$P"; head -c 1M /dev/urandom >"$P/disk.img"; sync; before=$(snap "$P")
      image() { echo "$(describe "$P/disk.img") $(stat -c '%i %Y' "$P/disk.img") $(lsattr -d "$P/disk.img" | cut -d' ' -f1) $(ls -A "$P" | tr '\n' ' ')"; }
      killing() {  # PROGRAM COMMAND…: COMMAND, with every run of PROGRAM killed by SIGKILL as it starts
        local p; p=$(tool "$1"); shift
        strace -f -qq -o /dev/null -P "$p" -e trace=execve -e inject=execve:signal=KILL "$@"
      }
      killing cp $NC convert "$P" >/dev/null 2>"$MNT/err"; echo "cp $? $(grep -v 'waiting for the lock' "$MNT/err")"
      killing flock $NC convert "$P" >/dev/null 2>"$MNT/err"; echo "flock $? $(cat "$MNT/err")"
      [ "$(snap "$P")" = "$before" ] && echo "unchanged"; echo "state $(subvol "$P") $(leftovers "$P")"
      image=$(image)
      killing cp $NC migrate "$P" >/dev/null 2>"$MNT/err"; echo "migrate $? $(cat "$MNT/err")"
      [ "$(image)" = "$image" ] && echo "unchanged by migrate"
      :`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const line = lineOf(run.stdout);
  t.match(line('cp'), /^1 nocow: \S+\/data: not converted: copying the attributes: cp was killed by SIGKILL; \S+\/data is unchanged$/);
  t.match(line('flock'), /^1 nocow: \S+\/data: not converted: cannot lock \S+\/mnt: flock was killed by SIGKILL$/);
  t.match(run.stdout, /^unchanged$/m);
  t.equal(line('state'), 'directory data ');
  t.match(line('migrate'), /^1 nocow: \S+\/data\/disk\.img: not rewritten: cp was killed by SIGKILL$/);
  t.match(run.stdout, /^unchanged by migrate$/m);
});
