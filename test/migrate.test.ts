// nocow migrate on real Btrfs: the rewrite keeps every byte and attribute, defragments,
// survives being killed mid-copy and at the rename, and refuses what it must.
import t from 'tap';
import { runInFs, section, type FsType } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

/** A directory D with a file made copy-on-write before D got +C, as images copied in too early are. */
const SETUP = String.raw`
D=$MNT/images
mkdir "$D"
fragmented() {  # PATH: 8 MiB written as random 4 KiB pieces with a sync after each burst: many extents
  head -c 8388608 /dev/urandom >"$1"; sync
  for i in $(seq 1 300); do
    dd if=/dev/urandom of="$1" bs=4096 count=1 seek=$(( (i * 7919) % 2048 )) conv=notrunc status=none
    [ $((i % 10)) -ne 0 ] || sync
  done
  sync
}
describe() {  # PATH: what migrate must keep, and what it changes
  echo "$(sha256sum <"$1" | cut -d' ' -f1) $(stat -c '%s %a %u:%g %y' "$1") $(getfattr -n user.origin --only-values "$1" 2>/dev/null)"
}
flags() { lsattr -d "$1" | cut -d' ' -f1; }
extents() { filefrag "$1" | sed -E 's/.*: ([0-9]+) extents? found/\1/'; }
set +e  # each script records the exit statuses it asserts on
`;

async function btrfs(script: string, fs: FsType = 'btrfs', extra: { raid1?: boolean; sizeMiB?: number } = {}) {
  const run = await runInFs({ fs, script: SETUP + script, env: { NC }, ...extra });
  return run;
}

t.test('GIVEN a fragmented CoW image in a +C directory WHEN migrated THEN it has +C, the same bytes, owner, mode, times and xattrs, and far fewer extents', async (t) => {
  const run = await btrfs(String.raw`
    fragmented "$D/disk.img"; chmod 0640 "$D/disk.img"; chown 107:36 "$D/disk.img"
    setfattr -n user.origin -v kept "$D/disk.img"; touch -d '2020-05-06 07:08:09' "$D/disk.img"
    chattr +C "$D"
    echo "before $(describe "$D/disk.img") $(flags "$D/disk.img") $(extents "$D/disk.img")"
    $NC migrate "$D" >"$MNT/out" 2>"$MNT/err"; echo "rc $?"
    echo "after $(describe "$D/disk.img") $(flags "$D/disk.img") $(extents "$D/disk.img")"
    echo "out $(cat "$MNT/out")"; echo "err $(cat "$MNT/err")"; echo "left $(ls -A "$D" | tr '\n' ' ')"
    $NC migrate "$D"; echo "again $?"`);
  t.equal(run.exitCode, 0, run.stderr);
  const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))!.slice(key.length + 1);
  const [before, after] = [line('before').split(' '), line('after').split(' ')];
  t.equal(line('rc'), '0');
  t.same(after.slice(0, -2), before.slice(0, -2), 'same checksum, size, mode, owner, mtime, xattr');
  t.notMatch(before.at(-2)!, /C/);
  t.match(after.at(-2)!, /C/, 'the file has +C');
  const [extentsBefore, extentsAfter] = [Number(before.at(-1)), Number(after.at(-1))];
  t.ok(extentsBefore >= 50, `fragmented before: ${extentsBefore} extents`);
  t.ok(extentsAfter * 10 <= extentsBefore, `after: ${extentsAfter} extents`);
  t.match(line('out'), /^nocow: \S*\/images\/disk\.img: rewritten as NOCOW \(8\.0 MiB; extents \d+ → \d+\)$/);
  t.equal(line('err'), '');
  t.equal(line('left'), 'disk.img ', 'no temporary file left');
  t.match(run.stdout, /^nocow: nothing to migrate: every file already has \+C\nagain 0$/m, 'a second run has nothing to do');
});

for (const [where, inject] of [
  ['mid-copy (at its third data write)', '-e trace=pwrite64 -e inject=pwrite64:signal=KILL:when=3'],
  ['at the rename over the original', '-f -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=KILL'],
] as const) {
  t.test(`GIVEN a migration killed ${where} WHEN it is run again THEN the original was intact meanwhile and the re-run finishes the job`, async (t) => {
    const run = await btrfs(String.raw`
      fragmented "$D/disk.img"; chattr +C "$D"
      echo "before $(describe "$D/disk.img")"
      rc=0; strace -qq -o /dev/null ${inject} $NC migrate "$D" >/dev/null 2>&1 || rc=$?
      echo "killed $rc"
      echo "meanwhile $(describe "$D/disk.img") $(flags "$D/disk.img")"
      $NC migrate "$D" >/dev/null; echo "rerun $?"
      echo "after $(describe "$D/disk.img") $(flags "$D/disk.img")"
      echo "left $(ls -A "$D" | tr '\n' ' ')"`);
    t.equal(run.exitCode, 0, run.stderr);
    const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))!.slice(key.length + 1);
    t.equal(line('killed'), '137', 'killed by SIGKILL');
    const before = line('before');
    t.equal(line('meanwhile'), `${before} ${'-'.repeat(22)}`, 'the original: same bytes and attributes, still CoW');
    t.equal(line('rerun'), '0');
    t.match(line('after'), new RegExp(`^${before.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\S*C\\S*$`), 'rewritten with +C, same bytes and attributes');
    t.equal(line('left'), 'disk.img ', 'the temporary file of the killed run is gone');
  });
}

