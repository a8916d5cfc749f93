// What nocow migrate and nocow revert do on the command line, one engine (src/migrate/) each way:
// the operands or the declared targets' directories, the plan printed (--dry-run) or carried out
// under the lock, the leftovers of interrupted runs removed, the outcome as lines or --json, a
// progress bar on a terminal. DIRECTION: nocow (migrate) or cow (revert).
import { printable, size, type Io } from './io.js';
import { UsageError, exactPath } from './errors.js';
import type { Candidate, Direction, MigrateOptions } from './migrate/migrate.js';
import type { Skipped } from './cli-declared.js';

/** The arguments both commands take (revert has no --force-nocow). */
export interface RewriteArgs {
  paths: string[];
  profile: string[];
  config: string[];
  root: string;
  force: boolean;
  'force-nocow'?: boolean;
  'dry-run': boolean;
  json: boolean;
}

/** One file in --json. */
export interface FileReport {
  path: string;
  result: 'rewritten' | 'refused' | 'failed' | 'would-rewrite';
  reason: string | null;
  sizeBytes: number;
  extentsBefore: number | null;
  extentsAfter: number | null;
}


/** A copy left by an interrupted run, in --json. */
export interface LeftoverReport {
  path: string;
  result: 'removed' | 'would-remove' | 'kept';
  reason: string | null;
  sizeBytes: number;
}

/** A directory whose +C revert clears, in --json. */
export interface DirectoryReport {
  path: string;
  result: 'cleared' | 'would-clear' | 'failed';
  reason: string | null;
}

/** The words that differ between the two commands. */
const WORDS = {
  nocow: { name: 'migrate', nothing: 'nothing to migrate: every file already has +C', done: 'rewritten as NOCOW' },
  cow: { name: 'revert', nothing: 'nothing to revert: no file has +C', done: 'rewritten as copy-on-write, with checksums' },
} as const;

