// nocow convert and what lies around the tree it converts (issue 13): mounts inside it or of it,
// processes in it, other paths to it through another mount of its file system, and the window
// of the swap; each case first made to fail against the code before, on real Btrfs.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { NC, SETUP, line } from './helpers/convert.js';

const DEVICE = `"$(findmnt -n -o SOURCE --target "$MNT" | sed 's/\\[.*//')"`;

t.test('GIVEN a bind mount of the same Btrfs inside a directory, seen through the directory itself or through another mount of the file system WHEN nocow convert runs THEN it refuses in one line naming the mount point, the directory stays as it was and every file of the mount is still there', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: `${SETUP}
      O="$MNT/outside/src"; mkdir -p "$O"; echo precious >"$O/keep.txt"
      D="$MNT/data"; small "$D"; mkdir "$D/mnt"; mount --bind "$O" "$D/mnt"
      nc convert "$D" >"$MNT/out" 2>"$MNT/err"; echo "direct $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      echo "direct-after $(cat "$O/keep.txt") $(subvol "$D") $(leftovers "$D")"
      # The same directory seen through a second mount of its subvolume: the bind mount is only there.
      btrfs -q subvolume create "$MNT/vol"; E="$MNT/vol/e"; small "$E"; mkdir "$E/mnt" "$MNT/top"
      mount -o subvol=vol ${DEVICE} "$MNT/top"; mount --bind "$O" "$MNT/top/e/mnt"
      nc convert "$E" >"$MNT/out" 2>"$MNT/err"; echo "alias $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      echo "alias-after $(cat "$O/keep.txt") $(subvol "$E") $(leftovers "$E")"
      echo "mnt $MNT"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const mnt = line(run.stdout, 'mnt')!;
  const refusal = (path: string, point: string) =>
    `1 1 nocow: ${path}: not converted: ${point} is a mount point inside it: its files are not this directory's, and a copy cannot keep a mount: unmount it first | `;
  t.equal(line(run.stdout, 'direct'), refusal(`${mnt}/data`, `${mnt}/data/mnt`), 'the same-file-system bind mount inside: refused, exit 1, one line naming it');
  t.equal(line(run.stdout, 'direct-after'), 'precious directory data ', 'the file outside is still there; the directory is as it was, nothing beside it');
  t.equal(line(run.stdout, 'alias'), refusal(`${mnt}/vol/e`, `${mnt}/top/e/mnt`), 'the bind mount on another path of the directory: refused, naming it');
  t.equal(line(run.stdout, 'alias-after'), 'precious directory e ');
});

