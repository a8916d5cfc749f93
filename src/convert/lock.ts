// The root's nocow lock, as the shell library's nocow_lock takes it (docs/design.md, "Concurrency"),
// so that no scriptlet, kickstart section or nocow apply changes a target while convert works:
//   - flock(1) on the root directory: this process opens ROOT and hands that open file to
//     `flock -x 3` as its descriptor 3; flock locks it and exits, and the lock stays with the open
//     file, which only this process holds (Node opens with O_CLOEXEC, so no child inherits it).
//     The kernel drops it when this process ends, however it ends; release() closes it earlier.
//   - without flock(1): the atomic `mkdir ROOT/.nocow-kit.lock` holding a directory named after
//     the owner's PID, taken over by a rename when that PID is gone (or no PID appeared within 5 s).
import { closeSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOCK_DIR } from '../facts.js';

/** As long as the shell library waits (nocow_lock: flock -w 300, or 3000 tries of 0.1 s). */
const WAIT_S = 300;

export interface RootLock {
  /** "flock" or "mkdir": how it is held. */
  how: 'flock' | 'mkdir' | 'none';
  release(): void;
}

export class LockError extends Error {}

const TOOL_ENV = { LC_ALL: 'C', PATH: `/usr/sbin:/usr/bin:/sbin:/bin${process.env.PATH ? `:${process.env.PATH}` : ''}` };

/** Takes ROOT's lock, waiting up to 5 minutes; `waiting` is called once if another run holds it. */
export async function takeRootLock(root: string, waiting: () => void): Promise<RootLock> {
  const fd = openSync(root, 'r');
  let r = await flock(['-x', '-n'], fd);
  if (r.missing) {
    closeSync(fd);
    return mkdirLock(root, waiting);
  }
  if (r.exitCode === 1) {
    waiting();
    r = await flock(['-x', '-w', String(WAIT_S)], fd);
  }
  if (r.exitCode !== 0) {
    closeSync(fd);
    // Killed, flock has no exit status: not a wait that ran out.
    const why = r.signal ? `flock was killed by ${r.signal}` : r.stderr.split('\n')[0];
    throw new LockError(why ? `cannot lock ${root}: ${why}` : `another nocow run has held ${root} for 5 minutes`);
  }
  let held = true;
  return {
    how: 'flock',
    release: () => {
      if (held) closeSync(fd);
      held = false;
    },
  };
}

/** `flock ARGS… 3`, its descriptor 3 being FD: the lock is taken on our open file, and stays with it. */
function flock(args: string[], fd: number): Promise<{ exitCode: number | null; signal: NodeJS.Signals | null; stderr: string; missing: boolean }> {
  return new Promise((resolve) => {
    const child = spawn('flock', [...args, '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], env: { ...process.env, ...TOOL_ENV } });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error: NodeJS.ErrnoException) => resolve({ exitCode: null, signal: null, stderr: error.message, missing: error.code === 'ENOENT' }));
    child.on('close', (exitCode, signal) => resolve({ exitCode, signal, stderr, missing: false }));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function mkdirLock(root: string, waiting: () => void): Promise<RootLock> {
  const dir = `${root.replace(/\/+$/, '')}/${LOCK_DIR}`;
  let tries = 0;
  let withoutOwner = 0;
  let said = false;
  for (;;) {
    try {
      mkdirSync(dir);
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') {
        // Not there and not creatable (a read-only root): nothing can change here, nothing to guard.
        return { how: 'none', release: () => {} };
      }
    }
    const owner = (() => {
      try {
        return readdirSync(dir).find((name) => /^\d+$/.test(name));
      } catch {
        return undefined;
      }
    })();
    withoutOwner = owner === undefined ? withoutOwner + 1 : 0;
    if ((owner !== undefined && !alive(Number(owner))) || withoutOwner > 50) {
      const stale = `${dir}.stale${process.pid}`;
      try {
        renameSync(dir, stale);
        if (owner !== undefined) rmdirSync(`${stale}/${owner}`, {});
        rmdirSync(stale);
      } catch {
        // Another waiting run won the takeover, or the stale lock held something else: look again.
      }
      continue;
    }
    if (!said) waiting();
    said = true;
    if (++tries > WAIT_S * 10) throw new LockError(`another nocow run (PID ${owner ?? 'unknown'}) has held ${dir} for 5 minutes`);
    await sleep(100);
  }
  try {
    mkdirSync(`${dir}/${process.pid}`);
  } catch {
    // As the shell library: the lock is held all the same; a PID-less lock is taken over after 5 s.
  }
  let held = true;
  return {
    how: 'mkdir',
    release: () => {
      if (!held) return;
      held = false;
      try {
        rmdirSync(`${dir}/${process.pid}`);
      } catch {
        // gone already
      }
      try {
        rmdirSync(dir);
      } catch {
        // taken over
      }
    },
  };
}
