// nocow migrate [PATH…]: rewrite files that lack +C as NOCOW (see src/migrate/migrate.ts); without
// PATHs, the files in the declared targets' directories where +C is expected.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import type { Io } from '../io.js';
import { dryRunOption, forceNocowOption, jsonOption, pathsOptions, type CommandHelp } from '../cli-options.js';

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

async function run(args: ArgsOf<typeof builder>, io: Io): Promise<number> {
  const { runRewrite } = await import('../cli-rewrite.js');
  return runRewrite('nocow', args, io);
}

export default defineCommand({ command, describe, help, builder, run });
