// Which files some process has open for writing, or has mapped shared and writable, or a
// writable loop device is backed by: the ones nocow defrag leaves for later.
//
// The same pass over /proc and /sys/block as nocow migrate's (src/migrate/migrate.ts), by device
// and inode so any path to the file counts, but not the same question: migrate must refuse a file
// anyone holds (a reader too would go on reading the replaced file), while defragmenting is safe
// next to readers and writers alike; it leaves writers alone only because their writes stall
// behind it and fragment the file again. Migrate's scan is not exported and answers for readers too.
import { readdirSync, readFileSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';

/** "dev:ino" of a file, as the scan compares them. */
export const identity = (info: { dev: bigint; ino: bigint }): string => `${info.dev}:${info.ino}`;

const O_ACCMODE = 3;
const O_RDONLY = 0;

// A process may end, or close the descriptor, at any moment of the pass.
function attempt<T>(read: () => T, otherwise: T): T {
  try {
    return read();
  } catch {
    return otherwise;
  }
}

const statOf = (link: string | Buffer) => attempt<BigIntStats | undefined>(() => statSync(link, { bigint: true }), undefined);

/** "process 123 (qemu-system-x86)" */
function processName(pid: string): string {
  const comm = attempt(() => readFileSync(`/proc/${pid}/comm`, 'utf8'), '').trim();
  return comm ? `process ${pid} (${comm})` : `process ${pid}`;
}

/**
 * Of the files WANTED ("dev:ino"), those open for writing (O_WRONLY or O_RDWR), mapped shared and
 * writable, or backing a loop device that is not read-only, each with who does it. Only processes
 * this one may look into are seen (as root: all of its PID namespace).
 */
export function writers(wanted: Set<string>): Map<string, string[]> {
  const found = new Map<string, string[]>();
  if (wanted.size === 0) return found;
  const inodes = new Set([...wanted].map((key) => key.slice(key.indexOf(':') + 1)));
  const note = (key: string, who: string) => {
    if (!wanted.has(key)) return;
    const known = found.get(key) ?? [];
    if (!known.includes(who)) found.set(key, [...known, who]);
  };
  for (const pid of attempt(() => readdirSync('/proc'), [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    for (const fd of attempt(() => readdirSync(`/proc/${pid}/fd`), [] as string[])) {
      // Sockets, pipes and anonymous inodes ("socket:[…]") are not files of ours.
      if (!attempt(() => readlinkSync(`/proc/${pid}/fd/${fd}`), '').startsWith('/')) continue;
      const fdinfo = attempt(() => readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'), '');
      const flags = /^flags:\s*([0-7]+)$/m.exec(fdinfo)?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & O_ACCMODE) === O_RDONLY) continue;
      // fdinfo names the inode without touching its file system; a number none of ours needs no stat.
      const ino = /^ino:\s*(\d+)$/m.exec(fdinfo)?.[1];
      if (ino !== undefined && !inodes.has(ino)) continue;
      const info = statOf(`/proc/${pid}/fd/${fd}`);
      if (info) note(identity(info), processName(pid));
    }
    // A shared writable mapping writes into the file with no descriptor open.
    for (const line of attempt(() => readFileSync(`/proc/${pid}/maps`, 'utf8'), '').split('\n')) {
      const [range, perms, , , ino] = line.split(/\s+/); // "START-END PERMS OFFSET MAJOR:MINOR INODE PATH"
      if (!range || !perms || !ino || !inodes.has(ino) || perms[1] !== 'w' || perms[3] !== 's') continue;
      const info = statOf(`/proc/${pid}/map_files/${range}`);
      if (info) note(identity(info), processName(pid));
      else for (const key of wanted) if (key.endsWith(`:${ino}`)) note(key, processName(pid));
    }
  }
  // A loop device writes into its backing file with no process holding it.
  for (const device of attempt(() => readdirSync('/sys/block'), [] as string[])) {
    if (!device.startsWith('loop')) continue;
    // As bytes: the backing file's name need not be UTF-8.
    const raw = attempt(() => readFileSync(`/sys/block/${device}/loop/backing_file`), Buffer.alloc(0));
    const backing = raw.subarray(0, raw.at(-1) === 0x0a ? -1 : undefined);
    if (backing[0] !== 0x2f || backing.toString('latin1').endsWith(' (deleted)')) continue;
    if (attempt(() => readFileSync(`/sys/block/${device}/ro`, 'utf8'), '0').trim() === '1') continue;
    const info = statOf(backing);
    if (info) note(identity(info), `/dev/${device}`);
  }
  return found;
}
