// nocow migrate racing a real writer on real Btrfs: whenever the writer opens the file,
// whatever it writes ends up in the file named by the path. Each run copies the file the
// writer writes into (reached as images/disk.img, images -> vm) and a shadow file
// (shadow.img, never migrated) that the writer writes the same blocks into; after both
// are done the two must be equal, byte for byte, whatever migrate decided.
//
// The writer acts at fixed points, whatever the machine's load: strace stops migrate there
// (SIGSTOP injected after its Nth 1 MiB write of the copy, or as cp starts to copy the
// attributes), the writer does what it aims to do while it is stopped, then lets it go on
// (SIGCONT). Nothing waits on time, so the writer hits its window on every run.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

const SETUP = String.raw`
set +e  # each script records what it asserts on
V=$MNT/vm; F=$V/disk.img; T=$V/.disk.img.nocow-migrate; S=$MNT/shadow.img
mkdir "$V"; ln -s vm "$MNT/images"
# 64 MiB of data and a 1 MiB hole at the end: copied piece by piece as its map says, 1 MiB a write.
head -c 64M /dev/urandom >"$F"; truncate -s 65M "$F"
cp --reflink=never "$F" "$S"; head -c 32768 /dev/urandom >"$MNT/patch"; sync; chattr +C "$V"
inode=$(stat -c %i "$F")
writer=
trap '[ -z "$writer" ] || kill "$writer" 2>/dev/null; wait' EXIT
# The writer: 8 blocks of 4 KiB in the first 8 MiB (which the copy has read by then), the
# size unchanged; to a path, or to the file the writer holds open as fd 3. Other commands
# close fd 3, so only the writer itself holds the file while it waits.
writeblocks() {
  for i in 0 1 2 3 4 5 6 7; do
    if [ "$1" = /dev/fd/3 ]; then dd if="$MNT/patch" of=/dev/fd/3 bs=4096 skip=$i seek=$((257 * i)) count=1 conv=notrunc status=none
    else dd if="$MNT/patch" of="$1" bs=4096 skip=$i seek=$((257 * i)) count=1 conv=notrunc status=none 3<&-; fi
  done
}
until_done() { until [ -e "$MNT/done" ]; do sleep 0.01 3<&-; done; }
during() { [ -e "$T" ] && echo during || echo after; }
# The pause: strace runs migrate and stops a process of it (SIGSTOP) at a fixed point; its log
# says which, once it is stopped, and the writer lets it go on (SIGCONT) when it is done.
traced() { strace -f -qq -o "$MNT/strace" "$@" 3<&-; }  # STRACE-ARGS… CMD…: CMD's exit status
paused() {  # N CMD…: CMD stopped right after its Nth 1 MiB write of the copy (N MiB copied)
  n=$1; shift
  traced -e trace=pwrite64 -e inject=pwrite64:signal=STOP:when="$n" "$@"
}
until_paused() {  # until migrate is stopped there, or has ended (it refused before copying)
  until grep -qs 'stopped by SIGSTOP' "$MNT/strace" 3<&- || [ -e "$MNT/done" ]; do sleep 0.01 3<&-; done
}
resume() {  # the stopped process goes on: the log names each of its threads (pids padded)
  for pid in $(sed -n 's/^\([0-9][0-9]*\) *--- stopped by SIGSTOP ---$/\1/p' "$MNT/strace" 3<&-); do
    kill -CONT "$pid" 2>/dev/null 3<&-  # its main thread's id takes; the others' may not
  done
}
finish() {  # after migrate: let the writer finish, then what became of the file
  touch "$MNT/done"; wait "$writer"; echo "writer $writer"; writer=
  echo "rc $rc"; echo "err $(cat "$MNT/err")"; echo "out $(cat "$MNT/out")"
  cmp -s "$F" "$S" && echo "content same" || echo "content differs"
  echo "inode $([ "$(stat -c %i "$F")" = "$inode" ] && echo kept || echo new)"
  echo "flags $(lsattr -d "$F" | cut -d' ' -f1)"
  echo "left $(ls -A "$V" | tr '\n' ' ')"
}
`;

interface Case {
  title: string;
  script: string;
  rewritten: boolean;
  /** What the writer reports: when it wrote (or opened), relative to the copy. */
  writer?: RegExp;
  err: (writerPid: string) => RegExp;
}

const OPEN_BY = (pid: string) => `open by process (?:\\d+, )*${pid}(?:, \\d+)* \\(--force overrides\\)`;
const CHANGED = /^nocow: \S+\/vm\/disk\.img: not rewritten: it changed while being copied; original kept$/;

