// The rules nocow lint holds mount options and image definitions to, in one table. Btrfs applies
// the mount options of a file system's first mount to the whole file system (btrfs(5)): a later
// mount's nodatacow (a subvolume's, say) does nothing, and nodatacow is never per subvolume.
// nodatacow and compress exclude each other (the kernel keeps the one given last). NOCOW drops
// the checksums a redundant data profile (raid1, dup…) repairs a bad copy with.
import { REDUNDANT_PROFILES } from '../policy.js';
import type { Finding, MountEntry, NocowRequest, Parsed, Place } from './types.js';

type Mount = Parsed['mounts'][number];

/** What every rule sees: the facts of all files given, and each mount's group (the mounts of its file system). */
export interface Context {
  mounts: Mount[];
  requests: NocowRequest[];
  profiles: Parsed['profiles'];
  /** The mount of each file system whose options apply to all of it. */
  firstOf(m: Mount): Mount;
  /** The mounts of m's file system. */
  groupOf(m: Mount): Mount[];
}

const NOCOW_FIX = 'drop nodatacow and make the directory NOCOW itself: chattr +C on it while it is empty, or declare it for nocow generate / nocow apply';

const hasNodatacow = (m: MountEntry): boolean => m.options.includes('nodatacow');
const isCompress = (o: string): boolean => /^compress(-force)?(=|$)/.test(o) && !/=no$/.test(o);
const compressOption = (m: MountEntry): string | undefined => m.options.find(isCompress);
/** Whether m's nodatacow holds: the kernel reads the options in order, and a later datacow or compress undoes it. */
const nocowInEffect = (m: MountEntry): boolean => m.options.reduce((nocow, o) => (o === 'nodatacow' ? true : o === 'datacow' || isCompress(o) ? false : nocow), false);
const subvolOf = (m: MountEntry): string | undefined => {
  const named = m.options.find((o) => o.startsWith('subvol='))?.slice('subvol='.length);
  if (named !== undefined) return named.replace(/^\/+/, '') === '' ? undefined : named;
  const id = m.options.find((o) => o.startsWith('subvolid='))?.slice('subvolid='.length);
  return id === undefined || id === '5' || id === '0' ? undefined : `subvolid ${id}`;
};

/** How a finding on HERE names THERE: "line N" in the same file, else FILE:N. */
const at = (here: Place, there: Place): string => (here.file === there.file ? `line ${there.line}` : `${there.file}:${there.line}`);
const shownPoint = (m: MountEntry): string => m.point || 'its mount point';

interface Rule {
  name: string;
  check(context: Context): Omit<Finding, 'rule'>[];
}

/** The rules, in the order findings on one line are printed. */
export const RULES: readonly Rule[] = [
  {
    name: 'later-mount',
    check: ({ mounts, firstOf }) =>
      mounts
        .filter((m) => hasNodatacow(m) && firstOf(m) !== m && !nocowInEffect(firstOf(m)))
        .map((m) => ({
          file: m.file,
          line: m.line,
          message: `nodatacow on ${shownPoint(m)} does nothing: ${m.fsShown} is first mounted at ${shownPoint(firstOf(m))} (${at(m, firstOf(m))}), and only the first mount's options apply to the whole file system`,
          fix: NOCOW_FIX,
        })),
  },
  {
    name: 'subvolume-mount',
    check: ({ mounts, firstOf, groupOf }) =>
      mounts
        .filter((m) => hasNodatacow(m) && firstOf(m) === m && m.point !== '/' && subvolOf(m) !== undefined)
        .map((m) => {
          const others = groupOf(m).filter((o) => o !== m).map(shownPoint);
          const also = others.length > 0 ? ` (${others.join(', ')} too)` : '';
          return {
            file: m.file,
            line: m.line,
            message: `nodatacow on the mount of subvolume ${subvolOf(m)} is not per subvolume: as the first mount of ${m.fsShown} it turns off copy-on-write, checksums and compression for the whole file system${also}, and after another mount of it it does nothing`,
            fix: NOCOW_FIX,
          };
        }),
  },
  {
    name: 'nodatacow-compress',
    check: ({ mounts, firstOf }) =>
      mounts
        .filter((m) => firstOf(m) === m && hasNodatacow(m) && compressOption(m) !== undefined)
        .map((m) => {
          const compress = compressOption(m)!;
          const loser = nocowInEffect(m) ? compress : 'nodatacow';
          return {
            file: m.file,
            line: m.line,
            message: `nodatacow and ${compress} exclude each other: the one given last wins, so ${loser} does nothing`,
            fix: `keep ${compress} for the file system and make only the directories that need it NOCOW: chattr +C, or declare them for nocow generate / nocow apply`,
          };
        }),
  },
  {
    name: 'redundant-profile',
    check: ({ mounts, requests, profiles, firstOf }) => {
      // A mount's nodatacow meets the profile stated for its own file system, or one stated for the
      // whole scope (mkosi's); a chattr +C or a repart subvolume, any profile stated in its scope.
      const asks: (Place & { scope: string; what: string; fs?: string })[] = [
        ...mounts.filter((m) => firstOf(m) === m && nocowInEffect(m)).map((m) => ({ ...m, what: 'nodatacow' })),
        ...requests,
      ];
      return asks.flatMap((ask) => {
        const profile = profiles.find((p) => p.scope === ask.scope && REDUNDANT_PROFILES.includes(p.profile) && (ask.fs === undefined || p.fs === undefined || p.fs === ask.fs));
        if (!profile) return [];
        return [
          {
            file: ask.file,
            line: ask.line,
            message: `${ask.what} on a ${profile.profile} data profile (${profile.said}, ${at(ask, profile)}) drops the checksums ${profile.profile} needs to repair a bad copy from a good one`,
            fix: `drop ${ask.what} and declare the directory for nocow generate / nocow apply with redundancy: keep-checksums (the default), which leaves it copy-on-write on a redundant profile, or choose a single data profile`,
          },
        ];
      });
    },
  },
];

const depth = (point: string): number => (point === '' ? Infinity : point.split('/').filter(Boolean).length);

/**
 * The findings of the rules on the facts of FILES (in the order given), ordered by file, line and rule.
 * A file system's first mount is the one nearest the root (fewest path components: / before /home,
 * as systemd orders them), the first given among equals.
 */
export function lint(files: readonly Parsed[]): Finding[] {
  const mounts = files.flatMap((f) => f.mounts);
  const groups = new Map<string, Mount[]>();
  for (const m of mounts) groups.set(m.fs, [...(groups.get(m.fs) ?? []), m]);
  const groupOf = (m: Mount): Mount[] => groups.get(m.fs)!;
  const firstOf = (m: Mount): Mount => groupOf(m).reduce((best, o) => (depth(o.point) < depth(best.point) ? o : best));
  const context: Context = { mounts, requests: files.flatMap((f) => f.requests), profiles: files.flatMap((f) => f.profiles), firstOf, groupOf };
  const order = new Map<string, number>();
  files.forEach((f, i) => {
    for (const fact of [...f.mounts, ...f.requests, ...f.profiles]) if (!order.has(fact.file)) order.set(fact.file, i);
  });
  const findings = RULES.flatMap((rule, index) => rule.check(context).map((f) => ({ ...f, rule: rule.name, index })));
  findings.sort((a, b) => (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) || a.line - b.line || a.index - b.index);
  return findings.map(({ index: _index, ...finding }) => finding);
}
