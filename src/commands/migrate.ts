// nocow migrate [PATH…]: rewrite files that lack +C as NOCOW (see src/migrate/migrate.ts); without
// PATHs, the files in the declared targets' directories where +C is expected.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import { printable, size, type Io } from '../io.js';
import { dryRunOption, forceNocowOption, jsonOption, pathsOptions, type CommandHelp } from '../cli-options.js';
import { UsageError, exactPath } from '../errors.js';
import type { Candidate, MigrateOptions } from '../migrate/migrate.js';

const command = 'migrate [paths..]';
const describe = 'Rewrite existing copy-on-write files as NOCOW, in place, safely';

const help: CommandHelp = {
  notes: [
    'Each file is copied into a new +C file beside it (.NAME.nocow-migrate; .nocow-CKSUM.nocow-migrate for a long NAME), ' +
      "without reflinks, keeping holes and preallocation, read back from the disk (not the page cache) and compared byte for byte " +
      "with the original's data as it was read, given the original's owner, mode, times " +
      'and xattrs, then renamed over the original, which keeps a second name (.NAME.nocow-original) until it is checked once more. ' +
      'A file that changes during its copy, or that a process opens meanwhile (up to that last check), keeps its original; the copy is removed. ' +
      'Killed at any point, nothing is lost and a re-run finishes the job. No mount point inside a PATH is entered. ' +
      'A copy an interrupted run left is removed by the next run over its directory (or file), unless a process has it open. ' +
      'A file that is immutable or append-only (chattr +i, +a), or in a directory that is, is left alone. ' +
      'While it rewrites, it holds the lock every nocow run takes for each PATH (flock on the directory holding it).',
    'PATHs are resolved (symlinks followed), under --root when given; system paths (/etc, /usr…, as given, resolved or through another mount of their file system) are refused. ' +
      'Without PATH, the declared system-scope targets (--profile, --config; default: libvirt) under --root are migrated where nocow status expects +C of their files: ' +
      'on Btrfs, not opted out, nocow: true, and a data profile that is not redundant unless redundancy: force-nocow; each other target is skipped with one line saying why.',
  ],
  examples: [
    ['nocow migrate', 'Every file lacking +C in the libvirt images directory'],
    ['nocow migrate /var/lib/libvirt/images', 'The same, by path'],
    ['nocow migrate -n /var/lib/libvirt/images/win11.qcow2', 'Only say what would happen'],
    ['nocow migrate -p mariadb --json', 'The MariaDB data directory, the outcome per file as JSON'],
    ['nocow migrate --root /mnt/sysroot', 'The declared targets inside an image or installer root'],
  ],
  exitStatus: [
    [0, 'every file rewritten, or none needed it (--dry-run: none would be refused)'],
    [1, 'some file refused or failed (the others are rewritten)'],
    [2, 'bad arguments or declaration, a PATH refused or missing, or a target that could not be inspected; nothing is rewritten'],
  ],
};

function builder(yargs: Argv) {
  const options = pathsOptions(yargs, { describe: 'Files, or directories whose files lacking +C are rewritten (under --root)', whenNone: "the declared targets' directories" }, 'Migrate the declared targets, or the PATHs, under DIR (an image or installer root)')
    .option('force', {
      type: 'boolean',
      default: false,
      describe: 'Rewrite files even while a process has them open (a file that changes during its copy is still kept)',
    });
  const forced = forceNocowOption(options, 'Rewrite even on a redundant data profile (raid1, dup…), giving up checksums');
  return jsonOption(dryRunOption(forced, 'List what would be rewritten, and what would be refused and why'), 'Print the outcome per file as one JSON object instead of the lines');
}

type MigrateArgs = ArgsOf<typeof builder>;

/** One file in --json. */
export interface FileReport {
  path: string;
  result: 'rewritten' | 'refused' | 'failed' | 'would-rewrite';
  reason: string | null;
  sizeBytes: number;
  extentsBefore: number | null;
  extentsAfter: number | null;
}

/** A declared target left out (without PATH), and why. */
interface Skipped {
  name: string;
  path: string;
  reason: string;
}

/** A copy left by an interrupted run, in --json. */
export interface LeftoverReport {
  path: string;
  result: 'removed' | 'would-remove' | 'kept';
  reason: string | null;
  sizeBytes: number;
}