t.test('GIVEN sparse and preallocated files WHEN migrated THEN apparent sizes are kept, holes stay holes, preallocation stays allocated', async (t) => {
  const run = await btrfs(String.raw`
    truncate -s 64M "$D/sparse.img"; head -c 1048576 /dev/urandom | dd of="$D/sparse.img" bs=1M seek=10 conv=notrunc status=none
    fallocate -l 16M "$D/prealloc.img"; head -c 1048576 /dev/urandom | dd of="$D/prealloc.img" bs=1M conv=notrunc status=none
    sync; chattr +C "$D"
    for f in sparse prealloc; do echo "$f before $(sha256sum <"$D/$f.img" | cut -c1-16) $(stat -c '%s %b' "$D/$f.img")"; done
    $NC migrate "$D" >/dev/null; sync
    for f in sparse prealloc; do echo "$f after $(sha256sum <"$D/$f.img" | cut -c1-16) $(stat -c '%s %b' "$D/$f.img") $(flags "$D/$f.img")"; done`);
  t.equal(run.exitCode, 0, run.stderr);
  const fields = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(key))!.split(' ').slice(2);
  for (const f of ['sparse', 'prealloc']) {
    const [before, after] = [fields(`${f} before`), fields(`${f} after`)];
    t.same(after.slice(0, 2), before.slice(0, 2), `${f}: same bytes and apparent size`);
    t.match(after[3], /C/, `${f}: +C`);
  }
  const sparseBlocks = Number(fields('sparse after')[2]) * 512;
  t.ok(sparseBlocks <= 2 * 1024 * 1024, `sparse: ${sparseBlocks} bytes allocated for 1 MiB of data in 64 MiB`);
  const preallocBlocks = Number(fields('prealloc after')[2]) * 512;
  t.ok(preallocBlocks >= 16 * 1024 * 1024, `preallocated: ${preallocBlocks} bytes allocated, as before`);
});

t.test('GIVEN a file some process holds open WHEN migrated THEN it is refused, naming the process; --force rewrites it', async (t) => {
  const run = await btrfs(String.raw`
    head -c 1048576 /dev/urandom >"$D/busy.img"; chattr +C "$D"
    exec 3<"$D/busy.img"
    $NC migrate "$D" >/dev/null 2>"$MNT/err"; echo "rc $?"; echo "err $(cat "$MNT/err")"; echo "flags $(flags "$D/busy.img")"
    $NC migrate --force "$D" >/dev/null 2>&1; echo "forced $? $(flags "$D/busy.img")"
    exec 3<&-`);
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^rc 1$/m);
  t.match(run.stdout, /^err nocow: .*\/busy\.img: not rewritten: open by process \d+ \(--force overrides\)$/m);
  t.match(run.stdout, /^flags -{22}$/m);
  t.match(run.stdout, /^forced 0 \S*C\S*$/m);
});

t.test('GIVEN too little free space for the copy WHEN migrated THEN it is refused and the file untouched', async (t) => {
  const run = await btrfs(
    String.raw`
    head -c 150M /dev/urandom >"$D/big.img"; sync; chattr +C "$D"
    before=$(describe "$D/big.img")
    $NC migrate "$D" >/dev/null 2>"$MNT/err"; echo "rc $?"; echo "err $(cat "$MNT/err")"
    [ "$(describe "$D/big.img")" = "$before" ] && echo untouched`,
    'btrfs',
    { sizeMiB: 256 },
  );
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^rc 1$/m);
  t.match(run.stdout, /^err nocow: .*\/big\.img: not rewritten: not enough free space for the copy \(\d+\.\d MiB free, \d+\.\d MiB needed\)$/m);
  t.match(run.stdout, /^untouched$/m);
});

t.test('GIVEN --dry-run WHEN migrate runs THEN it lists the files and changes nothing', async (t) => {
  const run = await btrfs(String.raw`
    head -c 1048576 /dev/urandom >"$D/a.img"; chattr +C "$D"
    before=$(stat -c '%i %z' "$D/a.img")
    $NC migrate -n "$D"; echo "rc $?"
    [ "$(stat -c '%i %z' "$D/a.img")" = "$before" ] && echo unchanged`);
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^nocow: \S*\/images\/a\.img: would rewrite \(1\.0 MiB, \d+ extents?\)\nrc 0\nunchanged$/);
});

t.test('GIVEN a raid1 Btrfs WHEN migrated THEN refused by default (checksums), rewritten with --force-nocow', async (t) => {
  const run = await btrfs(
    String.raw`
    head -c 1048576 /dev/urandom >"$D/a.img"; chattr +C "$D"
    $NC migrate "$D" >/dev/null 2>"$MNT/err"; echo "rc $?"; echo "err $(cat "$MNT/err")"
    $NC migrate --force-nocow "$D" >/dev/null; echo "forced $? $(flags "$D/a.img")"`,
    'btrfs',
    { raid1: true },
  );
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^rc 1\nerr nocow: .*\/a\.img: not rewritten: the data profile is raid1: \+C would remove the checksums its self-healing needs \(--force-nocow overrides\)$/m);
  t.match(run.stdout, /^forced 0 \S*C\S*$/m);
});

