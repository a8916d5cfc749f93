// Declaration → plan: which files to produce, from which targets, with which root.
// Pure data; rendering and writing come after.
import type { Declaration, Target } from './declaration/types.js';
import { defragWant } from './policy.js';
import { kiwiProblem } from './render/escape.js';
import { alpmHookProblem, helperProblem } from './render/helper-call.js';
import { UsageError } from './errors.js';

export const ARTIFACTS = [
  'posttrans',
  'kickstart',
  'tmpfiles',
  'user-tmpfiles',
  'hook',
  'macros',
  'defrag-timer',
  'user-defrag-timer',
  'repart',
  'mkfs',
  'kiwi',
  'boot-unit',
  'alpm-hook',
  'pacman-install',
  'ansible',
] as const;
export type Artifact = (typeof ARTIFACTS)[number];

/**
 * Artifacts for image builders: an image holds no home directory, so a declaration with a
 * user-scope target is refused for them rather than served in part.
 */
export const IMAGE_ARTIFACTS: ReadonlySet<Artifact> = new Set(['repart', 'mkfs', 'kiwi', 'boot-unit']);

/** Artifacts that call the packaged helper with a target's values on its command line (the Arch ones). */
const HELPER_ARTIFACTS: ReadonlySet<Artifact> = new Set(['alpm-hook', 'pacman-install']);

/** Where nocow generate ansible writes its role, under -o DIR: a playbook beside roles/ finds it by name. */
export const ANSIBLE_ROLE = 'roles/nocow';

/** The root partition's definition the repart drop-in is for, by default (repart.d/10-root.conf). */
export const DEFAULT_REPART_DEFINITION = '10-root';

/** Produced when no artifact is named: those the packager and installer paths need. */
export const DEFAULT_ARTIFACTS: readonly Artifact[] = ['posttrans', 'kickstart', 'tmpfiles', 'user-tmpfiles'];

export type TemplateName =
  | 'requires.spec'
  | 'posttrans.spec'
  | 'kickstart-nochroot.ks'
  | 'kickstart-chroot.ks'
  | 'tmpfiles.conf'
  | 'user-tmpfiles.conf'
  | 'apply.sh'
  | 'macros.nocow'
  | 'defrag.service'
  | 'defrag.timer'
  | 'repart.conf'
  | 'mkfs.args'
  | 'kiwi-volumes.xml'
  | 'apply.service'
  | 'alpm.hook'
  | 'pacman.install'
  | 'ansible-tasks.yml'
  | 'ansible-defaults.yml'
  | 'ansible-vars.yml';

export interface PlannedFile {
  artifact: Artifact;
  /** Conventional file name, relative to the output directory. */
  file: string;
  template: TemplateName;
  targets: Target[];
  executable: boolean;
}

export interface Plan {
  tool: string;
  version: string;
  sources: string[];
  files: PlannedFile[];
  /** Kickstart sections only: where Anaconda logs their output (`%post --log=FILE`), as a path in the installed system. */
  kickstartLog?: string;
}

export interface PlanOptions {
  kickstartLog?: string;
  /** The repart.d definition (file name, ".conf" optional) the repart drop-in extends. */
  repartDefinition?: string;
}

/** What `%post --log=` can carry without any quoting: an absolute path of a safe alphabet (checked before planning). */
const KICKSTART_LOG_RE = /^\/[A-Za-z0-9._+/-]*[A-Za-z0-9._+-]$/;

/** Why FILE cannot be a kickstart section's log file; undefined when it can. */
export function kickstartLogProblem(file: string): string | undefined {
  if (!KICKSTART_LOG_RE.test(file) || file.split('/').some((s) => s === '.' || s === '..') || file.includes('//')) {
    return `${JSON.stringify(file)}: expected an absolute file path of letters, digits, ".", "_", "+", "-" and "/", e.g. /root/nocow-post.log`;
  }
  return undefined;
}

