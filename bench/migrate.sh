#!/bin/bash
# nocow migrate against the copy that ends in the same state, on the same loop-mounted Btrfs
# (issue 10, item 1). Run as root after `npm run build`; needs fio (installed with apt-get when
# missing), btrfs-progs, util-linux, coreutils. Prints a Markdown table for BENCHMARKS.md.
#
#   A = nocow migrate FILE            (copy without reflinks, verified, attributes, rename)
#   B = cp --reflink=never FILE TMP && sync && mv TMP FILE && sync   (the same end state, unverified)
#   V = cp --reflink=never FILE TMP && sync && drop caches && cmp FILE TMP && mv TMP FILE && sync
#       (the same end state, verified from the disk as migrate verifies: the fair anchor for it)
#
# The loop device reads and writes its image file with O_DIRECT (losetup --direct-io=on), so the
# image is not kept in the host's page cache and every read of the Btrfs reaches the disk; with
# LOOP_DIO=off it is a plain loop device, whose image the host caches (reading back is then
# nearly free: how BENCHMARKS.md's first migrate figure was taken).
#
# Each round makes a fresh fragmented CoW image (a sequential copy of a random 1 GiB file, then
# fio's 20,000 random 4 KiB writes with an fsync every 64: about 37,000 extents), drops the
# caches, and times A or B on it; A and B alternate (A first in odd rounds, B first in even
# ones; with V, the order of A, B and V rotates). The table gives the median times and the median
# of the per-round ratios B/A and V/A (A's speed relative to B's: 1.00 is as fast, 0.90 is the
# target). Also: a 2 GiB sparse file holding 4 MiB
# of data (against B, and against nocow migrate of a dense 4 MiB file of the same data: the
# holes must cost nothing), and 5,000 files of 4 KiB (migrate, and migrate --dry-run).
#
#   ROUNDS=7 bench/migrate.sh      (default 5 rounds per case)
#   CASES=fragmented bench/migrate.sh   (some of: fragmented sparse small; default all)
#   OLD_DIST=DIR bench/migrate.sh       (the fragmented case also times O = another build's
#                                        nocow migrate, DIR/bin/nocow.js: an engine change measured)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
SMALL_FILES=${SMALL_FILES:-5000}
LOOP_DIO=${LOOP_DIO:-on}
CASES=" ${CASES:-fragmented sparse small} "

[ "$(id -u)" = 0 ] || { echo "bench: needs root (loop devices, mounts, drop_caches)" >&2; exit 1; }
[ -f dist/bin/nocow.js ] || { echo "bench: run npm run build first" >&2; exit 1; }
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v fio >/dev/null; then
  echo "bench: installing fio" >&2
  apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fio >&2
fi
# A private mount namespace: the file system is seen by this script only, and goes with it.
if [ -z "${NOCOW_BENCH_NS:-}" ]; then
  exec unshare --mount --propagation private env NOCOW_BENCH_NS=1 bash "$0" "$@"
