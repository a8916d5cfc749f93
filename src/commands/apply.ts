// nocow apply: do what the declaration says, now, by running the same generated shell as every artifact
// (the hook, nocow-apply.sh, rendered in memory); --dry-run runs that same script in its dry mode, so the plan is
// what the run does, step for step. Both read the script's events (`nocow: NAME: EVENT: text`), never its prose.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import type { Declaration } from '../declaration/types.js';
import { lineSplitter, printable, type Io } from '../io.js';
import { declarationOptions, jsonOption, rootOption, type CommandHelp } from '../cli-options.js';
import { CHANGE_EVENTS, EVENTS, type ShellEvent } from '../facts.js';

const command = 'apply';
const describe = 'Bring the declared directories to their declared state now (runs the generated nocow-apply.sh)';

const help: CommandHelp = {
  notes: [
    'It runs the hook artifact (nocow-apply.sh, the bytes nocow generate hook writes) with --root DIR, its lines passed through: ' +
      'one per change ("nocow: NAME: …") on stdout, one per problem ("nocow: NAME: warning: …") on stderr, nothing when all is in place. ' +
      'System-scope targets only: user-scope ones are applied at each login by user tmpfiles.d.',
    '--dry-run changes nothing: it runs the same script in its dry mode (nocow-apply.sh --dry-run), which prints, under a heading, ' +
      'each command it would run ("nocow: NAME: would: …") and the lines the run would print. Like git diff --exit-code, it exits 1 when something would change.',
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
    [2, 'bad arguments or declaration; --dry-run: the script did not run to its end'],
  ],
};

function builder(yargs: Argv) {
  const withRoot = rootOption(declarationOptions(yargs), 'Apply to the targets under DIR (an image or installer root)').option('dry-run', {
    alias: 'n',
    describe: 'Run the script in its dry mode: print what apply would do, changing nothing; exit 1 when something would change',
    type: 'boolean',
    default: false,
  });
  return jsonOption(withRoot, 'Print what changed (or would change), per target, as one JSON object instead of the lines');
}

type ApplyArgs = ArgsOf<typeof builder>;
// The events' vocabulary is a fact the generated shell and the Ansible role share (src/facts.ts).
export { CHANGE_EVENTS, EVENTS, type ShellEvent };

/** The name the script gives its one line for NOCOW_DISABLE=1, an opted-out event for every target. */
const DISABLED = 'NOCOW_DISABLE=1';

/** One target in --json: what the script said about it (or, --dry-run, what it would do). */
export interface TargetReport {
  name: string;
  scope: 'system' | 'user';
  path: string;
  /** run: changed | unchanged | opted-out | skipped; --dry-run: would-change | unchanged | opted-out | skipped. */
  state: string;
  /** --dry-run: the commands the script would run (its would events); null otherwise. */
  plan: string[] | null;
  /** The script's other lines for this target on stdout, without "nocow: NAME: " ("EVENT: text"); --dry-run: those the run would print. */
  changes: string[];
  /** The script's lines for this target on stderr, without "nocow: NAME: warning: ". */
  warnings: string[];
  /** Kept for the format's stability: always empty (the script inspects nothing it could fail to). */
  errors: string[];
}

const SKIPPED = 'skipped: a user-scope target is applied at each login by user tmpfiles.d';

async function run(args: ApplyArgs, io: Io): Promise<number> {
  const [{ loadDeclaration }, { directoryArg }] = await Promise.all([import('../declaration/load.js'), import('../inspect/select.js')]);
  const root = await directoryArg('--root', args.root);
  const declaration = await loadDeclaration({ profiles: args.profile, configs: args.config });
  const reports = declaration.targets.map(
    (t): TargetReport => ({
      name: t.name,
      scope: t.scope,
      path: t.path,
      state: t.scope === 'user' ? 'skipped' : 'unchanged',
      plan: args.dryRun && t.scope === 'system' ? [] : null,
      changes: [],
      warnings: [],
      errors: [],
    }),
  );
  for (const t of declaration.targets) if (t.scope === 'user') io.err(`nocow: ${printable(t.name)}: ${SKIPPED}\n`);
  const system = declaration.targets.filter((t) => t.scope === 'system');
  if (args.dryRun && !args.json && system.length > 0) io.out(`nocow apply --dry-run: the plan for root ${printable(root)}; nothing is changed\n`);
  const result = system.length === 0 ? { status: 0, errors: [] as string[] } : await runHook({ sources: declaration.sources, targets: system }, reports, root, args, io);
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

/** One line of the script read by its fields: the target it names, its event, its text; undefined when it is not one. */
export function readEvent(line: string, names: readonly string[]): { name: string; event: ShellEvent; text: string } | undefined {
  // Longest name first: "vm" must not take the lines of "vm.old" (names hold no ": ").
  const name = [...names, DISABLED].sort((a, b) => b.length - a.length).find((n) => line.startsWith(`nocow: ${n}: `));
  if (name === undefined) return undefined;
  const rest = line.slice(`nocow: ${name}: `.length);
  const cut = rest.indexOf(': ');
  const event = cut < 0 ? undefined : EVENTS.find((e) => e === rest.slice(0, cut));
  return event === undefined ? undefined : { name, event, text: rest.slice(cut + 2) };
}

async function runHook(declaration: Declaration, reports: TargetReport[], root: string, args: ApplyArgs, io: Io): Promise<{ status: number; errors: string[] }> {
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
  const argv = ['-c', hook!.content, 'nocow-apply.sh', '--root', root, ...(args.dryRun ? ['--dry-run'] : [])];
  const child = execa('sh', argv, { stdin: 'ignore', reject: false, buffer: false, encoding: 'utf8' });
  const errors: string[] = [];
  const system = reports.filter((r) => r.scope === 'system');
  const names = system.map((r) => r.name);
  let wouldChange = false;
  const take = (line: string, stream: 'out' | 'err') => {
    // Lines pass through one by one, control characters escaped (a path can hold any byte but "/" and NUL).
    if (stream === 'err') io.err(`${printable(line)}\n`);
    else if (!args.json) io.out(`${printable(line)}\n`);
    const said = readEvent(line, names);
    if (said === undefined) {
      errors.push(line);
      return;
    }
    const targets = said.name === DISABLED ? system : system.filter((r) => r.name === said.name);
    for (const target of targets) {
      if (said.event === 'warning') target.warnings.push(said.text);
      else if (said.event === 'opted-out') target.state = 'opted-out';
      else if (said.event === 'would') {
        target.plan?.push(said.text);
        target.state = 'would-change';
        wouldChange = true;
      } else {
        target.changes.push(`${said.event}: ${said.text}`);
        if (!args.dryRun && (CHANGE_EVENTS as readonly string[]).includes(said.event)) target.state = 'changed';
      }
    }
  };
  const out = lineSplitter((line) => take(line, 'out'));
  const err = lineSplitter((line) => take(line, 'err'));
  child.stdout?.on('data', (chunk: string) => out.push(chunk));
  child.stderr?.on('data', (chunk: string) => err.push(chunk));
  const result = await child;
  out.end();
  err.end();
  // Like git diff --exit-code, a dry run exits 1 when something would change.
  if (result.exitCode === 0) return { status: args.dryRun && wouldChange ? 1 : 0, errors };
  // The script exits 0 whatever it finds; anything else means it did not run to its end.
  const message = `nocow-apply.sh did not complete: ${result.shortMessage}`;
  io.err(`nocow: error: ${printable(message)}\n`);
  return { status: args.dryRun ? 2 : 1, errors: [...errors, message] };
}

export default defineCommand({ command, describe, help, builder, run });
