// The paths given to nocow migrate and convert, resolved and checked against the refused targets
// before anything else is read: one rule for both (SECURITY.md).
import { realpath, readlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { refusedTarget } from '../facts.js';
import { TargetError } from '../errors.js';
import { mountTable, refusedAlias } from './mounts.js';

/**
 * The real path of PATH (absolute) whose last segment is missing, or a symlink to a missing one
 * (as a conversion killed between its renames leaves it): its parent resolved, the name kept;
 * undefined when the parent cannot be resolved either.
 */
export async function realpathOfMissing(path: string, hops = 0): Promise<string | undefined> {
  const parent = await realpath(dirname(path)).catch(() => undefined);
  if (parent === undefined) return undefined;
  const named = join(parent, basename(path));
  const link = await readlink(named).catch(() => undefined);
  if (link === undefined) return named;
  // As the kernel gives up (ELOOP).
  if (hops >= 40) return undefined;
  return realpathOfMissing(link.startsWith('/') ? link : `${parent}/${link}`, hops + 1);
}

/**
 * The paths given on the command line, each resolved to its real path, or the first
 * refusal (a TargetError): a system directory, anything below /etc, /usr…, whether as given,
 * resolved, or as the same directory is seen through another mount of its file system (/var/lib
 * and /t/top/lib when one Btrfs is mounted at /var and at /t/top). Nothing is read but the paths'
 * names and the mount table; a missing path stays as given, its parent resolved.
 */
export async function resolveTargets(paths: string[]): Promise<string[]> {
  const resolved: string[] = [];
  const mounts = mountTable();
  for (const given of paths) {
    const absolute = resolve(given);
    const real = (await realpath(absolute).catch(() => realpathOfMissing(absolute))) ?? absolute;
    let reason = refusedTarget(absolute) ?? refusedTarget(real);
    reason ??= refusedAlias(real, refusedTarget, mounts);
    if (reason !== undefined) throw new TargetError(`${given}: refused: ${reason}, never a target (see SECURITY.md)`);
    resolved.push(real);
  }
  return resolved;
}
