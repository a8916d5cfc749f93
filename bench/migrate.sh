#!/bin/bash
# nocow migrate against the copy that ends in the same state, on the same loop-mounted Btrfs
# (issue 10, item 1). Run as root after `npm run build`; needs fio (installed with apt-get when
# missing), btrfs-progs, util-linux, coreutils. Prints a Markdown table for BENCHMARKS.md.
#
#   A = nocow migrate FILE            (copy without reflinks, verified, attributes, rename)
#   B = cp --reflink=never FILE TMP && sync && mv TMP FILE && sync   (the same end state, unverified)
#
# Each round makes a fresh fragmented CoW image (a sequential copy of a random 1 GiB file, then
# fio's 20,000 random 4 KiB writes with an fsync every 64: about 37,000 extents), drops the
# caches, and times A or B on it; A and B alternate (A first in odd rounds, B first in even
# ones). The table gives the median times and the median of the per-round ratios B/A (A's speed
# relative to B's: 1.00 is as fast, 0.90 is the target). Also: a 2 GiB sparse file holding 4 MiB
# of data (against B, and against nocow migrate of a dense 4 MiB file of the same data: the
# holes must cost nothing), and 5,000 files of 4 KiB (migrate, and migrate --dry-run).
#
#   ROUNDS=7 bench/migrate.sh      (default 5 rounds per case)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
SMALL_FILES=${SMALL_FILES:-5000}

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
trap 'umount "$M" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir "$M"
truncate -s 8G "$WORK/fs.img"
mkfs.btrfs -q -f "$WORK/fs.img" >/dev/null
mount -o loop "$WORK/fs.img" "$M"
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
# The sparse file's data alone: nocow migrate of the dense 4 MiB file.
D4() { A "$M/images/dense.img"; }

# One case: NAME FRESH FILE [SECOND], SECOND the other side (default B); prints
# "A_ns SECOND_ns" per round to $WORK/NAME.
run_case() {
  local name=$1 fresh=$2 file=$3 other=${4:-B} round first second side t0 t_A t_B sum
  : >"$WORK/$name"
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then first=A second=B; else first=B second=A; fi
    for side in $first $second; do
      $fresh
      t0=$(now)
      if [ "$side" = A ]; then A "$file"; else $other "$file"; fi
      eval "t_$side=\$((\$(now) - t0))"
      if [ "$side" = A ]; then
        # Still the same bytes, now +C (checked outside the timing).
        sum=$(openssl sha256 <"$file" 2>/dev/null || sha256sum <"$file")
        [ "$sum" = "$SUM" ] || { echo "bench: $name: nocow migrate changed the data" >&2; exit 1; }
        lsattr "$file" | cut -d' ' -f1 | grep -q C || { echo "bench: $name: no +C after nocow migrate" >&2; exit 1; }
      fi
    done
    echo "$t_A $t_B" >>"$WORK/$name"
    log "$name round $round: A $(secs "$t_A") s, $other $(secs "$t_B") s, $other/A $(awk -v a="$t_A" -v b="$t_B" 'BEGIN { printf "%.2f", b / a }')"
  done
}

row() { # NAME LABEL: one table row from $WORK/NAME
  local a b r
  a=$(cut -d' ' -f1 "$WORK/$1" | median)
  b=$(cut -d' ' -f2 "$WORK/$1" | median)
  r=$(awk '{ printf "%.4f\n", $2 / $1 }' "$WORK/$1" | median)
  printf '| %s | %s | %s | %.2f× | %s |\n' "$2" "$(secs "$a")" "$(secs "$b")" "$r" \
    "$(awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $2 / $1 }' "$WORK/$1")"
}

fresh_fragmented
log "1 GiB image: $EXTENTS extents"
FRAG_EXTENTS=$EXTENTS
run_case fragmented fresh_fragmented "$M/images/disk.img"
run_case sparse fresh_sparse "$M/images/sparse.img"
run_case sparse-vs-data fresh_sparse "$M/images/sparse.img" D4

# Small files: A = migrate of the directory, D = migrate --dry-run, C = cp -a --reflink=never of
# the directory + sync (the copy alone, a floor: no rename, no check).
: >"$WORK/small"
for round in $(seq 1 "$ROUNDS"); do
  fresh_small
  t0=$(now); $NC migrate -n "$M/images/small" >/dev/null; D=$(($(now) - t0))
  drop
  t0=$(now); cp -a --reflink=never "$M/images/small" "$M/cow/small.copy" && sync; C=$(($(now) - t0))
  rm -rf "$M/cow/small.copy"; drop
  t0=$(now); $NC migrate "$M/images/small" >/dev/null; A=$(($(now) - t0))
  left=$(find "$M/images/small" -type f | xargs lsattr | grep -vc '^[^ ]*C' || true)
  [ "$left" = 0 ] || { echo "bench: small: $left files without +C after nocow migrate" >&2; exit 1; }
  echo "$A $D $C" >>"$WORK/small"
  log "small round $round: migrate $(secs "$A") s, dry-run $(secs "$D") s, cp -a + sync $(secs "$C") s"
done
sa=$(cut -d' ' -f1 "$WORK/small" | median)
sd=$(cut -d' ' -f2 "$WORK/small" | median)
sc=$(cut -d' ' -f3 "$WORK/small" | median)

cat <<EOF

\`bench/migrate.sh\` ($ROUNDS rounds per case, A and B alternating, caches dropped before each).
$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Linux $(uname -r),
Node $(node --version | tr -d v), $(cp --version | head -n1), $(btrfs --version | head -n1), $(fio --version);
a loop-mounted 8 GiB Btrfs (image file on $(stat -f -c %T "$WORK")), nocow-kit $(node -p "require('$ROOT/package.json').version").
A = \`nocow migrate FILE\`; B = \`cp --reflink=never FILE TMP && sync && mv TMP FILE && sync\`.

| case | A: nocow migrate (s, median) | B: cp + sync + mv + sync (s, median) | A's speed, B/A (median of rounds) | B/A per round |
|---|---|---|---|---|
$(row fragmented "1 GiB fragmented CoW image ($FRAG_EXTENTS extents)")
$(row sparse "2 GiB sparse file, 4 MiB of data")

The sparse file against its data alone, both by nocow migrate (A = the 2 GiB sparse file, B = a
dense 4 MiB file of the same data; B/A near 1.00: the holes cost nothing):

| case | A: sparse 2 GiB (s, median) | B: dense 4 MiB (s, median) | B/A (median of rounds) | B/A per round |
|---|---|---|---|---|
$(row sparse-vs-data "nocow migrate, 4 MiB of data")

| $SMALL_FILES files of 4 KiB | median (s) | per file (ms) |
|---|---|---|
| \`nocow migrate DIR\` | $(secs "$sa") | $(awk -v t="$sa" -v n="$SMALL_FILES" 'BEGIN { printf "%.2f", t / 1e6 / n }') |
| \`nocow migrate --dry-run DIR\` | $(secs "$sd") | $(awk -v t="$sd" -v n="$SMALL_FILES" 'BEGIN { printf "%.2f", t / 1e6 / n }') |
| \`cp -a --reflink=never DIR COPY && sync\` (the copy alone) | $(secs "$sc") | $(awk -v t="$sc" -v n="$SMALL_FILES" 'BEGIN { printf "%.2f", t / 1e6 / n }') |
EOF