t.test('GIVEN a process whose working directory is inside a directory, or that holds a directory of it open WHEN nocow convert runs THEN it refuses in one line naming the process, changes nothing, and converts once the process is gone', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: `${SETUP}
      P="$MNT/p"; small "$P"; Q="$MNT/q"; small "$Q"
      ( cd "$P/sub dir" && exec sleep 1000 ) & inside=$!
      sleep 1000 3<"$Q/sub dir" & open=$!
      trap 'kill $inside $open 2>/dev/null; wait' EXIT
      for i in $(seq 1 1000); do [ "$(cat /proc/$inside/comm /proc/$open/comm 2>/dev/null)" = "$(printf 'sleep\\nsleep')" ] && [ -e /proc/$open/fd/3 ] && break; sleep 0.01; done
      echo "inside $inside"; echo "open $open"
      nc convert "$P" >"$MNT/out" 2>"$MNT/err"; echo "cwd $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out") | $(subvol "$P") $(leftovers "$P")"
      nc convert "$Q" >"$MNT/out" 2>"$MNT/err"; echo "fd $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out") | $(subvol "$Q") $(leftovers "$Q")"
      kill $inside $open; wait; trap - EXIT
      nc convert "$P" "$Q" >/dev/null; echo "released $? $(subvol "$P") $(subvol "$Q")"
      echo "mnt $MNT"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const [mnt, inside, open] = ['mnt', 'inside', 'open'].map((k) => line(run.stdout, k)!);
  t.equal(line(run.stdout, 'cwd'), `1 1 nocow: ${mnt}/p: not converted: sub dir is the working directory of process ${inside} (sleep): stop it first |  | directory p `);
  t.equal(line(run.stdout, 'fd'), `1 1 nocow: ${mnt}/q: not converted: sub dir is open by process ${open} (sleep): stop it first |  | directory q `);
  t.equal(line(run.stdout, 'released'), '0 subvolume subvolume', 'once the processes are gone, both are converted');
});

// nocow convert stopped (SIGSTOP, by strace) just after its first rename: DIR is then DIR.nocow-old, its copy DIR.nocow-new.
const PAUSE = String.raw`
unlocked() {  # FILE: less the line saying nocow waits for the root lock (other tests' conversions take it too)
  sed -i '/^nocow: waiting for the lock on \//d' "$1"
}
paused() {  # DIR: nocow convert DIR in the background, stopped between its two renames; CONVERT: strace's pid, NODE: nocow's
  strace -qq -o /dev/null -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=STOP:when=1 $NC convert "$1" >"$MNT/out" 2>"$MNT/err" & CONVERT=$!
  for i in $(seq 1 12000); do [ -d "$1.nocow-old" ] && break; sleep 0.01; done
  NODE=$(cat /proc/$CONVERT/task/$CONVERT/children)
}
resume() {  # until nocow convert ends: SIGCONT, again until it takes (one sent before the stop is lost); RC: its exit status
  while kill -0 "$NODE" 2>/dev/null; do kill -CONT "$NODE" 2>/dev/null; sleep 0.05; done
  RC=0; wait $CONVERT || RC=$?
  unlocked "$MNT/err"
}
`;

t.test('GIVEN nocow convert between its two renames WHEN a process comes into the old tree and writes there, or a file of it is written through its path THEN convert swaps back: every line the process wrote, before and after, is in PATH, nothing is left beside it, exit 1 with one line', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    sizeMiB: 512,
    env: { NC },
    script: `${SETUP}${PAUSE}
      P="$MNT/p"; small "$P"; echo "line 0" >"$P/log"; sum=$(sha256sum <"$P/disk.img")
      paused "$P"; echo "paused $(leftovers "$P")"
      # In the tree as the swap goes on, as a process that came in after the last checks: its writes land in the old tree.
      ( cd "$P.nocow-old" || exit; i=0; while [ ! -e "$MNT/stop" ]; do i=$((i + 1)); echo "line $i" >>./log; sleep 0.01; done; echo $i >"$MNT/count" ) & writer=$!
      for i in $(seq 1 1000); do [ "$(wc -l <"$P.nocow-old/log")" -ge 3 ] && break; sleep 0.01; done
      resume; at=$(wc -l <"$P/log")
      for i in $(seq 1 1000); do [ "$(wc -l <"$P/log")" -gt "$at" ] && break; sleep 0.01; done; : >"$MNT/stop"; wait $writer
      echo "at-resume $at"
      echo "writer $writer"
      echo "swapped-back $RC $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      echo "state $(subvol "$P") $(leftovers "$P") $([ "$(sha256sum <"$P/disk.img")" = "$sum" ] && echo same || echo different)"
      n=$(cat "$MNT/count"); echo "lines $n $(seq 0 "$n" | sed 's/^/line /' | cmp -s - "$P/log" && echo all || echo missing)"
      # The same window, a write through the old tree's path by a process that is gone by the time convert looks.
      R="$MNT/r"; small "$R"; echo kept >"$R/notes"
      paused "$R"; echo stranded >>"$R.nocow-old/notes"; resume
      echo "written $RC $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      echo "written-state $(subvol "$R") $(leftovers "$R") $(tr '\\n' ' ' <"$R/notes")"
      echo "mnt $MNT"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const mnt = line(run.stdout, 'mnt')!;
  t.equal(line(run.stdout, 'paused'), 'p.nocow-new p.nocow-old ', 'stopped between the renames');
  const swapped = line(run.stdout, 'swapped-back')!;
  t.match(swapped, new RegExp(`^1 1 nocow: ${mnt}/p: not converted: \\. is the working directory of process [^|]*\\b${line(run.stdout, 'writer')} \\(bash\\)[^|]* after the swap: swapped back, ${mnt}/p is the original again with all it received; the copy is removed \\| $`), 'exit 1, one line saying it swapped back and why');
  t.equal(line(run.stdout, 'state'), 'directory p  same', 'the original directory in place, nothing beside it');
  t.match(line(run.stdout, 'lines'), /^\d+ all$/, 'every line the process wrote is in PATH/log, in order');
  const [written, atResume] = [Number(line(run.stdout, 'lines')!.split(' ')[0]), Number(line(run.stdout, 'at-resume'))];
  t.ok(atResume >= 4 && written >= atResume, `it wrote ${written} lines: ${atResume - 1} or more in the old tree before convert went on, then more after the swap back`);
  t.equal(line(run.stdout, 'written'), `1 1 nocow: ${mnt}/r: not converted: notes was written to after the swap: swapped back, ${mnt}/r is the original again with all it received; the copy is removed | `);
  t.equal(line(run.stdout, 'written-state'), 'directory r  kept stranded ', 'the write is in PATH, not stranded in PATH.nocow-old');
});

