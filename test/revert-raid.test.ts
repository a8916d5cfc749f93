// Why nocow revert exists, on a real two-device raid1 Btrfs: a +C file has no data checksums, so
// a scrub cannot tell its good copy of a block from a bad one and the two copies stay different;
// once reverted (copy-on-write, with checksums), a block corrupted on one device is found by the
// scrub and repaired from the other, and the file reads back with its checksum.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

t.test('GIVEN a raid1 Btrfs with +C files, status naming nocow revert WHEN the declared target is reverted and a block of each file is corrupted on one device THEN scrub repairs the reverted file (both copies equal, same sha256) and cannot repair the +C one', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    raid1: true,
    env: { NC },
    script: String.raw`
      set +e
      dev=$(findmnt -no SOURCE "$MNT")
      D=$MNT/images; btrfs subvolume create "$D" >/dev/null; chattr +C "$D"
      K=$MNT/kept; mkdir "$K"; chattr +C "$K"
      head -c 1048576 /dev/urandom >"$D/disk.img"; head -c 1048576 /dev/urandom >"$K/nocow.img"; sync
      sum=$(sha256sum <"$D/disk.img" | cut -d' ' -f1)
      echo "profile $(btrfs filesystem df "$MNT" | head -1)"
      printf 'targets:\n  - { name: vm, path: %s }\n' "$D" >"$MNT/d.yaml"
      $NC status --json -c "$MNT/d.yaml" >"$MNT/status1"; echo "status-before $?"
      # Without PATH: the declared target, where +C is not expected (raid1, redundancy: keep-checksums).
      $NC revert -c "$MNT/d.yaml" >/dev/null 2>"$MNT/err"; echo "revert $? $(cat "$MNT/err")"
      $NC status --json -c "$MNT/d.yaml" >"$MNT/status2"; echo "status-after $?"
      echo "status1 $(tr -d '\n' <"$MNT/status1")"; echo "status2 $(tr -d '\n' <"$MNT/status2")"
      echo "flags $(lsattr -d "$D/disk.img" | cut -d' ' -f1) $(lsattr -d "$K/nocow.img" | cut -d' ' -f1)"
      mirrors() {  # FILE: "PHYSICAL DEVICE" of each copy of FILE's first block
        local logical
        # btrfs-map-logical reads the trees on the device: a commit first.
        sync -f "$MNT"
        logical=$(filefrag -v -b1 "$1" | awk '$1 == "0:" { sub(/\.\.$/, "", $4); print $4 }')
        btrfs-map-logical -l "$logical" -b 4096 "$dev" | awk '/^mirror [12] / { print $6, $8 }'
      }
      copies() {  # FILE: how many different copies of its first block the two devices hold (1: equal)
        mirrors "$1" | while read -r physical device; do
          dd if="$device" iflag=direct bs=4096 skip=$((physical / 4096)) count=1 status=none | sha256sum
        done | sort -u | wc -l
      }
      corrupt() {  # FILE: its first block's first copy overwritten on its device, under the file system
        mirrors "$1" | head -1 | { read -r physical device
          head -c 4096 /dev/urandom | dd of="$device" bs=4096 seek=$((physical / 4096)) count=1 oflag=direct conv=notrunc status=none; }
      }
      echo "mirrors $(mirrors "$D/disk.img" | wc -l) $(mirrors "$K/nocow.img" | wc -l)"
      corrupt "$D/disk.img"; corrupt "$K/nocow.img"
      echo "copies-before $(copies "$D/disk.img") $(copies "$K/nocow.img")"
      btrfs scrub start -B "$MNT" >"$MNT/scrub" 2>&1; echo "scrub $?"
      echo "copies-after $(copies "$D/disk.img") $(copies "$K/nocow.img")"
      # The file read from the disk again, not from what the page cache may hold.
      dd if="$D/disk.img" iflag=nocache count=0 status=none
      [ "$(sha256sum <"$D/disk.img" | cut -d' ' -f1)" = "$sum" ] && echo "same sha256"
      btrfs scrub start -B "$MNT" >"$MNT/scrub2" 2>&1; echo "scrub-again $?"
      sed 's/^/scrub1 /' "$MNT/scrub"; sed 's/^/scrub2 /' "$MNT/scrub2"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  t.match(line('profile'), /^Data, RAID1:/);
  t.equal(line('status-before'), '1', 'status: a deviation');
  const deviations = (key: string) => (JSON.parse(line(key)!) as { targets: { deviations: string[] }[] }).targets[0]!.deviations;
  t.same(
    deviations('status1').map((d) => d.replace(/ \S+\/images /, ' D ')),
    ['1 file with +C on the raid1 data profile: no checksums, so a scrub cannot repair it from the other copy (nocow revert D rewrites it with checksums and clears +C on the directory)'],
    'status says so and names nocow revert',
  );
  t.equal(line('revert'), '0 ', 'the declared target reverted, nothing on stderr');
  t.equal(line('status-after'), '0', 'status: as declared');
  t.same(deviations('status2'), [], 'nothing left to revert');
  t.match(line('flags'), /^[^C\s]+ \S*C\S*$/, 'the reverted file has no +C; the other keeps it');
  t.equal(line('mirrors'), '2 2', 'each block has two copies');
  t.equal(line('copies-before'), '2 2', 'the corruption: each file has two different copies of its first block');
  t.equal(line('copies-after'), '1 2', 'the scrub repaired the reverted file; the +C file, without checksums, keeps a bad copy');
  t.match(run.stdout, /^same sha256$/m, 'the reverted file reads back as it was written');
  t.match(run.stdout, /^scrub1 .*csum=1\b/m, 'the scrub found the checksum error');
  t.match(run.stdout, /^scrub1 \s*Corrected:\s+1$/m, 'and corrected it');
  t.match(run.stdout, /^scrub1 \s*Uncorrectable:\s+0$/m);
  t.match(run.stdout, /^scrub2 .*no errors found/m, 'a second scrub finds nothing left');
});
