// src/facts.ts: the refused targets and the temporary names, as the TypeScript applies them
// and as the shell library gets them (the shell side runs on real Btrfs in safety.test.ts).
import t from 'tap';
import { execa } from 'execa';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NAME_MAX, REFUSED_SYSTEM_TARGETS, posixCksum, refusedTarget, temporaryName } from '../src/facts.js';
import { validateDeclaration } from '../src/declaration/validate.js';
import { renderLibrary } from '../src/render/render.js';
import { runMain } from './helpers/capture.js';

t.test('GIVEN system directories WHEN checked THEN the root, FHS top levels, state directories and whole subtrees are refused, a directory of its own is not', async (t) => {
  for (const path of ['/', '/etc', '/etc/x', '/etc/a/b', '/usr', '/usr/lib', '/usr/local/vm', '/var', '/var/lib', '/var/log', '/home', '/srv', '/proc', '/proc/1', '/run/x', '/boot/efi', '/tmp', '~', '~/', '~/.local', '~/.config']) {
    t.ok(refusedTarget(path), `${path} refused`);
  }
  for (const path of ['/var/lib/libvirt/images', '/var/lib/x', '/srv/vm', '/home/alice/vm', '/opt/db', '/tmp/x', '/etcetera', '/usrx', '~/.local/share/gnome-boxes/images', '~/vm']) {
    t.equal(refusedTarget(path), undefined, `${path} accepted`);
  }
});

