// nocow revert [PATH…]: the inverse of nocow migrate, by the same engine (src/migrate/migrate.ts,
// direction cow): +C cleared on the directories, and each +C file rewritten as a copy-on-write
// file with checksums; without PATHs, the declared targets' directories where +C is not expected.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import type { Io } from '../io.js';
import { dryRunOption, jsonOption, pathsOptions, type CommandHelp } from '../cli-options.js';

const command = 'revert [paths..]';
const describe = 'Rewrite NOCOW (+C) files as copy-on-write files with checksums, in place, safely';

const help: CommandHelp = {
  notes: [
    'The inverse of nocow migrate, with its guarantees. +C is first cleared on each directory PATH and every directory below it ' +
      '(new files there are copy-on-write again; a subvolume stays a subvolume). Then each file with +C is copied into a new file beside it ' +
      '(.NAME.nocow-migrate; .nocow-CKSUM.nocow-migrate for a long NAME) whose +C is cleared while it is empty, without reflinks, keeping ' +
      'holes and preallocation, read back from the disk and compared byte for byte with the data read from the original, given the ' +
      "original's owner, mode, times and xattrs, then renamed over the original, which keeps a second name (.NAME.nocow-original) until it " +
      'is checked once more. A file that changes during its copy, or that a process holds open, keeps its original; the copy is removed. ' +
      'Killed at any point, nothing is lost and a re-run finishes the job. No mount point inside a PATH is entered. ' +
      "A file PATH is rewritten alone: its directory's +C is left as it is.",
    'Why: a NOCOW file has no data checksums, so on a redundant data profile (raid1, dup…) a scrub cannot tell the good copy of a block ' +
      'from a bad one and repair it; rewritten copy-on-write, it can. nocow status says so where it finds +C files on such a profile.',
    'PATHs are resolved (symlinks followed), under --root when given; system paths (/etc, /usr…) are refused. ' +
      'Without PATH, the declared system-scope targets (--profile, --config; default: libvirt) under --root are reverted where nocow status does not ' +
      'expect +C: on Btrfs, not opted out, and nocow: false or a redundant data profile kept for its checksums (redundancy: keep-checksums); ' +
      'each other target is skipped with one line saying why. Change the declaration too, or nocow apply sets +C on the directory again.',
  ],
  examples: [
    ['nocow revert /var/lib/libvirt/images', 'Every +C file there rewritten with checksums, and +C off the directory'],
    ['nocow revert -n /var/lib/postgresql', 'Only say what would happen'],
    ['nocow revert --json /srv/vm/disk.img', 'One file, the outcome as JSON'],
    ['nocow revert', 'The declared targets on a raid1 profile (redundancy: keep-checksums)'],
  ],
  exitStatus: [
    [0, 'every file rewritten and every directory cleared, or none needed it (--dry-run: none would be refused)'],
    [1, 'some file refused or failed, or a directory kept its +C (the others are done)'],
    [2, 'bad arguments or declaration, a PATH refused or missing, or a target that could not be inspected; nothing is changed'],
  ],
};

function builder(yargs: Argv) {
  const options = pathsOptions(yargs, { describe: 'Files with +C, or directories whose +C and files with +C are reverted (under --root)', whenNone: "the declared targets' directories" }, 'Revert the declared targets, or the PATHs, under DIR (an image or installer root)')
    .option('force', {
      type: 'boolean',
      default: false,
      describe: 'Rewrite files even while a process has them open (a file that changes during its copy is still kept)',
    });
  return jsonOption(dryRunOption(options, 'List what would be rewritten and cleared, and what would be refused and why'), 'Print the outcome per file and directory as one JSON object instead of the lines');
}

async function run(args: ArgsOf<typeof builder>, io: Io): Promise<number> {
  const { runRewrite } = await import('../cli-rewrite.js');
  return runRewrite('cow', args, io);
}

export default defineCommand({ command, describe, help, builder, run });
