// nocow apply: do what the declaration says, now, by running the same generated shell as every artifact
// (the hook, nocow-apply.sh, rendered in memory); --dry-run inspects and tells what it would do instead.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import type { Declaration, Target } from '../declaration/types.js';
import { lineSplitter, printable, type Io } from '../io.js';
import { declarationOptions, jsonOption, rootOption, type CommandHelp } from '../cli-options.js';

const command = 'apply';
const describe = 'Bring the declared directories to their declared state now (runs the generated nocow-apply.sh)';

const help: CommandHelp = {
  notes: [
    'It runs the hook artifact (nocow-apply.sh, the bytes nocow generate hook writes) with --root DIR, its lines passed through: ' +
      'one per change ("nocow: NAME: …") on stdout, one per problem ("nocow: NAME: warning: …") on stderr, nothing when all is in place. ' +
      'System-scope targets only: user-scope ones are applied at each login by user tmpfiles.d.',
    '--dry-run changes nothing: it inspects each target as nocow status does and prints, under a heading, what the script would do to it. ' +
      'Like git diff --exit-code, it exits 1 when something would change.',
  ],
  examples: [
    ['nocow apply', 'The libvirt images directory on this system'],
    ['nocow apply --root /mnt/sysroot -c nocow.yaml', 'Your declaration, inside an image or installer root'],
    ['nocow apply --dry-run -p libvirt -p mariadb', 'What apply would do, without doing it'],
    ['nocow apply --json | jq -e \'.state == "unchanged"\'', 'Automation: true when nothing had to change'],
  ],
  exitStatus: [
    [0, 'done (problems are warnings, as in every artifact); --dry-run: nothing would change'],
    [1, 'the script did not run to its end; --dry-run: something would change'],
    [2, 'bad arguments or declaration; --dry-run: a target that could not be inspected'],
  ],
};

function builder(yargs: Argv) {
  const withRoot = rootOption(declarationOptions(yargs), 'Apply to the targets under DIR (an image or installer root)').option('dry-run', {
    alias: 'n',
    describe: 'Inspect each target and print what apply would do, changing nothing; exit 1 when something would change',
    type: 'boolean',
    default: false,
  });
  return jsonOption(withRoot, 'Print what changed (or would change), per target, as one JSON object instead of the lines');
}

type ApplyArgs = ArgsOf<typeof builder>;

/** One target in --json: what the script said about it (or, --dry-run, what it would do). */
export interface TargetReport {
  name: string;
  scope: 'system' | 'user';
  path: string;
  /** run: changed | unchanged | opted-out | skipped; --dry-run: would-change | unchanged | opted-out | skipped | error. */
  state: string;
  /** --dry-run: the plan ("would …", "nothing …"); null otherwise. */
  plan: string | null;
  /** The script's lines for this target on stdout, without "nocow: NAME: ". */
  changes: string[];
  /** The script's lines for this target on stderr, without "nocow: NAME: warning: ". */
  warnings: string[];
  /** --dry-run: what could not be inspected. */
  errors: string[];
}

const SKIPPED = 'skipped: a user-scope target is applied at each login by user tmpfiles.d';

async function run(args: ApplyArgs, io: Io): Promise<number> {
  const [{ loadDeclaration }, { directoryArg }] = await Promise.all([import('../declaration/load.js'), import('../inspect/select.js')]);
  const root = await directoryArg('--root', args.root);
  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  const reports = declaration.targets.map(
    (t): TargetReport => ({ name: t.name, scope: t.scope, path: t.path, state: t.scope === 'user' ? 'skipped' : 'unchanged', plan: null, changes: [], warnings: [], errors: [] }),
  );
  for (const t of declaration.targets) if (t.scope === 'user') io.err(`nocow: ${printable(t.name)}: ${SKIPPED}\n`);
  const system = declaration.targets.filter((t) => t.scope === 'system');
  const result =
    system.length === 0
      ? { status: 0, errors: [] as string[] }
      : args.dryRun
        ? await dryRun(system, reports, root, args.json, io)
        : await applyNow({ sources: declaration.sources, targets: system }, reports, root, args.json, io);
  if (args.json) io.out(applyJson(root, args.dryRun, result.status, reports, result.errors));
  return result.status;
}

