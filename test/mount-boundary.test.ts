// Every engine that walks a target's tree stops at the mount points inside it (src/host/mounts.ts),
// bind mounts of the same file system too, which -xdev and device numbers do not tell apart:
// migrate rewrites none of the files they bring in, status and apply count none of them.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

interface StatusJson {
  targets: { cowFiles: { path: string }[] | null }[];
}

t.test('GIVEN a target holding a CoW file of its own, a directory and a file of the same Btrfs bind-mounted into it from outside (names with a space and glob characters) WHEN apply --dry-run, apply, status and migrate run THEN only its own files are counted and rewritten, and the outside files keep their inodes, attributes and bytes', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`
set +e
R=$MNT/root; P=$R/var/lib/libvirt/images; O=$MNT/outside
mkdir -p "$P/sub dir/mnt [1]*" "$O/deeper"
head -c 1M /dev/urandom >"$P/own.img"; head -c 4096 /dev/urandom >"$P/sub dir/nested.img"; : >"$P/single.img"
head -c 1M /dev/urandom >"$O/keep.img"; echo precious >"$O/deeper/note.txt"; head -c 8192 /dev/urandom >"$O/file.img"
sync
mount --bind "$O" "$P/sub dir/mnt [1]*"
mount --bind "$O/file.img" "$P/single.img"
outside() { for f in keep.img deeper/note.txt file.img; do echo "$f $(stat -c %i "$O/$f") $(lsattr "$O/$f" | cut -d' ' -f1) $(sha256sum <"$O/$f" | cut -c1-16)"; done; }
outside >"$MNT/before"
$NC apply --root "$R" -p libvirt --dry-run 2>&1 | sed 's/^/dry /'
$NC apply --root "$R" -p libvirt 2>&1 | sed 's/^/apply /'
$NC status --root "$R" -p libvirt --json >"$MNT/status.json"; echo "status-rc $?"
$NC migrate "$P" >"$MNT/out" 2>"$MNT/err"; echo "migrate-rc $?"
sed 's/^/out /' "$MNT/out"; sed 's/^/err /' "$MNT/err"
outside >"$MNT/after"
cmp -s "$MNT/before" "$MNT/after" && echo "outside untouched" || { echo "outside changed"; diff "$MNT/before" "$MNT/after"; }
echo "own $(lsattr "$P/own.img" | cut -d' ' -f1) $(lsattr "$P/sub dir/nested.img" | cut -d' ' -f1)"
echo "status-json $(tr -d '\n' <"$MNT/status.json")"
`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const lines = run.stdout.split('\n');
  const line = (key: string) => lines.find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  t.match(run.stdout, /^dry nocow: libvirt: set-nocow: \+C on \S+ for new files; 2 existing files keep copy-on-write/m, 'apply --dry-run: the two files of its own');
  t.match(line('apply'), /^nocow: libvirt: set-nocow: \+C on \S+ for new files; 2 existing files keep copy-on-write/, "the shell library's count: the two files of its own");
  t.equal(line('status-rc'), '1');
  const status = JSON.parse(line('status-json')!) as StatusJson;
  t.same(
    status.targets[0]!.cowFiles!.map((c) => c.path),
    ['own.img', 'sub dir/nested.img'],
    'status lists its own files, none through the mounts',
  );
  t.equal(line('migrate-rc'), '0');
  t.match(
    lines.filter((l) => l.startsWith('out ')),
    [/^out nocow: \S+\/images\/own\.img: rewritten as NOCOW/, /^out nocow: \S+\/images\/sub dir\/nested\.img: rewritten as NOCOW/],
    'its own files rewritten, and nothing else',
  );
  t.equal(lines.filter((l) => l.startsWith('out ')).length, 2);
  t.same(lines.filter((l) => l.startsWith('err ')), [], 'no file through a mount was even tried');
  t.match(run.stdout, /^outside untouched$/m, 'the outside files: same inodes, still CoW, same bytes');
  t.match(line('own'), /^\S*C\S* \S*C\S*$/);
});