/** Why NAME cannot name a repart.d definition file; undefined when it can. */
export function repartDefinitionProblem(name: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (name === '' || name === '.conf' || name.includes('/') || /[\u0000-\u001f\u007f]/.test(name) || name === '.' || name === '..') {
    return `${JSON.stringify(name)}: expected the file name of a repart.d definition, with or without ".conf", e.g. ${DEFAULT_REPART_DEFINITION}`;
  }
  return undefined;
}

/** An artifact named that the declaration cannot produce: a usage error. */
export class PlanError extends UsageError {}

function file(artifact: Artifact, name: string, template: TemplateName, targets: Target[], executable = false): PlannedFile {
  return { artifact, file: name, template, targets, executable };
}

/** Files for one artifact; none when it does not apply to these targets. */
function filesFor(artifact: Artifact, system: Target[], user: Target[], repartDefinition: string): PlannedFile[] {
  switch (artifact) {
    case 'repart':
      return system.length === 0 ? [] : [file(artifact, `repart.d/${repartDefinition}.conf.d/nocow.conf`, 'repart.conf', system)];
    case 'mkfs':
      return system.length === 0 ? [] : [file(artifact, 'nocow-mkfs.args', 'mkfs.args', system)];
    case 'kiwi':
      return system.length === 0 ? [] : [file(artifact, 'nocow-kiwi-volumes.xml', 'kiwi-volumes.xml', system)];
    case 'boot-unit':
      return system.length === 0 ? [] : [file(artifact, 'systemd/system/nocow-apply.service', 'apply.service', system)];
    case 'alpm-hook':
      return system.map((t) => file(artifact, `nocow-${t.name}.hook`, 'alpm.hook', [t]));
    case 'pacman-install':
      return system.length === 0 ? [] : [file(artifact, 'nocow.install', 'pacman.install', system)];
    case 'ansible':
      // A role applying the declaration with the hook itself (files/), which it runs on each host.
      return system.length === 0
        ? []
        : [
            file(artifact, `${ANSIBLE_ROLE}/tasks/main.yml`, 'ansible-tasks.yml', system),
            file(artifact, `${ANSIBLE_ROLE}/defaults/main.yml`, 'ansible-defaults.yml', system),
            file(artifact, `${ANSIBLE_ROLE}/vars/main.yml`, 'ansible-vars.yml', system),
            file(artifact, `${ANSIBLE_ROLE}/files/nocow-apply.sh`, 'apply.sh', system, true),
          ];
    case 'macros':
      // The macros take the path as their argument: one file whatever the targets, which
      // serve only the marker comment (the declaration it came from).
      return [file(artifact, 'macros.nocow', 'macros.nocow', [...system, ...user])];
    case 'posttrans':
      return system.length === 0
        ? []
        : [file(artifact, 'nocow-requires.spec', 'requires.spec', system), file(artifact, 'nocow-posttrans.spec', 'posttrans.spec', system)];
    case 'kickstart':
      return system.length === 0
        ? []
        : [
            file(artifact, 'nocow-post-nochroot.ks', 'kickstart-nochroot.ks', system),
            file(artifact, 'nocow-post-chroot.ks', 'kickstart-chroot.ks', system),
          ];
    case 'hook':
      return system.length === 0 ? [] : [file(artifact, 'nocow-apply.sh', 'apply.sh', system, true)];
    case 'tmpfiles':
      return system.map((t) => file(artifact, `tmpfiles.d/nocow-${t.name}.conf`, 'tmpfiles.conf', [t]));
    case 'user-tmpfiles':
      return user.map((t) => file(artifact, `user-tmpfiles.d/nocow-${t.name}.conf`, 'user-tmpfiles.conf', [t]));
    case 'defrag-timer':
    case 'user-defrag-timer': {
      // One service and its timer for every target nocow defrag may work on, where systemd installs units of that scope.
      const dir = artifact === 'defrag-timer' ? 'systemd/system' : 'systemd/user';
      const wanted = (artifact === 'defrag-timer' ? system : user).filter((t) => defragWant(t) !== 'never');
      return wanted.length === 0
        ? []
        : [file(artifact, `${dir}/nocow-defrag.service`, 'defrag.service', wanted), file(artifact, `${dir}/nocow-defrag.timer`, 'defrag.timer', wanted)];
    }
  }
}

