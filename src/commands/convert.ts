// nocow convert PATH…: make filled plain directories subvolumes (+C as declared) by a verified copy
// and two renames, on request (see src/convert/convert.ts for the steps, src/convert/classify.ts for the crash states).
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import { realpath } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import { exactPath } from '../errors.js';
import { printable, size, type Io } from '../io.js';
import { declarationOptions, dryRunOption, forceNocowOption, jsonOption, rootOption, type CommandHelp } from '../cli-options.js';
import { TEMP_SUFFIX, temporaryName } from '../facts.js';
import type { ConvertContext, Outcome, Progress } from '../convert/convert.js';
import type { Subject } from '../inspect/subject.js';

const command = 'convert <paths..>';
const describe = 'Make filled plain directories subvolumes (+C as declared) by a verified copy, on request';

const help: CommandHelp = {
  notes: [
    'nocow apply never moves data, so a directory that already holds files stays a plain directory; convert makes it a subvolume. ' +
      'A new subvolume beside PATH (PATH.nocow-new), with +C while empty where +C is declared, receives a copy of every entry, ' +
      'without reflinks, keeping holes, preallocation, hard links, symlinks, special files, owners, modes, times, xattrs, ACLs and SELinux labels; ' +
      'the copy is verified entry by entry (SHA-256 of every file read back, metadata compared) and swapped in by two renames ' +
      '(PATH to PATH.nocow-old, the copy to PATH); the old tree is removed last. It needs room for a second copy meanwhile.',
    'Killed at any point, nothing is lost and running it again (with the same argument) finishes or undoes what was left. While it works it holds the lock ' +
      'every nocow run takes for PATH (flock on the directory holding it). It refuses a PATH holding a file some process has open or mapped, or a loop device is attached to, ' +
      'or a directory that is some process\'s working directory, root or open directory (stop VMs and databases, and leave the directory, first), ' +
      'anything mounted inside it or a mount showing it elsewhere (through any mount of its file system, bind mounts included), ' +
      'a nested subvolume, a hard link to outside, too little free space, and a redundant data profile ' +
      '(raid1, dup…) where +C is wanted unless --force-nocow; system paths (/etc, /usr…) are never converted, under whichever mount they are named. ' +
      'If a process or a write reaches the old tree after the swap, the swap is undone and the run exits 1.',
    'A PATH a declared target names (--profile, --config; default: libvirt) gets that target\'s nocow and redundancy settings; ' +
      'any other directory gets +C (nocow: true, redundancy: keep-checksums).',
    'The copy already rewrites every file (with +C where declared): running nocow migrate first would write everything twice. ' +
      'A PATH that is a subvolume already, such as the top level of a mounted Btrfs (a subvolume root), is left as it is: ' +
      '"nothing to do: already a subvolume", exit 0, no +C set either; for that, chattr +C PATH (new files) and nocow migrate PATH (existing ones).',
  ],
  examples: [
    ['nocow convert /var/lib/libvirt/images', 'Make the libvirt images directory a +C subvolume, its files kept'],
    ['nocow convert -n /srv/vm /srv/db', 'Only say what would be done, and what would be refused'],
    ['nocow convert -p mariadb /var/lib/mysql', 'As the mariadb profile declares that directory'],
    ['nocow convert --root /mnt/sysroot /var/lib/libvirt/images', 'The same directory inside an image or installer root'],
    ['nocow convert --json /srv/vm | jq -r ".targets[0].result"', 'The outcome per PATH, as JSON'],
  ],
  exitStatus: [
    [0, 'every PATH converted, or already a subvolume (--dry-run: each would be converted, or needs nothing)'],
    [1, 'some PATH refused or failed (nothing lost; the line says why), converted with its old tree kept, or not run as root'],
    [2, 'bad arguments or declaration, or a PATH missing, not a directory, or refused; nothing is done'],
  ],
};

