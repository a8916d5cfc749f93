// Which format a file is in: by its name and place first (fstab, *.ks, *.mount, repart.d/*.conf,
// mkosi.conf…), else by its content; and the one parser per format.
import { basename, dirname, resolve } from 'node:path';
import { looksLikeFstab, parseFstab } from './fstab.js';
import { looksLikeKickstart, parseKickstart } from './kickstart.js';
import { mkosiProject, parseMkosi } from './mkosi.js';
import { parseMountUnit, parseRepart } from './systemd.js';
import { iniSections } from './text.js';
import type { Format, Parsed } from './types.js';

// mkosi.conf's sections, in mkosi 20 and later (a file with one of them and no [Partition]).
const MKOSI_SECTIONS = new Set(['Config', 'Distribution', 'Output', 'Content', 'Validation', 'Build', 'Host', 'Runtime']);

const REPART_DIRS = /(^|\/)(repart\.d|mkosi\.repart)(\/[^/]+\.conf\.d)?$/;

/** FILE's format, from its name and directory, else TEXT; undefined when neither tells. */
export function detectFormat(file: string, text: string): Format | undefined {
  const name = basename(file);
  const dir = dirname(file);
  if (name === 'fstab' || name.endsWith('.fstab')) return 'fstab';
  if (/\.(ks|cfg|kickstart)$/.test(name)) return 'kickstart';
  if (name.endsWith('.mount')) return 'mount';
  if (name.endsWith('.conf') && REPART_DIRS.test(dir)) return 'repart';
  if (name === 'mkosi.conf' || (name.endsWith('.conf') && /(^|\/)mkosi\.conf\.d$/.test(dir))) return 'mkosi';
  const sections = iniSections(text);
  if (sections.includes('Partition')) return 'repart';
  if (sections.includes('Mount')) return 'mount';
  if (sections.some((s) => MKOSI_SECTIONS.has(s))) return 'mkosi';
  if (sections.length > 0) return undefined;
  if (looksLikeKickstart(text)) return 'kickstart';
  if (looksLikeFstab(text)) return 'fstab';
  return undefined;
}

/** The facts of FILE's TEXT, read as FORMAT. */
export function parseAs(format: Format, file: string, text: string): Parsed {
  // Facts about one mkosi project (its mkosi.conf and its mkosi.repart/ definitions) share a scope.
  const project = mkosiProject(file);
  const scope = project === undefined ? file : `mkosi:${resolve(project)}`;
  switch (format) {
    case 'fstab':
      return parseFstab(file, text);
    case 'kickstart':
      return parseKickstart(file, text);
    case 'mount':
      return parseMountUnit(file, text);
    case 'repart':
      return parseRepart(file, text, scope);
    case 'mkosi':
      return parseMkosi(file, text, scope);
  }
}
