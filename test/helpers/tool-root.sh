#!/bin/sh
# The Debian sid tool root: the systemd-repart, mkfs.btrfs, sfdisk and kiwi that
# test/image-builders.test.ts runs, newer than Debian 12 has them (systemd 252 has no
# Subvolumes=…:nodatacow, btrfs-progs 6.2 no --subvol nor --inode-flags, and kiwi is not
# packaged). Made once by mmdebstrap from the Debian mirror this machine's apt uses, kept
# under /var/cache (a reboot keeps it, unlike /tmp) and reused; nothing of sid is ever
# installed into this machine itself. test/deps.sh makes it; the test enters it.
#
#   sh test/helpers/tool-root.sh make          make it, unless it is there with these packages
#   sh test/helpers/tool-root.sh check         exit 0 when it is there with these packages
#   sh test/helpers/tool-root.sh run DIR CMD…  run CMD in it, in a private mount namespace
#                                              with proc, dev and sys mounted and DIR
#                                              bind-mounted at /work (its working directory)
set -u

TOOL_ROOT=/var/cache/nocow-kit/sid-tools
# What the root holds; a change here makes `make` build it anew.
TOOL_PACKAGES='systemd-repart btrfs-progs fdisk kiwi'
STAMP=.nocow-kit-tool-root
STAMP_TEXT="sid: $TOOL_PACKAGES"

PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
export PATH

# check: true when the root is there, made with TOOL_PACKAGES.
check() {
  [ "$(cat "$TOOL_ROOT/$STAMP" 2>/dev/null)" = "$STAMP_TEXT" ]
}

# debian_mirror: print the URI apt fetches this release's main archive from (its own
# configuration, so sid comes from the same mirror); fail when there is none.
debian_mirror() {
  # shellcheck disable=SC1091 # the machine's own file, read at run time
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || return 1
  # shellcheck disable=SC2016 # $(…) here is apt's format syntax, not the shell's
  apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
    awk -v release="$codename" '$1 == release { print $2; found = 1; exit } END { exit !found }'
}

# make_root: build the root beside its place and move it there whole; one line on stderr on failure.
make_root() {
  check && return 0
  command -v mmdebstrap >/dev/null 2>&1 || { echo "tool root: mmdebstrap is not installed" >&2; return 1; }
  mirror=$(debian_mirror) || { echo "tool root: no Debian mirror for this release in apt's configuration (apt-get indextargets)" >&2; return 1; }
  cache=${TOOL_ROOT%/*}
  mkdir -p "$cache" || return 1
  new=$TOOL_ROOT.new
  log=$cache/mmdebstrap.log
  rm -rf "$new"
  # Check-Valid-Until: the mirror's sid Release file is a frozen snapshot, past its Valid-Until.
  if ! mmdebstrap --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="$(echo "$TOOL_PACKAGES" | tr ' ' ,)" sid "$new" "$mirror" >"$log" 2>&1; then
    echo "tool root: mmdebstrap failed (see $log): $(grep -E '^E:' "$log" | head -n 1)" >&2
    rm -rf "$new"
    return 1
  fi
  mkdir -p "$new/work" "$new/proc" "$new/dev" "$new/sys"
  printf '%s\n' "$STAMP_TEXT" >"$new/$STAMP"
  rm -rf "$TOOL_ROOT"
  mv "$new" "$TOOL_ROOT"
}

# run DIR CMD…: CMD inside the root, which nothing outside this call sees mounted.
run() {
  check || { echo "tool root: $TOOL_ROOT is missing or out of date: run sh test/deps.sh --install" >&2; return 125; }
  dir=$1
  shift
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  unshare --mount --propagation private sh -c '
    root=$1 dir=$2
    shift 2
    # Temporary files (systemd-repart'"'"'s, kiwi'"'"'s) on tmpfs: nothing a run leaves, even killed, stays in the cache.
    mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" &&
      mount -t sysfs sysfs "$root/sys" && mount --bind "$dir" "$root/work" &&
      mount -t tmpfs tmpfs "$root/tmp" && mount -t tmpfs tmpfs "$root/var/tmp" || exit 125
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin HOME=/root LC_ALL=C.UTF-8 \
      /bin/sh -c "cd /work && exec \"\$@\"" sh "$@"
  ' sh "$TOOL_ROOT" "$dir" "$@"
}

case ${1:-} in
make)
  mkdir -p "${TOOL_ROOT%/*}" || exit 1
  # One maker at a time; the others wait and find it made.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${TOOL_ROOT%/*}/.lock" && flock 9
  fi
  make_root
  ;;
check) check ;;
run)
  shift
  [ $# -ge 2 ] || { echo 'usage: tool-root.sh run DIR CMD…' >&2; exit 2; }
  run "$@"
  ;;
*)
  echo 'usage: tool-root.sh make | check | run DIR CMD…' >&2
  exit 2
  ;;
esac
