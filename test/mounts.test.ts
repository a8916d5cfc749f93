// The mount table (src/host/mounts.ts): parsed from the kernel's own mountinfo, made in a private
// mount namespace with the shapes that once cost data (a same-file-system bind mount inside a
// directory, the directory bind-mounted elsewhere, one Btrfs mounted twice).
import t from 'tap';
import { aliasesOf, decodeField, isMountPoint, locate, mountOf, mountsInside, mountsInsideAnywhere, mountsOfSource, parseMountinfo } from '../src/host/mounts.js';
import { runInFs, section } from './helpers/fs.js';

t.test('GIVEN mountinfo escapes WHEN decoded THEN the bytes of the path come back', async (t) => {
  t.same(decodeField('/m/a\\040b\\011c\\012d\\134e'), Buffer.from('/m/a b\tc\nd\\e'));
  t.same(decodeField('/m/caf\\351'), Buffer.from([0x2f, 0x6d, 0x2f, 0x63, 0x61, 0x66, 0xe9]));
  const [m] = parseMountinfo('36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n');
  t.equal(m!.point.toString(), '/mnt/a b');
  t.equal(m!.fstype, 'ext3');
  t.equal(m!.source, '/dev/root');
  t.equal(m!.superOptions, 'rw,errors=continue');
  t.equal(m!.root.toString(), '/mnt1');
});

t.test('GIVEN one Btrfs mounted twice, a bind mount inside a directory and the directory bound elsewhere WHEN the real table is read THEN each relation is found', async (t) => {
  const r = await runInFs({
    fs: 'btrfs',
    script: String.raw`
btrfs -q subvolume create "$MNT/var"
mkdir -p "$MNT/var/lib" "$MNT/outside/src" "$MNT/data/mnt" "$MNT/data/sub" "$MNT/t/top" "$MNT/v" "$MNT/w x" "$MNT/plain"
mount --bind "$MNT/outside/src" "$MNT/data/mnt"
mount --bind "$MNT/data/sub" "$MNT/w x"
mount -o subvol=var "$(findmnt -n -o SOURCE --target "$MNT" | sed 's/\[.*//')" "$MNT/t/top"
section mnt; printf '%s\n' "$MNT"
section info; cat /proc/self/mountinfo
`,
  });
  t.equal(r.exitCode, 0, r.stderr);
  const mnt = section(r.stdout, 'mnt').trim();
  const table = parseMountinfo(section(r.stdout, 'info'));
  t.ok(isMountPoint(`${mnt}/data/mnt`, table), 'a same-file-system bind mount is a mount point');
  t.notOk(isMountPoint(`${mnt}/data`, table));
  t.same(mountsInside(`${mnt}/data`, table).map((m) => m.point.toString()), [`${mnt}/data/mnt`], 'the bind mount inside data is a boundary');
  t.same(mountsInside(`${mnt}/plain`, table), []);
  t.same(mountsOfSource(`${mnt}/data`, table).map((m) => m.point.toString()), [`${mnt}/w x`], 'data/sub is mounted elsewhere: data is the source of another mount');
  t.same(mountsOfSource(`${mnt}/plain`, table), []);
  t.same(mountsOfSource(`${mnt}/outside`, table).map((m) => m.point.toString()), [`${mnt}/data/mnt`], 'outside/src is bound inside data');
  t.same(aliasesOf(`${mnt}/t/top/lib`, table).sort(), [`${mnt}/t/top/lib`, `${mnt}/var/lib`].sort(), 'the second mount of the subvolume names the same directory');
  t.equal(locate(`${mnt}/t/top/lib`, table)!.inFs.toString(), '/var/lib');
  t.equal(mountOf(`${mnt}/t/top/lib`, table)!.point.toString(), `${mnt}/t/top`);
  t.same(mountsInsideAnywhere(`${mnt}/t/top`, table), [], 'nothing is mounted inside the var subvolume');
  t.same(mountsInsideAnywhere(`${mnt}/data`, table).map((m) => m.point.toString()), [`${mnt}/data/mnt`]);
});