const CASES: Case[] = [
  {
    title: 'GIVEN a writer that opened the file through the real directory before migrate ran via a symlinked one, and writes during the copy',
    script: String.raw`
      { until_paused; writeblocks /dev/fd/3; writeblocks "$S"; during; resume; } 3<>"$F" >"$MNT/writer" & writer=$!
      until [ -e "/proc/$writer/fd/3" ]; do sleep 0.01; done
      paused 16 $NC migrate "$MNT/images/disk.img" >"$MNT/out" 2>"$MNT/err"; rc=$?
      finish; cat "$MNT/writer"`,
    rewritten: false,
    err: (pid) => new RegExp(`^nocow: \\S+/vm/disk\\.img: not rewritten: ${OPEN_BY(pid)}$`),
  },
  {
    title: 'GIVEN a writer that opens the file once a quarter of it is copied, writes blocks already copied, same size, and closes it',
    script: String.raw`
      { until_paused; writeblocks "$F"; writeblocks "$S"; during; resume; } >"$MNT/writer" & writer=$!
      paused 16 $NC migrate "$MNT/images/disk.img" >"$MNT/out" 2>"$MNT/err"; rc=$?
      finish; cat "$MNT/writer"`,
    rewritten: false,
    writer: /^during$/m,
    err: () => CHANGED,
  },
  {
    title: 'GIVEN a writer that does the same near the end of the copy',
    script: String.raw`
      { until_paused; writeblocks "$F"; writeblocks "$S"; during; resume; } >"$MNT/writer" & writer=$!
      paused 60 $NC migrate "$MNT/images/disk.img" >"$MNT/out" 2>"$MNT/err"; rc=$?
      finish; cat "$MNT/writer"`,
    rewritten: false,
    writer: /^during$/m,
    err: () => CHANGED,
  },
  {
    title: 'GIVEN --force and a writer that writes during the copy',
    script: String.raw`
      { until_paused; writeblocks "$F"; writeblocks "$S"; during; resume; } >"$MNT/writer" & writer=$!
      paused 16 $NC migrate --force "$MNT/images/disk.img" >"$MNT/out" 2>"$MNT/err"; rc=$?
      finish; cat "$MNT/writer"`,
    rewritten: false,
    writer: /^during$/m,
    err: () => CHANGED,
  },
  {
    title: 'GIVEN a writer that opens the file during the copy and writes only after migrate has ended',
    script: String.raw`
      { until_paused; exec 3<>"$F"; during; resume; until_done; writeblocks /dev/fd/3; writeblocks "$S"; } >"$MNT/writer" & writer=$!
      paused 16 $NC migrate "$MNT/images/disk.img" >"$MNT/out" 2>"$MNT/err"; rc=$?
      finish; cat "$MNT/writer"`,
    rewritten: false,
    writer: /^during$/m,
    err: (pid) => new RegExp(`^nocow: \\S+/vm/disk\\.img: not rewritten: ${OPEN_BY(pid)}; original kept$`),
  },
  {
    title: 'GIVEN a writer that writes while the attributes are copied, after the data',
    // cp, which copies the attributes once the data is copied and checked, is stopped as it starts (its execve).
    script: String.raw`
      { until_paused; writeblocks "$F"; writeblocks "$S"; during; resume; } >"$MNT/writer" & writer=$!
      traced -P "$(command -v cp)" -e trace=execve -e inject=execve:signal=STOP:when=1 \
        $NC migrate "$MNT/images/disk.img" >"$MNT/out" 2>"$MNT/err"; rc=$?
      finish; cat "$MNT/writer"`,
    rewritten: false,
    writer: /^during$/m,
    err: () => CHANGED,
  },
  {
    title: 'GIVEN a writer that wrote and closed the file before migrate ran (the control)',
    script: String.raw`
      writeblocks "$F"; writeblocks "$S"
      { :; } & writer=$!
      $NC migrate "$MNT/images/disk.img" >"$MNT/out" 2>"$MNT/err"; rc=$?
      finish`,
    rewritten: true,
    err: () => /^$/,
  },
];

for (const c of CASES) {
  const then = c.rewritten ? 'it is rewritten with every byte the writer wrote' : 'the original is kept, with every byte the writer wrote';
  t.test(`${c.title} WHEN migrate races it THEN ${then}`, async (t) => {
    const run = await runInFs({ fs: 'btrfs', sizeMiB: 512, script: SETUP + c.script, env: { NC } });
    t.equal(run.exitCode, 0, run.stderr);
    const line = (key: string) => run.stdout.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1);
    t.equal(line('content'), 'same', 'no write lost: the file equals the shadow the writer wrote the same blocks into');
    t.equal(line('left'), 'disk.img ', 'no temporary file left');
    if (c.writer) t.match(run.stdout, c.writer, 'the writer hit the window it aims at');
    t.match(line('err') ?? '', c.err(line('writer') ?? '?'));
    if (c.rewritten) {
      t.equal(line('rc'), '0');
      t.equal(line('inode'), 'new');
      t.match(line('flags'), /C/);
    } else {
      t.equal(line('rc'), '1');
      t.equal(line('inode'), 'kept', 'the original, same inode');
      t.equal(line('flags'), '-'.repeat(22), 'still copy-on-write');
      t.equal(line('out'), '', 'nothing reported rewritten');
    }
  });
}
