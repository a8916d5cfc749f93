// nocow defrag [PATH…]: defragment the copy-on-write files that +C is not used for (see
// src/defrag/defrag.ts); without PATHs, the declared targets whose `defrag` setting wants it.
import { resolve, posix } from 'node:path';
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import { nameText, printable, size, type Io } from '../io.js';
import { jsonOption, pathsOptions, type CommandHelp } from '../cli-options.js';
import { UsageError, exactPath, showArg } from '../errors.js';
import { refusedTarget } from '../facts.js';
import { DEFAULT_MIN_EXTENTS } from '../defrag/policy.js';
import type { FileReport, Outcome } from '../defrag/defrag.js';

const command = 'defrag [paths..]';
const describe = 'Defragment fragmented copy-on-write files where +C is not used (redundant data profiles, nocow: false)';

const help: CommandHelp = {
  notes: [
    'For files that keep copy-on-write: on a redundant data profile (raid1, dup…) +C is skipped to keep the checksums self-healing needs, ' +
      'and a target may declare nocow: false. Each regular file (a directory: every one below it, on its file system) with more written ' +
      'extents than --min-extents per GiB of its size (at least that many; not counted: the extents compression makes, one per 128 KiB, and ' +
      'one per stretch of data between preallocated ranges never written or holes, which defragmenting leaves where they are) is defragmented ' +
      'with btrfs filesystem defragment, its compression kept, one line each with its written extents before and after. Left alone, with the ' +
      'reason: files whose extents are shared with a reflinked copy or a snapshot (defragmenting would unshare them and take their space again; ' +
      '--force-shared overrides), files a process has open for writing, and files an earlier run defragmented without bringing them under ' +
      'the threshold, unchanged since (the xattr user.nocow-kit.defrag records it; setfattr -x user.nocow-kit.defrag FILE tries again). ' +
      'Every file is defragmented or named with its reason, whatever bytes its name holds (shown escaped: \\xHH for a byte that is not UTF-8).',
    'Without PATH, the declared system-scope targets (--profile, --config; default: libvirt) under --root whose defrag setting wants it: ' +
      'defrag: on; defrag: auto (the default) where the files keep copy-on-write: nocow: false, or nocow: true with redundancy: keep-checksums ' +
      'on a redundant data profile, told at run time. Each other target is skipped with one line saying why. ' +
      '--if-redundant PATH gives a path with that run-time rule (the defrag-timer units use it).',
  ],
  examples: [
    ['nocow defrag', 'The declared targets that want it (default profile: libvirt)'],
    ['nocow defrag -n /srv/vm', 'Only say which files would be defragmented, and which left alone'],
    ['nocow defrag --min-extents 64 /srv/vm/disk.qcow2', 'A lower threshold, for one file'],
    ['nocow defrag -c nocow.yaml --json', 'Your declaration, the outcome per file as JSON'],
  ],
  exitStatus: [
    [0, 'done, or nothing to do; files left alone by design (shared extents, open for writing, no gain) are named, and are no failure'],
    [1, 'something to look at: a file could not be looked at or defragmented, a directory could not be read, or a PATH is not on Btrfs'],
    [2, 'bad arguments or declaration, a PATH refused or missing (without --ignore-missing), or a target that could not be inspected; nothing is defragmented'],
  ],
};

// Not `array: true`: an array option would swallow the paths that follow it.
const repeatable = (value: string | string[]): string[] => (Array.isArray(value) ? value : [value]);

/** --min-extents N: a whole number, at least 1 (the last one given wins). */
function minExtents(value: string | number | (string | number)[]): number {
  const given = String(Array.isArray(value) ? value[value.length - 1]! : value);
  const expected = 'expected a whole number of extents, at least 1';
  if (!/^\d+$/.test(given)) throw new UsageError(`--min-extents ${showArg(given)}: not a number; ${expected}`);
  const n = Number(given);
  if (n < 1 || !Number.isSafeInteger(n)) throw new UsageError(`--min-extents ${given}: ${expected}`);
  return n;
}

function builder(yargs: Argv) {
  const options = pathsOptions(yargs, { describe: 'Files, or directories whose files are defragmented (under --root)', whenNone: 'the declared targets that want it' }, 'Work on the declared targets, or the PATHs, under DIR (an image or installer root)')
    .option('if-redundant', {
      describe: 'A PATH defragmented only where its data profile is redundant (raid1, dup…), as defrag: auto decides for a nocow: true target (repeatable)',
      type: 'string',
      requiresArg: true,
      coerce: repeatable,
      default: [] as string[],
      defaultDescription: 'none',
    })
    .option('min-extents', {
      describe: 'Defragment a file with more written extents than this per GiB of its size (at least this many)',
      type: 'string',
      requiresArg: true,
      coerce: minExtents,
      default: DEFAULT_MIN_EXTENTS,
    })
    .option('force-shared', { type: 'boolean', default: false, describe: 'Defragment files with shared extents too (reflinked copies, snapshots), unsharing them: they take their space again' })
    .option('ignore-missing', { type: 'boolean', default: false, describe: 'Skip a PATH that does not exist, with a line, instead of failing (the defrag-timer units use it)' })
    .option('dry-run', { alias: 'n', type: 'boolean', default: false, describe: 'Say which files would be defragmented and which left alone, changing nothing' });
  return jsonOption(options, 'Print the outcome per file as one JSON object instead of the lines');
}

