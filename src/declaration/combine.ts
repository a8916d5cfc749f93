// Several validated sources (profiles, config files) → one declaration. Pure.
import type { Declaration, Target } from './types.js';
import { show } from './validate.js';

export interface SourcePart {
  source: string;
  targets: Target[];
}

const COMPARED = ['path', 'scope', 'subvolume', 'nocow', 'mode', 'user', 'group', 'redundancy', 'defrag', 'compression'] as const;

function differences(a: Target, b: Target): string {
  return COMPARED.filter((k) => a[k] !== b[k])
    .map((k) => `${k} (${show(a[k])} vs ${show(b[k])})`)
    .join(', ');
}

export function combineSources(parts: SourcePart[]): { declaration: Declaration; problems: string[] } {
  const problems: string[] = [];
  const targets: Target[] = [];
  const byName = new Map<string, Target>();
  const byPath = new Map<string, Target>();

  for (const part of parts) {
    for (const t of part.targets) {
      const sameName = byName.get(t.name);
      const pathKey = `${t.scope}:${t.path}`;
      const samePath = byPath.get(pathKey);
      if (sameName) {
        const diff = differences(sameName, t);
        // A profile repeated in a config file (or given twice) is the same wish, not a conflict.
        if (diff === '') continue;
        problems.push(
          `target ${show(t.name)} is declared differently in ${sameName.source} and ${t.source}: ${diff}; declare it once, or rename one of them`,
        );
        continue;
      }
      if (samePath) {
        problems.push(
          `${t.scope} path ${show(t.path)} is declared twice: as ${show(samePath.name)} in ${samePath.source} and as ${show(t.name)} in ${t.source}; declare it once`,
        );
        continue;
      }
      byName.set(t.name, t);
      byPath.set(pathKey, t);
      targets.push(t);
    }
  }
  // A source given twice (`--profile libvirt --profile libvirt`) is listed once.
  const sources = [...new Set(parts.map((p) => p.source))];
  return { declaration: { sources, targets }, problems };
}