t.test('GIVEN one Btrfs mounted at /var and again elsewhere WHEN nocow convert (or migrate) is given /var/lib by its other paths THEN it is refused as /var/lib is, exit 2, one line, nothing changed', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: `${SETUP}
      btrfs -q subvolume create "$MNT/var"; small "$MNT/var/lib"; mkdir "$MNT/top"
      mount -o subvol=var ${DEVICE} /var; mount -o subvol=var ${DEVICE} "$MNT/top"
      nc convert "$MNT/top/lib" >"$MNT/out" 2>"$MNT/err"; echo "second $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      nc convert "$MNT/var/lib" >"$MNT/out" 2>"$MNT/err"; echo "own $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      nc migrate "$MNT/top/lib" >"$MNT/out" 2>"$MNT/err"; echo "migrate $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out") | $(flags "$MNT/var/lib/disk.img")"
      echo "after $(subvol /var/lib) $(leftovers "$MNT/var/lib")"
      echo "mnt $MNT"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const mnt = line(run.stdout, 'mnt')!;
  for (const [key, path] of [['second', `${mnt}/top/lib`], ['own', `${mnt}/var/lib`]] as const) {
    t.equal(line(run.stdout, key), `2 1 nocow: error: ${path}: refused: it is also /var/lib: /var/lib is a system directory, never a target (see SECURITY.md) | `, `${path}: refused through the alias`);
  }
  t.match(line(run.stdout, 'migrate'), new RegExp(`^2 1 nocow: error: ${mnt}/top/lib: refused: it is also /var/lib: /var/lib is a system directory, never a target \\(see SECURITY\\.md\\) \\|  \\| -+$`), 'migrate too (the same resolution of its paths): no file rewritten');
  t.equal(line(run.stdout, 'after'), 'directory lib ', '/var/lib is as it was');
});

t.test('GIVEN a directory bind-mounted elsewhere, or a directory inside it bound elsewhere WHEN nocow convert runs THEN it refuses in one line naming that mount (it would show the old, removed tree), nothing changed', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: `${SETUP}
      D="$MNT/data"; small "$D"; mkdir "$MNT/v"; mount --bind "$D" "$MNT/v"
      F="$MNT/f"; small "$F"; mkdir "$MNT/w"; mount --bind "$F/sub dir" "$MNT/w"
      snap() { find "$D" "$F" -printf '%i %C@ %s %p\\n' | sort | sha256sum; }
      before=$(snap)
      nc convert "$D" >"$MNT/out" 2>"$MNT/err"; echo "whole $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      nc convert "$F" >"$MNT/out" 2>"$MNT/err"; echo "inside $? $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      [ "$(snap)" = "$before" ] && echo "nothing changed" || echo "changed"
      echo "after $(subvol "$D") $(leftovers "$D") $(ls "$MNT/v" | tr '\\n' ' ')"
      echo "mnt $MNT"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const mnt = line(run.stdout, 'mnt')!;
  const refusal = (path: string, point: string) =>
    `1 1 nocow: ${path}: not converted: ${point} shows it or a directory inside it (a bind mount): after the swap it would show the old, removed tree: unmount it first | `;
  t.equal(line(run.stdout, 'whole'), refusal(`${mnt}/data`, `${mnt}/v`));
  t.equal(line(run.stdout, 'inside'), refusal(`${mnt}/f`, `${mnt}/w`));
  t.match(run.stdout, /^nothing changed$/m, 'inodes, ctimes and sizes as before');
  t.equal(line(run.stdout, 'after'), 'directory data  disk.img hardlink sparse.img sub dir symlink ', 'the other mount still shows every file');
});

