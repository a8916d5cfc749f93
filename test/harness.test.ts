import t, { type Test } from 'tap';
import { execa } from 'execa';
import { access, readFile } from 'node:fs/promises';
import { parseObservations, parseTree, parseXattrs, runInFs, section, xattrText } from './helpers/fs.js';

// The real-file-system harness itself: if these fail, every file-system test's
// verdict is suspect.

// What a runInFs call could leave behind on the host: its mounts would show in our
// own mount table, its loop devices in `losetup -a` (as "(deleted)" once the image
// directory is gone). Other test files run runInFs at the same time, so only
// devices backed by this call's (or any removed) image count.
async function hostState(): Promise<{ mountinfo: string; loops: string }> {
  return {
    mountinfo: await readFile('/proc/self/mountinfo', 'utf8'),
    loops: (await execa('losetup', ['-a'])).stdout,
  };
}

async function assertNothingLeft(t: Test, before: { mountinfo: string }, dir: string): Promise<void> {
  const after = await hostState();
  t.equal(after.mountinfo, before.mountinfo, 'host mount table unchanged');
  t.notMatch(after.loops, dir, 'no loop device on this call’s images');
  t.notMatch(after.loops, /nocow-runinfs-.*\(deleted\)/, 'no loop device on a removed image');
  await t.rejects(access(dir), 'image directory removed');
}

t.test('GIVEN a btrfs image WHEN a script runs THEN $MNT is a mounted btrfs whose root is a subvolume', async (t) => {
  const r = await runInFs({ fs: 'btrfs', script: 'stat -f -c %T "$MNT"; observe "$MNT"' });
  t.equal(r.exitCode, 0, r.stderr);
  t.match(r.stdout, /^btrfs\n/);
  const root = parseObservations(r.stdout).get('/');
  t.match(root, { kind: 'dir', inode: 256, subvol: true, fstype: 'btrfs', nocow: false });
});

t.test('GIVEN btrfs WHEN a subvolume is created and made +C THEN observe reports subvol yes and attrs with C', async (t) => {
  const r = await runInFs({
    fs: 'btrfs',
    script: `
      btrfs subvolume create "$MNT/sv" >/dev/null
      chattr +C "$MNT/sv"
      mkdir -m 2750 "$MNT/plain"
      chown 12:34 "$MNT/plain"
      observe "$MNT/sv" "$MNT/plain" "$MNT/missing"
    `,
  });
  t.equal(r.exitCode, 0, r.stderr);
  const obs = parseObservations(r.stdout);
  t.match(obs.get('/sv'), { kind: 'dir', inode: 256, subvol: true, nocow: true, attrs: /C/ });
  t.match(obs.get('/plain'), { kind: 'dir', subvol: false, nocow: false, mode: 0o2750, uid: 12, gid: 34 });
  t.match(obs.get('/missing'), { kind: 'missing', inode: null, subvol: null, fstype: null });
});

for (const [fs, fstype] of [
  // stat reports ext4 by its magic number, shared with ext2/ext3.
  ['ext4', 'ext2/ext3'],
  ['xfs', 'xfs'],
] as const) {
  t.test(`GIVEN an ${fs} image WHEN observed THEN fstype is ${fstype} and subvol does not apply`, async (t) => {
    const r = await runInFs({ fs, script: 'mkdir "$MNT/d"; observe "$MNT/d"' });
    t.equal(r.exitCode, 0, r.stderr);
    t.match(parseObservations(r.stdout).get('/d'), { kind: 'dir', fstype, subvol: null, attrs: /^-/ });
  });
}

t.test('GIVEN raid1 WHEN the file system is inspected THEN data and metadata are RAID1 over two devices', async (t) => {
  const r = await runInFs({ fs: 'btrfs', raid1: true, script: 'btrfs filesystem df "$MNT"; btrfs filesystem show "$MNT"' });
  t.equal(r.exitCode, 0, r.stderr);
  t.match(r.stdout, /^Data, RAID1:/m);
  t.match(r.stdout, /^Metadata, RAID1:/m);
  t.match(r.stdout, /Total devices 2/);
});

t.test('GIVEN a default single-device btrfs WHEN inspected THEN data is single, not mixed block groups', async (t) => {
  const r = await runInFs({ fs: 'btrfs', script: 'btrfs filesystem df "$MNT"' });
  t.match(r.stdout, /^Data, single:/m);
});

t.test('GIVEN a failing script WHEN run THEN its exit code and stderr come back, and setup output does not', async (t) => {
  const explicit = await runInFs({ fs: 'btrfs', script: 'echo out; echo err >&2; exit 3' });
  t.same(explicit, { stdout: 'out', stderr: 'err', exitCode: 3 });

  const errexit = await runInFs({ fs: 'ext4', script: 'false | true\necho unreachable' });
  t.equal(errexit.exitCode, 1, 'pipefail and errexit are on');
  t.equal(errexit.stdout, '');

  const unbound = await runInFs({ fs: 'xfs', script: 'echo "$NOT_SET"' });
  t.not(unbound.exitCode, 0, 'nounset is on');
  t.match(unbound.stderr, /script\.sh: line 1: NOT_SET: unbound variable/);

  const env = await runInFs({ fs: 'btrfs', script: 'echo "$GREETING"', env: { GREETING: 'hello' } });
  t.equal(env.stdout, 'hello');
});

