// Command-line arguments → what to inspect: the root, the home, and the targets (all, or those named by path).
import { realpath, stat } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
import type { Target } from '../declaration/types.js';
import { UsageError, exactPath } from '../errors.js';
import { refusedTarget } from '../facts.js';
import { refusedAlias } from '../host/mounts.js';
import { declaredSubject, joinBase, undeclaredSubject, type Subject } from './subject.js';

/** An existing directory, made absolute (a relative one is taken from the current directory). */
export async function directoryArg(option: string, dir: string): Promise<string> {
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) throw new UsageError(`${option} ${dir}: ${st.code === 'ENOENT' ? 'does not exist' : st.message}`);
  if (!st.isDirectory()) throw new UsageError(`${option} ${dir}: not a directory`);
  return resolve(dir);
}

const normal = (p: string): string => {
  const n = posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
};

/** Where a target's path is on this machine, for matching a PATH argument; null for user scope without a home. */
function shownPath(t: Target, home: string | undefined): string | null {
  if (t.scope === 'system') return t.path;
  return home === undefined ? null : normal(joinBase(home, t.path.slice(1)));
}

/**
 * Every target, or those whose path is given. A given path matches a system target's path
 * (as under the root), a user target's `~/…` path, or, with a home, where that lies.
 * A path no target declares is inspected all the same, with the declaration's defaults.
 */
export function selectSubjects(targets: Target[], paths: string[], root: string, home: string | undefined): Subject[] {
  if (paths.length === 0) return targets.map((t) => declaredSubject(t, root, home));
  const chosen: Subject[] = [];
  const seen = new Set<string>();
  for (const given of paths) {
    exactPath('PATH', given);
    let match = targets.find((t) => t.path === given);
    let path = given;
    if (!match) {
      if (!given.startsWith('/')) {
        if (root !== '/') throw new UsageError(`${given}: with --root, give a path as seen under the root, starting with "/"`);
        path = resolve(given);
      }
      path = normal(path);
      match = targets.find((t) => shownPath(t, home) === path);
    }
    // A declared target passed validation; a path of the command line is checked as one would be.
    const refused = match ? undefined : refusedTarget(path);
    if (refused !== undefined) throw new UsageError(`${given}: refused: ${refused}, never a target (see SECURITY.md)`);
    const subject = match ? declaredSubject(match, root, home) : undeclaredSubject(path, root);
    const key = match ? `target:${match.name}` : `path:${path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    chosen.push(subject);
  }
  return chosen;
}

/**
 * A PATH operand of a command that changes what it names (convert, migrate), as seen under ROOT as
 * status, apply and defrag see one: absolute (a relative one only without --root, from the current
 * directory), refused where it names a system path as given or once resolved, and returned as it
 * is on this machine, symlinks resolved; one that leads out of the root is refused; a missing one
 * stays as given, under the root (the command says what is missing).
 */
export async function operandPath(given: string, root: string): Promise<string> {
  exactPath('PATH', given);
  if (root !== '/' && !given.startsWith('/')) throw new UsageError(`${given}: with --root, give a path as seen under the root, starting with "/"`);
  const seen = normal(root === '/' ? resolve(given) : given);
  const refuse = (why: string | undefined) => {
    if (why !== undefined) throw new UsageError(`${given}: refused: ${why}, never a target (see SECURITY.md)`);
  };
  refuse(refusedTarget(seen));
  const top = root.replace(/\/+$/, '');
  const real = await realpath(`${top}${seen}`).catch(() => null);
  if (real === null) return `${top}${seen}`;
  // The root as resolved too: it may be reached through a symlink itself.
  const realTop = top === '' ? '' : (await realpath(top)).replace(/\/+$/, '');
  if (realTop !== '' && real !== realTop && !real.startsWith(`${realTop}/`)) throw new UsageError(`${given}: leads out of --root ${root} (${real})`);
  refuse(refusedTarget(real.slice(realTop.length) || '/'));
  // Without --root: the same directory under any other path of it (another mount of its file system).
  if (realTop === '') refuse(refusedAlias(real, refusedTarget));
  return real;
}
