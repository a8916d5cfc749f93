// The shell library as artifacts ship it (src/render/ship.ts): code only, quoted text untouched.
import t from 'tap';
import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { shippedShell } from '../src/render/ship.js';
import { renderLibrary } from '../src/render/render.js';

t.test('GIVEN shell text WHEN shipped THEN comment lines, blank lines and indentation go; directives and quoted lines stay byte for byte', async (t) => {
  const source = [
    '# a comment',
    'f() {',
    '\t# another, indented',
    '',
    "\tx='multi",
    '',
    "\t  # not a comment: inside quotes",
    "\tend'",
    '\t# shellcheck disable=SC2086 # a directive keeps its reason',
    '\techo "a # b" \'c\' # trailing comments stay: they are code lines',
    '}',
  ].join('\n');
  t.equal(
    shippedShell(source),
    ["f() {", "x='multi", '', "\t  # not a comment: inside quotes", "\tend'", '# shellcheck disable=SC2086 # a directive keeps its reason', 'echo "a # b" \'c\' # trailing comments stay: they are code lines', '}', ''].join('\n'),
  );
});

t.test('GIVEN the library WHEN shipped THEN no comment or blank line is left outside its one quoted inner script, and dash still parses it', async (t) => {
  const source = await readFile(join(import.meta.dirname, '..', 'templates', 'nocow-lib.sh.ejs'), 'utf8');
  const lib = renderLibrary(source);
  const lines = lib.split('\n').slice(0, -1);
  t.same(lines.filter((l) => l === '' || (l.startsWith('#') && !l.startsWith('# shellcheck '))), [], 'no blank or comment line');
  t.same(lines.filter((l) => /^\s/.test(l)).length <= 5, true, 'indentation only inside the find -exec script');
  t.ok(lib.length < source.length * 0.75, `${lib.length} bytes shipped of ${source.length} in the source`);
  const parse = await execa('dash', ['-n'], { input: lib, reject: false });
  t.equal(parse.exitCode, 0, parse.stderr);
});
