// nocow migrate PATH…: rewrite files that lack +C as NOCOW (see src/migrate/migrate.ts).
import type { Argv } from 'yargs';
import type { Io } from '../io.js';
import { exactPath } from '../cli-options.js';

export interface MigrateArgs {
  paths: string[];
  force: boolean;
  'force-nocow': boolean;
  'dry-run': boolean;
}

export const command = 'migrate <paths..>';
export const describe = 'Rewrite existing copy-on-write files as NOCOW, in place, safely';

export function builder(yargs: Argv): Argv<MigrateArgs> {
  return yargs
    .positional('paths', { describe: 'Files, or directories whose files lacking +C are rewritten', type: 'string', array: true, demandOption: true })
    .option('force', {
      type: 'boolean',
      default: false,
      describe: 'Rewrite files even while a process has them open (a file that changes during its copy is still kept)',
    })
    .option('force-nocow', { type: 'boolean', default: false, describe: 'Rewrite even on a redundant data profile (raid1, dup…), giving up checksums' })
    .option('dry-run', { alias: 'n', type: 'boolean', default: false, describe: 'List what would be rewritten, and what would be refused and why' })
    .example('$0 migrate /var/lib/libvirt/images', 'Rewrite every image in the directory that lacks +C')
    .example('$0 migrate -n /var/lib/libvirt/images/win11.qcow2', 'Only say what would happen')
    .epilog(
      'Each file is copied into a new +C file beside it (.NAME.nocow-migrate; .nocow-CKSUM.nocow-migrate for a long NAME), ' +
        'without reflinks, keeping holes and preallocation, verified by size and SHA-256, given the original\'s owner, mode, times ' +
        'and xattrs, then renamed over the original. Killed at any point, the original is intact and a re-run finishes the job. ' +
        'A file that changes during its copy, or that a process opens meanwhile, keeps its original; the copy is removed. ' +
        'PATHs are resolved (symlinks followed); system paths (/etc, /usr…, as given or resolved) are refused. ' +
        'Exit status: 0 all done, 1 some refused or failed, 2 bad usage or a refused path.',
    ) as unknown as Argv<MigrateArgs>;
}

export async function run(args: MigrateArgs, io: Io): Promise<number> {
  const { findCandidates, migrateFile, resolveTargets, extentCount, mib, MigrateError } = await import('../migrate/migrate.js');
  // A name that is not UTF-8 reaches us changed (U+FFFD): it would name another file.
  for (const path of args.paths) exactPath('PATH', path);
  const opts = { force: args.force, forceNocow: args['force-nocow'] };
  let candidates;
  try {
    // Every path is checked against the refused system paths before any is read.
    candidates = await findCandidates(await resolveTargets(args.paths), opts);
  } catch (error) {
    if (error instanceof MigrateError) {
      io.err(`nocow: error: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const refused = candidates.filter((c) => c.refusal);
  const todo = candidates.filter((c) => !c.refusal);
  for (const c of refused) io.err(`nocow: ${c.path}: not rewritten: ${c.refusal}\n`);
  if (candidates.length === 0) io.out('nothing to migrate: every file already has +C\n');
  if (args['dry-run']) {
    for (const c of todo) io.out(`would rewrite ${c.path} (${mib(c.size)}, ${c.extents ?? '?'} extents)\n`);
    return refused.length > 0 ? 1 : 0;
  }
  const bar = await progressBar(todo.reduce((sum, c) => sum + c.size, 0), todo[0]?.path ?? '');
  let failed = 0;
  for (const c of todo) {
    bar?.setFile(c.path);
    try {
      await migrateFile(c, opts, (bytes) => bar?.add(bytes), () => bar?.tick() ?? Promise.resolve());
      bar?.clear();
      io.out(`rewrote ${c.path} as NOCOW (${mib(c.size)}; extents ${c.extents ?? '?'} → ${(await extentCount(c.path)) ?? '?'})\n`);
    } catch (error) {
      failed++;
      bar?.clear();
      io.err(`nocow: ${c.path}: not rewritten: ${(error as Error).message}\n`);
    }
  }
  bar?.stop();
  return refused.length + failed > 0 ? 1 : 0;
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
      format: '{bar} {percentage}% | {done}/{all} MiB | {speed} MiB/s | {file}',
      hideCursor: true,
      clearOnComplete: true,
    },
    Presets.shades_classic,
  );
  const payload = (file?: string) => ({
    done: (done / 1048576).toFixed(0),
    all: (total / 1048576).toFixed(0),
    speed: (done / 1048576 / Math.max((Date.now() - started) / 1000, 0.001)).toFixed(1),
    ...(file === undefined ? {} : { file }),
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
