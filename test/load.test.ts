// Declaration files that are not UTF-8 (issue 7, item 4): refused with the place of the
// first bad byte, never decoded with U+FFFD into a path that names another directory.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtinDeclaration, DeclarationError, firstInvalidUtf8, loadDeclaration } from '../src/declaration/load.js';
import { BUILTIN_PROFILES } from '../src/declaration/profiles.js';
import { builtCli } from './helpers/cli.js';

const cli = builtCli();

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-load-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The problem lines of a declaration that must not load. */
async function problems(t: Test, files: Record<string, Buffer>): Promise<string[]> {
  const dir = await tempDir(t);
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes);
  const error = await loadDeclaration({ configs: Object.keys(files).map((name) => join(dir, name)) }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof DeclarationError)) throw new Error(`expected a DeclarationError, got ${String(error)}`);
  return error.problems.map((p) => p.replaceAll(`${dir}/`, ''));
}

const bytes = (...parts: (string | number[])[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

t.test('GIVEN a YAML file with byte 0xFF in a path WHEN loaded THEN one problem names line, column, byte and field; no target comes out', async (t) => {
  t.same(await problems(t, { 'd.yaml': bytes('targets:\n  - name: x\n    path: /srv/', [0xff], '\n') }), [
    'd.yaml:3:16: not valid UTF-8 (byte 0xFF) in targets[0].path; save the file as UTF-8',
  ]);
});

t.test('GIVEN a Latin-1 JSON file WHEN loaded THEN the column counts characters and the field is named', async (t) => {
  // "é" as one Latin-1 byte after a correctly encoded "é": the column is in characters, not bytes.
  t.same(await problems(t, { 'd.json': bytes('{"targets": [{"name": "x", "path": "/srv/é', [0xe9], '"}]}') }), [
    'd.json:1:43: not valid UTF-8 (byte 0xE9) in targets[0].path; save the file as UTF-8',
  ]);
});

t.test('GIVEN bad bytes in a field name, a comment, and a second file WHEN loaded THEN each file gets its one line', async (t) => {
  t.same(
    await problems(t, {
      'a.yaml': bytes('targets:\n  - name: x\n    ', [0xc3, 0x28], ': 1\n'),
      'b.yaml': bytes('# caf', [0xe9], '\ntargets:\n  - {name: y, path: /srv/y}\n'),
      'c.yaml': bytes('targets:\n  - {name: z, path: /srv/', [0xed, 0xa0, 0x80], '}\n'),
    }),
    [
      'a.yaml:3:5: not valid UTF-8 (byte 0xC3) in a field name of targets[0]; save the file as UTF-8',
      'b.yaml:1:6: not valid UTF-8 (byte 0xE9); save the file as UTF-8',
      'c.yaml:2:26: not valid UTF-8 (byte 0xED) in targets[0].path; save the file as UTF-8',
    ],
  );
});

t.test('GIVEN valid UTF-8 with non-ASCII paths and a byte order mark WHEN loaded THEN the paths arrive exactly', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'd.json'), bytes([0xef, 0xbb, 0xbf], '{"targets": [{"name": "a", "path": "/srv/été 😀"}]}'));
  await writeFile(join(dir, 'd.yaml'), bytes('targets:\n  - {name: b, path: "/srv/ü"}\n'));
  const declaration = await loadDeclaration({ configs: [join(dir, 'd.json'), join(dir, 'd.yaml')] });
  t.same(
    declaration.targets.map((target) => target.path),
    ['/srv/été 😀', '/srv/ü'],
  );
});

t.test('GIVEN a declaration on stdin with a byte that is not UTF-8 WHEN generate -c - -o DIR runs THEN status 2, one line, nothing written', async (t) => {
  const dir = await tempDir(t);
  const out = join(dir, 'out');
  const r = await execa('node', [cli, 'generate', '-c', '-', '-o', out], { input: bytes('targets:\n  - name: x\n    path: /srv/', [0xff], '\n'), reject: false });
  t.equal(r.exitCode, 2);
  t.equal(r.stderr, 'nocow: error: -:3:16: not valid UTF-8 (byte 0xFF) in targets[0].path; save the file as UTF-8');
  t.equal(r.stdout, '');
  t.same(await readdir(dir), [], 'the output directory was not made');
});

