#!/usr/bin/env bash
# The payoff, measured: fragmentation (extents) and random-write IOPS of a 1 GiB VM image
# under five layouts on one loop-mounted Btrfs:
#   cow       a plain copy-on-write directory
#   cow+defrag  the same, then one `btrfs filesystem defragment` (what a defrag timer does)
#   nocow-dir a +C directory
#   subvolume the +C subvolume the generated hook makes (nocow-apply.sh)
#   nocow-dir+snapshot  a +C directory inside a subvolume that was snapshotted after the image was made
# Each round runs the layouts in a rotated order (so none always goes first); the table is the
# median over rounds, and the ratio column is the median of per-round ratios to `cow`.
#
#   bench/payoff.sh [--rounds N] [--writes N] [--seconds S] [--json FILE]
#
# Needs root, fio, btrfs-progs, e2fsprogs (filefrag), a built dist/ (npm run build). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 WRITES=20000 SECONDS_IOPS=20 JSON=
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --writes) WRITES=$2; shift 2 ;;
    --seconds) SECONDS_IOPS=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    *) echo "usage: bench/payoff.sh [--rounds N] [--writes N] [--seconds S] [--json FILE]" >&2; exit 2 ;;
  esac
done
for tool in fio filefrag btrfs mkfs.btrfs unshare node; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (loop devices, mounts)" >&2; exit 1; }
[ -f dist/bin/nocow.js ] || { echo "bench: run npm run build first" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
truncate -s 8G "$WORK/btrfs.img"
mkfs.btrfs -q -f "$WORK/btrfs.img" >/dev/null
mkdir "$WORK/mnt"
printf 'targets:\n  - {name: vm, path: /subvolume/images}\n' >"$WORK/decl.yaml"
node dist/bin/nocow.js generate hook -c "$WORK/decl.yaml" -o "$WORK/hook" >/dev/null 2>&1

# Everything below runs in a private mount namespace: the mount (and its loop device) goes with it.
# shellcheck disable=SC2016 # the inner script is single-quoted on purpose: its variables expand in the inner bash
WORK=$WORK ROUNDS=$ROUNDS WRITES=$WRITES SECONDS_IOPS=$SECONDS_IOPS unshare --mount --propagation private bash -euo pipefail -c '
M=$WORK/mnt
mount -o loop "$WORK/btrfs.img" "$M"
LAYOUTS="cow cow+defrag nocow-dir subvolume nocow-dir+snapshot"
image() { # DIR: a 1 GiB image written in full, as a freshly installed VM disk
  dd if=/dev/zero of="$1/disk.img" bs=4M count=256 conv=fsync status=none
}
writes() { # IMAGE: $WRITES random 4 KiB direct writes, the same sequence every time
  fio --name=w --filename="$1" --rw=randwrite --bs=4k --direct=1 --ioengine=psync --number_ios="$WRITES" \
    --size=1G --randrepeat=1 --randseed=42 --norandommap --output=/dev/null
  sync
}
extents() { filefrag "$1" | sed -E "s/.*: ([0-9]+) extents? found/\1/"; }
iops() { # IMAGE: write IOPS over $SECONDS_IOPS s at iodepth 16
  fio --name=i --filename="$1" --rw=randwrite --bs=4k --direct=1 --ioengine=libaio --iodepth=16 --size=1G \
    --runtime="$SECONDS_IOPS" --time_based --randrepeat=1 --randseed=7 --output-format=json |
    node -e "let s=\"\";process.stdin.on(\"data\",d=>s+=d).on(\"end\",()=>console.log(Math.round(JSON.parse(s).jobs[0].write.iops)))"
}
setup() { # LAYOUT: make the directory, the image in it, and print the image path
  case $1 in
    cow | cow+defrag) mkdir -p "$M/plain"; image "$M/plain"; echo "$M/plain/disk.img" ;;
    nocow-dir) mkdir -p "$M/nocow"; chattr +C "$M/nocow"; image "$M/nocow"; echo "$M/nocow/disk.img" ;;
    subvolume)
      mkdir -p "$M/subvolume"
      sh "$WORK/hook/nocow-apply.sh" --root "$M" >/dev/null
      image "$M/subvolume/images"; echo "$M/subvolume/images/disk.img" ;;
    nocow-dir+snapshot)
      btrfs subvolume create "$M/parent" >/dev/null; mkdir "$M/parent/images"; chattr +C "$M/parent/images"
      image "$M/parent/images"; btrfs subvolume snapshot "$M/parent" "$M/parent-snap" >/dev/null
      echo "$M/parent/images/disk.img" ;;
  esac
}
teardown() {
  for s in "$M/parent-snap" "$M/parent" "$M/subvolume/images"; do
    [ ! -d "$s" ] || btrfs subvolume delete "$s" >/dev/null
  done
  rm -rf "$M/plain" "$M/nocow" "$M/subvolume"
  sync
}
set -- $LAYOUTS
for round in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round.
  shift_by=$(( (round - 1) % $# )); order="$*"
  for _ in $(seq 1 "$shift_by"); do order="${order#* } ${order%% *}"; done
  for layout in $order; do
    img=$(setup "$layout")
    writes "$img"
    [ "$layout" != cow+defrag ] || { btrfs filesystem defragment "$img"; sync; }
    echo "$round $layout extents $(extents "$img")"
    echo "$round $layout iops $(iops "$img")"
    echo "$round $layout extents-after-iops $(extents "$img")"
    teardown
  done
done
' | tee "$WORK/raw" >&2

node - "$WORK/raw" "${JSON:-}" "$WRITES" "$SECONDS_IOPS" <<'EOF'
const [raw, jsonOut, writes, seconds] = process.argv.slice(2);
const rows = require('fs').readFileSync(raw, 'utf8').trim().split('\n').map((l) => l.split(' '));
const layouts = ['cow', 'cow+defrag', 'nocow-dir', 'subvolume', 'nocow-dir+snapshot'];
const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const value = (round, layout, what) => Number(rows.find((r) => r[0] === round && r[1] === layout && r[2] === what)?.[3]);
const rounds = [...new Set(rows.map((r) => r[0]))];
const result = {};
for (const l of layouts) {
  const pick = (what) => rounds.map((r) => value(r, l, what));
  result[l] = {
    extents: median(pick('extents')),
    iops: median(pick('iops')),
    extentsAfterIops: median(pick('extents-after-iops')),
    iopsRatio: median(rounds.map((r) => value(r, l, 'iops') / value(r, 'cow', 'iops'))),
  };
}
if (jsonOut) require('fs').writeFileSync(jsonOut, JSON.stringify({ writes: Number(writes), seconds: Number(seconds), rounds: rounds.length, result }, null, 2));
console.log(`| layout | extents after ${Number(writes).toLocaleString('en')} random 4 KiB writes | write IOPS (iodepth 16, ${seconds} s) | × cow IOPS | extents after that |`);
console.log('|---|---|---|---|---|');
for (const l of layouts) {
  const r = result[l];
  console.log(`| ${l} | ${r.extents.toLocaleString('en')} | ${r.iops.toLocaleString('en')} | ${r.iopsRatio.toFixed(2)} | ${r.extentsAfterIops.toLocaleString('en')} |`);
}
EOF