/** What an artifact named on the command line needs of the declaration, when it has nothing to produce. */
function needs(artifact: Artifact): string {
  if (artifact === 'defrag-timer' || artifact === 'user-defrag-timer') {
    const scope = artifact === 'defrag-timer' ? 'system' : 'user';
    return `a target of scope ${scope} that nocow defrag works on (defrag: on, or auto unless nocow: true with redundancy: force-nocow)`;
  }
  return `a target of scope ${artifact === 'user-tmpfiles' ? 'user' : 'system'}`;
}

/** Refuses, in one line, a declaration an image builder's artifact cannot carry whole. */
function imageProblems(artifact: Artifact, declaration: Declaration, user: Target[]): void {
  const from = `the declaration (${declaration.sources.join(', ')})`;
  const first = user[0];
  if (first !== undefined) {
    throw new PlanError(
      `artifact ${artifact} is for an image, which holds no home directory: ${from} has the user-scope target ${first.name} (${first.path}); ` +
        'generate it from a declaration of system-scope targets only',
    );
  }
  if (artifact !== 'kiwi') return;
  for (const t of declaration.targets) {
    const problem = kiwiProblem(t.path);
    if (problem !== undefined) throw new PlanError(`artifact kiwi cannot carry the path of target ${t.name}, ${JSON.stringify(t.path)}: expected ${problem}`);
  }
}

/** Refuses, in one line, a system-scope target the helper's command line (or the alpm hook) cannot carry. */
function helperProblems(artifact: Artifact, system: Target[]): void {
  for (const t of system) {
    const problem = helperProblem(t) ?? (artifact === 'alpm-hook' ? alpmHookProblem(t) : undefined);
    if (problem !== undefined) throw new PlanError(`artifact ${artifact} cannot carry target ${t.name} (${JSON.stringify(t.path)}): expected ${problem}`);
  }
}

export function planArtifacts(declaration: Declaration, requested: readonly Artifact[], version: string, options: PlanOptions = {}): Plan {
  if (options.kickstartLog !== undefined) {
    const problem = kickstartLogProblem(options.kickstartLog);
    if (problem !== undefined) throw new PlanError(`--kickstart-log ${problem}`);
  }
  if (options.repartDefinition !== undefined) {
    const problem = repartDefinitionProblem(options.repartDefinition);
    if (problem !== undefined) throw new PlanError(`--repart-definition ${problem}`);
  }
  const repartDefinition = (options.repartDefinition ?? DEFAULT_REPART_DEFINITION).replace(/\.conf$/, '');
  const explicit = requested.length > 0;
  const artifacts = explicit ? [...new Set(requested)] : DEFAULT_ARTIFACTS;
  const system = declaration.targets.filter((t) => t.scope === 'system');
  const user = declaration.targets.filter((t) => t.scope === 'user');
  const files: PlannedFile[] = [];
  for (const artifact of artifacts) {
    if (IMAGE_ARTIFACTS.has(artifact)) imageProblems(artifact, declaration, user);
    if (HELPER_ARTIFACTS.has(artifact)) helperProblems(artifact, system);
    const produced = filesFor(artifact, system, user, repartDefinition);
    if (explicit && produced.length === 0) {
      throw new PlanError(`artifact ${artifact} needs ${needs(artifact)}; the declaration (${declaration.sources.join(', ')}) has none`);
    }
    files.push(...produced);
  }
  return { tool: 'nocow-kit', version, sources: declaration.sources, files, ...(options.kickstartLog === undefined ? {} : { kickstartLog: options.kickstartLog }) };
}