async function run(args: MigrateArgs, io: Io): Promise<number> {
  const [{ findCandidates, leftoversOf, migrateFiles, removeLeftovers, resolveTargets, temporaryName, MigrateError }, { directoryArg, operandPath }] = await Promise.all([
    import('../migrate/migrate.js'),
    import('../inspect/select.js'),
  ]);
  const opts: MigrateOptions = { force: args.force, forceNocow: args['force-nocow'], dryRun: args['dry-run'] };
  // A name that is not UTF-8 reaches us changed (U+FFFD): it would name another file.
  for (const path of args.paths) exactPath('PATH', path);
  if (args.paths.length > 0 && (args.profile.length > 0 || args.config.length > 0)) {
    throw new UsageError('give PATHs or --profile/--config, not both: without PATH, migrate takes the declared targets\' directories');
  }
  const root = await directoryArg('--root', args.root);
  const skipped: Skipped[] = [];
  let status = 0;
  let candidates: Candidate[] = [];
  // What the run works on: each PATH, or each declared directory, as it is on this machine.
  const operands: string[] = [];
  try {
    if (args.paths.length > 0) {
      // Every path is checked against the refused system paths before any is read.
      for (const path of args.paths) operands.push(await operandPath(path, root));
      candidates = await findCandidates(operands, opts);
    } else {
      const declared = await declaredDirectories(args, root, io);
      // A target that could not be inspected: like a PATH that is refused, nothing is rewritten.
      if (declared.failed) return 2;
      skipped.push(...declared.skipped);
      for (const { path, forceNocow } of declared.directories) {
        const resolved = await resolveTargets([path]);
        operands.push(...resolved);
        candidates.push(...(await findCandidates(resolved, { ...opts, forceNocow: opts.forceNocow || forceNocow })));
      }
    }
  } catch (error) {
    if (error instanceof MigrateError) {
      io.err(`nocow: error: ${printable(error.message)}\n`);
      return 2;
    }
    throw error;
  }
  const files: FileReport[] = [];
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
  for (const c of candidates) if (c.refusal) report(c, 'refused', c.refusal);
  for (const c of refused) io.err(`nocow: ${printable(c.path)}: not rewritten: ${printable(c.refusal!)}\n`);
  if (candidates.length === 0 && operands.length > 0) say('nothing to migrate: every file already has +C');
  if (refused.length > 0) status = 1;
  if (args['dry-run']) {
    for (const l of leftovers) {
      leftoverReports.push({ path: l.path, result: 'would-remove', reason: null, sizeBytes: l.size });
      say(`${printable(l.path)}: would remove the copy an interrupted nocow migrate left (${size(l.size)})`);
    }
    for (const c of todo) {
      report(c, 'would-rewrite', null);
      say(`${printable(c.path)}: would rewrite (${size(c.size)}, ${c.extents === undefined ? '? extents' : c.extents === 1 ? '1 extent' : `${c.extents} extents`})`);
    }
  } else if (todo.length > 0 || leftovers.length > 0) {
    const { lockAll } = await import('../host/lock.js');
    const lock = await lockAll(operands, (dir) => io.err(`nocow: waiting for the lock on ${printable(dir)} (another nocow run holds it; at most 5 minutes)\n`));
    try {
      const kept = removeLeftovers(leftovers.map((l) => l.path));
      for (const l of leftovers) {
        const why = kept.get(l.path);
        leftoverReports.push({ path: l.path, result: why === undefined ? 'removed' : 'kept', reason: why ?? null, sizeBytes: l.size });
        if (why === undefined) say(`${printable(l.path)}: removed the copy an interrupted nocow migrate left (${size(l.size)})`);
        else {
          status = 1;
          io.err(`nocow: ${printable(l.path)}: the copy an interrupted nocow migrate left is kept: ${printable(why)}\n`);
        }
      }
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
          say(`${printable(c.path)}: rewritten as NOCOW (${size(c.size)}; extents ${c.extents ?? '?'} → ${after ?? '?'})`);
        },
      });
      bar?.stop();
    } finally {
      lock.release();
    }
  }

  if (args.json) {
    const done = files.some((f) => f.result === 'rewritten' || f.result === 'would-rewrite') || leftoverReports.some((l) => l.result !== 'kept');
    const state = status === 1 ? 'incomplete' : !done ? 'unchanged' : args['dry-run'] ? 'would-rewrite' : 'rewritten';
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    io.out(`${JSON.stringify({ version: 1, dryRun: args['dry-run'], state, files, skipped, leftovers: leftoverReports }, null, 2)}\n`);
  }
  return status;
}

/**
 * Without PATH: the directories of the declared system-scope targets where +C is expected of
 * their files (what nocow status would call a deviation), each with its declared redundancy
 * policy; every other target skipped with one line on stderr saying why.
 */
async function declaredDirectories(args: MigrateArgs, root: string, io: Io) {
  const [{ loadDeclaration }, { inspect }, { judge }, { declaredSubject }] = await Promise.all([
    import('../declaration/load.js'),
    import('../inspect/inspect.js'),
    import('../inspect/evaluate.js'),
    import('../inspect/subject.js'),
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
    else if (!t.nocow) skip(t.name, t.path, 'declared nocow: false');
    else if (!facts.exists) skip(t.name, t.path, `${t.path} does not exist (nocow apply creates it)`);
    else if (!facts.directory) skip(t.name, t.path, `${t.path} is not a directory`);
    else if (!judgement.expected.nocow && !args['force-nocow']) {
      skip(t.name, t.path, `the data profile is ${facts.dataProfile}, which keeps checksums for self-healing (redundancy: force-nocow or --force-nocow overrides)`);
    } else directories.push({ path: facts.location ?? t.path, forceNocow: t.redundancy === 'force-nocow' });
  }
  return { directories, skipped, failed };
}

interface Bar {
  setFile(path: string): void;
  add(bytes: number): void;
  tick(): Promise<void>;
  clear(): void;
  stop(): void;
}

/** A progress bar with throughput on a terminal; nothing when stderr is not one. */
async function progressBar(total: number, firstFile: string): Promise<Bar | undefined> {
  if (!process.stderr.isTTY || total === 0) return undefined;
  const { SingleBar, Presets } = await import('cli-progress');
  const started = Date.now();
  let done = 0;
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {percentage}% | {done}/{all} | {speed}/s | {file}',
      hideCursor: true,
      clearOnComplete: true,
    },
    Presets.shades_classic,
  );
  const payload = (file?: string) => ({
    done: size(done),
    all: size(total),
    speed: size(Math.round(done / Math.max((Date.now() - started) / 1000, 0.001))),
    ...(file === undefined ? {} : { file: printable(file) }),
  });
  bar.start(total, 0, payload(firstFile));
  return {
    setFile: (file) => bar.update(done, payload(file)),
    add: (bytes) => {
      done += bytes;
      bar.update(done, payload());
    },
    tick: () => new Promise((resolve) => setImmediate(resolve)),
    clear: () => process.stderr.write('\r\x1b[K'),
    stop: () => bar.stop(),
  };
}

export default defineCommand({ command, describe, help, builder, run });
