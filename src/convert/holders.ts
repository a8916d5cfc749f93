// Which processes hold files of a tree open or mapped, or have a directory of it as their working
// directory or root, and which loop devices are attached to its files: migrate's scan (by device
// and inode), and the words convert's refusals use for it.
import { readFileSync } from 'node:fs';

export { holders, identity } from '../migrate/migrate.js';

/**
 * What holders() found, in words: "open by process 12 (qemu-system-x86), 34 (cat)", "the working
 * directory of process 56 (bash)", "the root directory of process 78 (sshd)", "attached to
 * /dev/loop0", joined by "and".
 */
export function usersText(users: string[]): string {
  const comm = (pid: string) => {
    try {
      return ` (${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()})`;
    } catch {
      return '';
    }
  };
  const processes = (tag: string) =>
    users
      .filter((u) => !u.startsWith('/') && (u.split(' ')[1] ?? '') === tag)
      .map((u) => u.split(' ')[0]!)
      .map((pid) => `${pid}${comm(pid)}`);
  const [open, cwd, root] = [processes(''), processes('cwd'), processes('root')];
  const devices = users.filter((u) => u.startsWith('/'));
  const uses = [
    open.length > 0 ? `open by process ${open.join(', ')}` : '',
    cwd.length > 0 ? `the working directory of process ${cwd.join(', ')}` : '',
    root.length > 0 ? `the root directory of process ${root.join(', ')}` : '',
    devices.length > 0 ? `attached to ${devices.join(', ')}` : '',
  ];
  return uses.filter(Boolean).join(' and ');
}
