#!/usr/bin/env bash
# The cost of the generated %posttrans inside a real rpm transaction: a tiny package whose
# %posttrans is the libvirt profile's nocow-posttrans.spec (A) against the same package with a
# trivial `:` %posttrans (B), each `rpm -i --root` into a fresh root, alternating A and B, on ext4
# (nothing to do) and on Btrfs (the directory is made a +C subvolume). Prints the median times and
# the median of per-round ratios A/B, and the size of the scriptlet.
#
#   bench/scriptlet.sh [--rounds N]
#
# Needs root, rpm, rpmbuild, mkfs.ext4, mkfs.btrfs, a built dist/ (npm run build). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=15
[ "${1:-}" != --rounds ] || ROUNDS=$2
[ "$(id -u)" = 0 ] || { echo "bench: needs root" >&2; exit 1; }
[ -f dist/bin/nocow.js ] || { echo "bench: run npm run build first" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
node dist/bin/nocow.js generate posttrans -p libvirt -o "$WORK/gen" >/dev/null 2>&1

spec() { # NAME POSTTRANS-FILE|-
  cat <<EOF
Name: $1
Version: 1
Release: 1
Summary: nocow-kit scriptlet cost
License: MIT
BuildArch: noarch
$( [ "$2" = - ] || grep -v '^#' "$WORK/gen/nocow-requires.spec" )
%description
bench
%install
mkdir -p %{buildroot}/var/lib/libvirt/images
%files
%dir %attr(0711,root,root) /var/lib/libvirt/images
$( if [ "$2" = - ]; then printf '%%posttrans\n:\n'; else cat "$2"; fi )
EOF
}
spec nocow-bench-a "$WORK/gen/nocow-posttrans.spec" >"$WORK/a.spec"
spec nocow-bench-b - >"$WORK/b.spec"
for p in a b; do
  rpmbuild --quiet --define "_topdir $WORK/top" -bb "$WORK/$p.spec" >/dev/null 2>&1
done
A=$(ls "$WORK"/top/RPMS/noarch/nocow-bench-a-*.rpm) B=$(ls "$WORK"/top/RPMS/noarch/nocow-bench-b-*.rpm)
SIZE=$(rpm -qp --queryformat '%{POSTTRANS}' "$A" | wc -c)

for fs in ext4 btrfs; do
  truncate -s 512M "$WORK/$fs.img"
  case $fs in ext4) mkfs.ext4 -q -F "$WORK/$fs.img" ;; btrfs) mkfs.btrfs -q -f "$WORK/$fs.img" >/dev/null ;; esac
done
mkdir "$WORK/mnt"
# shellcheck disable=SC2016 # the inner script is single-quoted on purpose: its variables expand in the inner bash
WORK=$WORK A=$A B=$B ROUNDS=$ROUNDS CHROOT_SH=$PWD/test/helpers/chroot.sh unshare --mount --propagation private bash -euo pipefail -c '
. "$CHROOT_SH"
for fs in ext4 btrfs; do
  mount -o loop "$WORK/$fs.img" "$WORK/mnt"
  for round in $(seq 1 "$ROUNDS"); do
    for side in A B; do
      pkg=${!side}; root=$WORK/mnt/$side$round
      # A root rpm can chroot into (the host /usr bound read-only), so the scriptlet really runs.
      mkdir -p "$root"; make_root "$root"
      start=$(date +%s%N)
      rpm_root "$root" -i "$pkg" >"$WORK/out.$fs.$side" 2>&1
      end=$(date +%s%N)
      echo "$fs $round $side $(( (end - start) / 1000 ))"
    done
  done
  umount -R "$WORK/mnt"
done' >"$WORK/raw"
# The Btrfs side must really have converted: its last run printed the change.
grep -q 'created: subvolume\|converted:' "$WORK/out.btrfs.A" || { echo "bench: the %posttrans did not act on Btrfs:" >&2; cat "$WORK/out.btrfs.A" >&2; exit 1; }

node - "$WORK/raw" "$SIZE" <<'EOF'
const [raw, size] = process.argv.slice(2);
const rows = require('fs').readFileSync(raw, 'utf8').trim().split('\n').map((l) => l.split(' '));
const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
console.log(`The generated %posttrans of the libvirt profile: ${Number(size).toLocaleString('en')} bytes in the rpm header.\n`);
console.log('| file system | rpm -i with the generated %posttrans (ms) | with `:` (ms) | median ratio |');
console.log('|---|---|---|---|');
for (const fs of ['ext4', 'btrfs']) {
  const t = (side) => rows.filter((r) => r[0] === fs && r[2] === side).map((r) => Number(r[3]) / 1000);
  const rounds = [...new Set(rows.filter((r) => r[0] === fs).map((r) => r[1]))];
  const ratio = median(rounds.map((n) => Number(rows.find((r) => r[0] === fs && r[1] === n && r[2] === 'A')[3]) / Number(rows.find((r) => r[0] === fs && r[1] === n && r[2] === 'B')[3])));
  console.log(`| ${fs} | ${median(t('A')).toFixed(1)} | ${median(t('B')).toFixed(1)} | ${ratio.toFixed(2)} |`);
}
EOF
