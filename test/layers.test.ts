// The layers docs/development.md draws, held against the imports of src/: engines never import
// each other, host/ imports no engine, the generator reaches the engines' rules only through
// policy.ts, declaration/ never imports render/; and no module grows past what one reader holds.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(import.meta.dirname, '..', 'src');
const ENGINES = ['inspect', 'migrate', 'convert', 'defrag'];
const MAX_LINES = 400;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Each module of src/ (as "folder/file.ts") with the modules of src/ it imports. */
const graph = new Map(
  sources(SRC).map((file) => {
    const text = readFileSync(file, 'utf8');
    const imports = [...text.matchAll(/^(?:import|export)\b[^;]*?from '(\.{1,2}\/[^']+)'/gms)].map((m) =>
      relative(SRC, resolve(dirname(file), m[1]!)).replace(/\.js$/, '.ts'),
    );
    return [relative(SRC, file), { text, imports }] as const;
  }),
);

/** The top folder of a module of src/ ("convert" for "convert/tree.ts"; "policy.ts" for a top-level file). */
const area = (module: string) => module.split('/')[0]!;

t.test('GIVEN the modules of src/ WHEN their imports are read THEN they follow the layers of docs/development.md', async (t) => {
  t.ok(graph.size > 40, `read ${graph.size} modules`);
  const broken: string[] = [];
  for (const [module, { imports }] of graph) {
    const from = area(module);
    for (const target of imports) {
      const to = area(target);
      if (from === to) continue;
      if (ENGINES.includes(from) && ENGINES.includes(to)) broken.push(`${module} → ${target}: an engine imports another engine`);
      if (from === 'host' && (ENGINES.includes(to) || to === 'commands')) broken.push(`${module} → ${target}: host/ imports what stands on it`);
      if (['declaration', 'render', 'plan.ts', 'write.ts', 'policy.ts'].includes(from) && ENGINES.includes(to)) broken.push(`${module} → ${target}: the generator or policy imports an engine`);
      if (from === 'declaration' && to === 'render') broken.push(`${module} → ${target}: declaration/ imports render/`);
      if (from === 'policy.ts' && to === 'host') broken.push(`${module} → ${target}: policy is pure`);
      // nocow lint's parsers and rules read text only: of host/ they take mountinfo's unescaping, which fstab shares.
      if (from === 'lint' && (ENGINES.includes(to) || to === 'commands' || (to === 'host' && target !== 'host/mounts.ts'))) broken.push(`${module} → ${target}: lint/ is pure analysis`);
    }
  }
  t.same(broken, [], 'no import crosses a layer');
});

t.test('GIVEN the modules of src/ WHEN measured THEN none is over 400 lines and none casts through unknown', async (t) => {
  const long = [...graph].filter(([, m]) => m.text.split('\n').length - 1 > MAX_LINES).map(([name, m]) => `${name}: ${m.text.split('\n').length - 1} lines`);
  t.same(long, [], `no module over ${MAX_LINES} lines`);
  const casts = [...graph].filter(([, m]) => /\bas unknown as\b/.test(m.text)).map(([name]) => name);
  t.same(casts, [], 'no "as unknown as"');
});