fi

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/nocow-bench-migrate.XXXXXX")
M=$WORK/mnt
LOOP=
trap 'umount "$M" 2>/dev/null || true; [ -z "$LOOP" ] || losetup -d "$LOOP" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir "$M"
truncate -s 8G "$WORK/fs.img"
mkfs.btrfs -q -f "$WORK/fs.img" >/dev/null
LOOP=$(losetup --direct-io="$LOOP_DIO" --find --show "$WORK/fs.img")
[ "$(cat "/sys/block/${LOOP#/dev/}/loop/dio")" = "$([ "$LOOP_DIO" = on ] && echo 1 || echo 0)" ] ||
  { echo "bench: $LOOP: direct I/O is not $LOOP_DIO (the image's file system refuses O_DIRECT?)" >&2; exit 1; }
mount "$LOOP" "$M"
NC="node $ROOT/dist/bin/nocow.js"

log() { echo "bench: $*" >&2; }
now() { date +%s%N; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
extents() { filefrag "$1" | sed -E 's/.*: ([0-9]+) extents? found/\1/'; }

# Where the images live: a directory with +C, holding files that were made copy-on-write.
mkdir "$M/cow" "$M/images"
chattr +C "$M/images"
head -c 1G /dev/urandom >"$M/cow/random.img"
sync

# A fresh fragmented CoW image at $M/images/disk.img, and its checksum in $SUM.
fresh_fragmented() {
  rm -f "$M/images/disk.img"
  cp --reflink=never "$M/cow/random.img" "$M/cow/disk.img"
  fio --name=fragment --filename="$M/cow/disk.img" --rw=randwrite --bs=4k --number_ios=20000 --size=1G \
    --ioengine=psync --fsync=64 --randrepeat=1 --norandommap --output=/dev/null
  mv "$M/cow/disk.img" "$M/images/disk.img" # a rename: still copy-on-write
  SUM=$(openssl sha256 <"$M/images/disk.img" 2>/dev/null || sha256sum <"$M/images/disk.img")
  EXTENTS=$(extents "$M/images/disk.img")
  drop
}

# A fresh 2 GiB sparse CoW file holding 4 MiB of data (four 1 MiB pieces), and its checksum in
# $SUM; beside it a dense 4 MiB CoW file of the same data.
fresh_sparse() {
  local i
  rm -f "$M/images/sparse.img" "$M/images/dense.img"
  truncate -s 2G "$M/cow/sparse.img"
  head -c 4M /dev/urandom >"$M/cow/dense.img"
  for i in 0 1 2 3; do
    dd if="$M/cow/dense.img" of="$M/cow/sparse.img" bs=1M skip=$i seek=$((100 + 600 * i)) count=1 conv=notrunc status=none
  done
  mv "$M/cow/sparse.img" "$M/cow/dense.img" "$M/images/"
  SUM=$(openssl sha256 <"$M/images/sparse.img" 2>/dev/null || sha256sum <"$M/images/sparse.img")
  drop
}

# SMALL_FILES fresh CoW files of 4 KiB in $M/images/small.
fresh_small() {
  rm -rf "$M/images/small" "$M/cow/small"
  mkdir "$M/cow/small"
  head -c $((SMALL_FILES * 4096)) /dev/urandom | (cd "$M/cow/small" && split -b 4096 -a 5 -d - f)
  mv "$M/cow/small" "$M/images/small"
  drop
}

A() { $NC migrate "$1" >/dev/null; }
B() { cp --reflink=never "$1" "$1.tmp" && sync && mv "$1.tmp" "$1" && sync; }
V() { cp --reflink=never "$1" "$1.tmp" && sync && echo 3 >/proc/sys/vm/drop_caches && cmp -- "$1" "$1.tmp" && mv "$1.tmp" "$1" && sync; }
O() { node "$OLD_DIST/bin/nocow.js" migrate "$1" >/dev/null; }
# The sparse file's data alone: nocow migrate of the dense 4 MiB file.
D4() { A "$M/images/dense.img"; }

# One case: NAME FRESH FILE SIDE…, SIDE a function run on FILE, the first A (nocow migrate);
# the order of the sides rotates from round to round, FRESH before each. Prints the times of the
# sides, in ns, one line per round, to $WORK/NAME.
run_case() {
  local name=$1 fresh=$2 file=$3 round k i n t0 sum line msg
  shift 3
  local sides=("$@") times=()
  n=${#sides[@]}
  : >"$WORK/$name"
  for round in $(seq 1 "$ROUNDS"); do
    for k in $(seq 0 $((n - 1))); do
      $fresh
      i=$(((k + round - 1) % n)) # round 1: A B V, round 2: B V A, … (after FRESH, which may use an i of its own)
      t0=$(now)
      "${sides[$i]}" "$file"
      times[i]=$(($(now) - t0))
      if [ "$i" = 0 ]; then
        # Still the same bytes, now +C (checked outside the timing).
        sum=$(openssl sha256 <"$file" 2>/dev/null || sha256sum <"$file")
        [ "$sum" = "$SUM" ] || { echo "bench: $name: nocow migrate changed the data" >&2; exit 1; }
        lsattr "$file" | cut -d' ' -f1 | grep -q C || { echo "bench: $name: no +C after nocow migrate" >&2; exit 1; }
      fi
    done
    line="${times[*]}"
    echo "$line" >>"$WORK/$name"
    msg="$name round $round (load $(cut -d' ' -f1 /proc/loadavg)):"
    for i in $(seq 0 $((n - 1))); do
      msg="$msg ${sides[$i]} $(secs "${times[$i]}") s"
      [ "$i" = 0 ] || msg="$msg (${sides[$i]}/A $(awk -v a="${times[0]}" -v b="${times[$i]}" 'BEGIN { printf "%.2f", b / a }'))"
    done
    log "$msg"
  done
}

col() { cut -d' ' -f"$2" "$WORK/$1" | median; } # NAME N: the median of column N
ratio() { awk -v c="$2" '{ printf "%.4f\n", $c / $1 }' "$WORK/$1" | median; } # NAME N: the median of column N / A
per_round() { awk -v c="$2" '{ printf "%s%.2f", (NR > 1 ? " " : ""), $c / $1 }' "$WORK/$1"; }

row() { # NAME LABEL: one table row from $WORK/NAME (A and one other side)
  printf '| %s | %s | %s | %.2f× | %s |\n' "$2" "$(secs "$(col "$1" 1)")" "$(secs "$(col "$1" 2)")" "$(ratio "$1" 2)" "$(per_round "$1" 2)"
}

row3() { # NAME LABEL: one table row from $WORK/NAME (A, B and V)
  printf '| %s | %s | %s | %s | %.2f× | %.2f× | %s | %s |\n' "$2" "$(secs "$(col "$1" 1)")" "$(secs "$(col "$1" 2)")" "$(secs "$(col "$1" 3)")" \
    "$(ratio "$1" 2)" "$(ratio "$1" 3)" "$(per_round "$1" 2)" "$(per_round "$1" 3)"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ $CASES == *" fragmented "* ]]; then
  fresh_fragmented
  log "1 GiB image: $EXTENTS extents"
  FRAG_EXTENTS=$EXTENTS
  if [ -n "${OLD_DIST:-}" ]; then run_case fragmented fresh_fragmented "$M/images/disk.img" A B V O
  else run_case fragmented fresh_fragmented "$M/images/disk.img" A B V; fi
fi
if [[ $CASES == *" sparse "* ]]; then
  run_case sparse fresh_sparse "$M/images/sparse.img" A B
  run_case sparse-vs-data fresh_sparse "$M/images/sparse.img" A D4
fi

# Small files: A = migrate of the directory, D = migrate --dry-run, C = cp -a --reflink=never of
# the directory + sync (the copy alone, a floor: no rename, no check).
if [[ $CASES == *" small "* ]]; then
  : >"$WORK/small"
  for round in $(seq 1 "$ROUNDS"); do
    fresh_small
    t0=$(now); $NC migrate -n "$M/images/small" >/dev/null; D=$(($(now) - t0))
    drop
    t0=$(now); cp -a --reflink=never "$M/images/small" "$M/cow/small.copy" && sync; C=$(($(now) - t0))
    rm -rf "$M/cow/small.copy"; drop
    t0=$(now); $NC migrate "$M/images/small" >/dev/null; A=$(($(now) - t0))
    left=$(find "$M/images/small" -type f -exec lsattr {} + | grep -vc '^[^ ]*C' || true)
    [ "$left" = 0 ] || { echo "bench: small: $left files without +C after nocow migrate" >&2; exit 1; }
    echo "$A $D $C" >>"$WORK/small"
    log "small round $round (load $(cut -d' ' -f1 /proc/loadavg)): migrate $(secs "$A") s, dry-run $(secs "$D") s, cp -a + sync $(secs "$C") s"
  done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

if [ "$LOOP_DIO" = on ]; then
  LOOP_TEXT="a Btrfs of 8 GiB on a loop device with direct I/O (losetup --direct-io=on: its image file, on $(stat -f -c %T "$WORK"), bypasses the host's page cache, so every read reaches the disk)"
else
  LOOP_TEXT="a Btrfs of 8 GiB on a plain loop device (its image file, on $(stat -f -c %T "$WORK"), is cached by the host: reads may come from the host's page cache)"
fi
cat <<EOF

\`bench/migrate.sh\` ($ROUNDS rounds per case, the sides' order rotating, caches dropped before each).
$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Linux $(uname -r),
Node $(node --version | tr -d v), $(cp --version | head -n1), $(btrfs --version | head -n1), $(fio --version);
$LOOP_TEXT, nocow-kit $(node -p "require('$ROOT/package.json').version") ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)).
Load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after.
EOF
if [[ $CASES == *" fragmented "* ]]; then
  cat <<EOF

A = \`nocow migrate FILE\`; B = \`cp --reflink=never FILE TMP && sync && mv TMP FILE && sync\`;
V = \`cp --reflink=never FILE TMP && sync && echo 3 >/proc/sys/vm/drop_caches && cmp FILE TMP && mv TMP FILE && sync\`
(a copy verified against the disk, as migrate verifies it).

| case | A: nocow migrate (s, median) | B: cp + sync + mv + sync (s, median) | V: cp, sync, drop caches, cmp, mv, sync (s, median) | A's speed, B/A (median of rounds) | A's speed, V/A (median of rounds) | B/A per round | V/A per round |
|---|---|---|---|---|---|---|---|
$(row3 fragmented "1 GiB fragmented CoW image ($FRAG_EXTENTS extents)")
EOF
  if [ -n "${OLD_DIST:-}" ]; then
    cat <<EOF

O = the same \`nocow migrate FILE\` by another build ($OLD_DIST), in the same rounds: O $(secs "$(col fragmented 4)") s (median), A's speed O/A $(printf '%.2f' "$(ratio fragmented 4)")× (median of rounds; per round $(per_round fragmented 4)).
EOF
  fi
fi
if [[ $CASES == *" sparse "* ]]; then
  cat <<EOF

| case | A: nocow migrate (s, median) | B: cp + sync + mv + sync (s, median) | A's speed, B/A (median of rounds) | B/A per round |
|---|---|---|---|---|
$(row sparse "2 GiB sparse file, 4 MiB of data")

The sparse file against its data alone, both by nocow migrate (A = the 2 GiB sparse file, B = a
dense 4 MiB file of the same data; B/A near 1.00: the holes cost nothing):

| case | A: sparse 2 GiB (s, median) | B: dense 4 MiB (s, median) | B/A (median of rounds) | B/A per round |
|---|---|---|---|---|
$(row sparse-vs-data "nocow migrate, 4 MiB of data")
EOF
fi
if [[ $CASES == *" small "* ]]; then
  sa=$(cut -d' ' -f1 "$WORK/small" | median)
  sd=$(cut -d' ' -f2 "$WORK/small" | median)
  sc=$(cut -d' ' -f3 "$WORK/small" | median)
  cat <<EOF

| $SMALL_FILES files of 4 KiB | median (s) | per file (ms) |
|---|---|---|
| \`nocow migrate DIR\` | $(secs "$sa") | $(awk -v t="$sa" -v n="$SMALL_FILES" 'BEGIN { printf "%.2f", t / 1e6 / n }') |
| \`nocow migrate --dry-run DIR\` | $(secs "$sd") | $(awk -v t="$sd" -v n="$SMALL_FILES" 'BEGIN { printf "%.2f", t / 1e6 / n }') |
| \`cp -a --reflink=never DIR COPY && sync\` (the copy alone) | $(secs "$sc") | $(awk -v t="$sc" -v n="$SMALL_FILES" 'BEGIN { printf "%.2f", t / 1e6 / n }') |
EOF
fi
