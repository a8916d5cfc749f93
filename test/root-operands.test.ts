// --root for the commands that change things (src/inspect/select.ts operandPath): convert and
// migrate read their PATHs, and their declared targets, under the root, as status, apply and
// defrag do; a PATH must then be absolute, may not lead out of the root, and system paths are
// refused there too.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const CLI = builtCli();

t.test('GIVEN an image root WHEN convert and migrate run with --root THEN they act on the paths under it, the declared targets under it, and refuse a relative path, a path leading out of it and a system path', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { CLI },
    script: String.raw`
      set +e
      nc() { node "$CLI" "$@" >"$MNT/out" 2>"$MNT/err"; echo "$? $(tr '\n' '|' <"$MNT/out") $(tr '\n' '|' <"$MNT/err")"; }
      R=$MNT/root; I="$R/var/lib/libvirt/images"; V="$R/srv/vm"
      mkdir -p "$I" "$V" "$R/etc"; head -c 1M /dev/urandom >"$I/disk.img"; head -c 1M /dev/urandom >"$V/disk.img"; chattr +C "$V"
      ln -s /usr "$R/srv/out"
      echo "migrate-declared $(nc migrate --root "$R" -n)"
      echo "migrate-path $(nc migrate --root "$R" /srv/vm)"
      echo "convert-path $(nc convert --root "$R" /var/lib/libvirt/images)"
      echo "relative $(nc convert --root "$R" srv/vm)"
      echo "out $(nc migrate --root "$R" /srv/out)"
      echo "system $(nc convert --root "$R" /etc)"
      echo "flags $(lsattr -d "$V/disk.img" | cut -c1-22 | tr -d -) $(btrfs subvolume show "$I" >/dev/null 2>&1 && echo subvolume)"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  t.match(line('migrate-declared'), /^0 nocow: \S+\/root\/var\/lib\/libvirt\/images\/disk\.img: would rewrite \(1\.0 MiB, \d+ extents?\)\| $/, 'without PATH: the declared target under the root');
  t.match(line('migrate-path'), /^0 nocow: \S+\/root\/srv\/vm\/disk\.img: rewritten as NOCOW \(1\.0 MiB; extents \d+ → \d+\)\| $/, 'a PATH as seen under the root');
  t.match(line('convert-path'), /^0 nocow: \S+\/root\/var\/lib\/libvirt\/images: converted into a subvolume with \+C \(1 file, 1\.0 MiB copied and verified\)\| $/);
  t.equal(line('relative'), '2  nocow: error: srv/vm: with --root, give a path as seen under the root, starting with "/"|');
  t.match(line('out'), /^2 {2}nocow: error: \/srv\/out: leads out of --root \S+\/root \(\/usr\)\|$/);
  t.equal(line('system'), '2  nocow: error: /etc: refused: /etc belongs to the system, never a target (see SECURITY.md)|');
  t.equal(line('flags'), 'C subvolume', 'the files under the root were rewritten and converted');
});
