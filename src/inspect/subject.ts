// What status and apply --dry-run look at: a declared target, or a path given on the command line
// (inspected with the declaration's defaults), tied to the directory its path is relative to.
import type { CompressionPolicy, RedundancyPolicy, Scope, SubvolumePolicy, Target } from '../declaration/types.js';

export interface Subject {
  /** null for a path given on the command line that no target declares. */
  name: string | null;
  source: string | null;
  scope: Scope;
  /** As declared: "/var/…", or "~/…" for user scope. */
  path: string;
  subvolume: SubvolumePolicy;
  nocow: boolean;
  redundancy: RedundancyPolicy;
  /** Absent: keep. */
  compression?: CompressionPolicy;
  mode: string;
  user: string;
  group: string;
  /** The root (system scope) or the home (user scope) the path is under; null: nothing to inspect it in. */
  base: string | null;
}


export function declaredSubject(t: Target, root: string, home: string | undefined): Subject {
  const { name, source, scope, path, subvolume, nocow, redundancy, compression, mode, user, group } = t;
  const base = scope === 'system' ? root : (home ?? null);
  return { name, source, scope, path, subvolume, nocow, redundancy, ...(compression === undefined ? {} : { compression }), mode, user, group, base };
}

/** An undeclared path: the defaults a declaration gives a target that says nothing but its path. */
export function undeclaredSubject(path: string, root: string): Subject {
  return {
    name: null,
    source: null,
    scope: 'system',
    path,
    subvolume: 'auto',
    nocow: true,
    redundancy: 'keep-checksums',
    mode: '0755',
    user: 'root',
    group: 'root',
    base: root,
  };
}

/** The path relative to its base, always starting with "/". */
export function relativePath(s: Pick<Subject, 'scope' | 'path'>): string {
  return s.scope === 'user' ? s.path.slice(1) : s.path;
}

/** base + relative path, as the shell library joins them (a trailing "/" of the base dropped). */
export function joinBase(base: string, rel: string): string {
  return `${base.replace(/\/+$/, '')}${rel}`;
}
