// nocow status [PATH…]: is each declared directory as declared here, and which files in it still fragment?
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import { exactPath } from '../errors.js';
import { printable, processIo, stdoutIsTerminal, type Io } from '../io.js';
import { pathsOptions, single, type CommandHelp } from '../cli-options.js';

const command = 'status [paths..]';
const describe = 'Show whether each declared directory is a subvolume with +C here, and which files in it still copy on write';

const help: CommandHelp = {
  notes: [
    'It changes nothing. For each declared target under --root: file system, existence, subvolume, +C on the directory, data profile, opt-out, ' +
      'what an interrupted convert, migrate or apply left (with its size and the command that clears it), and each file inside that lacks +C with its size and extent count (fragmentation). ' +
      'User-scope targets are skipped unless --home names the home to look in.',
    'On a terminal the report is a table; otherwise one block of "field: value" lines per target. Control characters in names are shown escaped.',
  ],
  examples: [
    ['nocow status', 'The libvirt images directory: file system, subvolume, +C, data profile, copy-on-write files'],
    ['nocow status -p mariadb --json', 'The MariaDB data directory, as JSON'],
    ['nocow status --root /mnt/sysroot -c nocow.yaml', 'Your declaration, inside an installed image'],
    ['nocow status -p gnome-boxes --home ~', 'A user-scope target, in your home'],
    ['nocow status /srv/vm', 'Any directory, with the default expectations'],
  ],
  exitStatus: [
    [0, 'every target as declared, or nothing expected of it (not on Btrfs, opted out)'],
    [1, 'some target deviates'],
    [2, 'bad arguments or declaration, or a target that could not be inspected'],
  ],
};

function builder(yargs: Argv) {
  return pathsOptions(yargs, { describe: 'Only the targets with these paths (under --root); a path no target declares is inspected with the default declaration', whenNone: 'every declared target' }, 'Inspect the targets under DIR (an image or installer root)')
    .option('home', {
      describe: 'Inspect user-scope targets in this home directory (a path on this machine, not under --root); without it they are skipped',
      type: 'string',
      requiresArg: true,
      coerce: single,
    })
    .option('json', { describe: 'Print the report as one JSON object (schema version 1)', type: 'boolean', default: false });
}

type StatusArgs = ArgsOf<typeof builder>;

async function run(args: StatusArgs, io: Io): Promise<number> {
  const [{ loadDeclaration }, { selectSubjects, directoryArg }, { inspect }, { judge, exitStatus }, format] = await Promise.all([
    import('../declaration/load.js'),
    import('../inspect/select.js'),
    import('../inspect/inspect.js'),
    import('../inspect/evaluate.js'),
    import('../inspect/format.js'),
  ]);
  const root = await directoryArg('--root', args.root);
  const home = args.home === undefined ? undefined : await directoryArg('--home', exactPath('--home', args.home));
  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  const subjects = selectSubjects(declaration.targets, args.paths, root, home);
  const entries = await Promise.all(
    subjects.map(async (subject) => {
      const facts = await inspect(subject, { root });
      return { subject, facts, judgement: judge(subject, facts) };
    }),
  );
  for (const { subject, facts } of entries) {
    for (const problem of facts.problems) io.err(`nocow: error: ${printable(subject.name ?? subject.path)}: ${printable(problem)}\n`);
  }
  if (args.json) io.out(format.statusJson(root, home ?? null, entries));
  else if (io === processIo && stdoutIsTerminal()) io.out(format.statusTable(root, entries));
  else io.out(format.statusPlain(root, entries));
  return exitStatus(entries.map((e) => e.judgement.state));
}

export default defineCommand({ command, describe, help, builder, run });