function builder(yargs: Argv) {
  const options = rootOption(
    declarationOptions(
      yargs.positional('paths', {
        describe: 'Directories to make subvolumes, with their files (under --root)',
        type: 'string',
        array: true,
        // Required: no "[default: []]" in --help.
        default: undefined,
      }),
    ),
    'Convert the PATHs as seen under DIR (an image or installer root)',
  );
  const forced = forceNocowOption(options, 'Convert with +C even on a redundant data profile (raid1, dup…), giving up checksums');
  const dry = dryRunOption(forced, 'Check each PATH and say what would be done, or why it would be refused');
  return jsonOption(dry, 'Print the outcome per PATH as one JSON object instead of the lines');
}

type ConvertArgs = ArgsOf<typeof builder>;

/** One PATH in --json. */
export interface TargetReport {
  path: string;
  /** The declared target it is, or null. */
  name: string | null;
  result: Outcome['result'];
  reason: string | null;
  files: number;
  bytes: number;
}

const exists = (path: string) => lstatSync(path, { throwIfNoEntry: false });

async function run(args: ConvertArgs, io: Io): Promise<number> {
  const [{ resolveTargets, MigrateError }, { convertPath }, { lockFor }, { loadDeclaration }, { declaredSubject, joinBase, undeclaredSubject }, { directoryArg, operandPath }] = await Promise.all([
    import('../migrate/migrate.js'),
    import('../convert/convert.js'),
    import('../host/lock.js'),
    import('../declaration/load.js'),
    import('../inspect/subject.js'),
    import('../inspect/select.js'),
  ]);
  // <paths..> has no default (none in --help): the reader (src/cli-argv.ts) refuses a command line without one.
  const paths = args.paths ?? [];
  // A name that is not UTF-8 reaches us changed (U+FFFD): it would name another directory.
  for (const path of paths) exactPath('PATH', path);
  const root = await directoryArg('--root', args.root);
  // Every path is checked against the refused system paths, as given and resolved, before any is read.
  let resolved: string[] = [];
  for (const path of paths) resolved.push(await operandPath(path, root));
  try {
    // Then through every mount of its file system; a missing PATH (an interrupted conversion) is
    // its parent resolved, the name kept, also through a symlink: the same argument finishes it.
    resolved = await resolveTargets(resolved);
  } catch (error) {
    if (error instanceof MigrateError) {
      io.err(`nocow: error: ${printable(error.message)}\n`);
      return 2;
    }
    throw error;
  }
  const problems: string[] = [];
  resolved.forEach((path, i) => {
    const st = exists(path);
    // A missing PATH whose old tree is beside it is an interrupted conversion to finish.
    if (st === undefined && !exists(temporaryName(path, TEMP_SUFFIX.old))?.isDirectory()) problems.push(`${paths[i]}: no such directory`);
    else if (st !== undefined && !st.isDirectory()) problems.push(`${paths[i]}: not a directory`);
  });
  for (const problem of problems) io.err(`nocow: error: ${printable(problem)}\n`);
  if (problems.length > 0) return 2;
  if (!args['dry-run'] && process.getuid?.() !== 0) {
    io.err('nocow: error: convert runs as root: it keeps every owner, and marks its copy with a trusted.* xattr (--dry-run works without)\n');
    return 1;
  }

  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  const declared = await Promise.all(
    declaration.targets
      .filter((t) => t.scope === 'system')
      .map(async (t) => {
        const path = joinBase(root, t.path);
        return { target: t, paths: [path, await realpath(path).catch(() => path)] };
      }),
  );
  const requests: { path: string; subject: Subject }[] = [];
  for (const path of resolved) {
    if (requests.some((r) => r.path === path)) continue;
    const match = declared.find((d) => d.paths.includes(path))?.target;
    requests.push({ path, subject: match ? declaredSubject(match, root, undefined) : undeclaredSubject(path, '/') });
  }

  const bar = await progressBar();
  const reports: TargetReport[] = [];
  let status = 0;
  try {
    for (const { path, subject } of requests) {
      const say = (line: string) => {
        if (args.json) return;
        bar?.clear();
        io.out(`nocow: ${printable(path)}: ${printable(line)}\n`);
      };
      // PATH's own lock, taken once its checks pass and held while it is converted: other targets never wait for it.
      let lock: { release(): void } | undefined;
      const ctx: ConvertContext = {
        dryRun: args['dry-run'],
        forceNocow: args['force-nocow'],
        say,
        ...(bar ? { progress: bar } : {}),
        lock: async () => {
          lock ??= await lockFor(path, (dir) => io.err(`nocow: waiting for the lock on ${printable(dir)} (another nocow run holds it; at most 5 minutes)\n`));
        },
      };
      let o: Outcome;
      try {
        o = await convertPath({ path, subject }, ctx);
      } finally {
        lock?.release();
      }
      bar?.stop();
      reports.push({ path, name: subject.name, result: o.result, reason: o.reason, files: o.files, bytes: o.bytes });
      const flag = subject.nocow ? ' with +C' : '';
      const counted = `${o.files === 1 ? '1 file' : `${o.files} files`}, ${size(o.bytes)}`;
      switch (o.result) {
        case 'converted':
          say(`converted into a subvolume${flag} (${counted} copied and verified)`);
          if (o.reason !== null) {
            status = 1;
            io.err(`nocow: ${printable(path)}: warning: ${printable(o.reason)}\n`);
          }
          break;
        case 'nothing-to-do':
          say(`nothing to do: ${o.reason ?? 'already a subvolume'}`);
          break;
        case 'would-convert':
          say(o.files === 0 && o.reason !== null ? o.reason : `would convert into a subvolume${flag} (${counted} to copy)${o.reason ? `; ${o.reason}` : ''}`);
          break;
        default:
          status = 1;
          io.err(`nocow: ${printable(path)}: not converted: ${printable(o.reason ?? o.result)}\n`);
      }
    }
  } finally {
    bar?.stop();
  }
  if (args.json) {
    const results = reports.map((r) => r.result);
    const state =
      status === 1 ? 'incomplete' : results.includes('would-convert') ? 'would-convert' : results.includes('converted') ? 'converted' : 'unchanged';
    io.out(`${JSON.stringify({ version: 1, dryRun: args['dry-run'], state, targets: reports }, null, 2)}\n`);
  }
  return status;
}

