// nocow apply: do what the declaration says, now, by running the same generated shell as every artifact
// (the hook, nocow-apply.sh, rendered in memory); --dry-run inspects and tells what it would do instead.
import type { Argv } from 'yargs';
import type { Declaration, Target } from '../declaration/types.js';
import type { Io } from '../io.js';
import { declarationOptions, rootOption, type DeclarationArgs } from '../cli-options.js';

export interface ApplyArgs extends DeclarationArgs {
  root: string;
  dryRun: boolean;
}

export const command = 'apply';
export const describe = 'Bring the declared directories to their declared state now (runs the generated nocow-apply.sh)';

export function builder(yargs: Argv): Argv<ApplyArgs> {
  return rootOption(declarationOptions(yargs), 'Apply to the targets under DIR (an image or installer root)')
    .option('dry-run', {
      alias: 'n',
      describe: 'Inspect each target and print what apply would do, changing nothing',
      type: 'boolean',
      default: false,
    })
    .epilogue(
      'System-scope targets only: user-scope ones are applied at each login by user tmpfiles.d. ' +
        'Exit status: 0 done (problems are warnings, as in every artifact); 2 bad arguments or declaration.',
    )
    .example('$0 apply', 'The libvirt images directory on this system')
    .example('$0 apply --root /mnt/sysroot -c nocow.yaml', 'Your declaration, inside an image or installer root')
    .example('$0 apply --dry-run -p libvirt -p mariadb', 'What apply would do, without doing it') as unknown as Argv<ApplyArgs>;
}

export async function run(args: ApplyArgs, io: Io): Promise<number> {
  const [{ loadDeclaration }, { directoryArg }] = await Promise.all([import('../declaration/load.js'), import('../inspect/select.js')]);
  const root = await directoryArg('--root', args.root);
  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  const system = declaration.targets.filter((t) => t.scope === 'system');
  for (const t of declaration.targets) {
    if (t.scope === 'user') io.err(`nocow: ${t.name}: skipped: a user-scope target is applied at each login by user tmpfiles.d\n`);
  }
  if (system.length === 0) return 0;
  return args.dryRun ? dryRun(system, root, io) : applyNow({ sources: declaration.sources, targets: system }, root, io);
}

async function applyNow(declaration: Declaration, root: string, io: Io): Promise<number> {
  const [{ planArtifacts }, { renderPlan }, { loadTemplates, packageVersion }, { execa }] = await Promise.all([
    import('../plan.js'),
    import('../render/render.js'),
    import('../templates.js'),
    import('execa'),
  ]);
  const [templates, version] = await Promise.all([loadTemplates(), packageVersion()]);
  const [hook] = renderPlan(planArtifacts(declaration, ['hook'], version), templates);
  // The script as sh -c's argument: nothing written to disk, exactly the bytes `nocow generate hook`
  // gives, and stdin left empty, so no command in it can read the rest of the script.
  const child = execa('sh', ['-c', hook!.content, 'nocow-apply.sh', '--root', root], { stdin: 'ignore', reject: false, buffer: false, encoding: 'utf8' });
  child.stdout?.on('data', (chunk: string) => io.out(chunk));
  child.stderr?.on('data', (chunk: string) => io.err(chunk));
  const result = await child;
  if (result.exitCode === 0) return 0;
  // The script exits 0 whatever it finds; anything else means it did not run to its end.
  io.err(`nocow: error: nocow-apply.sh did not complete: ${result.shortMessage}\n`);
  return 1;
}

async function dryRun(targets: Target[], root: string, io: Io): Promise<number> {
  const [{ inspect }, { planApply }, { declaredSubject }, { dryRunText, printable }] = await Promise.all([
    import('../inspect/inspect.js'),
    import('../inspect/evaluate.js'),
    import('../inspect/subject.js'),
    import('../inspect/format.js'),
  ]);
  const plans = await Promise.all(
    targets.map(async (t) => {
      const subject = declaredSubject(t, root, undefined);
      const facts = await inspect(subject, { root, extents: false });
      return { subject, facts, plan: planApply(subject, facts) };
    }),
  );
  io.out(dryRunText(root, plans));
  let status = 0;
  for (const { subject, facts } of plans) {
    for (const problem of facts.problems) {
      io.err(`nocow: error: ${printable(subject.name ?? subject.path)}: ${printable(problem)}\n`);
      status = 1;
    }
  }
  return status;
}