t.test('GIVEN ext4 WHEN migrated THEN refused as not on Btrfs; a missing path is a usage error', async (t) => {
  const run = await btrfs(
    String.raw`
    head -c 4096 /dev/urandom >"$D/a.img"
    $NC migrate "$D" >/dev/null 2>"$MNT/err"; echo "rc $?"; echo "err $(cat "$MNT/err")"
    $NC migrate "$MNT/nope" 2>"$MNT/err2"; echo "missing $?"; echo "err2 $(cat "$MNT/err2")"
    printf 'targets:\n  - { name: vm, path: %s }\n' "$D" >"$MNT/d.yaml"
    $NC migrate -c "$MNT/d.yaml" 2>"$MNT/err3"; echo "declared $?"; echo "err3 $(cat "$MNT/err3")"`,
    'ext4',
  );
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^rc 1\nerr nocow: .*\/a\.img: not rewritten: not on Btrfs$/m);
  t.match(run.stdout, /^missing 2\nerr2 nocow: error: .*\/nope: no such file or directory$/m);
  t.match(run.stdout, /^declared 0\nerr3 nocow: vm: skipped: not on Btrfs \(ext2\/ext3\)$/m, 'a declared target off Btrfs: nothing expected, nothing to do');
});

t.test('GIVEN a subvolume that got +C after a CoW image was copied in WHEN status, migrate, status THEN status reports the image with its extents and exits 1, and after migrate the image has +C, the same checksum, far fewer extents, and status exits 0', async (t) => {
  const run = await btrfs(String.raw`
    R=$MNT/root; P=$R/var/lib/libvirt/images
    mkdir -p "$R/var/lib/libvirt"; btrfs subvolume create "$P" >/dev/null; chmod 0711 "$P"
    fragmented "$P/win11.img"
    $NC apply --root "$R" -p libvirt >"$MNT/apply.out"      # non-empty: +C on the directory only
    sum=$(sha256sum <"$P/win11.img")
    $NC status --root "$R" -p libvirt --json >"$MNT/before.json"; echo "status-before $?"
    $NC migrate "$P" >/dev/null; echo "migrate $?"
    [ "$(sha256sum <"$P/win11.img")" = "$sum" ] && echo "same checksum"
    echo "after $(flags "$P/win11.img") $(extents "$P/win11.img")"
    $NC status --root "$R" -p libvirt --json >"$MNT/after.json"; echo "status-after $?"
    cat "$MNT/before.json"; echo; echo ===; cat "$MNT/after.json"`);
  t.equal(run.exitCode, 0, run.stderr);
  const [head, afterJson] = run.stdout.split('\n===\n');
  const lines = head!.split('\n');
  const beforeJson = lines.slice(lines.findIndex((l) => l.startsWith('{'))).join('\n');
  t.match(head, /^status-before 1$/m);
  t.match(head, /^migrate 0$/m);
  t.match(head, /^same checksum$/m);
  const before = JSON.parse(beforeJson) as { state: string; targets: { cowFiles: { path: string; size: number; extents: number }[] }[] };
  const after = JSON.parse(afterJson!) as { state: string; targets: { cowFiles: unknown[] }[] };
  t.equal(before.state, 'deviates');
  const [image] = before.targets[0]!.cowFiles;
  t.match(image, { path: 'win11.img', size: 8388608 });
  t.ok(image!.extents >= 50, `status reports ${image!.extents} extents`);
  const [, flagsAfter, extentsAfter] = /^after (\S+) (\d+)$/m.exec(head!)!;
  t.match(flagsAfter, /C/);
  t.ok(Number(extentsAfter) * 10 <= image!.extents, `${image!.extents} extents before, ${extentsAfter} after`);
  t.match(head, /^status-after 0$/m);
  t.equal(after.state, 'as-declared');
  t.same(after.targets[0]!.cowFiles, []);
});

t.test('GIVEN a terminal WHEN migrate rewrites a file THEN a progress bar shows bytes and throughput; without a terminal there is none', async (t) => {
  const run = await btrfs(String.raw`
    head -c 24M /dev/urandom >"$D/a.img"; head -c 24M /dev/urandom >"$D/b.img"; chattr +C "$D"
    script -qfec "$NC migrate $D/a.img" /dev/null >"$MNT/tty" </dev/null; echo "tty $?"
    $NC migrate "$D/b.img" >"$MNT/pipe" 2>&1; echo "pipe $?"
    tr '\r' '\n' <"$MNT/tty" | grep -a 'MiB/s' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g'
    echo "---"; cat "$MNT/pipe"`);
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^tty 0\npipe 0\n/);
  t.match(run.stdout, /\d+% \| (\d+ B|\d+\.\d [KMG]iB)\/24\.0 MiB \| (\d+ B|\d+\.\d [KMG]iB)\/s \| .*a\.img/, 'bar: percentage, bytes, throughput, file; sizes as every line shows them');
  t.match(run.stdout, /---\nnocow: \S*b\.img: rewritten as NOCOW \(24\.0 MiB; extents \d+ → \d+\)\n?$/, 'no bar when output is not a terminal');
});

