// Real generated artifacts for a test declaration, written where a test script can run them,
// plus the bash snippets a scenario uses to run them and to record what they did.
import type { Test } from 'tap';
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Target } from '../../src/declaration/types.js';
import { planArtifacts } from '../../src/plan.js';
import { renderPlan } from '../../src/render/render.js';
import { loadTemplates } from '../../src/templates.js';
import { CAPTURE_FN, readRan } from './capture.js';
import { shellOf } from './shell-of.js';

export const SHELLS = ['dash', 'bash', 'busybox sh'] as const;
export type Shell = (typeof SHELLS)[number];

/** The ways a shell artifact is run on a root other than /: kickstart --nochroot and the image-builder hook. */
export type Runner = 'kickstart' | 'hook';

export interface Rendered {
  /** Directory on the host file system, visible inside the test's mount namespace. */
  dir: string;
  /** Body of %post --nochroot, as the installer's shell runs it. */
  kickstart: string;
  hook: string;
  /** tmpfiles.d snippets, one per system target. */
  tmpfiles: string[];
}

/**
 * Renders the artifacts into a new directory, removed when `t` ends, passed or not
 * (a test's own `t`, or the root `t` of the file for a helper shared by its tests).
 */
export async function renderFor(targets: Target[], t: Pick<Test, 'teardown'>): Promise<Rendered> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-art-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const files = renderPlan(planArtifacts({ sources: ['config:test.yaml'], targets }, ['kickstart', 'hook', 'tmpfiles'], 'test'), await loadTemplates());
  const tmpfiles: string[] = [];
  for (const f of files) {
    if (f.file === 'nocow-post-nochroot.ks') await writeFile(join(dir, 'kickstart.sh'), shellOf(f.file, f.content)!);
    if (f.file === 'nocow-apply.sh') {
      await writeFile(join(dir, 'nocow-apply.sh'), f.content);
      await chmod(join(dir, 'nocow-apply.sh'), 0o755);
    }
    if (f.file.startsWith('tmpfiles.d/')) {
      const path = join(dir, f.file.replace('/', '__'));
      await writeFile(path, f.content);
      tmpfiles.push(path);
    }
  }
  return { dir, kickstart: join(dir, 'kickstart.sh'), hook: join(dir, 'nocow-apply.sh'), tmpfiles };
}

/**
 * Bash functions for scenario scripts. `R` is the root under test ($MNT/root), `A` the artifact dir.
 *   run LABEL SHELL RUNNER [ENV=VALUE…]: run an artifact under `capture` (./capture.ts): LABEL.out, LABEL.err, LABEL.rc in $A
 *   snap LABEL: observe_tree of $R (test/helpers/observe.sh): every entry's type, inode, mode,
 *               owner, mtime, ctime, flags, subvolume, checksum, xattrs
 *   subvol PATH: "yes" when btrfs subvolume show accepts PATH as a subvolume
 */
export const PRELUDE = String.raw`${CAPTURE_FN}
R=$MNT/root
mkdir -p "$R/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\nkvm:x:36:\n' >"$R/etc/group"
run() {
  label=$1 sh=$2 runner=$3; shift 3
  case $runner in
  kickstart) capture "$label" env "$@" ANA_INSTALL_PATH="$R" $sh "$A/kickstart.sh" ;;
  hook) capture "$label" env "$@" $sh "$A/nocow-apply.sh" --root "$R" ;;
  esac
}
snap() { observe_tree "$R" >"$A/$1.snap"; }
subvol() { if btrfs subvolume show "$1" >/dev/null 2>&1; then echo yes; else echo no; fi; }
flags() { lsattr -d "$1" | cut -d' ' -f1; }
`;

/** What `run LABEL …` left in the artifact dir. */
export const result = (a: Rendered, label: string) => readRan(a.dir, label);

export const readArtifactFile = (a: Rendered, name: string) => readFile(join(a.dir, name), 'utf8');
