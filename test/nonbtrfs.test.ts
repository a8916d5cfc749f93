// Not on Btrfs: nothing changes, nothing is said, exit 0 — and docs/design.md's cost budget:
// processes started before the artifact knows there is nothing to do.
import t from 'tap';
import { PRELUDE, SHELLS, renderFor, readArtifactFile, result } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs, type FsType } from './helpers/fs.js';

const TARGETS = [target({ path: '/var/lib/libvirt/images' }), target({ name: 'db', path: '/var/lib/mysql' }), target({ name: 'new', path: '/srv/new images' })];
const SETUP = `mkdir -p "$R/var/lib/libvirt/images" "$R/var/lib/mysql"; echo data >"$R/var/lib/mysql/ibdata1"`;

for (const fs of ['ext4', 'xfs'] as FsType[]) {
  for (const [i, shell] of SHELLS.entries()) {
    const runner = i % 2 === 0 ? 'hook' : 'kickstart';
    t.test(`GIVEN a ${fs} root WHEN ${shell} runs the ${runner} artifact THEN nothing changes, nothing is said, exit 0`, async (t) => {
      const a = await renderFor(TARGETS, t);
      const run = await runInFs({ fs, env: { A: a.dir }, script: `${PRELUDE}${SETUP}\nsnap before\nrun run1 '${shell}' ${runner}\nsnap after` });
      t.equal(run.exitCode, 0, run.stderr);
      t.same(await result(a, 'run1'), { out: '', err: '', rc: 0 });
      t.equal(await readArtifactFile(a, 'after.snap'), await readArtifactFile(a, 'before.snap'), 'same entries, inodes, ctimes, flags');
      t.notMatch(await readArtifactFile(a, 'after.snap'), /new images/, 'the missing path stays missing');
    });
  }
}

/** Processes the artifact's shell starts (its forks), for each of the three targets. */
async function forks(fs: FsType, setup: string): Promise<number> {
  const a = await renderFor([target({ path: '/var/lib/libvirt/images' })], t);
  const run = await runInFs({
    fs,
    env: { A: a.dir },
    script: `${PRELUDE}${setup}
      strace -f -qq -o "$A/trace" -e trace=clone,clone3,fork,vfork dash "$A/nocow-apply.sh" --root "$R" >"$A/out" 2>&1
      grep -c -E '^[0-9]+ +(clone|clone3|fork|vfork)\\(' "$A/trace" >"$A/count" || :`,
  });
  if (run.exitCode !== 0) throw new Error(run.stderr);
  t.equal(await readArtifactFile(a, 'out'), '', 'silent');
  return Number(await readArtifactFile(a, 'count'));
}

t.test('GIVEN a non-Btrfs root WHEN the scriptlet runs THEN it starts at most 2 processes (docs/design.md: Cost)', async (t) => {
  for (const fs of ['ext4', 'xfs'] as FsType[]) {
    const n = await forks(fs, 'mkdir -p "$R/var/lib/libvirt/images"');
    t.ok(n >= 1 && n <= 2, `${fs}: ${n} processes`);
  }
});

t.test('GIVEN a Btrfs root already in the declared state WHEN the scriptlet runs THEN it starts at most 4 processes (docs/design.md: Cost)', async (t) => {
  const n = await forks('btrfs', 'mkdir -p "$R/var/lib/libvirt"; btrfs subvolume create "$R/var/lib/libvirt/images" >/dev/null; chattr +C "$R/var/lib/libvirt/images"');
  t.ok(n >= 1 && n <= 4, `btrfs: ${n} processes`);
});