t.test('GIVEN a file held open read-write through the real directory, a program from it running (mapped, no descriptor) and a file a loop device is attached to WHEN migrated through a symlinked directory THEN all three are refused naming the process or device, the file unchanged; once released, all are rewritten', async (t) => {
  const run = await btrfs(String.raw`
    V=$MNT/vm; mkdir "$V"; ln -s vm "$MNT/pool"
    head -c 4M /dev/urandom >"$V/disk.img"; cp "$(command -v sleep)" "$V/tool"; head -c 4M /dev/urandom >"$V/looped.img"
    chattr +C "$V"
    sleep 1000 3<>"$V/disk.img" & holder=$!
    "$V/tool" 1000 & runner=$!
    loop=
    trap 'kill $holder $runner 2>/dev/null; wait; [ -z "$loop" ] || losetup -d "$loop"' EXIT
    loop=$(losetup --find --show "$V/looped.img"); echo "loop $loop"
    until [ -e "/proc/$holder/fd/3" ] && grep -q /tool "/proc/$runner/maps" 2>/dev/null; do sleep 0.01; done
    echo "holder $holder"; echo "runner $runner"
    before="$(stat -c %i "$V/disk.img") $(describe "$V/disk.img") $(flags "$V/disk.img")"
    $NC migrate "$MNT/pool/disk.img" >"$MNT/out" 2>"$MNT/err"; echo "file $? $(cat "$MNT/out")"; sed 's/^/file-err /' "$MNT/err"
    $NC migrate "$MNT/pool" >"$MNT/out" 2>"$MNT/err"; echo "dir $? $(cat "$MNT/out")"; sed 's/^/dir-err /' "$MNT/err"
    [ "$(stat -c %i "$V/disk.img") $(describe "$V/disk.img") $(flags "$V/disk.img")" = "$before" ] && echo "disk unchanged"
    kill $holder $runner; wait; losetup -d "$loop"; loop=; trap - EXIT
    $NC migrate "$MNT/pool" >/dev/null; echo "released $? $(flags "$V/disk.img") $(flags "$V/looped.img") $(flags "$V/tool")"`);
  t.equal(run.exitCode, 0, run.stderr);
  const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  const openBy = (file: string, pid: string | undefined, how = 'open by process') =>
    new RegExp(`^nocow: \\S+/vm/${file}: not rewritten: ${how} ${pid} \\(--force overrides\\)$`);
  t.equal(line('file'), '1 ', 'refused, nothing rewritten');
  t.match(line('file-err'), openBy('disk\\.img', line('holder')), 'the holder named, through the symlink');
  t.equal(line('dir'), '1 ');
  const dirErr = run.stdout.split('\n').filter((l) => l.startsWith('dir-err ')).map((l) => l.slice('dir-err '.length));
  t.equal(dirErr.length, 3);
  t.match(dirErr[0], openBy('disk\\.img', line('holder')));
  t.match(dirErr[1], openBy('looped\\.img', line('loop'), 'attached to'), 'a loop device: no process holds the file');
  t.match(dirErr[2], openBy('tool', line('runner')), 'a running program: mapped without a descriptor');
  t.match(run.stdout, /^disk unchanged$/m, 'same inode, bytes, attributes, still CoW');
  t.match(run.stdout, /^released 0 \S*C\S* \S*C\S* \S*C\S*$/m);
});

t.test('GIVEN a file with a 250-byte name WHEN migrated, killed mid-copy, then run again THEN the copy has the short temporary name, is not taken for a file to migrate, and the re-run rewrites the file and leaves nothing', async (t) => {
  const run = await btrfs(String.raw`
    name=$(head -c 246 /dev/zero | tr '\0' n).img; echo "length $(printf %s "$name" | wc -c)"
    head -c 8M /dev/urandom >"$D/$name"; chattr +C "$D"
    before=$(describe "$D/$name")
    strace -qq -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=KILL:when=3 $NC migrate "$D" >/dev/null 2>&1; echo "killed $?"
    echo "temporaries $(ls -A "$D" | grep -c '^\.nocow-[0-9]*\.nocow-migrate$')"
    $NC migrate -n "$D" | sed 's/^/plan /'; echo "dry $?"
    $NC migrate "$D" >"$MNT/out" 2>&1; echo "rc $?"; echo "out $(cat "$MNT/out")"
    [ "$(describe "$D/$name")" = "$before" ] && echo "same bytes and attributes"
    echo "flags $(flags "$D/$name")"; echo "left $(ls -A "$D" | sed 's/^n*/N/' | tr '\n' ' ')"
    $NC migrate "$D"; echo "again $?"`);
  t.equal(run.exitCode, 0, run.stderr);
  const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  t.equal(line('length'), '250');
  t.equal(line('killed'), '137', 'killed mid-copy');
  t.equal(line('temporaries'), '1', 'the killed run left .nocow-CKSUM.nocow-migrate');
  t.match(run.stdout, /^plan nocow: \S+\/n{246}\.img: would rewrite \(8\.0 MiB, \d+ extents?\)\ndry 0$/m, 'the dry run lists the file alone');
  t.equal(line('rc'), '0');
  t.match(line('out'), /^nocow: \S+\/n{246}\.img: rewritten as NOCOW \(8\.0 MiB; extents \d+ → \d+\)$/);
  t.match(run.stdout, /^same bytes and attributes$/m);
  t.match(line('flags'), /C/);
  t.equal(line('left'), 'N.img ', 'the temporary copy is gone');
  t.match(run.stdout, /^nocow: nothing to migrate: every file already has \+C\nagain 0$/m);
});

