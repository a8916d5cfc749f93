// The nocow lock of a target, as the shell library's nocow_lock_target takes it (docs/design.md,
// "Concurrency"), one protocol for every command that changes something (convert, migrate, defrag)
// and every artifact (nocow apply runs the shell library):
//   - what is locked: the directory holding the target (while it is missing, its nearest existing
//     ancestor). No inode names a file system from every view (a Btrfs subvolume, a bind mount of a
//     subdirectory, a chroot), but this one is shared by every mount, alias and chroot of the target,
//     and everything a run changes for it lives in it: the target and its temporary names
//     (PATH.nocow-new, PATH.nocow-old), or a file and its copy (.NAME.nocow-migrate). Unrelated
//     targets, and targets on other file systems, never wait for each other. Once taken, the nearest
//     existing ancestor is looked up again: another run may just have created the directory, whose
//     lock is then the one to hold.
//   - flock(1) on that directory: this process opens it and hands that open file to `flock -x 3` as
//     its descriptor 3; flock locks it and exits, and the lock stays with the open file, which only
//     this process holds (Node opens with O_CLOEXEC, so no child inherits it). The kernel drops it
//     when this process ends, however it ends; release() closes it earlier.
//   - without flock(1): the atomic `mkdir DIR/.nocow-kit.lock` holding a directory named after the
//     owner's PID, taken over by a rename when that PID is gone (or no PID appeared within 5 s).
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOCK_DIR } from '../facts.js';
import { run, type ToolRun } from './run.js';
import { FailedError } from '../errors.js';

/** As long as the shell library waits (nocow_lock: flock -w 300, or 3000 tries of 0.1 s). */
const WAIT_S = 300;

export interface Lock {
  /** The directory locked. */
  dir: string;
  /** How it is held; "none" where nothing can change (a lock directory that cannot be made: read-only). */
  how: 'flock' | 'mkdir' | 'none';
  release(): void;
}

export class LockError extends FailedError {}

/** The directory whose lock guards PATH (absolute): the one holding it, or, while that is missing, its nearest existing ancestor. */
export function guardOf(path: string): string {
  let dir = dirname(path);
  while (dir !== '/' && !existsSync(dir)) dir = dirname(dir);
  return dir;
}

/**
 * Takes the lock of PATH (absolute: a target, or a file to rewrite), waiting up to 5 minutes;
 * `waiting` is called once, with the directory, if another run holds it.
 */
export function lockFor(path: string, waiting: (dir: string) => void): Promise<{ release(): void }> {
  return lockAll([path], waiting);
}

/**
 * The locks of every PATH, each directory once (by device and inode: two names of one directory
 * are one lock, which flock would otherwise make this process wait for itself), taken in the order
 * of their device and inode numbers, which every run shares, so that two runs holding several never
 * wait for each other. Released together.
 */
export async function lockAll(paths: string[], waiting: (dir: string) => void): Promise<{ release(): void }> {
  const guards = () => {
    const found = new Map<string, { dir: string; dev: bigint; ino: bigint }>();
    for (const path of paths) {
      const dir = guardOf(path);
      const st = statSync(dir, { bigint: true });
      found.set(`${st.dev}:${st.ino}`, { dir, dev: st.dev, ino: st.ino });
    }
    return found;
  };
  for (;;) {
    const wanted = guards();
    const ordered = [...wanted.values()].sort((a, b) => (a.dev !== b.dev ? (a.dev < b.dev ? -1 : 1) : a.ino < b.ino ? -1 : a.ino > b.ino ? 1 : 0));
    const held: Lock[] = [];
    const release = () => {
      for (const lock of [...held].reverse()) lock.release();
    };
    try {
      for (const { dir } of ordered) held.push(await lockDirectory(dir, waiting));
    } catch (error) {
      release();
      throw error;
    }
    if ([...guards().keys()].every((key) => wanted.has(key))) return { release };
    release();
  }
}

/** Takes DIR's lock, waiting up to 5 minutes; `waiting` is called once if another run holds it. */
async function lockDirectory(dir: string, waiting: (dir: string) => void): Promise<Lock> {
  const fd = openSync(dir, 'r');
  let r = await flock(['-x', '-n'], fd);
  if (r.missing) {
    closeSync(fd);
    return mkdirLock(dir, waiting);
  }
  if (r.exitCode === 1) {
    waiting(dir);
    r = await flock(['-x', '-w', String(WAIT_S)], fd);
  }
  if (r.exitCode !== 0) {
    closeSync(fd);
    // Killed, flock has no exit status: not a wait that ran out.
    const why = r.signal ? `flock was killed by ${r.signal}` : r.stderr.split('\n')[0] || r.spawnError?.message;
    throw new LockError(why ? `cannot lock ${dir}: ${why}` : `another nocow run has held ${dir} for 5 minutes`);
  }
  let held = true;
  return {
    dir,
    how: 'flock',
    release: () => {
      if (held) closeSync(fd);
      held = false;
    },
  };
}

/** `flock ARGS… 3`, its descriptor 3 being FD: the lock is taken on our open file, and stays with it. */
function flock(args: string[], fd: number): Promise<ToolRun> {
  return run('flock', [...args, '3'], { fds: [fd], ignoreStdout: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function mkdirLock(dir: string, waiting: (dir: string) => void): Promise<Lock> {
  const lockDir = `${dir.replace(/\/+$/, '')}/${LOCK_DIR}`;
  let tries = 0;
  let withoutOwner = 0;
  let said = false;
  for (;;) {
    try {
      mkdirSync(lockDir);
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') {
        // Not there and not creatable (read-only, immutable): nothing can change in DIR, nothing to guard.
        return { dir, how: 'none', release: () => {} };
      }
    }
    const owner = (() => {
      try {
        return readdirSync(lockDir).find((name) => /^\d+$/.test(name));
      } catch {
        return undefined;
      }
    })();
    withoutOwner = owner === undefined ? withoutOwner + 1 : 0;
    if ((owner !== undefined && !alive(Number(owner))) || withoutOwner > 50) {
      const stale = `${lockDir}.stale${process.pid}`;
      try {
        renameSync(lockDir, stale);
        if (owner !== undefined) rmdirSync(`${stale}/${owner}`, {});
        rmdirSync(stale);
      } catch {
        // Another waiting run won the takeover, or the stale lock held something else: look again.
      }
      continue;
    }
    if (!said) waiting(dir);
    said = true;
    if (++tries > WAIT_S * 10) throw new LockError(`another nocow run (PID ${owner ?? 'unknown'}) has held ${lockDir} for 5 minutes`);
    await sleep(100);
  }
  try {
    mkdirSync(`${lockDir}/${process.pid}`);
  } catch {
    // As the shell library: the lock is held all the same; a PID-less lock is taken over after 5 s.
  }
  let held = true;
  return {
    dir,
    how: 'mkdir',
    release: () => {
      if (!held) return;
      held = false;
      try {
        rmdirSync(`${lockDir}/${process.pid}`);
      } catch {
        // gone already
      }
      try {
        rmdirSync(lockDir);
      } catch {
        // taken over
      }
    },
  };
}
