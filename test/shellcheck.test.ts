import t from 'tap';
import { execa } from 'execa';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { renderLibrary } from '../src/render/render.js';
import { shellOf } from './helpers/shell-of.js';

const ROOT = join(import.meta.dirname, '..');

async function artifacts(): Promise<[string, string][]> {
  const found: [string, string][] = [];
  for (const dir of ['scriptlets', 'kickstart', 'test/golden']) {
    for (const name of await readdir(join(ROOT, dir), { recursive: true })) {
      const path = join(dir, name);
      if (!/\.(sh|ks|spec|install)$/.test(name)) continue;
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

t.test('GIVEN the shell library with its facts filled in WHEN shellchecked on its own THEN it is clean', async (t) => {
  const lib = renderLibrary(await readFile(join(ROOT, 'templates/nocow-lib.sh.ejs'), 'utf8'));
  const result = await execa('shellcheck', ['--shell=sh', '--severity=style', '-'], { input: lib, reject: false });
  t.equal(result.exitCode, 0, result.stdout);
});

t.test("GIVEN the project's own shell scripts (benchmarks, packaging, CI, test helpers) WHEN shellchecked THEN they are clean", async (t) => {
  const scripts = ['.ci/run', 'test/deps.sh'];
  for (const dir of ['bench', 'packaging', 'test/helpers']) {
    for (const name of await readdir(join(ROOT, dir))) if (name.endsWith('.sh')) scripts.push(join(dir, name));
  }
  t.ok(scripts.length >= 12, `found ${scripts.length} scripts`);
  // Each as its shebang says (sh or bash), every severity: a bench or packaging script runs as root too.
  const result = await execa('shellcheck', ['--severity=style', '--format=gcc', ...scripts], { cwd: ROOT, reject: false });
  t.equal(result.exitCode, 0, `${scripts.join(' ')}\n${result.stdout}`);
});
