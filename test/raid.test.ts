// docs/design.md step 6 on a real two-device raid1 Btrfs: +C would drop the checksums that
// self-healing needs, so it is skipped by default (with the reason) and forced on request.
import t from 'tap';
import { PRELUDE, renderFor, readArtifactFile, result } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs } from './helpers/fs.js';

const P = '/var/lib/libvirt/images';

for (const [redundancy, expectFlag] of [
  ['keep-checksums', false],
  ['force-nocow', true],
] as const) {
  t.test(`GIVEN a raid1 Btrfs and redundancy: ${redundancy} WHEN the kickstart section runs THEN a subvolume is made and +C is ${expectFlag ? 'set' : 'skipped with the reason'}`, async (t) => {
    const a = await renderFor([target({ path: P, redundancy })], t);
    const run = await runInFs({
      fs: 'btrfs',
      raid1: true,
      env: { A: a.dir },
      script: `${PRELUDE}
        btrfs filesystem df "$MNT" | head -1 >"$A/profile"
        run run1 dash kickstart
        run run2 dash kickstart
        echo "$(subvol "$R${P}") $(flags "$R${P}")" >"$A/obs"`,
    });
    t.equal(run.exitCode, 0, run.stderr);
    t.match(await readArtifactFile(a, 'profile'), /^Data, RAID1:/);
    const run1 = await result(a, 'run1');
    t.equal(run1.err, '');
    if (expectFlag) {
      t.match(run1.out, /^nocow: vm: created: subvolume .*\nnocow: vm: set-nocow: \+C on .*\n$/);
      t.match(await readArtifactFile(a, 'obs'), /^yes \S*C\S*\n$/);
    } else {
      t.match(run1.out, /^nocow: vm: created: subvolume .*\nnocow: vm: skipped: \+C not set: the data profile is raid1, and nocow would remove the checksums its self-healing needs \(redundancy: force-nocow overrides\)\n$/);
      t.match(await readArtifactFile(a, 'obs'), /^yes [^C\s]+\n$/);
    }
    t.same(await result(a, 'run2'), { out: '', err: '', rc: 0 }, 'second run silent');
  });
}
