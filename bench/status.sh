#!/bin/sh
# nocow status on a target full of files lacking +C, against its floor: the same information from
# the tools alone, `find -type f | xargs lsattr` then `find -type f | xargs filefrag` (flags and
# extent counts of every file). On a loop-mounted Btrfs in a private mount namespace (root needed),
# at each size given (default 1000 10000 100000 files of 4 KiB, in a plain directory, as files land
# before +C). Each size: rounds alternating the two (bench/ab.mjs, median of ratios), then the peak
# RSS of nocow status (GNU time) and the output checked to list every file. Prints Markdown.
#
#   bench/status.sh [--rounds N] [--against DIR] [SIZE…]
#   --rounds N: rounds at 1000 files (fewer for more files: 100,000 files get N/4, at least 5)
#   --against DIR: also measure the build in DIR (another checkout, `npm run build` done there)
set -eu
cd "$(dirname "$0")/.."
rounds=20
against=
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --against) against=$(cd "$2" && pwd); shift 2 ;;
    --*) echo "usage: bench/status.sh [--rounds N] [--against DIR] [SIZE…]" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || set -- 1000 10000 100000
[ "$(id -u)" = 0 ] || { echo "bench: needs root (a loop device and a mount)" >&2; exit 1; }
[ -f dist/bin/nocow.js ] || { echo "bench: run npm run build first" >&2; exit 1; }
[ -z "$against" ] || [ -f "$against/dist/bin/nocow.js" ] || { echo "bench: $against/dist/bin/nocow.js missing: run npm run build there" >&2; exit 1; }
for tool in mkfs.btrfs unshare lsattr filefrag /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool (btrfs-progs, util-linux, e2fsprogs, time)" >&2; exit 1; }
done
# The mount lives in a namespace of its own: nothing is left on the host, whatever happens.
if [ "${NOCOW_BENCH_NS:-}" != 1 ]; then
  NOCOW_BENCH_NS=1 exec unshare -m --propagation private "$0" --rounds "$rounds" ${against:+--against "$against"} "$@"
fi

work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || :; rm -rf "$work"' EXIT
truncate -s 8G "$work/btrfs.img"
mkfs.btrfs -q "$work/btrfs.img" >/dev/null 2>&1
mkdir "$work/mnt"
mount -o loop "$work/btrfs.img" "$work/mnt"
root=$work/mnt/root
dir=$root/var/lib/libvirt/images
mkdir -p "$dir"
node=$(command -v node)

version=$(node -p 'require("./package.json").version')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain -- src package.json esbuild.config.mjs 2>/dev/null)" ] || commit="$commit + uncommitted changes"
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
echo "\`bench/status.sh --rounds $rounds $*\`, $(date -u +%Y-%m-%d), nocow-kit $version ($commit), Node $(node --version),"
echo "$(nproc) cores ($cpu), Linux $(uname -r), $(mkfs.btrfs --version | head -n 1) on a loop device (sparse image on $(stat -f -c %T "$work"))."
echo "The target: the libvirt profile's directory under --root, a plain directory of 4 KiB files without +C; \`nocow status --root ROOT\`, plain output."
echo

have=0
for n in "$@"; do
  # More files: 4 KiB each, written by split in one go, then synced so that both sides see them on disk.
  if [ "$n" -gt "$have" ]; then
    (cd "$dir" && head -c $(((n - have) * 4096)) /dev/zero | split -b 4096 -a 7 -d - "f$n-")
    sync
    have=$n
  fi
  r=$(( rounds * 1000 / n ))
  [ "$r" -ge 5 ] || r=5
  [ "$r" -le "$rounds" ] || r=$rounds
  {
    echo "{ \"title\": \"$n files\", \"rounds\": $r, \"warmup\": 1, \"commands\": ["
    echo "  { \"name\": \"floor: find, xargs lsattr; find, xargs filefrag\", \"sh\": \"find '$dir' -xdev -type f -print0 | xargs -0 lsattr -- >/dev/null; find '$dir' -xdev -type f -print0 | xargs -0 filefrag -- >/dev/null\" },"
    echo "  { \"name\": \"\`nocow status --root ROOT\`\", \"argv\": [\"$node\", \"$PWD/dist/bin/nocow.js\", \"status\", \"--root\", \"$root\"] }"
    [ -z "$against" ] || echo "  , { \"name\": \"\`nocow status --root ROOT\` ($(basename "$against"))\", \"argv\": [\"$node\", \"$against/dist/bin/nocow.js\", \"status\", \"--root\", \"$root\"] }"
    echo '] }'
  } >"$work/spec.json"
  node bench/ab.mjs "$work/spec.json"
  # Not timed: the peak memory, and that the report lists every file.
  for cli in "$PWD/dist/bin/nocow.js" ${against:+"$against/dist/bin/nocow.js"}; do
    /usr/bin/time -f %M -o "$work/rss" "$node" "$cli" status --root "$root" >"$work/out" 2>"$work/err" || :
    listed=$(grep -c '^  file without +C: ' "$work/out" || :)
    [ "$listed" = "$n" ] || { echo "bench: $cli listed $listed files of $n" >&2; cat "$work/err" >&2; exit 1; }
    echo
    echo "Peak RSS of \`nocow status\`$([ "$cli" = "$PWD/dist/bin/nocow.js" ] || echo " ($(basename "$against"))"): $(( $(tail -n 1 "$work/rss") / 1024 )) MiB ($n files listed)."
  done
  echo
done
