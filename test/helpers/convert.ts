// What test/convert.test.ts and test/convert-safety.test.ts share: the built CLI, the shell
// functions their scripts build trees and look at them with, and the reader of their "KEY value" lines.
import { builtCli } from './cli.js';

export const NC = `node ${builtCli()}`;

export const SETUP = String.raw`
fragmented() {  # PATH MIB WRITES: random data, then WRITES random 4 KiB pieces with a sync every 10: many extents
  head -c "$2M" /dev/urandom >"$1"; sync
  for i in $(seq 1 "$3"); do
    dd if=/dev/urandom of="$1" bs=4096 count=1 seek=$(( (i * 7919) % ($2 * 256) )) conv=notrunc status=none
    [ $((i % 10)) -ne 0 ] || sync
  done
  sync
}
mktree() {  # DIR MIB WRITES: a plain directory with every kind of entry convert must keep
  local d=$1
  mkdir -p "$d/sub dir/deeper"
  fragmented "$d/disk.img" "$2" "$3"
  echo hello >"$d/sub dir/file"; ln "$d/sub dir/file" "$d/hardlink"; ln -s "sub dir/file" "$d/symlink"
  echo deep >"$d/sub dir/deeper/x"
  mkfifo "$d/fifo"; mknod "$d/null" c 1 3
  node -e 'require("net").createServer().listen(process.argv[1], () => process.exit(0))' "$d/socket"
  truncate -s 64M "$d/sparse.img"; head -c 1M /dev/urandom | dd of="$d/sparse.img" bs=1M seek=10 conv=notrunc status=none
  fallocate -l 16M "$d/prealloc.img"; head -c 1M /dev/urandom | dd of="$d/prealloc.img" bs=1M conv=notrunc status=none
  printf a >"$d/$(printf 'new\nline')"; printf b >"$d/q'\"uote s"; printf c >"$d/ünï cödé"; : >"$d/empty"
  setfattr -n user.origin -v kept "$d/disk.img"; setfattr -n security.selinux -v system_u:object_r:virt_image_t:s0 "$d/disk.img"
  setfacl -m u:1234:rw "$d/disk.img"; setfacl -d -m u:1234:rwx "$d/sub dir"; setfattr -h -n trusted.link -v 1 "$d/symlink"
  chown 107:36 "$d/disk.img"; chmod 0640 "$d/disk.img"; chown -h 5:6 "$d/symlink"; chmod 4755 "$d/empty"
  touch -d '2020-05-06 07:08:09.123456789' "$d/disk.img"; touch -h -d '2019-01-02 03:04:05.5' "$d/symlink"
  chmod 2750 "$d/sub dir"; touch -d '2018-01-01 00:00:00.75' "$d/sub dir"
  chown 0:36 "$d"; chmod 0711 "$d"; setfattr -n user.dir -v top "$d"; touch -d '2021-01-01 00:00:00.25' "$d"
  sync
}
nc() { $NC "$@"; }  # the built nocow (each run locks its own target's directory: no other test's run makes it wait)
small() {  # DIR: a small tree: an image, a subdirectory, a hard link, a symlink, xattrs, an ACL, a sparse file, set modes and times
  mkdir -p "$1/sub dir"; head -c 4M /dev/urandom >"$1/disk.img"; echo x >"$1/sub dir/file"; ln "$1/sub dir/file" "$1/hardlink"; ln -s "sub dir/file" "$1/symlink"
  truncate -s 8M "$1/sparse.img"; echo data | dd of="$1/sparse.img" bs=1M seek=5 conv=notrunc status=none
  setfattr -n user.origin -v kept "$1/disk.img"; setfacl -m u:1234:rw "$1/disk.img"; setfattr -n user.dir -v 1 "$1"
  chmod 0750 "$1/sub dir"; touch -d '2020-01-01 00:00:00.5' "$1/sub dir" "$1"
}
blocks() { stat -c %b "$1"; }
flags() { lsattr -d "$1" | cut -d' ' -f1; }
extents() { filefrag "$1" | sed -E 's/.*: ([0-9]+) extents? found/\1/'; }
subvol() { btrfs subvolume show "$1" >/dev/null 2>&1 && echo subvolume || echo directory; }
leftovers() { local b; b=$(basename "$1"); ls -A "$(dirname "$1")" | grep -Fx -e "$b" -e "$b.nocow-new" -e "$b.nocow-old" | tr '\n' ' '; }
set +e  # each script records the exit statuses it asserts on
`;

/** The value of the line "KEY value" of a script's output. */
export const line = (stdout: string, key: string) => stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
