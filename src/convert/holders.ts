// Which processes hold files of a tree open or mapped, and which loop devices are attached to
// them: by device and inode, as nocow migrate finds them (src/migrate/migrate.ts, holders()).
// That function is not exported (src/migrate/ belongs to another change); this is the same scan,
// plus process names for the message, until migrate exports it and this file imports it.
import { readdirSync, readFileSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';

export const identity = (info: { dev: bigint; ino: bigint }): string => `${info.dev}:${info.ino}`;

/**
 * For each of the files WANTED ("dev:ino"), the PIDs of other processes that hold it open or
 * mapped, and the loop devices ("/dev/loopN") attached to it; one pass over /proc and /sys/block.
 * Synchronous: the pass takes milliseconds, and the last one is the window before a rename.
 */
export function holders(wanted: Set<string>): Map<string, string[]> {
  const found = new Map<string, string[]>();
  if (wanted.size === 0) return found;
  const inodes = new Set([...wanted].map((key) => key.slice(key.indexOf(':') + 1)));
  const note = (key: string, holder: string) => {
    if (!wanted.has(key)) return;
    const known = found.get(key) ?? [];
    if (!known.includes(holder)) found.set(key, [...known, holder]);
  };
  // A process may end, or close the descriptor, at any moment of the pass.
  const attempt = <T>(read: () => T, otherwise: T): T => {
    try {
      return read();
    } catch {
      return otherwise;
    }
  };
  const statOf = (link: string) => attempt<BigIntStats | undefined>(() => statSync(link, { bigint: true }), undefined);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    for (const fd of attempt(() => readdirSync(`/proc/${entry}/fd`), [] as string[])) {
      if (!attempt(() => readlinkSync(`/proc/${entry}/fd/${fd}`), '').startsWith('/')) continue;
      // fdinfo names the inode without touching its file system; a number none of ours needs no stat.
      const fdinfo = attempt(() => readFileSync(`/proc/${entry}/fdinfo/${fd}`, 'utf8'), '');
      const ino = /^ino:\s*(\d+)$/m.exec(fdinfo)?.[1];
      if (ino !== undefined && !inodes.has(ino)) continue;
      const info = statOf(`/proc/${entry}/fd/${fd}`);
      if (info) note(identity(info), entry);
    }
    // A shared mapping writes into the file after its descriptor is closed.
    for (const line of attempt(() => readFileSync(`/proc/${entry}/maps`, 'utf8'), '').split('\n')) {
      const [range, , , , ino] = line.split(/\s+/);
      if (!range || !ino || !inodes.has(ino)) continue;
      const info = statOf(`/proc/${entry}/map_files/${range}`);
      if (info) note(identity(info), entry);
      else for (const key of wanted) if (key.endsWith(`:${ino}`)) note(key, entry);
    }
  }
  // A loop device writes into its backing file with no process holding it.
  for (const device of attempt(() => readdirSync('/sys/block'), [] as string[])) {
    if (!device.startsWith('loop')) continue;
    const backing = attempt(() => readFileSync(`/sys/block/${device}/loop/backing_file`, 'utf8'), '').replace(/\n$/, '');
    if (!backing.startsWith('/') || backing.endsWith(' (deleted)')) continue;
    const info = statOf(backing);
    if (info) note(identity(info), `/dev/${device}`);
  }
  return found;
}

/** "open by process 12 (qemu-system-x86), 34 (cat)", "attached to /dev/loop0", or both. */
export function usersText(users: string[]): string {
  const comm = (pid: string) => {
    try {
      return ` (${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()})`;
    } catch {
      return '';
    }
  };
  const pids = users.filter((u) => !u.startsWith('/')).map((pid) => `${pid}${comm(pid)}`);
  const devices = users.filter((u) => u.startsWith('/'));
  const uses = [pids.length > 0 ? `open by process ${pids.join(', ')}` : '', devices.length > 0 ? `attached to ${devices.join(', ')}` : ''];
  return uses.filter(Boolean).join(' and ');
}