/** A progress bar with throughput on a terminal (as migrate's); nothing when stderr is not one. */
async function progressBar(): Promise<(Progress & { clear(): void }) | undefined> {
  if (!process.stderr.isTTY) return undefined;
  const { SingleBar, Presets } = await import('cli-progress');
  let bar: InstanceType<typeof SingleBar> | undefined;
  let phase = '';
  let file = '';
  let done = 0;
  let total = 0;
  let started = Date.now();
  const payload = () => ({
    phase,
    done: size(done),
    all: size(total),
    speed: size(Math.round(done / Math.max((Date.now() - started) / 1000, 0.001))),
    file: printable(file),
  });
  return {
    start(name, bytes, first) {
      [phase, total, done, started, file] = [name, bytes, 0, Date.now(), first];
      if (bytes === 0) return;
      if (!bar) {
        bar = new SingleBar(
          { stream: process.stderr, format: '{phase} {bar} {percentage}% | {done}/{all} | {speed}/s | {file}', hideCursor: true, clearOnComplete: true },
          Presets.shades_classic,
        );
        bar.start(total, 0, payload());
      } else {
        bar.setTotal(total);
        bar.update(0, payload());
      }
    },
    file(rel) {
      file = rel;
      bar?.update(done, payload());
    },
    add(bytes) {
      done += bytes;
      bar?.update(done, payload());
    },
    tick: () => (bar ? new Promise((resolve) => setImmediate(resolve)) : Promise.resolve()),
    clear: () => {
      if (bar) process.stderr.write('\r\x1b[K');
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}

export default defineCommand({ command, describe, help, builder, run });