t.test('GIVEN a declaration WHEN a path is a system directory, not UTF-8, or too long THEN validation names the field and the reason', async (t) => {
  const problems = (path: string, scope = 'system') => validateDeclaration({ targets: [{ name: 'x', path, scope }] }, 'config:t.yaml', 't.yaml').problems;
  t.same(problems('/etc'), ['t.yaml: targets[0].path: "/etc" is not allowed; expected a directory of its own, not a system one (/etc belongs to the system; see SECURITY.md)']);
  t.same(problems('/var/lib'), ['t.yaml: targets[0].path: "/var/lib" is not allowed; expected a directory of its own, not a system one (/var/lib is a system directory; see SECURITY.md)']);
  t.match(problems('~/.config', 'user'), [/targets\[0\]\.path: "~\/\.config" is not allowed; expected a directory of its own, not a system one \(~\/\.config holds the user's own files/]);
  t.match(problems('/srv/\ufffd'), [/targets\[0\]\.path: .* expected a path of valid UTF-8 \(found U\+FFFD/]);
  t.match(problems(`/srv/${'a'.repeat(NAME_MAX + 1)}`), [/expected path segments of at most 255 bytes \(one has 256\)/]);
  t.match(problems(`/srv/${'é'.repeat(128)}`), [/one has 256/], 'bytes, not characters');
  t.same(problems(`/srv/${'a'.repeat(NAME_MAX)}`), [], 'a 255-byte segment is fine');
  t.match(problems(`/srv/${`${'a'.repeat(200)}/`.repeat(21)}x`), [/a path of at most 4095 bytes/]);
  t.match(problems(`/srv/${`${'*'.repeat(200)}/`.repeat(11)}x`), [/a path that systemd-tmpfiles can carry: at most 4095 bytes once each .*this one takes \d+\)/], 'within PATH_MAX, but not once glob-escaped for tmpfiles');
});

t.test('GIVEN names of every length WHEN temporary names are made THEN they fit NAME_MAX, stay beside the path, and match POSIX cksum', async (t) => {
  for (const input of ['', 'a', 'images', 'é'.repeat(100), 'x'.repeat(300)]) {
    const { stdout } = await execa('cksum', { input });
    t.equal(String(posixCksum(Buffer.from(input))), stdout.split(' ')[0], `cksum of ${input.length} characters`);
  }
  t.equal(temporaryName('/srv/images', '.nocow-new'), '/srv/images.nocow-new');
  t.equal(temporaryName('/srv/a', '.nocow-migrate', '.'), '/srv/.a.nocow-migrate');
  for (const base of ['a'.repeat(245), 'a'.repeat(246), 'é'.repeat(127) + 'x', 'a'.repeat(255)]) {
    const name = temporaryName(`/srv/${base}`, '.nocow-new');
    const last = name.slice(name.lastIndexOf('/') + 1);
    t.ok(Buffer.byteLength(last) <= NAME_MAX, `${Buffer.byteLength(base)} bytes → ${Buffer.byteLength(last)}`);
    t.ok(name.startsWith('/srv/'));
    t.equal(temporaryName(`/srv/${base}`, '.nocow-new'), name, 'the same name every time');
  }
  t.not(temporaryName(`/srv/${'a'.repeat(250)}`, '.nocow-new'), temporaryName(`/srv/${'b'.repeat(250)}`, '.nocow-new'), 'two long siblings get two names');
});

t.test('GIVEN the shell library WHEN rendered THEN it carries the facts: every refused target in its case pattern, no tag left', async (t) => {
  const lib = renderLibrary(await readFile(join(import.meta.dirname, '..', 'templates', 'nocow-lib.sh.ejs'), 'utf8'));
  t.notMatch(lib, /<%|%>/);
  for (const dir of REFUSED_SYSTEM_TARGETS.exact) t.ok(lib.includes(`'${dir}' |`) || lib.includes(`'${dir}')`), dir);
  for (const dir of REFUSED_SYSTEM_TARGETS.below) t.ok(lib.includes(`'${dir}'/*`), `${dir}/*`);
  // The refused list through a real shell: the same answers as refusedTarget.
  const script = `${lib}\nfor p in /etc /etc/x /var/lib /var/lib/x /srv /srv/x /usr/lib/y /etcetera; do if nocow_refused "$p"; then echo "$p refused"; else echo "$p ok"; fi; done`;
  for (const shell of ['dash', 'bash', 'busybox']) {
    const { stdout } = await execa(shell, shell === 'busybox' ? ['sh', '-c', script] : ['-c', script]);
    t.equal(stdout, '/etc refused\n/etc/x refused\n/var/lib refused\n/var/lib/x ok\n/srv refused\n/srv/x ok\n/usr/lib/y refused\n/etcetera ok', shell);
  }
});

t.test('GIVEN status, apply and migrate WHEN given a system directory or a path that is not UTF-8 THEN one error line names it and the exit status is 2', async (t) => {
  const run = async (...argv: string[]) => {
    const { rc, err } = await runMain(argv);
    return { status: rc, err };
  };
  t.same(await run('status', '/etc'), { status: 2, err: 'nocow: error: /etc: refused: /etc belongs to the system, never a target (see SECURITY.md)\n' });
  t.same(await run('status', '/var/lib'), { status: 2, err: 'nocow: error: /var/lib: refused: /var/lib is a system directory, never a target (see SECURITY.md)\n' });
  t.same(await run('status', '/srv/\ufffd'), { status: 2, err: 'nocow: error: PATH "/srv/\\ufffd": not valid UTF-8 (or contains U+FFFD); give a path whose name is UTF-8\n' });
  t.same(await run('status', '--home', '/tmp/\ufffd'), { status: 2, err: 'nocow: error: --home "/tmp/\\ufffd": not valid UTF-8 (or contains U+FFFD); give a path whose name is UTF-8\n' });
  const dir = t.testdir({ 'etc.yaml': 'targets:\n  - name: etc\n    path: /etc\n', root: {} });
  const applied = await run('apply', '--root', join(dir, 'root'), '-c', join(dir, 'etc.yaml'));
  t.equal(applied.status, 2);
  t.match(applied.err, /^nocow: error: \S+etc\.yaml: targets\[0\]\.path: "\/etc" is not allowed; expected a directory of its own, not a system one/);
  t.same(readdirSync(join(dir, 'root')), [], 'nothing done under the root');
});
