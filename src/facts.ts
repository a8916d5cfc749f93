// Facts that the TypeScript and the generated shell (and the macro file's Lua) must agree on,
// each defined once: render.ts writes them into the shell library and macros.nocow from here.
// Pure data and pure functions: imported by --help paths too, so nothing heavy here.

/**
 * Suffixes of the fixed temporary names beside a target or a migrated file. `original` and
 * `rewritten` are the second names migrate gives the original and its copy while it swaps them.
 */
export const TEMP_SUFFIX = {
  new: '.nocow-new',
  old: '.nocow-old',
  migrate: '.nocow-migrate',
  original: '.nocow-original',
  rewritten: '.nocow-rewritten',
} as const;

/**
 * The mkdir lock inside the directory that holds a target, where flock(1) is missing (the shell
 * library's nocow_lock_dir; src/host/lock.ts): that directory is what every run locks for the target.
 */
export const LOCK_DIR = '.nocow-kit.lock';

/** The xattr nocow convert marks its copy with (NEW, then PATH until the old tree is gone): what tells its leftovers from others. */
export const CONVERT_MARKER = 'trusted.nocow-kit.convert';

/**
 * What lsattr's FLAGS say froze a file or directory, in words ("immutable (chattr +i)", "append-only
 * (chattr +a)", or both); undefined when neither. An admin froze it: nocow leaves it alone (the shell
 * library's nocow_frozen says the same).
 */
export function frozenBy(flags: string | undefined): string | undefined {
  const words = [flags?.includes('i') ? 'immutable (chattr +i)' : '', flags?.includes('a') ? 'append-only (chattr +a)' : ''].filter(Boolean);
  return words.length > 0 ? words.join(' and ') : undefined;
}

/** Whether NAME (a file's last segment) is a fixed temporary name of nocow migrate beside a file: ".NAME" or ".nocow-CKSUM" and a suffix of a file's, not a directory's. */
export function isFileTemporary(name: string): boolean {
  return name.startsWith('.') && Object.values(TEMP_SUFFIX).some((suffix) => suffix !== TEMP_SUFFIX.new && suffix !== TEMP_SUFFIX.old && name.endsWith(suffix));
}

/**
 * Where the packages install the hook (nocow-kit.spec's nocow-apply-hook): nocow-apply.service,
 * %nocow_apply and the Arch artifacts (alpm hook, .install) run it there.
 */
export const HOOK_PATH = '/usr/libexec/nocow-kit/nocow-apply.sh';

/** Linux's limit on one path segment, in bytes. */
export const NAME_MAX = 255;
/** Linux's limit on a whole path, in bytes (PATH_MAX 4096 with its NUL). */
export const PATH_MAX = 4095;

/** The opt-out file of a target is OPT_OUT_PREFIX + NAME + ".conf": its tmpfiles.d snippet, which masking (a link to /dev/null, or empty) stops. */
export const OPT_OUT_PREFIX = '/etc/tmpfiles.d/nocow-';
export const optOutFile = (name: string): string => `${OPT_OUT_PREFIX}${name}.conf`;

/**
 * Targets never accepted, with why. `exact`: the path itself; `below`: the path and everything
 * under it. Every top-level directory of the Filesystem Hierarchy Standard (3.0) and a few
 * directories that hold the system's own state: +C there would drop the checksums of files the
 * system depends on, and tmpfiles.d would reset their modes.
 */
export const REFUSED_SYSTEM_TARGETS: { readonly exact: readonly string[]; readonly below: readonly string[] } = {
  exact: [
    '/bin', '/boot', '/dev', '/efi', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32', '/lost+found', '/media', '/mnt',
    '/opt', '/proc', '/root', '/run', '/sbin', '/srv', '/sys', '/tmp', '/usr', '/var',
    '/var/cache', '/var/lib', '/var/local', '/var/lock', '/var/log', '/var/mail', '/var/opt', '/var/run', '/var/spool', '/var/tmp',
    '/var/lib/rpm', '/var/lib/dpkg', '/var/lib/systemd', '/var/log/journal',
  ],
  // Configuration, boot files, pseudo file systems, /usr (read-only, shareable data by the FHS),
  // and what merged /usr and tmpfiles make aliases of those (/bin → /usr/bin, /var/run → /run).
  below: ['/etc', '/boot', '/efi', '/dev', '/proc', '/sys', '/run', '/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/var/run', '/var/lock'],
};

