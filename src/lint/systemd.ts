// systemd's own files: .mount units (systemd.mount(5): [Mount] What=, Where=, Type=, Options=) and
// repart.d partition definitions (repart.d(5): [Partition] Format=, Subvolumes=PATH:FLAGS…,
// MountPoint=PATH:OPTIONS, the latter written into the fstab --generate-fstab= makes).
import { basename, dirname } from 'node:path';
import { fsKey, iniSettings, quotedWords, type Setting } from './text.js';
import { emptyParsed, type Parsed } from './types.js';

/** The mount point a unit's name stands for (systemd-escape --path undone): var-lib-x\x2dy.mount → /var/lib/x-y. */
export function unitPath(file: string): string {
  const name = basename(file).replace(/\.mount$/, '');
  if (name === '-') return '/';
  return `/${name
    .split('-')
    .map((part) => part.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))))
    .join('/')}`;
}

/** The last value of KEY in SECTION (an empty assignment resets it, as in systemd), with its line. */
function last(settings: Setting[], section: string, key: string): Setting | undefined {
  const found = settings.filter((s) => s.section === section && s.key === key).pop();
  return found?.value === '' ? undefined : found;
}

// Options only Btrfs takes: a unit without Type= that uses them mounts Btrfs.
const BTRFS_ONLY = /^(subvol|subvolid|nodatacow|datacow|compress|compress-force|nodatasum|space_cache|ssd|autodefrag)(=|$)/;

/** The mount a .mount unit TEXT from FILE declares, where it is a Btrfs one (scope: the file). */
export function parseMountUnit(file: string, text: string): Parsed {
  const parsed = emptyParsed();
  const settings = iniSettings(text);
  const what = last(settings, 'Mount', 'What');
  const options = last(settings, 'Mount', 'Options');
  const type = last(settings, 'Mount', 'Type')?.value;
  const optionList = options?.value.split(',').filter((o) => o !== '') ?? [];
  if (type !== undefined ? type !== 'btrfs' : !optionList.some((o) => BTRFS_ONLY.test(o))) return parsed;
  const where = last(settings, 'Mount', 'Where')?.value ?? unitPath(file);
  const spec = what?.value ?? '';
  const line = options?.line ?? what?.line ?? settings.find((s) => s.section === 'Mount')?.line ?? 1;
  parsed.mounts.push({ file, line, scope: file, fs: fsKey(spec), fsShown: spec || 'the unit\'s file system', point: where, options: optionList });
  return parsed;
}

/**
 * The definition a repart.d FILE belongs to: its own path, or for a drop-in (NAME.conf.d/X.conf)
 * NAME.conf's: a drop-in adds to that definition's partition.
 */
export const repartDefinition = (file: string): string => {
  const dir = dirname(file);
  return dir.endsWith('.conf.d') ? dir.slice(0, -2) : file;
};

/**
 * The Btrfs mounts (MountPoint=) and NOCOW subvolumes (Subvolumes=…:nodatacow) of a repart.d
 * definition or drop-in TEXT from FILE; SCOPE: what a stated data profile would apply to.
 */
export function parseRepart(file: string, text: string, scope: string): Parsed {
  const parsed = emptyParsed();
  const settings = iniSettings(text).filter((s) => s.section === 'Partition');
  const format = last(settings, 'Partition', 'Format')?.value;
  if (format !== undefined && format !== 'btrfs') return parsed;
  const definition = repartDefinition(file);
  for (const s of settings) {
    if (s.key === 'MountPoint' && s.value !== '') {
      const [point = '', options = ''] = quotedWords(s.value, ':');
      parsed.mounts.push({ file, line: s.line, scope, fs: `repart:${definition}`, fsShown: `the partition of ${definition}`, point, options: options.split(',').filter((o) => o !== '') });
    } else if (s.key === 'Subvolumes') {
      for (const word of quotedWords(s.value)) {
        const [path = '', flags = ''] = quotedWords(word, ':');
        if (flags.split(',').includes('nodatacow')) parsed.requests.push({ file, line: s.line, scope, what: `Subvolumes=${path}:nodatacow` });
      }
    }
  }
  return parsed;
}
