// What nocow lint reads out of a file (the parsers' one output shape) and what it reports. Pure data:
// a parser turns text into these facts, src/lint/rules.ts judges them, the command prints them.

/** The formats nocow lint reads, as --format names them. */
export const FORMATS = ['fstab', 'kickstart', 'mount', 'repart', 'mkosi'] as const;
export type Format = (typeof FORMATS)[number];

/** Where a fact stands: the file as given on the command line, and a line of it (from 1). */
export interface Place {
  file: string;
  line: number;
}

/** A mount of a Btrfs file system that a file declares (an fstab line, a .mount unit, a kickstart mount point…). */
export interface MountEntry extends Place {
  /** Which file system: entries with the same key mount the same one (UUID=X and /dev/disk/by-uuid/X alike). */
  fs: string;
  /** The file system as the file names it, for messages. */
  fsShown: string;
  /** Where it is mounted; "" where the file does not say. */
  point: string;
  /** The mount options in the order written (a subvolume mount's subvol= among them). */
  options: string[];
}

/** A data profile a file states for a file system it makes (kickstart --data=raid1, mkfs -d raid1). */
export interface ProfileFact extends Place {
  /** Facts and requests with the same scope concern the same file system set-up (a file, or an mkosi project). */
  scope: string;
  /** The file system it is stated for (a MountEntry's fs), where the file makes several; else scope-wide. */
  fs?: string;
  profile: string;
  /** How the file says it, for messages: "--data=raid1". */
  said: string;
}

/** A request for NOCOW other than a mount option: chattr +C in a kickstart %post, repart's Subvolumes=PATH:nodatacow. */
export interface NocowRequest extends Place {
  scope: string;
  /** What the file writes, for messages: "chattr +C", "Subvolumes=/var/lib/x:nodatacow". */
  what: string;
}

/** What a parser reads out of one file. */
export interface Parsed {
  mounts: (MountEntry & { scope: string })[];
  profiles: ProfileFact[];
  requests: NocowRequest[];
}

export const emptyParsed = (): Parsed => ({ mounts: [], profiles: [], requests: [] });

/** One problem found: printed as `FILE:LINE: message; fix: fix`. */
export interface Finding extends Place {
  /** The rule's name in src/lint/rules.ts's table (the JSON output's "rule"). */
  rule: string;
  message: string;
  fix: string;
}