/** User-scope targets never accepted: the home itself and the XDG base directories that hold everything else. */
export const REFUSED_USER_TARGETS: readonly string[] = ['~/.cache', '~/.config', '~/.local', '~/.local/share', '~/.local/state', '~/.var', '~/.var/app'];

/** Why PATH (absolute, or "~/…" for user scope; already free of ".", ".." and "//") may not be a target; undefined when it may. */
export function refusedTarget(path: string): string | undefined {
  if (path.startsWith('~')) {
    if (path === '~' || path === '~/' || REFUSED_USER_TARGETS.includes(path)) return `${path} holds the user's own files and settings`;
    return undefined;
  }
  if (path === '/') return 'the root cannot be made a subvolume';
  const below = REFUSED_SYSTEM_TARGETS.below.find((dir) => path === dir || path.startsWith(`${dir}/`));
  if (below !== undefined) return `${below}${path === below ? '' : ' and everything below it'} belongs to the system`;
  if (REFUSED_SYSTEM_TARGETS.exact.includes(path)) return `${path} is a system directory`;
  return undefined;
}

// POSIX cksum (CRC-32, polynomial 0x04C11DB7, not reflected, length appended): what the shell
// library gets from `cksum`, so both sides derive the same short temporary name. The table is made
// at the first use: made when this module loads, it was about 4 ms of every nocow start-up.
let crcTable: number[] | undefined;
const makeCrcTable = (): number[] =>
  Array.from({ length: 256 }, (_, n) => {
    let c = n << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    return c >>> 0;
  });

export function posixCksum(data: Uint8Array): number {
  const table = (crcTable ??= makeCrcTable());
  let crc = 0;
  const feed = (byte: number) => {
    crc = ((crc << 8) ^ table[((crc >>> 24) ^ byte) & 0xff]!) >>> 0;
  };
  for (const byte of data) feed(byte);
  for (let length = data.length; length > 0; length = Math.floor(length / 256)) feed(length & 0xff);
  return ~crc >>> 0;
}

/**
 * The temporary name beside PATH for SUFFIX: `PATH` + SUFFIX (prefixed by `prefix`, e.g. "."
 * for a hidden one) when that fits in NAME_MAX bytes, else `.nocow-CKSUM` + SUFFIX, CKSUM
 * being the POSIX cksum of the last segment's bytes. Fixed and predictable from PATH, so a
 * re-run finds what an interrupted one left; the shell library computes the same name.
 */
export function temporaryName(path: string, suffix: string, prefix = ''): string {
  const cut = path.lastIndexOf('/') + 1;
  const base = Buffer.from(path.slice(cut));
  const fits = Buffer.byteLength(prefix) + base.length + Buffer.byteLength(suffix) <= NAME_MAX;
  return `${path.slice(0, cut)}${fits ? `${prefix}${path.slice(cut)}` : `.nocow-${posixCksum(base)}`}${suffix}`;
}

/**
 * The events of the shell library (templates/nocow-lib.sh.ejs), the fixed vocabulary of its lines
 * `nocow: NAME: EVENT: text` (docs/design.md, "What the scripts print"): those that change the tree,
 * then those that do not. Only these words decide `nocow apply --json` and the Ansible role's
 * changed and per-target state; the text after them is for people.
 */
export const CHANGE_EVENTS = ['created', 'converted', 'set-nocow', 'repaired', 'reverted'] as const;
export const EVENTS = [...CHANGE_EVENTS, 'skipped', 'opted-out', 'warning', 'would'] as const;
export type ShellEvent = (typeof EVENTS)[number];