type DefragArgs = ArgsOf<typeof builder>;

/** A place (a target's directory, or a PATH) left out as a whole, and why. */
interface Skipped {
  name: string | null;
  path: string;
  reason: string;
}

interface Place {
  /** The target's name; null for a PATH. */
  name: string | null;
  location: string;
  ifRedundant: boolean;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** PATH as seen under ROOT, resolved, or why not (missing: null). Refused paths throw. */
async function locate(given: string, root: string, option: string): Promise<string | null> {
  const { realpath } = await import('node:fs/promises');
  exactPath(option, given);
  if (root !== '/' && !given.startsWith('/')) throw new UsageError(`${given}: with --root, give a path as seen under the root, starting with "/"`);
  const seen = posix.normalize(root === '/' ? resolve(given) : given).replace(/(.)\/+$/, '$1');
  const refuse = (why: string | undefined) => {
    if (why !== undefined) throw new UsageError(`${given}: refused: ${why}, never a target (see SECURITY.md)`);
  };
  refuse(refusedTarget(seen));
  const top = root.replace(/\/+$/, '');
  const real = await realpath(`${top}${seen}`).catch(() => null);
  if (real === null) return null;
  if (top !== '' && real !== top && !real.startsWith(`${top}/`)) throw new UsageError(`${given}: leads out of --root ${root} (${real})`);
  refuse(refusedTarget(real.slice(top.length) || '/'));
  return real;
}

async function run(args: DefragArgs, io: Io): Promise<number> {
  const [{ defragFiles, filesBelow, onBtrfs, dataProfile }, { isRedundant }, { directoryArg }] = await Promise.all([
    import('../defrag/defrag.js'),
    import('../defrag/policy.js'),
    import('../inspect/select.js'),
  ]);
  const explicit = args.paths.length > 0 || args['if-redundant'].length > 0;
  if (explicit && (args.profile.length > 0 || args.config.length > 0)) {
    throw new UsageError("give PATHs or --profile/--config, not both: without PATH, defrag takes the declared targets' directories");
  }
  const root = await directoryArg('--root', args.root);
  const skipped: Skipped[] = [];
  let status = 0;
  const skip = (name: string | null, path: string, reason: string, notable = false) => {
    skipped.push({ name, path, reason });
    if (notable) status = 1;
    io.err(`nocow: ${printable(name ?? path)}: skipped: ${printable(reason)}\n`);
  };

  const places: Place[] = [];
  if (explicit) {
    // Every PATH is checked (refused, missing) before any file is touched.
    const given = [...args.paths.map((p) => [p, false] as const), ...args['if-redundant'].map((p) => [p, true] as const)];
    for (const [path, ifRedundant] of given) {
      const location = await locate(path, root, ifRedundant ? '--if-redundant' : 'PATH');
      if (location !== null) places.push({ name: null, location, ifRedundant });
      else if (args['ignore-missing']) skip(null, path, 'does not exist');
      else throw new UsageError(`${path}: no such file or directory`);
    }
  } else {
    const declared = await declaredPlaces(args, root, skip, io);
    if (declared === undefined) return 2;
    places.push(...declared);
  }

  const files: Buffer[] = [];
  let looked = 0;
  for (const place of places) {
    if (!(await onBtrfs(place.location))) {
      skip(place.name, place.location, 'not on Btrfs', true);
      continue;
    }
    if (place.ifRedundant) {
      const profile = await dataProfile(place.location);
      if (!isRedundant(profile)) {
        skip(null, place.location, `the data profile is ${profile ?? 'unknown'}, not redundant: there +C keeps its files from fragmenting (--if-redundant)`);
        continue;
      }
    }
    const { lstat } = await import('node:fs/promises');
    const info = await lstat(place.location);
    if (info.isDirectory()) {
      const below = await filesBelow(place.location);
      files.push(...below.files);
      for (const dir of below.unreadable) skip(null, nameText(dir.path), dir.reason, true);
    } else if (info.isFile()) files.push(Buffer.from(place.location));
    else {
      skip(place.name, place.location, 'not a regular file or directory', true);
      continue;
    }
    looked += 1;
  }

  const say = (line: string) => {
    if (!args.json) io.out(`nocow: ${line}\n`);
  };
  const complain = (line: string) => {
    if (!args.json) io.err(`nocow: ${line}\n`);
  };
  const show = (o: Outcome) => {
    const r = o.report;
    const path = printable(r.path);
    const compressed = r.compression?.algorithm ? `; compressed with ${r.compression.algorithm} (${r.compression.by}${r.compression.option ? `: ${r.compression.option}` : ''})` : '';
    const unwritten = r.unwrittenExtents ? `; not counting ${plural(r.unwrittenExtents, 'preallocated range')} never written` : '';
    const still = r.reason ? `; ${printable(r.reason)}` : '';
    if (r.result === 'defragmented') say(`${path}: defragmented: extents ${r.extentsBefore} → ${r.extentsAfter ?? '?'} (${size(r.sizeBytes)} in ${r.seconds!.toFixed(1)} s${compressed}${unwritten})${still}`);
    else if (r.result === 'would-defragment') say(`${path}: would defragment: ${r.extentsBefore} extents, more than ${r.threshold} (${size(r.sizeBytes)}${compressed}${unwritten})`);
    else if (r.result === 'no-gain') say(`${path}: left as it is: ${printable(r.reason!)}`);
    else if (r.result === 'skipped') complain(`${path}: skipped: ${printable(r.reason!)}`);
    else if (r.result === 'failed') complain(`${path}: not defragmented: ${printable(r.reason!)}`);
  };
  const unique = [...new Map(files.map((f) => [f.toString('hex'), f])).values()];
  // The lock every nocow run takes for what it changes (src/host/lock.ts): each place's, while its files are rewritten.
  const lock = args['dry-run'] || files.length === 0 ? undefined : await (await import('../host/lock.js')).lockAll(places.map((p) => p.location), (dir) => io.err(`nocow: waiting for the lock on ${printable(dir)} (another nocow run holds it; at most 5 minutes)\n`));
  const outcomes = await defragFiles(unique, { minExtents: args['min-extents'], forceShared: args['force-shared'], dryRun: args['dry-run'] }, show).finally(() => lock?.release());
  if (outcomes.some((o) => o.notable)) status = 1;
  const below = outcomes.filter((o) => o.report.result === 'below-threshold').length;
  if (below > 0) say(`${plural(below, 'file')} at or below the threshold (${args['min-extents']} extents per GiB, at least ${args['min-extents']}): left as ${below === 1 ? 'it is' : 'they are'}`);
  else if (outcomes.length === 0 && looked > 0) say('nothing to defragment: no regular files');

  if (args.json) {
    const reports: FileReport[] = outcomes.map((o) => o.report).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const done = reports.some((r) => r.result === 'defragmented' || r.result === 'would-defragment');
    const state = status === 1 ? 'incomplete' : !done ? 'unchanged' : args['dry-run'] ? 'would-defragment' : 'defragmented';
    io.out(`${JSON.stringify({ version: 1, dryRun: args['dry-run'], minExtents: args['min-extents'], state, files: reports, skipped }, null, 2)}\n`);
  }
  return status;
}

/**
 * Without PATH: the directories of the declared system-scope targets under ROOT whose defrag
 * setting wants it on this machine; every other target skipped with one line saying why.
 * undefined when a target could not be inspected (exit status 2, nothing defragmented).
 */
async function declaredPlaces(
  args: DefragArgs,
  root: string,
  skip: (name: string | null, path: string, reason: string) => void,
  io: Io,
): Promise<Place[] | undefined> {
  const [{ loadDeclaration }, { inspect }, { declaredSubject }, { defragWant, isRedundant }] = await Promise.all([
    import('../declaration/load.js'),
    import('../inspect/inspect.js'),
    import('../inspect/subject.js'),
    import('../defrag/policy.js'),
  ]);
  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  const places: Place[] = [];
  let failed = false;
  for (const t of declaration.targets) {
    const want = defragWant(t);
    if (t.scope === 'user') {
      skip(t.name, t.path, 'a user-scope target: give its directory in your home as PATH (the user-defrag-timer units do)');
      continue;
    }
    if (want === 'never') {
      skip(t.name, t.path, t.defrag === 'off' ? 'declared defrag: off' : 'defrag: auto, and its files get +C (redundancy: force-nocow), which keeps them from fragmenting');
      continue;
    }
    const facts = await inspect(declaredSubject(t, root, undefined), { root, extents: false });
    if (facts.problems.length > 0) {
      failed = true;
      for (const problem of facts.problems) io.err(`nocow: error: ${printable(t.name)}: ${printable(problem)}\n`);
    } else if (facts.optOut) skip(t.name, t.path, facts.optOut.by === 'env' ? 'opted out by NOCOW_DISABLE=1' : `opted out by the masked ${facts.optOut.file}`);
    else if (facts.escapes) skip(t.name, t.path, `${facts.escapes} is a symlink leading out of ${root}`);
    else if (facts.fstype !== 'btrfs') skip(t.name, t.path, `not on Btrfs (${facts.fstype})`);
    else if (!facts.exists) skip(t.name, t.path, 'does not exist');
    else if (!facts.directory) skip(t.name, t.path, 'not a directory');
    else if (want === 'if-redundant' && !isRedundant(facts.dataProfile)) {
      skip(t.name, t.path, `defrag: auto, and the data profile is ${facts.dataProfile ?? 'unknown'}: its files get +C instead, which keeps them from fragmenting (nocow migrate rewrites those that lack it)`);
    } else places.push({ name: t.name, location: facts.location ?? t.path, ifRedundant: false });
  }
  return failed ? undefined : places;
}

export default defineCommand({ command, describe, help, builder, run });