t.test('GIVEN system paths, as given or reached through symlinks WHEN migrated THEN each is refused with exit status 2 and one error line before anything is touched; so is a path that is not UTF-8', async (t) => {
  // /etc is a copy on the test's Btrfs, bound over /etc in this mount namespace only, so
  // that a migrate that did not refuse would show (and harm nothing).
  const run = await btrfs(String.raw`
    mkdir "$MNT/etc"; cp -a /etc/. "$MNT/etc/" && mount --bind "$MNT/etc" /etc || { echo "could not bind a copy of /etc"; exit 1; }
    head -c 1M /dev/urandom >/etc/x.img; head -c 1M /dev/urandom >"$D/a.img"
    ln -s /etc "$MNT/etc-link"; ln -s /etc/x.img "$D/x.img"
    snapshot() { find "$MNT/etc" "$D" -printf '%i %C@ %s %p\n' | sort | sha256sum; }
    before=$(snapshot)
    for p in /etc /etc/x.img /usr/lib/x "$MNT/etc-link" "$D/x.img"; do
      $NC migrate "$p" >"$MNT/out" 2>"$MNT/err"; echo "refused $? $(wc -l <"$MNT/err") $(cat "$MNT/err") $(cat "$MNT/out")"
    done
    $NC migrate "$D/a.img" /etc >"$MNT/out" 2>"$MNT/err"; echo "mixed $? $(wc -l <"$MNT/err") $(cat "$MNT/err") $(cat "$MNT/out")"
    $NC migrate "$D/a.img" "$(printf '%s/\377.img' "$D")" >"$MNT/out" 2>"$MNT/err"; echo "utf8 $? $(wc -l <"$MNT/err") $(cat "$MNT/err") $(cat "$MNT/out")"
    [ "$(snapshot)" = "$before" ] && echo "nothing changed" || echo "changed"`);
  t.equal(run.exitCode, 0, run.stderr);
  const lines = run.stdout.split('\n').filter((l) => l.startsWith('refused '));
  const NEVER = ', never a target \\(see SECURITY\\.md\\)';
  const system = (dir: string, below: boolean) => `${dir}${below ? ' and everything below it' : ''} belongs to the system`;
  const expected = [
    ['/etc', system('/etc', false)],
    ['/etc/x\\.img', system('/etc', true)],
    ['/usr/lib/x', system('/usr', true)],
    ['\\S+/etc-link', system('/etc', false)],
    ['\\S+/images/x\\.img', system('/etc', true)],
  ] as const;
  t.equal(lines.length, expected.length);
  expected.forEach(([path, reason], i) =>
    t.match(lines[i], new RegExp(`^refused 2 1 nocow: error: ${path}: refused: ${reason}${NEVER} $`), `${path}: exit 2, one line`),
  );
  t.match(run.stdout, new RegExp(`^mixed 2 1 nocow: error: /etc: refused: ${system('/etc', false)}${NEVER} $`, 'm'));
  t.match(run.stdout, /^utf8 2 1 nocow: error: PATH "\S+\/images\/\\ufffd\.img": not valid UTF-8 \(or contains U\+FFFD\); give a path whose name is UTF-8 $/m, 'a name that is not UTF-8 would name another file');
  t.match(run.stdout, /^nothing changed$/m, 'no file of the /etc copy or of the other path given touched');
});

interface MigrateJson {
  version: number;
  dryRun: boolean;
  state: string;
  files: { path: string; result: string; reason: string | null; sizeBytes: number; extentsBefore: number | null; extentsAfter: number | null }[];
  skipped: { name: string; path: string; reason: string }[];
}

t.test('GIVEN files to rewrite, one with two hard links and one named with control characters WHEN migrate runs with --dry-run, --json, and again THEN each line escapes control characters and gives sizes as every line does, and the JSON gives each file its result, reason, size and extents', async (t) => {
  const run = await btrfs(String.raw`
    head -c 4096 /dev/urandom >"$D/small.img"; head -c 1M /dev/urandom >"$D/linked.img"; ln "$D/linked.img" "$MNT/other-link"
    head -c 2048 /dev/urandom >"$D/b$(printf '\033')[31m.img"; sync
    chattr +C "$D"; echo "D $D"
    section dry-json; $NC migrate -n --json "$D" 2>/dev/null; echo "rc $?"
    section dry; $NC migrate -n "$D" 2>&1; echo "rc $?"
    section run; $NC migrate "$D" 2>"$MNT/err"; rc=$?; cat "$MNT/err"; echo "rc $rc"
    rm "$MNT/other-link"
    section again; $NC migrate --json "$D"; echo "rc $?"
    section third; $NC migrate --json "$D"; echo "rc $?"`);
  t.equal(run.exitCode, 0, run.stderr);
  const D = /^D (.*)$/m.exec(run.stdout)![1]!;
  const E = `${D}/b\\u001b[31m.img`;
  const part = (name: string) => {
    const lines = section(run.stdout, name).split('\n');
    return { rc: Number(lines.pop()!.replace('rc ', '')), text: lines.join('\n') };
  };
  const json = (name: string) => {
    const { rc, text } = part(name);
    return { rc, json: JSON.parse(text) as MigrateJson };
  };
  const hardLinks = 'it has 2 hard links, which a rewrite would split';

  const dryJson = json('dry-json');
  t.equal(dryJson.rc, 1, 'a file would be refused');
  t.match(dryJson.json, { version: 1, dryRun: true, state: 'incomplete', skipped: [] });
  t.same(Object.keys(dryJson.json.files[0]!), ['path', 'result', 'reason', 'sizeBytes', 'extentsBefore', 'extentsAfter'], 'fields in a fixed order');
  t.match(dryJson.json.files, [
    { path: `${D}/b\u001b[31m.img`, result: 'would-rewrite', reason: null, sizeBytes: 2048, extentsBefore: Number, extentsAfter: null },
    { path: `${D}/linked.img`, result: 'refused', reason: hardLinks, sizeBytes: 1048576, extentsBefore: Number, extentsAfter: null },
    { path: `${D}/small.img`, result: 'would-rewrite', reason: null, sizeBytes: 4096, extentsBefore: Number, extentsAfter: null },
  ]);

  const dry = part('dry');
  t.equal(dry.rc, 1);
  t.equal(
    dry.text,
    [
      `nocow: ${D}/linked.img: not rewritten: ${hardLinks}`,
      `nocow: ${E}: would rewrite (2.0 KiB, 1 extent)`,
      `nocow: ${D}/small.img: would rewrite (4.0 KiB, 1 extent)`,
    ].join('\n'),
  );
  const done = part('run');
  t.equal(done.rc, 1, 'one file refused');
  t.match(done.text, new RegExp(`^nocow: ${E.replace(/[\\[.]/g, '\\$&')}: rewritten as NOCOW \\(2\\.0 KiB; extents 1 → \\d+\\)$`, 'm'), 'escaped, in KiB');
  t.match(done.text, new RegExp(`^nocow: ${D}/small\\.img: rewritten as NOCOW \\(4\\.0 KiB; extents 1 → \\d+\\)$`, 'm'));
  t.match(done.text, new RegExp(`^nocow: ${D}/linked\\.img: not rewritten: ${hardLinks}$`, 'm'));
  t.notMatch(done.text, /\u001b/, 'no raw escape character reaches the terminal');

  const again = json('again');
  t.equal(again.rc, 0);
  t.match(again.json, { dryRun: false, state: 'rewritten', skipped: [] });
  t.match(again.json.files, [{ path: `${D}/linked.img`, result: 'rewritten', reason: null, sizeBytes: 1048576, extentsBefore: Number, extentsAfter: Number }]);
  t.equal(again.json.files.length, 1);
  const third = json('third');
  t.equal(third.rc, 0);
  t.same(third.json, { version: 1, dryRun: false, state: 'unchanged', files: [], skipped: [], leftovers: [] }, 'automation can tell a no-op from a rewrite');
});

