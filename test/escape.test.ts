import t from 'tap';
import { execa } from 'execa';
import { assertKickstartSection, commentSafe, rpmEscape, shQuote, tmpfilesHomePath, tmpfilesQuote } from '../src/render/escape.js';

const NASTY = [
  '/srv/vm images/$(touch /tmp/pwned)',
  "/it's/`id`/\"q\"/\\b/100%/%h/;rm -rf x/&&/|/*/?/[a]/~/#/!/{a,b}",
  '/ leading and trailing ',
  '/tab\there',
  '',
];

t.test('GIVEN hostile values WHEN shQuote-d THEN dash, bash and busybox sh read back exactly the value and run nothing', async (t) => {
  for (const shell of [['dash'], ['bash'], ['busybox', 'sh']]) {
    for (const value of NASTY) {
      const { stdout } = await execa(shell[0]!, [...shell.slice(1), '-c', `printf '%s' ${shQuote(value)}`]);
      t.equal(stdout, value, `${shell.join(' ')}: ${JSON.stringify(value)}`);
    }
  }
});

t.test('GIVEN a value WHEN shQuote-d THEN it is one single-quoted word', async (t) => {
  t.equal(shQuote("a'b"), `'a'\\''b'`);
  t.equal(shQuote('plain'), `'plain'`);
});

t.test('GIVEN tmpfiles.d fields WHEN quoted THEN specifiers double and whitespace or quotes force double quotes', async (t) => {
  t.equal(tmpfilesQuote('/var/lib/libvirt/images'), '/var/lib/libvirt/images');
  t.equal(tmpfilesQuote('/a/100%'), '/a/100%%');
  t.equal(tmpfilesQuote('/vm images/$(x)'), '"/vm images/$(x)"');
  t.equal(tmpfilesQuote(`/q"b\\c'd`), `"/q\\"b\\\\c'd"`);
  t.equal(tmpfilesQuote(''), '""');
});

t.test('GIVEN a user-scope path WHEN rendered for user tmpfiles.d THEN %h stays a specifier and the rest is literal', async (t) => {
  t.equal(tmpfilesHomePath('~/.local/share/gnome-boxes/images'), '%h/.local/share/gnome-boxes/images');
  t.equal(tmpfilesHomePath('~/VM images/100%'), '"%h/VM images/100%%"');
});

t.test('GIVEN spec text WHEN rpm-escaped THEN every % is doubled', async (t) => {
  t.equal(rpmEscape("printf '%s\\n' 100% %{x}"), "printf '%%s\\n' 100%% %%{x}");
});

t.test('GIVEN a source name with a line break WHEN made comment-safe THEN it stays on one line', async (t) => {
  t.equal(commentSafe('config:a\nb\u0000c'), 'config:a?b?c');
});

t.test('GIVEN a kickstart section WHEN a body line starts with % THEN rendering refuses it', async (t) => {
  t.equal(assertKickstartSection('# x\n%post\necho ok\n%end\n'), '# x\n%post\necho ok\n%end\n');
  t.throws(() => assertKickstartSection('%post\n  %end\necho\n%end\n'), /cut by the line/);
});
