// The packaged helper's command line for one declared target, as the Arch artifacts run it (an alpm
// hook's Exec=, the functions of a PKGBUILD's .install file). Every value of the declaration is
// given, so the call does what the declaration says whatever the helper's defaults. Pure.
import type { Target } from '../declaration/types.js';
import { HOOK_PATH } from '../facts.js';
import { ALPM_LINE_MAX, alpmExecWord, alpmTargetPattern } from './escape.js';

/**
 * The helper's options for T, each with its value (the flags need no quoting; the values do).
 * `-c` only for compression: clear: keep is the helper's default, and a helper older than its -c
 * still takes a call without it.
 */
export function helperOptions(t: Target): [string, string][] {
  return [
    ['-m', t.mode],
    ['-o', t.user],
    ['-g', t.group],
    ['-s', t.subvolume],
    ...(t.compression === 'clear' ? [['-c', 'clear'] as [string, string]] : []),
    ['--name', t.name],
  ];
}

/** The helper's call for T, each value and the path through QUOTE: `HOOK --scriptlet OPTIONS -- PATH`. */
export function helperCall(t: Target, quote: (value: string) => string): string {
  const options = helperOptions(t).flatMap(([flag, value]) => [flag, quote(value)]);
  return [HOOK_PATH, '--scriptlet', ...options, '--', quote(t.path)].join(' ');
}

/**
 * Why the helper's command line cannot carry T, as an "expected …" phrase; undefined when it can.
 * The helper applies its PATH operands with nocow and redundancy: keep-checksums (nocow_run), and
 * has no option for other values.
 */
export function helperProblem(t: Target): string | undefined {
  if (!t.nocow) return 'nocow: true (the helper nocow-apply.sh takes no option for nocow: false)';
  if (t.redundancy !== 'keep-checksums') return `redundancy: keep-checksums (the helper nocow-apply.sh takes no option for redundancy: ${t.redundancy})`;
  return undefined;
}

/**
 * The Target= patterns of T's alpm hook: the directory as pacman lists it in a package's files
 * (with a trailing "/"), and whatever is below it (fnmatch's `*` crosses "/").
 */
export function alpmTargets(t: Target): string[] {
  return [alpmTargetPattern(t.path, '/'), alpmTargetPattern(t.path, '/*')];
}

/** The Exec= value of T's alpm hook. */
export function alpmExec(t: Target): string {
  return helperCall(t, alpmExecWord);
}

/** Why T's alpm hook cannot be written, as an "expected …" phrase; undefined when it can. */
export function alpmHookProblem(t: Target): string | undefined {
  const lines = [...alpmTargets(t).map((p) => `Target = ${p}`), `Exec = ${alpmExec(t)}`];
  const longest = Math.max(...lines.map((l) => Buffer.byteLength(l)));
  if (longest <= ALPM_LINE_MAX) return undefined;
  return `a path that fits an alpm hook's lines: at most ${ALPM_LINE_MAX} bytes each, as pacman reads them (its Target= or Exec= line would take ${longest})`;
}