t.test('GIVEN a declaration (--config) and no PATH WHEN migrate runs THEN the files of the targets where +C is expected are rewritten and every other target is skipped with one line saying why; PATHs with --config are refused', async (t) => {
  const run = await btrfs(String.raw`
    mkdir "$MNT/off"; head -c 1M /dev/urandom >"$D/a.img"; head -c 1M /dev/urandom >"$MNT/off/b.img"; chattr +C "$D"
    printf 'targets:\n  - { name: vm, path: %s }\n  - { name: off, path: %s, nocow: false }\n  - { name: missing, path: %s }\n  - { name: boxes, scope: user, path: ~/.local/share/gnome-boxes/images }\n' "$D" "$MNT/off" "$MNT/missing" >"$MNT/d.yaml"
    echo "MNT $MNT"
    section disabled; NOCOW_DISABLE=1 $NC migrate -c "$MNT/d.yaml" -n 2>&1; echo "rc $?"
    section run; $NC migrate -c "$MNT/d.yaml" 2>&1; echo "rc $?"
    section json; $NC migrate -c "$MNT/d.yaml" --json 2>/dev/null; echo "rc $?"
    section both; $NC migrate -c "$MNT/d.yaml" "$D" 2>&1; echo "rc $?"
    section flags; echo "$(flags "$D/a.img") $(flags "$MNT/off/b.img")"`);
  t.equal(run.exitCode, 0, run.stderr);
  const MNT = /^MNT (.*)$/m.exec(run.stdout)![1]!;
  const D = `${MNT}/images`;
  const skippedLines = [
    'nocow: off: skipped: declared nocow: false',
    `nocow: missing: skipped: ${MNT}/missing does not exist (nocow apply creates it)`,
    'nocow: boxes: skipped: a user-scope target: give its directory in your home as PATH',
  ];
  t.equal(
    section(run.stdout, 'disabled'),
    ['nocow: vm: skipped: opted out by NOCOW_DISABLE=1', 'nocow: off: skipped: opted out by NOCOW_DISABLE=1', 'nocow: missing: skipped: opted out by NOCOW_DISABLE=1', skippedLines[2], 'rc 0'].join('\n'),
  );
  const done = section(run.stdout, 'run').split('\n');
  t.equal(done.pop(), 'rc 0');
  t.same(done.filter((l) => l.includes('skipped')), skippedLines, 'one line per target left out, in declaration order');
  t.match(done.filter((l) => !l.includes('skipped')), [new RegExp(`^nocow: ${D}/a\\.img: rewritten as NOCOW \\(1\\.0 MiB; extents \\d+ → \\d+\\)$`)]);
  const json = section(run.stdout, 'json').split('\n');
  t.equal(json.pop(), 'rc 0');
  t.same(JSON.parse(json.join('\n')), {
    version: 1,
    dryRun: false,
    state: 'unchanged',
    files: [],
    skipped: [
      { name: 'off', path: `${MNT}/off`, reason: 'declared nocow: false' },
      { name: 'missing', path: `${MNT}/missing`, reason: `${MNT}/missing does not exist (nocow apply creates it)` },
      { name: 'boxes', path: '~/.local/share/gnome-boxes/images', reason: 'a user-scope target: give its directory in your home as PATH' },
    ],
    leftovers: [],
  });
  t.equal(section(run.stdout, 'both'), "nocow: error: give PATHs or --profile/--config, not both: without PATH, migrate takes the declared targets' directories\nrc 2");
  t.match(section(run.stdout, 'flags'), /^\S*C\S* -{22}$/, 'the nocow: false target keeps its CoW file');
});

