// Facts about a target → whether it is as declared (status), and what nocow apply would do (--dry-run).
// Pure: the same rules as docs/design.md's per-target algorithm, read off the facts, never acted on.
import type { Facts, Leftover } from './inspect.js';
import { expectsNocow } from '../policy.js';
import { size } from '../io.js';
import type { Subject } from './subject.js';

/** Exit status 0 unless some target deviates (1) or could not be inspected (2). */
export type State = 'as-declared' | 'deviates' | 'not-applicable' | 'opted-out' | 'skipped' | 'error';

export interface Judgement {
  state: State;
  /** What this machine should show, given the file system, its data profile and the opt-out. */
  expected: { subvolume: boolean; nocow: boolean };
  deviations: string[];
  notes: string[];
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Why +C is not expected although declared: a redundant profile kept for its checksums. */
function redundancySkip(s: Subject, f: Facts): string | null {
  if (!s.nocow || expectsNocow(s, f.dataProfile)) return null;
  return `+C skipped: ${f.dataProfile} keeps checksums for self-healing (redundancy: force-nocow overrides)`;
}

/**
 * What the directory's compression does to +C, in words: a block (+c, the property) or a note
 * (compress-force). CLEARS: nocow apply clears the marks itself (a declared compression: clear).
 */
function compressionWords(f: Facts, path: string, clears: boolean): { block: string | null; note: string | null } {
  let block: string | null = null;
  let note: string | null = null;
  for (const c of f.compression ?? []) {
    if (c.kind === 'flag') {
      const marks = c.algorithm === null ? '+c' : `+c, compression=${c.algorithm}`;
      const fix = clears ? 'nocow apply clears it first: compression: clear' : `chattr -c ${path}, then nocow apply`;
      block = `it is marked for compression (${marks}), which +C cannot be set with (${fix})`;
    } else note = `the file system is mounted ${c.option}: files with +C there are stored uncompressed`;
  }
  return { block, note };
}

/** A path as a shell reads it: quoted where it needs it. */
const shellWord = (path: string): string => (/^[A-Za-z0-9/._+,:@%=-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`);

/** The command that makes a filled directory a subvolume, and finishes or undoes an interrupted one. */
function convertCommand(path: string): string {
  return `nocow convert ${shellWord(path)}`;
}

/** What a leftover is, in words: "PATH is the unfinished copy of an interrupted nocow convert, 115.0 MiB". */
function leftoverWords(l: Leftover): string {
  if (l.kind === 'migrate') return `${l.path} is the copy an interrupted nocow migrate left, ${size(l.bytes)}`;
  if (!l.directory) return `${l.path} is in the way of a conversion (not left by nocow)`;
  if (l.empty) return `${l.path} is left by an interrupted conversion, empty`;
  if (l.convert === true) return `${l.path} is ${l.kind === 'new' ? 'the unfinished copy' : 'the old tree'} of an interrupted nocow convert, ${size(l.bytes)}`;
  return `${l.path} is left by an interrupted conversion and holds ${size(l.bytes)}`;
}

/**
 * Who clears a leftover, by the rules of the shell library's nocow_repair (nocow apply: an empty one,
 * and the renames of a conversion killed between them) and of nocow convert (its own copy and old
 * tree, which hold data the shell library never removes), and of nocow migrate (its copies): the
 * command, in words, or what to do when nothing of nocow clears it.
 */
function leftoverFix(s: Subject, f: Facts, l: Leftover, nocowExpected: boolean): string {
  const location = f.location ?? s.path;
  // nocow apply acts on declared system-scope targets only.
  const apply = s.scope === 'system' && s.name !== null;
  const convert = convertCommand(location);
  const lookAtIt = 'nocow leaves it alone: look at it, then move it away';
  // Where +C is not expected (a redundant profile), migrate would rewrite the files as NOCOW: revert removes it too.
  if (l.kind === 'migrate') return `nocow ${nocowExpected ? 'migrate' : 'revert'} ${shellWord(location)} removes it`;
  if (!l.directory) return lookAtIt;
  const fresh = f.leftovers.find((o) => o.kind === 'new' && o.directory);
  const whole = `${convert} removes it once the directory holds all of it`;
  if (!f.exists) {
    // Killed between the two renames: the shell library completes the swap with NEW, or restores PATH from OLD.
    if (!f.leftovers.some((o) => o.kind === 'old' && o.directory)) return lookAtIt;
    if (l.kind === 'new') return apply ? 'nocow apply completes the conversion with it' : l.convert === true ? `${convert} finishes the conversion` : lookAtIt;
    if (!fresh) return apply ? 'nocow apply restores the directory from it' : `${convert} restores the directory from it, then converts it`;
    if (apply) return l.empty ? 'nocow apply completes the conversion, then removes it' : `nocow apply completes the conversion; then ${whole}`;
    return fresh.convert === true ? `${convert} finishes the conversion, then removes it once the directory holds all of it` : lookAtIt;
  }
  if (l.empty) return apply ? 'nocow apply removes it' : `${convert} removes it`;
  // OLD holding data beside a subvolume: convert checks it against the subvolume, entry by entry, before removing it.
  if (l.kind === 'old') return f.subvolume === true ? whole : lookAtIt;
  if (l.convert === true) return `${convert} removes it`;
  if (l.convert === null) return `if nocow convert left it, ${convert} removes it; nocow status run as root tells`;
  return lookAtIt;
}

/**
 * Why the tmpfiles.d snippet will not, or did not, make the target a subvolume: its `v` line makes a
 * plain directory where the root is not a Btrfs subvolume (image mode: bootc, ostree, composefs).
 */
function tmpfilesPlainNote(s: Subject, f: Facts, subvolumeExpected: boolean): string | null {
  if (!subvolumeExpected || f.rootSubvolume !== false || (f.exists && f.subvolume !== false)) return null;
  return (
    `systemd-tmpfiles' v line makes a plain directory here, not a subvolume: ${s.base} is not a Btrfs subvolume (image mode: bootc, ostree, composefs); ` +
    'nocow apply, or nocow-apply.service at boot (nocow generate boot-unit), makes an empty one a subvolume'
  );
}

function optOutNote(f: Facts): string | null {
  if (!f.optOut) return null;
  return f.optOut.by === 'env' ? 'opted out by NOCOW_DISABLE=1' : `opted out by the masked ${f.optOut.file}`;
}

/**
 * +C where a redundant data profile is kept for its checksums: files with +C have none, so a
 * scrub cannot repair them from the other copy (a deviation); a +C directory alone gives its new
 * files none (a note). Each names nocow revert, which rewrites them with checksums.
 */
function redundantNocow(f: Facts, location: string): { deviation?: string; note?: string } {
  const files = f.nocowFiles ?? 0;
  const revert = `nocow revert ${shellWord(location)}`;
  if (files > 0) {
    return {
      deviation:
        `${plural(files, 'file')} with +C on the ${f.dataProfile} data profile: no checksums, so a scrub cannot repair ${files === 1 ? 'it' : 'them'} ` +
        `from the other copy (${revert} rewrites ${files === 1 ? 'it' : 'them'} with checksums${f.nocow ? ' and clears +C on the directory' : ''})`,
    };
  }
  if (f.nocow) return { note: `+C on the directory: new files there get no checksums on the ${f.dataProfile} data profile (${revert} clears it)` };
  return {};
}

export function judge(s: Subject, f: Facts): Judgement {
  const notes: string[] = [];
  const deviations: string[] = [];
  const btrfs = f.fstype === 'btrfs';
  const optedOut = optOutNote(f);
  const skip = btrfs ? redundancySkip(s, f) : null;
  const active = btrfs && !optedOut;
  const expected = { subvolume: active && s.subvolume === 'auto', nocow: active && s.nocow && !skip };

  if (s.base === null) {
    notes.push('user scope: give --home DIR to inspect it (user tmpfiles.d applies it at each login)');
    return { state: 'skipped', expected, deviations, notes };
  }
  if (f.escapes) deviations.push(`${f.escapes} is a symlink leading out of ${s.base}: nocow apply leaves the target alone`);
  if (optedOut) notes.push(optedOut);
  if (f.fstype !== null && !btrfs) notes.push(`not on Btrfs (${f.fstype}): nothing is expected`);
  if (active && skip) notes.push(skip);
  if (active && !f.btrfsProgs) notes.push('btrfs-progs not installed: subvolume told by its inode number, data profile unknown');

  if (active) {
    // nocow apply acts on system targets only; user tmpfiles.d on user ones, and only by `v` and `h +C`.
    const hint = (system: string, user?: string): string => {
      const h = s.scope === 'system' ? system : user;
      // An admin froze the directory: apply leaves it alone (it warns) until that is undone.
      if (f.frozen && h?.includes('nocow apply')) return ` (it is ${f.frozen}: nocow apply leaves it alone)`;
      return h ? ` (${h})` : '';
    };
    for (const leftover of f.leftovers) deviations.push(`${leftoverWords(leftover)} (${leftoverFix(s, f, leftover, expected.nocow)})`);
    if (!f.exists) {
      deviations.push(`missing${hint('nocow apply creates it', 'user tmpfiles.d creates it at the next login')}`);
      const tmpfiles = tmpfilesPlainNote(s, f, expected.subvolume);
      if (tmpfiles) notes.push(tmpfiles);
    } else if (!f.directory) deviations.push(`exists and is not a directory${hint('nocow apply leaves it alone')}`);
    else {
      if (expected.subvolume && f.subvolume === false) {
        deviations.push(
          f.mountPoint
            ? `not a subvolume: a mount point${hint('nocow apply does not convert one')}`
            : f.empty
              ? `not a subvolume${hint(f.btrfsProgs ? 'empty: nocow apply converts it' : 'empty, but nocow apply needs btrfs-progs to convert it')}`
              : `not a subvolume, and not empty${hint(`${convertCommand(f.location ?? s.path)} makes it one; nocow apply never moves data`, `${convertCommand(f.location ?? s.path)} makes it one`)}`,
        );
      }
      const tmpfiles = tmpfilesPlainNote(s, f, expected.subvolume);
      if (tmpfiles) notes.push(tmpfiles);
      // nocow apply acts on declared system-scope targets only.
      const compression = compressionWords(f, f.location ?? s.path, s.compression === 'clear' && s.scope === 'system' && s.name !== null);
      if (expected.nocow && compression.note) notes.push(compression.note);
      if (expected.nocow && f.nocow === false) {
        deviations.push(
          compression.block
            ? `no +C on the directory: ${compression.block}`
            : `no +C on the directory${hint('nocow apply sets it', 'user tmpfiles.d sets it at the next login')}`,
        );
      }
      const revert = redundantNocow(f, f.location ?? s.path);
      if (skip && revert.deviation) deviations.push(revert.deviation);
      if (skip && revert.note) notes.push(revert.note);
      const cow = f.cowFiles?.length ?? 0;
      if (expected.nocow && cow > 0) {
        deviations.push(`${plural(cow, 'file')} without +C: copy-on-write, fragmenting when rewritten in place (nocow migrate rewrites them)`);
      }
    }
  }

  const state: State =
    f.problems.length > 0 ? 'error' : deviations.length > 0 ? 'deviates' : optedOut ? 'opted-out' : !btrfs ? 'not-applicable' : 'as-declared';
  return { state, expected, deviations, notes };
}

/** 0: every target as declared (or nothing expected of it); 1: some deviates; 2: some could not be inspected. */
export function exitStatus(states: State[]): number {
  if (states.includes('error')) return 2;
  return states.includes('deviates') ? 1 : 0;
}
