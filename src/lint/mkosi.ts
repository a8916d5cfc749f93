// mkosi's configuration (mkosi.conf, mkosi.conf.d/*.conf): the root file system's mount options on
// the kernel command line it builds (KernelCommandLine=rootflags=…: the root is the file system's
// first mount), and the mkfs.btrfs options it passes to systemd-repart through
// Environment=SYSTEMD_REPART_MKFS_OPTIONS_BTRFS=… (mkosi hands repart those variables only).
import { basename, dirname } from 'node:path';
import { REDUNDANT_PROFILES } from '../policy.js';
import { iniSettings, mkfsDataProfile, quotedWords } from './text.js';
import { emptyParsed, type Parsed } from './types.js';

/**
 * The mkosi project FILE belongs to (the directory of mkosi.conf; mkosi.conf.d/ and mkosi.repart/
 * lie in it), or undefined for a file outside one: a data profile mkosi states applies to the
 * file systems its repart definitions make.
 */
export function mkosiProject(file: string): string | undefined {
  const dir = dirname(file);
  if (basename(file) === 'mkosi.conf') return dir;
  for (const part of ['mkosi.conf.d', 'mkosi.repart']) {
    const at = `/${dir}/`.lastIndexOf(`/${part}/`);
    if (at >= 0) return dir.slice(0, Math.max(at - 1, 0)) || '.';
  }
  return undefined;
}

const KERNEL_LINE = new Set(['KernelCommandLine', 'KernelCommandLineExtra']);

/** The root mount's options and the stated data profile of an mkosi configuration TEXT from FILE; SCOPE: its project. */
export function parseMkosi(file: string, text: string, scope: string): Parsed {
  const parsed = emptyParsed();
  let roots: { key: string; mount: Parsed['mounts'][number] }[] = [];
  for (const s of iniSettings(text)) {
    const words = quotedWords(s.value);
    if (KERNEL_LINE.has(s.key)) {
      // An empty assignment empties the list, as for every mkosi list setting.
      if (s.value === '') roots = roots.filter((r) => r.key !== s.key);
      for (const word of words) {
        const flags = /^rootflags=(.*)$/.exec(word)?.[1];
        if (flags !== undefined) {
          roots.push({ key: s.key, mount: { file, line: s.line, scope, fs: `mkosi-root:${scope}`, fsShown: 'the root file system', point: '/', options: flags.split(',').filter((o) => o !== '') } });
        }
      }
    } else if (s.key === 'Environment') {
      for (const word of words) {
        const args = /^SYSTEMD_REPART_MKFS_OPTIONS_BTRFS=(.*)$/s.exec(word)?.[1];
        const stated = args === undefined ? undefined : mkfsDataProfile(quotedWords(args));
        if (stated && REDUNDANT_PROFILES.includes(stated.profile)) parsed.profiles.push({ file, line: s.line, scope, ...stated });
      }
    }
  }
  // The kernel takes the last rootflags= of its command line.
  parsed.mounts = roots.slice(-1).map((r) => r.mount);
  return parsed;
}