t.test('GIVEN a write that is lost on its way to the disk (strace makes a pwrite64 report success without writing) WHEN a large and a small file are migrated THEN the copy read back from the disk differs, each is refused, the original untouched and the copy removed; the read-back opens the copy with O_DIRECT, past the page cache', async (t) => {
  // 16 MiB: the large path (O_DIRECT, read back chunk by chunk); its second 1 MiB write is lost.
  // 1 MiB: the small path (page cache, read back once synced); its only write is lost.
  const run = await btrfs(String.raw`
    head -c 16M /dev/urandom >"$D/big.img"; head -c 1M /dev/urandom >"$D/small.img"; sync; chattr +C "$D"
    state() { echo "$(stat -c %i "$D/$1.img") $(describe "$D/$1.img") $(flags "$D/$1.img")"; }
    for f in big small; do state $f >"$MNT/before-$f"; done
    strace -qq -o /dev/null -e trace=pwrite64 -e inject=pwrite64:retval=1048576:when=2 $NC migrate "$D/big.img" >"$MNT/out" 2>"$MNT/err"; echo "big $? $(cat "$MNT/out")"; echo "big-err $(cat "$MNT/err")"
    strace -qq -o /dev/null -e trace=pwrite64 -e inject=pwrite64:retval=1048576:when=1 $NC migrate "$D/small.img" >"$MNT/out" 2>"$MNT/err"; echo "small $? $(cat "$MNT/out")"; echo "small-err $(cat "$MNT/err")"
    for f in big small; do [ "$(state $f)" = "$(cat "$MNT/before-$f")" ] && echo "$f untouched"; done
    echo "left $(ls -A "$D" | tr '\n' ' ')"
    strace -f -qq -e trace=openat -o "$MNT/trace" $NC migrate "$D" >/dev/null; echo "clean $?"
    echo "direct $(grep -c 'nocow-migrate", O_RDONLY|O_DIRECT|O_NOATIME' "$MNT/trace")"
    echo "flags $(flags "$D/big.img") $(flags "$D/small.img")"`);
  t.equal(run.exitCode, 0, run.stderr);
  const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  for (const f of ['big', 'small']) {
    t.equal(line(f), '1 ', `${f}: refused, nothing rewritten`);
    t.match(line(`${f}-err`), new RegExp(`^nocow: \\S+/images/${f}\\.img: not rewritten: the copy does not read back the same; original kept$`));
    t.match(run.stdout, new RegExp(`^${f} untouched$`, 'm'), `${f}: same inode, bytes, attributes, still CoW`);
  }
  t.equal(line('left'), 'big.img small.img ', 'both copies removed');
  t.equal(line('clean'), '0', 'without the fault both are rewritten');
  t.equal(line('direct'), '2', 'each copy read back through O_DIRECT');
  t.match(line('flags'), /^\S*C\S* \S*C\S*$/);
});

t.test('GIVEN a 2 GiB sparse file holding 4 MiB of data and a small sparse file WHEN migrated THEN the bytes are the same, the holes stay holes, and the holes are not read (every read of the run adds up to less than 32 MiB)', async (t) => {
  const run = await btrfs(String.raw`
    truncate -s 2G "$D/sparse.img"
    for at in 100 700 1300 1900; do head -c 1M /dev/urandom | dd of="$D/sparse.img" bs=1M seek=$at conv=notrunc status=none; done
    truncate -s 6M "$D/small.img"; head -c 100000 /dev/urandom | dd of="$D/small.img" bs=4096 seek=300 conv=notrunc status=none
    sync; chattr +C "$D"
    # References to compare with (cmp: sha256sum would take seconds per GiB of zeros here).
    mkdir "$MNT/ref"; for f in sparse small; do cp --sparse=always --reflink=never "$D/$f.img" "$MNT/ref/$f.img"; done
    strace -f -qq -e trace=read,pread64 -o "$MNT/trace" $NC migrate "$D" >/dev/null; echo "rc $?"
    echo "read $(awk -F'= ' '/^[0-9]+ +(read|pread64)\(/ && $NF ~ /^[0-9]+$/ { n += $NF } END { print n + 0 }' "$MNT/trace")"
    sync
    for f in sparse small; do echo "$f after $(cmp -s "$D/$f.img" "$MNT/ref/$f.img" && echo same || echo differs) $(stat -c %s "$D/$f.img") $(stat -c %b "$D/$f.img") $(flags "$D/$f.img")"; done`);
  t.equal(run.exitCode, 0, run.stderr);
  const fields = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))!.split(' ').slice(2);
  t.match(run.stdout, /^rc 0$/m);
  for (const [f, data, size] of [['sparse', 4 << 20, 2 ** 31], ['small', 100000, 6 << 20]] as const) {
    const after = fields(`${f} after`);
    t.same(after.slice(0, 2), ['same', String(size)], `${f}: same bytes and apparent size`);
    t.ok(Number(after[2]) * 512 <= data + (1 << 20), `${f}: ${Number(after[2]) * 512} bytes allocated for ${data} of data`);
    t.match(after[3], /C/);
  }
  const read = Number(/^read (\d+)$/m.exec(run.stdout)![1]);
  t.ok(read < 32 << 20, `${read} bytes read by the whole run (programs and modules included) for 4 MiB of data in 2 GiB`);
});

