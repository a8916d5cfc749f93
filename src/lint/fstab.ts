// fstab(5): one mount a line, six fields split at blanks (the last three optional), octal escapes
// (\040 for a blank) in each field, # comments. Only Btrfs lines concern nocow lint.
import { decodeField } from '../host/mounts.js';
import { nameText } from '../io.js';
import { fsKey } from './text.js';
import { emptyParsed, type Parsed } from './types.js';

/** An fstab field as mount(8) reads it, \040, \011, \012, \134 undone; bytes that are not UTF-8 shown as \xHH. */
export const fstabField = (field: string): string => nameText(decodeField(field));

/** The Btrfs mounts of an fstab TEXT from FILE (scope: the file). */
export function parseFstab(file: string, text: string): Parsed {
  const parsed = emptyParsed();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/[ \t]+/);
    if (fields.length < 3 || fields[2] !== 'btrfs') return;
    const spec = fstabField(fields[0]!);
    parsed.mounts.push({
      file,
      line: index + 1,
      scope: file,
      fs: fsKey(spec),
      fsShown: spec,
      point: fstabField(fields[1]!),
      options: (fields[3] ?? 'defaults').split(',').map(fstabField),
    });
  });
  return parsed;
}

/** Whether TEXT looks like an fstab: some line of at least three fields, a mount point or none/swap second, a file system type third. */
export function looksLikeFstab(text: string): boolean {
  return text.split('\n').some((raw) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return false;
    const fields = line.split(/[ \t]+/);
    return fields.length >= 3 && fields.length <= 6 && /^(\/|none$|swap$)/.test(fields[1]!) && /^[a-z0-9._]+$/.test(fields[2]!);
  });
}