function applyJson(root: string, dryRun: boolean, status: number, targets: TargetReport[], errors: string[]): string {
  const state = dryRun
    ? (['unchanged', 'would-change', 'error'] as const)[status]
    : status !== 0
      ? 'failed'
      : targets.some((t) => t.state === 'changed')
        ? 'changed'
        : 'unchanged';
  return `${JSON.stringify({ version: 1, root, dryRun, state, targets, errors }, null, 2)}\n`;
}

async function applyNow(declaration: Declaration, reports: TargetReport[], root: string, json: boolean, io: Io): Promise<{ status: number; errors: string[] }> {
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
  const errors: string[] = [];
  // Longest name first: "vm" must not take the lines of "vm.old" (names hold no ": ").
  const named = reports.filter((r) => r.scope === 'system').sort((a, b) => b.name.length - a.name.length);
  const take = (line: string, stream: 'out' | 'err') => {
    // Lines pass through one by one, control characters escaped (a path can hold any byte but "/" and NUL).
    if (stream === 'err') io.err(`${printable(line)}\n`);
    else if (!json) io.out(`${printable(line)}\n`);
    if (line === 'nocow: NOCOW_DISABLE=1: doing nothing') {
      for (const r of named) r.state = 'opted-out';
      return;
    }
    const target = named.find((r) => line.startsWith(`nocow: ${r.name}: `));
    if (!target) {
      errors.push(line);
      return;
    }
    const said = line.slice(`nocow: ${target.name}: `.length);
    if (stream === 'err') target.warnings.push(said.replace(/^warning: /, ''));
    else if (/^opted out by .*; doing nothing$/.test(said)) target.state = 'opted-out';
    else {
      target.changes.push(said);
      target.state = 'changed';
    }
  };
  const out = lineSplitter((line) => take(line, 'out'));
  const err = lineSplitter((line) => take(line, 'err'));
  child.stdout?.on('data', (chunk: string) => out.push(chunk));
  child.stderr?.on('data', (chunk: string) => err.push(chunk));
  const result = await child;
  out.end();
  err.end();
  if (result.exitCode === 0) return { status: 0, errors };
  // The script exits 0 whatever it finds; anything else means it did not run to its end.
  const message = `nocow-apply.sh did not complete: ${result.shortMessage}`;
  io.err(`nocow: error: ${printable(message)}\n`);
  return { status: 1, errors: [...errors, message] };
}

async function dryRun(targets: Target[], reports: TargetReport[], root: string, json: boolean, io: Io): Promise<{ status: number; errors: string[] }> {
  const [{ inspect }, { planApply }, { declaredSubject }, { dryRunText }] = await Promise.all([
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
  if (!json) io.out(dryRunText(root, plans));
  // Like git diff --exit-code: 1 when something would change; a target that could not be inspected, 2.
  let status = 0;
  for (const { subject, facts, plan } of plans) {
    const report = reports.find((r) => r.scope === 'system' && r.name === subject.name)!;
    report.plan = plan;
    report.errors = facts.problems;
    for (const problem of facts.problems) io.err(`nocow: error: ${printable(subject.name ?? subject.path)}: ${printable(problem)}\n`);
    if (facts.problems.length > 0) report.state = 'error';
    else if (facts.optOut) report.state = 'opted-out';
    else if (plan.startsWith('would ')) report.state = 'would-change';
    status = Math.max(status, report.state === 'error' ? 2 : report.state === 'would-change' ? 1 : 0);
  }
  return { status, errors: [] };
}

export default defineCommand({ command, describe, help, builder, run });
