// nocow generate [ARTIFACT…]: declaration → plan → rendered artifacts → stdout or -o DIR.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import { printable, type Io } from '../io.js';
import { declarationOptions, outputDir, single, type CommandHelp } from '../cli-options.js';
import { ARTIFACTS, DEFAULT_ARTIFACTS, DEFAULT_REPART_DEFINITION, type Artifact } from '../plan.js';

const command = 'generate [artifacts..]';
const describe = 'Generate RPM, kickstart and tmpfiles.d artifacts from a declaration';

const help: CommandHelp = {
  notes: [
    'With no ARTIFACT, every one that applies to the declaration (hook, macros, the defrag timers, the image builders\' repart, mkfs, kiwi and boot-unit, pacman\'s alpm-hook and pacman-install, and the Ansible role only when named); with no --profile and no --config, the declaration is the libvirt profile. ' +
      'Without -o, everything goes to stdout, each file introduced by a line "# ==> FILE <==". With -o DIR, the files are written all or none: nothing is replaced unless every one could be written.',
  ],
  examples: [
    ['nocow generate', 'Every artifact for the default profile (libvirt), to stdout'],
    ['nocow generate posttrans --profile mariadb', 'The %posttrans section and its Requires lines for /var/lib/mysql'],
    ['nocow generate -c nocow.yaml -o build/', 'Artifacts for your own declaration, as files under build/'],
    ['nocow generate tmpfiles user-tmpfiles -p libvirt -p gnome-boxes', 'Two profiles combined, tmpfiles.d snippets only'],
    ['nocow generate macros -o /usr/lib/rpm/macros.d', 'The RPM macro file: specs then write %nocow_posttrans PATH'],
    ['nocow generate kickstart -o ks/ --kickstart-log /root/nocow-post.log', 'Kickstart sections whose output Anaconda logs to the installed system'],
    ['nocow generate repart -o build/', 'A systemd-repart drop-in for the root partition (docs/image-builders.md)'],
    ['nocow generate mkfs -p libvirt -o build/', 'build/nocow-mkfs.args, arguments for mkfs.btrfs --rootdir'],
    ['nocow generate alpm-hook -p mariadb -o build/', 'build/nocow-mariadb.hook, a pacman hook calling the packaged helper after each transaction (docs/arch.md)'],
    ['nocow generate pacman-install -c nocow.yaml -o build/', "build/nocow.install, post_install and post_upgrade for a PKGBUILD's install= file"],
    ['nocow generate ansible -c nocow.yaml -o playbooks/', 'playbooks/roles/nocow/, an Ansible role running the generated hook on each host, with --check (docs/fleet.md)'],
  ],
  exitStatus: [
    [0, 'done'],
    [1, 'a file could not be written (nothing under -o DIR is replaced)'],
    [
      2,
      'bad arguments or declaration, an artifact the declaration has no target for, an image-builder artifact (repart, mkfs, kiwi, boot-unit) for a declaration with a user-scope target or a path that format cannot carry, ' +
        'alpm-hook or pacman-install for a target the helper\'s command line cannot carry (nocow: false, redundancy: force-nocow) or a path too long for a hook\'s line, ' +
        'or an -o DIR that is not a directory or has a file where a directory is needed',
    ],
  ],
};

function builder(yargs: Argv) {
  return declarationOptions(yargs)
    .positional('artifacts', {
      describe: `What to generate (default: ${DEFAULT_ARTIFACTS.join(', ')}: those that apply)`,
      choices: ARTIFACTS,
      array: true,
      default: [] as Artifact[],
      defaultDescription: 'all that apply',
    })
    .option('output', {
      alias: 'o',
      describe: 'Write each artifact to its conventional file name under DIR instead of stdout',
      type: 'string',
      requiresArg: true,
      coerce: outputDir,
    })
    .option('kickstart-log', {
      describe:
        'Kickstart sections only: log their output to FILE, a path in the installed system (%post --log=FILE; /mnt/sysroot/FILE for --nochroot). ' +
        'No --erroronfail is offered: the sections exit 0 by design, so a directory left without +C never aborts an installation',
      type: 'string',
      requiresArg: true,
      coerce: single,
    })
    .option('repart-definition', {
      describe: `repart only: the root partition's definition in repart.d that the drop-in extends (NAME.conf.d/nocow.conf; default ${DEFAULT_REPART_DEFINITION})`,
      type: 'string',
      requiresArg: true,
      coerce: single,
    });
}

type GenerateArgs = ArgsOf<typeof builder>;

async function run(args: GenerateArgs, io: Io): Promise<number> {
  const [{ loadDeclaration }, { planArtifacts }, { renderPlan }, { loadTemplates, packageVersion }, { writeRendered, concatenate }] =
    await Promise.all([
      import('../declaration/load.js'),
      import('../plan.js'),
      import('../render/render.js'),
      import('../templates.js'),
      import('../write.js'),
    ]);
  // The files are read while the declaration is loaded and planned.
  const version = packageVersion();
  const templates = loadTemplates();
  // A failure of either is reported, if at all, where it is awaited below.
  version.catch(() => undefined);
  templates.catch(() => undefined);
  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  // Planned before the templates are used: an artifact the declaration cannot produce is a
  // usage error (status 2) whatever the state of the installation.
  const kickstartLog = args['kickstart-log'];
  const repartDefinition = args['repart-definition'];
  const plan = planArtifacts(declaration, args.artifacts, await version, {
    ...(kickstartLog === undefined ? {} : { kickstartLog }),
    ...(repartDefinition === undefined ? {} : { repartDefinition }),
  });
  const files = renderPlan(plan, await templates);
  if (args.output === undefined) {
    io.out(concatenate(files));
    return 0;
  }
  const written = await writeRendered(args.output, files);
  // One write for all the lines: each is a system call on a pipe or a terminal.
  if (written.length > 0) io.err(written.map((path) => `nocow: wrote ${printable(path)}\n`).join(''));
  return 0;
}

export default defineCommand({ command, describe, help, builder, run });