t.test('GIVEN preallocated files (large and small, data in part of them), a sparse file with a preallocated range, and a large file whose size is not a multiple of the block size WHEN migrated THEN the bytes are the same, the preallocated ranges stay preallocated (unwritten), the holes stay holes', async (t) => {
  const run = await btrfs(String.raw`
    fallocate -l 32M "$D/prealloc.img"
    for at in 0 20; do head -c 1M /dev/urandom | dd of="$D/prealloc.img" bs=1M seek=$at conv=notrunc status=none; done
    fallocate -l 2M "$D/small-prealloc.img"; head -c 4096 /dev/urandom | dd of="$D/small-prealloc.img" conv=notrunc status=none
    truncate -s 64M "$D/mixed.img"; head -c 1M /dev/urandom | dd of="$D/mixed.img" bs=1M seek=10 conv=notrunc status=none
    fallocate -o 32M -l 8M "$D/mixed.img"
    head -c $((9 * 1048576 + 123)) /dev/urandom >"$D/tail.img"
    sync; chattr +C "$D"
    for f in prealloc small-prealloc mixed tail; do echo "$f before $(sha256sum <"$D/$f.img" | cut -c1-16) $(stat -c %s "$D/$f.img")"; done
    $NC migrate "$D" >/dev/null; echo "rc $?"; sync
    for f in prealloc small-prealloc mixed tail; do echo "$f after $(sha256sum <"$D/$f.img" | cut -c1-16) $(stat -c %s "$D/$f.img") $(stat -c %b "$D/$f.img") $(flags "$D/$f.img")"; done
    filefrag -v -b1048576 "$D/prealloc.img" | sed 's/^/map-prealloc /'
    filefrag -v -b1048576 "$D/mixed.img" | sed 's/^/map-mixed /'`);
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^rc 0$/m);
  const fields = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))!.split(' ').slice(2);
  for (const f of ['prealloc', 'small-prealloc', 'mixed', 'tail']) {
    const [before, after] = [fields(`${f} before`), fields(`${f} after`)];
    t.same(after.slice(0, 2), before, `${f}: same bytes and apparent size`);
    t.match(after[3], /C/, `${f}: +C`);
  }
  const allocated = (f: string) => Number(fields(`${f} after`)[2]) * 512;
  t.ok(allocated('prealloc') >= 32 << 20, `prealloc: ${allocated('prealloc')} bytes allocated`);
  t.ok(allocated('small-prealloc') >= 2 << 20, `small-prealloc: ${allocated('small-prealloc')} bytes allocated`);
  t.ok(allocated('mixed') >= 9 << 20 && allocated('mixed') <= 12 << 20, `mixed: ${allocated('mixed')} bytes allocated: 1 MiB of data, 8 MiB preallocated, holes kept`);
  // filefrag -v -b1048576: "ext: logical_offset: physical_offset: length: expected: flags", in MiB.
  const unwritten = (f: string) =>
    run.stdout
      .split('\n')
      .filter((l) => l.startsWith(`map-${f} `) && l.includes('unwritten'))
      .reduce((sum, l) => sum + Number(/^\S+\s+\d+:\s+\d+\.\.\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+):/.exec(l)?.[1] ?? 0), 0);
  t.ok(unwritten('prealloc') >= 28, `prealloc: ${unwritten('prealloc')} MiB still preallocated and unwritten`);
  t.ok(unwritten('mixed') >= 7, `mixed: ${unwritten('mixed')} MiB of its preallocated range still unwritten`);
});

t.test('GIVEN 5,000 small files WHEN migrate --dry-run and migrate run THEN the dry run scans /proc once, the run twice per batch, processes stay in the tens, every file gets +C with the same bytes, and owner, mode, times (to the nanosecond) and xattrs are kept across a batch', async (t) => {
  const run = await btrfs(String.raw`
    mkdir "$MNT/cow"; (cd "$MNT/cow" && head -c $((5000 * 4096)) /dev/urandom | split -b 4096 -a 5 -d - f)
    for f in f00000 f02500 f04999; do
      chmod 0640 "$MNT/cow/$f"; chown 107:36 "$MNT/cow/$f"; setfattr -n user.origin -v "$f" "$MNT/cow/$f"
      touch -d '2021-02-03 04:05:06.123456789' "$MNT/cow/$f"
    done
    rmdir "$D"; mv "$MNT/cow" "$D"; chattr +C "$D"; sync
    sum=$(cat "$D"/f* | sha256sum); attrs() { for f in f00000 f02500 f04999; do describe "$D/$f"; done | sha256sum; }
    before=$(attrs)
    strace -f -qq -e trace=openat -o "$MNT/dry" $NC migrate -n "$D" >"$MNT/out"; echo "dry $? $(grep -c 'would rewrite' "$MNT/out")"
    echo "dry-scans $(grep -c '"/proc/1/fd"' "$MNT/dry")"
    strace -f -qq -e trace=openat,execve -o "$MNT/run" $NC migrate "$D" >"$MNT/out"; echo "run $? $(grep -c 'rewritten as NOCOW' "$MNT/out")"
    echo "run-scans $(grep -c '"/proc/1/fd"' "$MNT/run")"
    echo "processes $(grep 'execve(' "$MNT/run" | grep -c '= 0$')"
    echo "nocow $(lsattr "$D" | grep -c '^[^ ]*C')"
    [ "$(cat "$D"/f* | sha256sum)" = "$sum" ] && echo "same bytes"
    [ "$(attrs)" = "$before" ] && echo "same attributes"
    echo "left $(ls -A "$D" | grep -vc '^f[0-9]*$')"`);
  t.equal(run.exitCode, 0, run.stderr);
  const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
  t.equal(line('dry'), '0 5000');
  t.equal(line('dry-scans'), '1', 'one look at /proc for the dry run');
  t.equal(line('run'), '0 5000');
  const scans = Number(line('run-scans'));
  t.ok(scans >= 3 && scans <= 1 + 2 * Math.ceil(5000 / 256), `${scans} scans of /proc: one to choose, two per batch: before its renames and after them`);
  const processes = Number(line('processes'));
  t.ok(processes <= 120, `${processes} programs started for 5,000 files`);
  t.equal(line('nocow'), '5000');
  t.match(run.stdout, /^same bytes$/m);
  t.match(run.stdout, /^same attributes$/m, 'mode, owner, mtime to the nanosecond, xattr');
  t.equal(line('left'), '0', 'no temporary file left');
});
