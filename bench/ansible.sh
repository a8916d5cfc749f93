#!/usr/bin/env bash
# The Ansible role over a fleet (docs/fleet.md): `ansible-playbook` with the role of
# `nocow generate ansible -p libvirt` over 50 hosts (local connection, forks 10, each host's
# nocow_root its own directory on one Btrfs loop device) against the role's own work done
# directly, the generated hook run 50 times one after the other (`sh nocow-apply.sh --root ROOT`).
# Three phases on fresh roots: --check, the first run (the target becomes a +C subvolume), the
# second run (nothing to do). Rounds alternate A and B, each on new roots; prints the medians in
# seconds per host and the median of per-round ratios A/B.
#
#   bench/ansible.sh [--rounds N] [--hosts N]
#
# Needs root, ansible-playbook, mkfs.btrfs, unshare, a built dist/ (npm run build). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 HOSTS=50 FORKS=10
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --hosts) HOSTS=$2; shift 2 ;;
    *) echo "bench: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root" >&2; exit 1; }
[ -f dist/bin/nocow.js ] || { echo "bench: run npm run build first" >&2; exit 1; }
command -v ansible-playbook >/dev/null || { echo "bench: needs ansible-playbook (ansible-core)" >&2; exit 1; }
export PATH=$PATH:/usr/sbin:/sbin

if [ "${BENCH_ANSIBLE_INSIDE:-}" != 1 ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  node dist/bin/nocow.js generate ansible -p libvirt -o "$WORK" 2>/dev/null
  # One private mount namespace: the Btrfs and its loop device (autoclear) go with it.
  BENCH_ANSIBLE_INSIDE=1 WORK=$WORK unshare --mount --propagation private "$0" --rounds "$ROUNDS" --hosts "$HOSTS"
  exit
fi

truncate -s 4G "$WORK/fs.img"
mkfs.btrfs -q -f "$WORK/fs.img" >/dev/null 2>&1
mkdir "$WORK/mnt"
mount -t btrfs -o loop "$WORK/fs.img" "$WORK/mnt"
mkdir "$WORK/home"
: >"$WORK/ansible.cfg"
export HOME=$WORK/home ANSIBLE_CONFIG=$WORK/ansible.cfg ANSIBLE_LOCAL_TEMP=$WORK/home/local ANSIBLE_REMOTE_TEMP=$WORK/home/remote
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0
printf -- '- hosts: fleet\n  gather_facts: false\n  roles: [nocow]\n' >"$WORK/site.yml"
HOOK=$WORK/roles/nocow/files/nocow-apply.sh

now() { date +%s.%N; }
# roots SET: HOSTS fresh, empty roots under the Btrfs; prints their parent.
roots() {
  local dir=$WORK/mnt/$1 i
  mkdir "$dir"
  for i in $(seq "$HOSTS"); do mkdir "$dir/host$i"; done
  echo "$dir"
}

# playbook DIR PHASE-ARGS…: seconds for ansible-playbook over the roots under DIR.
playbook() {
  local dir=$1 start i
  shift
  { echo '[fleet]'; for i in $(seq "$HOSTS"); do echo "host$i ansible_connection=local nocow_root=$dir/host$i"; done
    echo '[fleet:vars]'; echo 'ansible_python_interpreter=/usr/bin/python3'; } >"$WORK/inventory"
  start=$(now)
  ansible-playbook -i "$WORK/inventory" -f "$FORKS" "$WORK/site.yml" "$@" >"$WORK/play.log" 2>&1 ||
    { cat "$WORK/play.log" >&2; exit 1; }
  echo "$(now) - $start" | bc
}

# direct DIR ARGS…: seconds for the hook run once per root under DIR, one after the other.
direct() {
  local dir=$1 start i
  shift
  start=$(now)
  for i in $(seq "$HOSTS"); do sh "$HOOK" --root "$dir/host$i" "$@" >/dev/null 2>&1 || [ "$*" = --check ]; done
  echo "$(now) - $start" | bc
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A A B R
for round in $(seq "$ROUNDS"); do
  a=$(roots "a$round") b=$(roots "b$round")
  for phase in check first second; do
    case $phase in check) args=--check ;; *) args= ;; esac
    # Alternating which side goes first, round by round.
    if [ $((round % 2)) = 1 ]; then
      ta=$(playbook "$a" $args) tb=$(direct "$b" $args)
    else
      tb=$(direct "$b" $args) ta=$(playbook "$a" $args)
    fi
    A[$phase]+="$ta " B[$phase]+="$tb " R[$phase]+="$(echo "$ta / $tb" | bc -l) "
  done
  # The first run's end state, on both sides: the target is a +C subvolume on every root.
  for dir in "$a" "$b"; do
    for i in $(seq "$HOSTS"); do
      lsattr -d "$dir/host$i/var/lib/libvirt/images" | grep -q '^[^ ]*C' || { echo "bench: $dir/host$i: no +C" >&2; exit 1; }
    done
  done
done

echo "$HOSTS hosts, forks $FORKS, $ROUNDS rounds (A and B alternating), ansible-core $(ansible-playbook --version | sed -n '1s/.*core \(.*\)\]/\1/p')."
echo
echo '| phase | ansible-playbook, the role (s per host) | the hook directly, one root after another (s per host) | median ratio |'
echo '|---|---|---|---|'
for phase in check first second; do
  # shellcheck disable=SC2086 # one number per word
  ma=$(printf '%s\n' ${A[$phase]} | median) mb=$(printf '%s\n' ${B[$phase]} | median) mr=$(printf '%s\n' ${R[$phase]} | median)
  printf '| %s | %.3f | %.4f | %.0f |\n' "$([ $phase = check ] && echo '--check (fresh roots)' || echo "$phase run")" \
    "$(echo "$ma / $HOSTS" | bc -l)" "$(echo "$mb / $HOSTS" | bc -l)" "$mr"
done
