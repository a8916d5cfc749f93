// The lock of a target (src/host/lock.ts, the shell library's nocow_lock_target): the directory
// holding it, one inode for every mount, alias and chroot of the target. nocow convert racing
// nocow apply --root and the generated hook on the same target: apply waits, nothing is removed;
// two conversions on two file systems never wait for each other. Deterministic: convert pauses
// just after making its new subvolume (a setfattr wrapper, inside the test's mount namespace only,
// blocks on a FIFO when convert marks its copy), and the test waits for what it looks for.
import t from 'tap';
import { PRELUDE, renderFor } from './helpers/artifacts.js';
import { target } from './helpers/target.js';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';
import { CAPTURE_FN } from './helpers/capture.js';

const CLI = builtCli();
const P = '/var/lib/libvirt/images';

/**
 * Bash for the scenarios, $A being a directory of the test's:
 *   pause_convert: the next nocow convert that marks its copy stops there ($A/paused appears) until `resume`
 *   waiting_on DIR: true while some flock(1) waits on DIR as its fd 9, as the shell library's nocow_lock does
 *   until FILE | CMD…: polls (at most a minute) until FILE exists or CMD succeeds
 */
const TOOLS = String.raw`
set +e  # each script records the exit statuses it asserts on
pause_convert() {
  real=$(command -v setfattr); cp "$real" "$A/setfattr.real"; mkfifo "$A/go"
  cat >"$A/setfattr.shim" <<EOF
#!/bin/sh
case "\$*" in *trusted.nocow-kit.convert*' -v '*)
  if rm "$A/pause" 2>/dev/null; then : >"$A/paused"; read x <"$A/go"; fi ;;
esac
exec "$A/setfattr.real" "\$@"
EOF
  chmod 755 "$A/setfattr.shim"; mount --bind "$A/setfattr.shim" "$real"
  # Opened read-write, the FIFO takes the word to go on without waiting for its reader.
  exec 7<>"$A/go"
  trap 'echo go >&7' EXIT
  : >"$A/pause"
}
resume() { echo go >&7; }
waiting_on() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = flock ] && [ "$(readlink "$p/fd/9" 2>/dev/null)" = "$1" ] && return 0
  done
  return 1
}
until_seen() { local i; for i in $(seq 1 1200); do eval "$1" && return 0; sleep 0.05; done; return 1; }
sums() { (cd "$1" && sha256sum -- *); }
state() { echo "$(btrfs subvolume show "$1" >/dev/null 2>&1 && echo subvolume || echo directory) $(lsattr -d "$1" | cut -c1-22 | tr -d -) $(ls -A "$(dirname "$1")" | tr '\n' ' ')"; }
`;

const line = (stdout: string, key: string) => stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);

for (const how of ['nocow apply --root', 'nocow-apply.sh --root'] as const) {
  t.test(`GIVEN nocow convert copying a directory of a root WHEN ${how} runs on that root meanwhile THEN it waits for convert's lock and removes nothing; convert succeeds with every byte kept, and apply then finds the target in place`, async (t) => {
    const a = await renderFor([target({ path: P })], t);
    const apply = how === 'nocow apply --root' ? 'node "$CLI" apply --root "$R"' : 'sh "$A/nocow-apply.sh" --root "$R"';
    const run = await runInFs({
      fs: 'btrfs',
      env: { A: a.dir, CLI },
      script: String.raw`${PRELUDE}${TOOLS}
        T="$R${P}"; mkdir -p "$T"; head -c 8M /dev/urandom >"$T/disk.img"; echo small >"$T/small"
        before=$(sums "$T")
        pause_convert
        capture convert node "$CLI" convert "$T" &
        until_seen '[ -e "$A/paused" ]'; echo "paused $?"
        capture apply ${apply} &
        # Until apply either ends or waits on the lock of the directory holding the target.
        until_seen '[ -e "$A/apply.rc" ] || waiting_on "$(dirname "$T")"'
        outcome=waiting; [ ! -e "$A/apply.rc" ] || outcome=finished
        echo "meanwhile $outcome $([ -d "$T.nocow-new" ] && echo new-kept || echo new-gone)"
        resume; wait
        echo "convert $(cat "$A/convert.rc") $(cat "$A/convert.out") | $(cat "$A/convert.err")"
        echo "apply $(cat "$A/apply.rc") $(cat "$A/apply.out") | $(cat "$A/apply.err")"
        [ "$(sums "$T")" = "$before" ] && echo "bytes same" || echo "bytes different"
        echo "state $(state "$T")"`,
    });
    t.equal(run.exitCode, 0, run.stderr);
    t.equal(line(run.stdout, 'paused'), '0', 'convert paused, its new subvolume made and about to be marked');
    t.equal(line(run.stdout, 'meanwhile'), 'waiting new-kept', `${how} waits for the lock convert holds, and has removed nothing`);
    t.match(line(run.stdout, 'convert'), /^0 nocow: \S+\/images: converted into a subvolume with \+C \(2 files, 8\.0 MiB copied and verified\) \| $/);
    t.equal(line(run.stdout, 'apply'), '0  | ', 'then apply finds everything in place: no line, no warning');
    t.equal(line(run.stdout, 'bytes'), 'same', 'every byte kept');
    t.equal(line(run.stdout, 'state'), 'subvolume C images ', 'a +C subvolume, nothing left beside it');
  });
}

t.test('GIVEN two directories on two file systems WHEN one conversion is paused in its copy THEN the other converts meanwhile: it never waits for that lock', async (t) => {
  const a = await renderFor([target({ path: P })], t);
  const run = await runInFs({
    fs: 'btrfs',
    second: 'btrfs',
    env: { A: a.dir, CLI },
    script: String.raw`${CAPTURE_FN}${TOOLS}
      X="$MNT/x"; Y="$MNT2/y"; mkdir "$X" "$Y"; head -c 4M /dev/urandom >"$X/disk.img"; head -c 4M /dev/urandom >"$Y/disk.img"
      echo "file-systems $(stat -f -c %T "$MNT" "$MNT2" | tr '\n' ' ')$([ "$(stat -c %d "$MNT")" != "$(stat -c %d "$MNT2")" ] && echo two)"
      before=$(sums "$Y")
      pause_convert
      capture first node "$CLI" convert "$X" &
      until_seen '[ -e "$A/paused" ]'; echo "paused $?"
      capture second node "$CLI" convert "$Y" &
      until_seen '[ -e "$A/second.rc" ] || grep -q "waiting for the lock" "$A/second.err"'
      echo "second $([ -e "$A/second.rc" ] && cat "$A/second.rc" || echo waits) $(cat "$A/second.err") | first $([ -e "$A/first.rc" ] && echo ended || echo paused)"
      resume; wait
      echo "first $(cat "$A/first.rc") $(cat "$A/first.out")"
      [ "$(sums "$Y")" = "$before" ] && echo "bytes same" || echo "bytes different"
      echo "states $(state "$X")| $(state "$Y")"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(line(run.stdout, 'file-systems'), 'btrfs btrfs two', 'two Btrfs file systems');
  t.equal(line(run.stdout, 'paused'), '0', 'the first conversion paused');
  t.equal(line(run.stdout, 'second'), '0  | first paused', 'the second converted while the first was still paused, without waiting for any lock');
  t.match(line(run.stdout, 'first'), /^0 nocow: \S+\/x: converted into a subvolume with \+C/, 'then the first converts too');
  t.equal(line(run.stdout, 'bytes'), 'same');
  t.equal(line(run.stdout, 'states'), 'subvolume C x | subvolume C y ');
});