t.test('GIVEN a conversion through a symlink killed between its two renames WHEN the same command runs again THEN it finishes: a +C subvolume at the real path, nothing left beside it, the symlink kept', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: `${SETUP}
      mkdir "$MNT/real"; P="$MNT/real/data"; small "$P"; ln -s real/data "$MNT/link"; sum=$(sha256sum <"$P/disk.img")
      strace -qq -o /dev/null -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:signal=KILL:when=2 $NC convert "$MNT/link" >/dev/null 2>&1; echo "killed $?"
      echo "state $([ -e "$P" ] && echo data || echo -) $(leftovers "$P")"
      nc convert "$MNT/link" >"$MNT/out" 2>"$MNT/err"; echo "rerun $? $(cat "$MNT/err") | $(tr '\\n' '|' <"$MNT/out")"
      echo "after $(subvol "$P") $(flags "$P") $(leftovers "$P") $([ -L "$MNT/link" ] && echo link) $([ "$(sha256sum <"$MNT/link/disk.img")" = "$sum" ] && echo same || echo different)"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(line(run.stdout, 'killed'), '137');
  t.equal(line(run.stdout, 'state'), '- data.nocow-new data.nocow-old ', 'killed between the renames');
  t.match(line(run.stdout, 'rerun'), /^0 {2}\| nocow: \S+\/real\/data: completed the swap of an interrupted conversion; \S+ is checked against it next\|nocow: \S+\/real\/data: finished an interrupted conversion: removed \S+\.nocow-old, which \S+ holds in full\|nocow: \S+\/real\/data: converted into a subvolume with \+C/, 'the same argument finishes it');
  t.match(line(run.stdout, 'after'), /^subvolume \S*C\S* data {2}link same$/);
});

t.test('GIVEN nocow convert removing the old tree WHEN a bind mount appears on a directory of it not yet removed THEN the removal does not go through it: every file of the mount is still there, the old tree is kept with a warning (exit 1), and a re-run once it is unmounted finishes', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: `${SETUP}${PAUSE}
      O="$MNT/outside"; mkdir "$O"; echo precious >"$O/file"
      P="$MNT/p"; small "$P"
      # Stopped (SIGSTOP) just after its first unlink in the old tree (the symlink, the last name): "sub dir" is still to come.
      strace -qq -o /dev/null -e trace=unlink,unlinkat,rmdir -e inject=unlink,unlinkat,rmdir:signal=STOP:when=1 $NC convert "$P" >"$MNT/out" 2>"$MNT/err" & convert=$!
      for i in $(seq 1 12000); do [ -d "$P.nocow-old" ] && [ ! -L "$P.nocow-old/symlink" ] && break; sleep 0.01; done
      node=$(cat /proc/$convert/task/$convert/children)
      mount --bind "$O" "$P.nocow-old/sub dir"
      while kill -0 "$node" 2>/dev/null; do kill -CONT "$node" 2>/dev/null; sleep 0.05; done
      rc=0; wait $convert || rc=$?; unlocked "$MNT/err"
      echo "removing $rc $(wc -l <"$MNT/err") $(cat "$MNT/err") | $(cat "$MNT/out")"
      echo "outside $(cat "$O/file") $(subvol "$P") $(leftovers "$P")"
      umount "$P.nocow-old/sub dir"
      nc convert "$P" >"$MNT/out" 2>"$MNT/err"; echo "rerun $? $(cat "$MNT/err") | $(tr '\\n' '|' <"$MNT/out")"
      echo "after $(cat "$O/file") $(subvol "$P") $(leftovers "$P")"
      echo "mnt $MNT"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const mnt = line(run.stdout, 'mnt')!;
  t.equal(
    line(run.stdout, 'removing'),
    `1 1 nocow: ${mnt}/p: warning: the old directory ${mnt}/p.nocow-old is kept: removing it: sub dir is not the directory walked (a mount on it, or above it?): nothing in it removed; nocow convert ${mnt}/p removes it once it matches ${mnt}/p | nocow: ${mnt}/p: converted into a subvolume with +C (4 files, 12.0 MiB copied and verified)`,
    'converted; the old tree kept, in one line saying why',
  );
  t.equal(line(run.stdout, 'outside'), 'precious subvolume p p.nocow-old ', 'the file of the mount is still there');
  t.match(line(run.stdout, 'rerun'), /^0 {2}\| nocow: \S+\/p: finished an interrupted conversion: removed \S+\/p\.nocow-old, which \S+\/p holds in full\|/, 'unmounted, a re-run checks the old tree against PATH and removes it');
  t.equal(line(run.stdout, 'after'), 'precious subvolume p ');
});
