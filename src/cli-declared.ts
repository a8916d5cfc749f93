// Without PATH, nocow migrate and nocow revert work on the declared targets' directories: those
// where +C is expected of their files (migrate), or where it is not (revert: a redundant data
// profile kept for its checksums, or nocow: false); every other target skipped with the reason.
import { printable, type Io } from './io.js';
import type { RewriteArgs } from './cli-rewrite.js';
import type { Direction } from './migrate/migrate.js';

/** A declared target left out, and why. */
export interface Skipped {
  name: string;
  path: string;
  reason: string;
}

/**
 * Without PATH: the directories of the declared system-scope targets where +C is expected of
 * their files (migrate; what nocow status would call a deviation) or is not (revert), each with
 * its declared redundancy policy; every other target skipped with one line on stderr saying why.
 */
export async function declaredDirectories(direction: Direction, args: RewriteArgs, root: string, io: Io) {
  const [{ loadDeclaration }, { inspect }, { judge }, { declaredSubject }] = await Promise.all([
    import('./declaration/load.js'),
    import('./inspect/inspect.js'),
    import('./inspect/evaluate.js'),
    import('./inspect/subject.js'),
  ]);
  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  const skipped: Skipped[] = [];
  const directories: { path: string; forceNocow: boolean }[] = [];
  let failed = false;
  const skip = (name: string, path: string, reason: string) => {
    skipped.push({ name, path, reason });
    io.err(`nocow: ${printable(name)}: skipped: ${printable(reason)}\n`);
  };
  for (const t of declaration.targets) {
    if (t.scope === 'user') {
      skip(t.name, t.path, 'a user-scope target: give its directory in your home as PATH');
      continue;
    }
    const subject = declaredSubject(t, root, undefined);
    const facts = await inspect(subject, { root, extents: false });
    const judgement = judge(subject, facts);
    if (facts.problems.length > 0) {
      failed = true;
      for (const problem of facts.problems) io.err(`nocow: error: ${printable(t.name)}: ${printable(problem)}\n`);
      skipped.push({ name: t.name, path: t.path, reason: `could not be inspected: ${facts.problems.join('; ')}` });
    } else if (facts.optOut) skip(t.name, t.path, facts.optOut.by === 'env' ? 'opted out by NOCOW_DISABLE=1' : `opted out by the masked ${facts.optOut.file}`);
    else if (facts.fstype !== 'btrfs') skip(t.name, t.path, `not on Btrfs (${facts.fstype})`);
    else if (direction === 'nocow' && !t.nocow) skip(t.name, t.path, 'declared nocow: false');
    else if (!facts.exists) skip(t.name, t.path, `${t.path} does not exist (nocow apply creates it)`);
    else if (!facts.directory) skip(t.name, t.path, `${t.path} is not a directory`);
    else if (direction === 'nocow' && !judgement.expected.nocow && !args['force-nocow']) {
      skip(t.name, t.path, `the data profile is ${facts.dataProfile}, which keeps checksums for self-healing (redundancy: force-nocow or --force-nocow overrides)`);
    } else if (direction === 'cow' && judgement.expected.nocow) {
      skip(t.name, t.path, `+C is expected here (declared nocow: true, data profile ${facts.dataProfile ?? 'unknown'}): give its directory as PATH to revert it anyway`);
    } else directories.push({ path: facts.location ?? t.path, forceNocow: t.redundancy === 'force-nocow' });
  }
  return { directories, skipped, failed };
}

