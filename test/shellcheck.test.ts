import t from 'tap';
import { execa } from 'execa';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

// Every generated shell artifact, as the shell will see it: kickstart and %posttrans
// bodies cut out of their sections, and rpm's %% turned back into %.
const ROOT = join(import.meta.dirname, '..');

export function shellOf(file: string, content: string): string | undefined {
  const lines = content.split('\n');
  if (file.endsWith('.sh')) return content;
  if (file.endsWith('.ks')) return lines.slice(lines.findIndex((l) => l.startsWith('%post')) + 1, lines.lastIndexOf('%end')).join('\n');
  if (file.endsWith('posttrans.spec')) return lines.slice(1).join('\n').replace(/%%/g, '%');
  return undefined;
}

async function artifacts(): Promise<[string, string][]> {
  const found: [string, string][] = [];
  for (const dir of ['scriptlets', 'kickstart', 'test/golden']) {
    for (const name of await readdir(join(ROOT, dir), { recursive: true })) {
      const path = join(dir, name);
      if (!/\.(sh|ks|spec)$/.test(name)) continue;
      const shell = shellOf(name, await readFile(join(ROOT, path), 'utf8'));
      if (shell !== undefined) found.push([path, shell]);
    }
  }
  return found;
}

t.test('GIVEN every generated shell artifact WHEN shellchecked as sh THEN it is clean', async (t) => {
  const all = await artifacts();
  t.ok(all.length >= 15, `found ${all.length} shell artifacts`);
  for (const [path, shell] of all) {
    const result = await execa('shellcheck', ['--shell=sh', '--severity=style', '-'], { input: shell, reject: false });
    t.equal(result.exitCode, 0, `${path}\n${result.stdout}`);
  }
});

t.test('GIVEN the shell library WHEN shellchecked on its own THEN it is clean', async (t) => {
  const result = await execa('shellcheck', ['--shell=sh', '--severity=style', join(ROOT, 'templates/nocow-lib.sh')], { reject: false });
  t.equal(result.exitCode, 0, result.stdout);
});
