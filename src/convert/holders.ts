// Which processes hold files of a tree open or mapped, and which loop devices are attached to
// them: migrate's scan (by device and inode), and the words convert's refusals use for it.
import { readFileSync } from 'node:fs';

export { holders, identity } from '../migrate/migrate.js';

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