t.test('GIVEN a file with a byte that is not UTF-8 WHEN apply --dry-run and status run THEN both refuse it with status 2 and act on nothing', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'd.yaml'), bytes('targets:\n  - {name: x, path: /srv/', [0xff], '}\n'));
  for (const command of [['apply', '--dry-run'], ['status']]) {
    const r = await execa('node', [cli, ...command, '-c', join(dir, 'd.yaml')], { reject: false });
    t.equal(r.exitCode, 2, command.join(' '));
    t.equal(r.stderr, `nocow: error: ${dir}/d.yaml:2:26: not valid UTF-8 (byte 0xFF) in targets[0].path; save the file as UTF-8`, command.join(' '));
    t.equal(r.stdout, '', command.join(' '));
  }
});

t.test('GIVEN every kind of byte sequence WHEN firstInvalidUtf8 looks THEN it agrees with a fatal TextDecoder', async (t) => {
  const fatal = new TextDecoder('utf-8', { fatal: true });
  const valid = (b: Uint8Array): boolean => {
    try {
      fatal.decode(b);
      return true;
    } catch {
      return false;
    }
  };
  const cases: [number[], number][] = [
    [[0x61, 0x62], -1],
    [[0xc0, 0x80], 0], // overlong
    [[0x61, 0xe0, 0x80, 0x80], 1], // overlong
    [[0xed, 0xa0, 0x80], 0], // surrogate
    [[0xf4, 0x90, 0x80, 0x80], 0], // above U+10FFFF
    [[0x61, 0xf0, 0x9f, 0x98], 1], // cut short at the end
    [[0xf0, 0x9f, 0x98, 0x80], -1],
    [[0x80], 0],
    [[0xff], 0],
  ];
  for (const [input, expected] of cases) t.equal(firstInvalidUtf8(Uint8Array.from(input)), expected, input.map((b) => b.toString(16)).join(' '));
  // Random short sequences weighted towards the interesting bytes: valid exactly when the decoder says so,
  // and the prefix before the reported offset always decodes.
  const pool = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff];
  let seed = 42;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  let disagreements = 0;
  for (let i = 0; i < 20000; i += 1) {
    const sample = Uint8Array.from({ length: 1 + random(6) }, () => pool[random(pool.length)]!);
    const at = firstInvalidUtf8(sample);
    if ((at === -1) !== valid(sample) || (at >= 0 && !valid(sample.subarray(0, at)))) disagreements += 1;
  }
  t.equal(disagreements, 0);
});

t.test('GIVEN built-in profiles alone WHEN loaded THEN the declaration is what validation and combination make of them, without loading the validator', async (t) => {
  const names = Object.keys(BUILTIN_PROFILES);
  const sets: string[][] = [[], ...names.map((n) => [n]), names, [...names].reverse(), ['libvirt', 'libvirt'], ['mariadb', 'libvirt', 'mariadb', 'gnome-boxes']];
  for (const profiles of sets) {
    const validated = await loadDeclaration({ profiles, validateProfiles: true });
    t.strictSame(await loadDeclaration({ profiles }), validated, `--profile ${profiles.join(',') || '(none: the default)'}`);
    // Field for field, in the same order: artifacts are rendered from these objects.
    t.same(JSON.stringify(await loadDeclaration({ profiles })), JSON.stringify(validated), 'the same key order');
  }
  t.equal(builtinDeclaration(['libvirt', 'nope']), undefined, 'an unknown name goes the full way');
  await t.rejects(loadDeclaration({ profiles: ['nope'] }), { name: 'DeclarationError', message: /^unknown profile "nope"; expected one of: libvirt, / });
});