t.test('GIVEN file system setup fails WHEN runInFs is called THEN it rejects with the reason', async (t) => {
  await t.rejects(runInFs({ fs: 'btrfs', mkfsArgs: ['--no-such-option'], script: 'true' }), /could not set up the file system[^]*no-such-option/);
  await t.rejects(runInFs({ fs: 'ext4', raid1: true, script: 'true' }), /raid1 needs btrfs/);
});

t.test('GIVEN runInFs WHEN it returns THEN no mount, loop device or image is left', async (t) => {
  const cases = [
    { name: 'btrfs, success', fs: 'btrfs', script: 'echo "$RUNINFS_DIR"' },
    { name: 'btrfs, failure', fs: 'btrfs', script: 'echo "$RUNINFS_DIR"; exit 7' },
    { name: 'xfs, killed by a signal', fs: 'xfs', script: 'echo "$RUNINFS_DIR"; kill -KILL $$' },
    { name: 'raid1, failure', fs: 'btrfs', raid1: true, script: 'echo "$RUNINFS_DIR"; losetup -a >&2; false' },
    { name: 'raid1, script sets its own EXIT trap', fs: 'btrfs', raid1: true, script: 'trap "echo bye >&2" EXIT; echo "$RUNINFS_DIR"' },
  ] as const;
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const before = await hostState();
      const r = await runInFs(c);
      const dir = r.stdout.trim();
      t.match(dir, /nocow-runinfs-/);
      if (c.name === 'raid1, failure') t.equal(r.stderr.split('\n').filter((l) => l.includes(dir)).length, 2, 'two loop devices were in use');
      if (c.name.includes('killed')) t.equal(r.exitCode, 128 + 9);
      await assertNothingLeft(t, before, dir);
    });
  }

  await t.test('raid1, setup failing after the loop devices exist', async (t) => {
    const before = await hostState();
    await t.rejects(runInFs({ fs: 'btrfs', raid1: true, mkfsArgs: ['--no-such-option'], script: 'true' }));
    const after = await hostState();
    t.equal(after.mountinfo, before.mountinfo);
    t.notMatch(after.loops, /nocow-runinfs-.*\(deleted\)/);
  });
});

t.test('GIVEN a tree WHEN snapshotted twice with nothing in between THEN the snapshots are equal', async (t) => {
  const r = await runInFs({
    fs: 'btrfs',
    script: `
      mkdir -p "$MNT/d/sub"
      printf hi >"$MNT/d/f"
      ln -s "../a target" "$MNT/d/link"
      : >"$MNT/d/tab$(printf '\\t')name"
      setfattr -n user.note -v hello "$MNT/d/f"
      setfacl -m u:12:rx "$MNT/d/sub"
      btrfs subvolume create "$MNT/d/sv" >/dev/null
      section before; observe_tree "$MNT/d"
      section same; observe_tree "$MNT/d"
      chmod 600 "$MNT/d/f"
      section after; observe_tree "$MNT/d"; observe_xattrs "$MNT/d/f" "$MNT/d/sub"
    `,
  });
  t.equal(r.exitCode, 0, r.stderr);
  const before = parseTree(section(r.stdout, 'before'));
  t.same([...before.keys()], ['.', 'f', 'link', 'sub', 'sv', 'tab\tname'], 'sorted, relative, escaped paths');
  t.match(before.get('f'), { kind: 'file', content: '8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4' });
  t.equal(xattrText(before.get('f')!.xattrs['user.note']!), 'hello');
  t.ok(before.get('sub')!.xattrs['system.posix_acl_access'], 'ACLs are part of the snapshot');
  t.match(before.get('link'), { kind: 'symlink', content: '../a target' });
  t.match(before.get('sv'), { kind: 'dir', subvol: true });
  t.same(parseTree(section(r.stdout, 'same')), before);

  const after = parseTree(section(r.stdout, 'after'));
  const changed = [...after].filter(([path, entry]) => JSON.stringify(entry) !== JSON.stringify(before.get(path)));
  t.same(changed.map(([path]) => path), ['f'], 'only the chmod-ed file differs');
  t.match(after.get('f'), { mode: 0o600, inode: before.get('f')!.inode, mtime: before.get('f')!.mtime });
  t.not(after.get('f')!.ctime, before.get('f')!.ctime);

  const xattrs = parseXattrs(section(r.stdout, 'after'));
  t.same(Object.keys(xattrs.get('/d/f')!), ['user.note']);
  t.ok(xattrs.get('/d/sub')!['system.posix_acl_access']);
});

t.test('GIVEN the same path observed twice outside sections WHEN parsed THEN the parser refuses', async (t) => {
  const line = 'OBS\t/x\tmissing\t-\t-\t-\t-\t-\t-\t-\t-\t-';
  t.throws(() => parseObservations(`${line}\n${line}`), /twice/);
  t.throws(() => parseObservations('OBS\t/x\tmissing'), /malformed/);
});
