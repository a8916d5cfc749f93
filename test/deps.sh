#!/bin/sh
# Can this machine run the real-file-system tests? They need root, loop devices,
# mount namespaces, the kernel's btrfs/ext4/xfs, the tools below and the Debian sid
# tool root of test/helpers/tool-root.sh (newer image-builder tools). What is
# missing gets installed when possible (root with apt-get); what is still missing
# is printed, one line each, and the exit status is 1: those tests must fail,
# never be skipped, where they cannot run.
#
#   sh test/deps.sh            check; install only if something is missing
#   sh test/deps.sh --install  install first (.ci/run, on a fresh machine)
set -u

# The one list of Debian packages the tests need. losetup and mount are in "mount".
PACKAGES='btrfs-progs xfsprogs e2fsprogs shellcheck busybox dash acl attr systemd util-linux mount coreutils findutils rpm strace rsync libarchive-tools squashfs-tools tar rpmlint bsdutils gpg gpg-agent gpgconf man-db gzip zsh fio btrfs-compsize python3 mmdebstrap debhelper dpkg-dev lintian fakeroot perl pacman-package-manager makepkg ansible-core'
TOOLS='mkfs.btrfs btrfs mkfs.ext4 mkfs.xfs losetup unshare mount chattr lsattr getfattr setfattr getfacl setfacl
shellcheck busybox dash bash systemd-tmpfiles stat filefrag sha256sum find rpm strace runuser realpath rpmbuild rsync bsdtar mksquashfs unsquashfs tar chroot rpmlint script fallocate zsh findmnt blkid
rpmsign rpmspec gpg gpg-agent gpgconf man gzip
fio compsize systemd-analyze btrfs-map-logical python3 mmdebstrap
dh dh_installtmpfiles dpkg-buildpackage dpkg-deb lintian fakeroot perl pod2man podchecker
pacman makepkg
ansible-playbook'

PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
export PATH
TOOL_ROOT_SH="$(dirname "$0")/helpers/tool-root.sh"

installed=no
install_packages() {
  installed=yes
  echo "deps: installing $PACKAGES" >&2
  # shellcheck disable=SC2086 # one word per package
  apt-get update -q >&2 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES >&2
  # Made once (a minute or more, about 270 MB), then reused: see test/helpers/tool-root.sh.
  echo "deps: making the sid tool root (once)" >&2
  sh "$TOOL_ROOT_SH" make >&2
}

# One line per problem on stdout; nothing when all is well.
problems() {
  missing_tool=no
  for tool in $TOOLS; do
    command -v "$tool" >/dev/null 2>&1 || { echo "deps: missing tool: $tool"; missing_tool=yes; }
  done
  if [ "$(id -u)" != 0 ]; then
    echo "deps: not root (uid $(id -u)): loop devices and mounts need root"
    return
  fi
  [ "$missing_tool" = no ] || return
  # The way the tests use them: a sparse image, mounted on a loop device inside a
  # private mount namespace, which takes the mount and the device with it on exit.
  # This also proves the kernel has each file system (or loads it).
  dir=$(mktemp -d) || { echo "deps: cannot create a temporary directory"; return; }
  mkdir "$dir/mnt"
  for fs in btrfs ext4 xfs; do
    case $fs in
      btrfs) size=256M mkfs='mkfs.btrfs -q -f' ;;
      ext4) size=64M mkfs='mkfs.ext4 -q -F' ;;
      xfs) size=300M mkfs='mkfs.xfs -q -f' ;;
    esac
    # shellcheck disable=SC2086 # $mkfs is a command with its options
    if ! out=$(truncate -s "$size" "$dir/$fs.img" && $mkfs "$dir/$fs.img" 2>&1 >/dev/null &&
      unshare --mount --propagation private mount -t "$fs" -o loop "$dir/$fs.img" "$dir/mnt" 2>&1); then
      echo "deps: cannot mount a $fs image on a loop device in a private mount namespace: $(echo "$out" | head -n 1)"
    fi
  done
  rm -rf "$dir"
  sh "$TOOL_ROOT_SH" check || echo "deps: no sid tool root (sh test/deps.sh --install makes it; test/helpers/tool-root.sh)"
}

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

if [ "${1:-}" = --install ] && can_install; then install_packages; fi
found=$(problems)
if [ -n "$found" ] && [ "$installed" = no ] && can_install; then
  install_packages
  found=$(problems)
fi
if [ -n "$found" ]; then
  echo "$found" >&2
  exit 1
fi
# shellcheck disable=SC2086 # counting words
echo "deps: ok: $(echo $TOOLS | wc -w) tools, root, loop-mounted btrfs/ext4/xfs in a private mount namespace, the sid tool root"
