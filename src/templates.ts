// Reads the templates shipped in the package (the I/O half of rendering).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMPLATE_DIR } from './paths.js';
import type { TemplateName } from './plan.js';
import type { Templates } from './render/render.js';

const FILE_TEMPLATES: readonly TemplateName[] = [
  'requires.spec',
  'posttrans.spec',
  'kickstart-nochroot.ks',
  'kickstart-chroot.ks',
  'tmpfiles.conf',
  'user-tmpfiles.conf',
  'apply.sh',
  'macros.nocow',
  'defrag.service',
  'defrag.timer',
  'repart.conf',
  'mkfs.args',
  'kiwi-volumes.xml',
  'apply.service',
  'alpm.hook',
  'pacman.install',
  'ansible-tasks.yml',
  'ansible-defaults.yml',
  'ansible-vars.yml',
];

const read = (name: string) => readFile(join(TEMPLATE_DIR, name), 'utf8');

export async function loadTemplates(): Promise<Templates> {
  const [lib, body, ...files] = await Promise.all([read('nocow-lib.sh.ejs'), read('body.sh.ejs'), ...FILE_TEMPLATES.map((n) => read(`${n}.ejs`))]);
  return {
    lib: lib!,
    body: body!,
    files: Object.fromEntries(FILE_TEMPLATES.map((n, i) => [n, files[i]!])) as Record<TemplateName, string>,
  };
}

export async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(join(TEMPLATE_DIR, '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}
