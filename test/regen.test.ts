import t from 'tap';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { regen } from '../src/scripts/regen.js';

const ROOT = join(import.meta.dirname, '..');

async function tree(dir: string): Promise<Record<string, string>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files: Record<string, string> = {};
  for (const e of entries.filter((e) => e.isFile()).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(e.parentPath, e.name);
    files[path.slice(dir.length + 1)] = await readFile(path, 'utf8');
  }
  return files;
}

t.test('GIVEN the committed scriptlets/ and kickstart/ WHEN regenerated from the built-in profiles THEN nothing differs (else: npm run regen)', async (t) => {
  const fresh = t.testdir();
  const silent = { out: () => {}, err: () => {} };
  t.equal(await regen(fresh, silent), 0);
  for (const dir of ['scriptlets', 'kickstart']) {
    t.same(await tree(join(ROOT, dir)), await tree(join(fresh, dir)), `${dir}/ is up to date`);
  }
  t.ok(Object.keys(await tree(join(fresh, 'kickstart'))).includes('libvirt/nocow-post-nochroot.ks'));
});