export async function runRewrite(direction: Direction, args: RewriteArgs, io: Io): Promise<number> {
  const [engine, { directoryArg, operandPath }] = await Promise.all([import('./migrate/migrate.js'), import('./inspect/select.js')]);
  const { findCandidates, leftoversOf, migrateFiles, removeLeftovers, resolveTargets, temporaryName, nocowDirectories, clearNocow, frozenDirectories, MigrateError } = engine;
  const words = WORDS[direction];
  const forceNocow = args['force-nocow'] ?? false;
  const opts: MigrateOptions = { direction, force: args.force, forceNocow, dryRun: args['dry-run'] };
  // A name that is not UTF-8 reaches us changed (U+FFFD): it would name another file.
  for (const path of args.paths) exactPath('PATH', path);
  if (args.paths.length > 0 && (args.profile.length > 0 || args.config.length > 0)) {
    throw new UsageError(`give PATHs or --profile/--config, not both: without PATH, ${words.name} takes the declared targets' directories`);
  }
  const root = await directoryArg('--root', args.root);
  const skipped: Skipped[] = [];
  let status = 0;
  let candidates: Candidate[] = [];
  // What the run works on: each PATH, or each declared directory, as it is on this machine.
  const operands: string[] = [];
  let nocowDirs: string[] = [];
  try {
    if (args.paths.length > 0) {
      // Every path is checked against the refused system paths before any is read.
      for (const path of args.paths) operands.push(await operandPath(path, root));
      candidates = await findCandidates(operands, opts);
    } else {
      const { declaredDirectories } = await import('./cli-declared.js');
      const declared = await declaredDirectories(direction, args, root, io);
      // A target that could not be inspected: like a PATH that is refused, nothing is rewritten.
      if (declared.failed) return 2;
      skipped.push(...declared.skipped);
      for (const { path, forceNocow: declaredForce } of declared.directories) {
        const resolved = await resolveTargets([path]);
        operands.push(...resolved);
        candidates.push(...(await findCandidates(resolved, { ...opts, forceNocow: forceNocow || declaredForce })));
      }
    }
    if (direction === 'cow') nocowDirs = await nocowDirectories(operands);
  } catch (error) {
    if (error instanceof MigrateError) {
      io.err(`nocow: error: ${printable(error.message)}\n`);
      return 2;
    }
    throw error;
  }
  const files: FileReport[] = [];
  const directories: DirectoryReport[] = [];
  const report = (c: Candidate, result: FileReport['result'], reason: string | null, extentsAfter: number | null = null) =>
    files.push({ path: c.path, result, reason, sizeBytes: c.size, extentsBefore: c.extents ?? null, extentsAfter });
  const say = (line: string) => {
    if (!args.json) io.out(`nocow: ${line}\n`);
  };
  const refused = candidates.filter((c) => c.refusal);
  const todo = candidates.filter((c) => !c.refusal);
  // The copies interrupted runs left: those of the files rewritten now go as they are rewritten.
  const rewritten = new Set(todo.map((c) => temporaryName(c.path)));
  const leftovers = (await leftoversOf(operands)).filter((l) => !rewritten.has(l.path));
  const leftoverReports: LeftoverReport[] = [];
  const interrupted = `the copy an interrupted nocow ${direction === 'nocow' ? 'migrate' : 'migrate or revert'} left`;
  for (const c of candidates) if (c.refusal) report(c, 'refused', c.refusal);
  for (const c of refused) io.err(`nocow: ${printable(c.path)}: not rewritten: ${printable(c.refusal!)}\n`);
  if (candidates.length === 0 && operands.length > 0) say(words.nothing);
  if (refused.length > 0) status = 1;
  if (args['dry-run']) {
    const frozenDirs = await frozenDirectories(nocowDirs);
    for (const dir of nocowDirs) {
      const why = frozenDirs.get(dir);
      directories.push({ path: dir, result: why === undefined ? 'would-clear' : 'failed', reason: why ?? null });
      if (why === undefined) say(`${printable(dir)}: would clear +C on the directory (new files copy-on-write)`);
      else {
        status = 1;
        io.err(`nocow: ${printable(dir)}: +C not cleared on the directory: ${printable(why)}\n`);
      }
    }
    for (const l of leftovers) {
      leftoverReports.push({ path: l.path, result: 'would-remove', reason: null, sizeBytes: l.size });
      say(`${printable(l.path)}: would remove ${interrupted} (${size(l.size)})`);
    }
    for (const c of todo) {
      report(c, 'would-rewrite', null);
      say(`${printable(c.path)}: would rewrite (${size(c.size)}, ${c.extents === undefined ? '? extents' : c.extents === 1 ? '1 extent' : `${c.extents} extents`})`);
    }
  } else if (todo.length > 0 || leftovers.length > 0 || nocowDirs.length > 0) {
    const { lockAll } = await import('./host/lock.js');
    const lock = await lockAll(operands, (dir) => io.err(`nocow: waiting for the lock on ${printable(dir)} (another nocow run holds it; at most 5 minutes)\n`));
    try {
      // First the directories: the copies made in them from now on, and new files, are copy-on-write.
      const failedDirs = await clearNocow(nocowDirs);
      for (const dir of nocowDirs) {
        const why = failedDirs.get(dir);
        directories.push({ path: dir, result: why === undefined ? 'cleared' : 'failed', reason: why ?? null });
        if (why === undefined) say(`${printable(dir)}: cleared +C on the directory (new files copy-on-write)`);
        else {
          status = 1;
          io.err(`nocow: ${printable(dir)}: +C not cleared on the directory: ${printable(why)}\n`);
        }
      }
      const kept = removeLeftovers(leftovers.map((l) => l.path));
      for (const l of leftovers) {
        const why = kept.get(l.path);
        leftoverReports.push({ path: l.path, result: why === undefined ? 'removed' : 'kept', reason: why ?? null, sizeBytes: l.size });
        if (why === undefined) say(`${printable(l.path)}: removed ${interrupted} (${size(l.size)})`);
        else {
          status = 1;
          io.err(`nocow: ${printable(l.path)}: ${interrupted} is kept: ${printable(why)}\n`);
        }
      }
      const { progressBar } = await import('./progress-bar.js');
      const bar = await progressBar(todo.reduce((sum, c) => sum + c.size, 0), todo[0]?.path ?? '');
      await migrateFiles(todo, opts, {
        start: (c) => bar?.setFile(c.path),
        progress: (bytes) => bar?.add(bytes),
        tick: () => bar?.tick() ?? Promise.resolve(),
        done: ({ candidate: c, error, extentsAfter }) => {
          bar?.clear();
          if (error) {
            status = 1;
            report(c, 'failed', error.message);
            io.err(`nocow: ${printable(c.path)}: not rewritten: ${printable(error.message)}\n`);
            return;
          }
          const after = extentsAfter ?? null;
          report(c, 'rewritten', null, after);
          say(`${printable(c.path)}: ${words.done} (${size(c.size)}; extents ${c.extents ?? '?'} → ${after ?? '?'})`);
        },
      });
      bar?.stop();
    } finally {
      lock.release();
    }
  }

  if (args.json) {
    const done =
      files.some((f) => f.result === 'rewritten' || f.result === 'would-rewrite') ||
      leftoverReports.some((l) => l.result !== 'kept') ||
      directories.some((d) => d.result !== 'failed');
    const state = status === 1 ? 'incomplete' : !done ? 'unchanged' : args['dry-run'] ? 'would-rewrite' : 'rewritten';
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const doc = { version: 1, dryRun: args['dry-run'], state, files, skipped, leftovers: leftoverReports, ...(direction === 'cow' ? { directories } : {}) };
    io.out(`${JSON.stringify(doc, null, 2)}\n`);
  }
  return status;
}
