# shellcheck shell=bash
# Sourced by test scripts running inside runInFs's private mount namespace.
#
#   make_root DIR   turn DIR (on the file system under test) into a root that
#                   chroot, rpm --root and systemd-tmpfiles --root can use: the
#                   host's /usr bind-mounted read-only (so /bin/sh, coreutils,
#                   e2fsprogs and btrfs-progs are the host's), merged-/usr links,
#                   /dev and /proc bound, a minimal /etc, an empty rpm database in /var/lib/rpm.
#                   The mounts die with the namespace.
make_root() {
  local root=$1
  mkdir -p "$root/usr" "$root/dev" "$root/proc" "$root/etc" "$root/var/lib" "$root/tmp" "$root/run"
  chmod 1777 "$root/tmp"
  mount --bind /usr "$root/usr"
  mount -o remount,bind,ro "$root/usr"
  local d
  for d in bin sbin lib lib32 lib64 libx32; do
    [ -e "/$d" ] && [ ! -e "$root/$d" ] && ln -s "usr/$d" "$root/$d"
  done
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nkvm:x:36:\nnogroup:x:65534:\n' >"$root/etc/group"
  rpm --root "$root" --dbpath /var/lib/rpm --initdb
}

#   writable_usr DIR   DIR/usr (the host's, read-only, from make_root) made writable by
#                      an overlay whose upper layer is on DIR's file system, so a
#                      package manager can install into DIR/usr; the host's stays as it is.
writable_usr() {
  local root=$1
  mkdir "$root.usr-upper" "$root.usr-work"
  mount -t overlay overlay -o "lowerdir=/usr,upperdir=$root.usr-upper,workdir=$root.usr-work" "$root/usr"
}

#   rpm_root DIR ARGS…   rpm against DIR's database, where Fedora keeps it (Debian's
#                        rpm defaults to ~/.rpmdb). --nodeps: DIR's database is empty.
rpm_root() {
  local root=$1
  shift
  # --force-debian: Debian's rpm otherwise warns on stderr that alien should be used.
  rpm --force-debian --root "$root" --dbpath /var/lib/rpm --nodeps "$@"
}
