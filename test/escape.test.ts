import t from 'tap';
import { execa } from 'execa';
import {
  ALPM_LINE_MAX,
  alpmComment,
  alpmExecWord,
  alpmTargetPattern,
  argsLine,
  kiwiProblem,
  repartSubvolumeWord,
  repartWord,
  xmlCommentSafe,
  xmlEscape,
  assertKickstartSection,
  commentSafe,
  rpmEscape,
  shQuote,
  tmpfilesGlobPath,
  tmpfilesHomeGlobPath,
  tmpfilesHomePath,
  tmpfilesQuote,
  yamlQuote,
  ansibleUnsafe,
} from '../src/render/escape.js';
import { globEscape, TMPFILES_PATH_MAX, tmpfilesProblem } from '../src/formats.js';

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

/**
 * What systemd-tmpfiles makes of a glob-type path field, as systemd 252 reads it: C-style
 * unescaping inside the (double) quotes, `%%` to `%`, then glob(3)'s `\` quoting. Enough
 * for the fields tmpfilesGlobPath writes; the real thing runs in test/tmpfiles.test.ts.
 */
function tmpfilesGlobLiteral(field: string): string {
  const unquoted = field.startsWith('"') ? field.slice(1, -1).replace(/\\(.)/g, '$1') : field;
  const expanded = unquoted.replace(/%(.)/g, (_, c: string) => (c === '%' ? '%' : `<specifier ${c}>`));
  if (/(^|[^\\])(\\\\)*[*?[{]/.test(expanded)) return `<pattern ${expanded}>`;
  return expanded.replace(/\\(.)/g, '$1');
}

t.test('GIVEN glob metacharacters WHEN glob-escaped THEN each of \\ * ? [ ] { } , gets a backslash and nothing else changes', async (t) => {
  t.equal(globEscape('/srv/g/*'), '/srv/g/\\*');
  t.equal(globEscape('/a\\x41/[ab]/{a,b}/a?b/x]y}'), '/a\\\\x41/\\[ab\\]/\\{a\\,b\\}/a\\?b/x\\]y\\}');
  t.equal(globEscape("/plain/-rf/it's \"q\"/100% %h/ünï ☃/$(x)/~/!^"), "/plain/-rf/it's \"q\"/100% %h/ünï ☃/$(x)/~/!^");
});

t.test('GIVEN a path for an h line WHEN rendered THEN it is glob-escaped first, then quoted as a tmpfiles.d field', async (t) => {
  t.equal(tmpfilesGlobPath('/var/lib/libvirt/images'), '/var/lib/libvirt/images');
  t.equal(tmpfilesGlobPath('/srv/g/*'), '"/srv/g/\\\\*"');
  t.equal(tmpfilesGlobPath('/srv/a\\x41'), '"/srv/a\\\\\\\\x41"');
  t.equal(tmpfilesGlobPath('/srv/%{_bindir}'), '"/srv/%%\\\\{_bindir\\\\}"');
  t.equal(tmpfilesGlobPath('/srv/${HOME}'), '"/srv/$\\\\{HOME\\\\}"');
  for (const value of [...NASTY.slice(0, -1), '/srv/a\\x41', '/srv/%{_bindir}', '/srv/${HOME}', '/d\\/e', '/x\\', '/{c}']) {
    t.equal(tmpfilesGlobLiteral(tmpfilesGlobPath(value)), value, `read back as the literal ${JSON.stringify(value)}`);
  }
  t.equal(tmpfilesGlobLiteral(tmpfilesQuote('/srv/g/*')), '<pattern /srv/g/*>', 'the old field: a pattern');
});

t.test('GIVEN a user-scope path for an h line WHEN rendered THEN %h stays a specifier and the rest is glob-escaped, then quoted', async (t) => {
  t.equal(tmpfilesHomeGlobPath('~/.local/share/gnome-boxes/images'), '%h/.local/share/gnome-boxes/images');
  t.equal(tmpfilesHomeGlobPath('~/VM images/*'), '"%h/VM images/\\\\*"');
  t.equal(tmpfilesHomeGlobPath('~/{a,b}'), '"%h/\\\\{a\\\\,b\\\\}"');
  t.equal(tmpfilesHomeGlobPath('~/100%'), '%h/100%%');
});

t.test('GIVEN paths WHEN asked what tmpfiles cannot carry THEN only an h-line path over 4095 bytes once glob-escaped is refused', async (t) => {
  t.equal(TMPFILES_PATH_MAX, 4095);
  for (const value of NASTY.slice(0, -1)) t.equal(tmpfilesProblem(value), undefined, JSON.stringify(value));
  // 4095 bytes once escaped: "/" + 1000 "*" (2000 escaped) + "/" + 1046 2-byte "é" + "x".
  const fits = `/${'*'.repeat(1000)}/${'é'.repeat(1046)}x`;
  t.equal(tmpfilesProblem(fits), undefined, 'exactly 4095 bytes escaped');
  t.match(tmpfilesProblem(`${fits}x`), /^a path that systemd-tmpfiles can carry: at most 4095 bytes once each \\ \* \? \[ \] \{ \} , in it is escaped .*\(this one takes 4096\)$/);
  t.equal(tmpfilesProblem(`~${fits}`), undefined, 'user scope: the part after ~');
  t.match(tmpfilesProblem(`~${fits}x`), /at most 4095 bytes after the home directory once .*\(this one takes 4096\)$/);
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

t.test('GIVEN paths WHEN written as repart.d words THEN % doubles and a path systemd would split or unquote is quoted once per reading', async (t) => {
  t.equal(repartWord('/var/lib/libvirt/images'), '/var/lib/libvirt/images', 'a plain path stays as it is');
  t.equal(repartWord('/srv/100%'), '/srv/100%%', 'no specifier');
  t.equal(repartWord(`/srv/vm images/it's "q" \\x`), `"/srv/vm images/it's \\"q\\" \\\\x"`, 'blanks, quotes and backslashes: one double-quoted word');
  t.equal(repartSubvolumeWord('/var/lib/mysql', 'nodatacow'), '/var/lib/mysql:nodatacow');
  t.equal(repartSubvolumeWord('/srv/a:b', 'nodatacow'), '"\\"/srv/a:b\\":nodatacow"', 'a colon is quoted for the split at the flags, and those quotes for the split at blanks');
  t.equal(repartSubvolumeWord('/srv/a b', ''), '"/srv/a b"', 'no flags, no colon');
  t.equal(repartSubvolumeWord("/srv/vm images/it's 100%:x", 'nodatacow'), `"\\"/srv/vm images/it's 100%%:x\\":nodatacow"`, 'both readings (read back by systemd-repart 262 in test/image-builders.test.ts)');
});

t.test('GIVEN values WHEN XML-escaped THEN the five special characters become entities, and comment text loses its double hyphens', async (t) => {
  t.equal(xmlEscape(`a&b<c>d"e'f`), 'a&amp;b&lt;c&gt;d&quot;e&apos;f');
  t.equal(xmlCommentSafe('config:a--b---c.yaml'), 'config:a- -b- - -c.yaml');
  t.notMatch(xmlCommentSafe('x\n-->'), /\n|--/);
});

t.test('GIVEN paths WHEN asked what kiwi cannot carry THEN blanks, commas, backslashes, double quotes and @root are refused with the reason', async (t) => {
  t.equal(kiwiProblem("/var/lib/it's<x>&y"), undefined);
  for (const path of ['/srv/vm images', '/srv/a\tb', '/srv/a,b', '/srv/a\\b', '/srv/"q"']) t.match(kiwiProblem(path), /fstab/, JSON.stringify(path));
  t.match(kiwiProblem('/srv/@root'), /root volume/);
});

t.test('GIVEN an argument WHEN written as a line of nocow-mkfs.args THEN one that would split or read as a comment is a defect, refused loudly', async (t) => {
  t.equal(argsLine('rw:srv/vm images/a:b'), 'rw:srv/vm images/a:b');
  t.throws(() => argsLine('a\nb'), /cannot be one line/);
  t.throws(() => argsLine('#x'), /cannot be one line/);
});

t.test('GIVEN values WHEN written as alpm hook Exec= words THEN plain ones stay, others are double-quoted as libalpm wordsplit reads them', async (t) => {
  t.equal(alpmExecWord('/var/lib/libvirt/images'), '/var/lib/libvirt/images');
  t.equal(alpmExecWord('0711'), '0711');
  t.equal(alpmExecWord('/srv/vm images'), '"/srv/vm images"', 'a blank: quoted');
  t.equal(alpmExecWord(`/srv/it's "q"`), `"/srv/it's \\"q\\""`, 'a double quote gets a backslash; a single one needs none inside');
  t.equal(alpmExecWord('/srv/a\\"b'), '"/srv/a\\\\"b"', 'a backslash before a quote stays literal: the quote gets its own');
  t.equal(alpmExecWord('/srv/x\\\\'), '"/srv/x"\\\\', 'trailing backslashes go after the closing quote, where they are literal');
  t.equal(alpmExecWord('/srv/$(id);*'), '"/srv/$(id);*"', 'no shell reads it: quoted for the parser only');
  t.equal(alpmExecWord('/srv/é'), '"/srv/é"', 'bytes above 0x7f quoted');
});

t.test('GIVEN paths WHEN written as alpm hook Target= patterns THEN the leading / goes, glob characters get a backslash, and a leading ! \\ or blank one more', async (t) => {
  t.equal(alpmTargetPattern('/var/lib/libvirt/images', '/*'), 'var/lib/libvirt/images/*');
  t.equal(alpmTargetPattern('/srv/a*b?c[d]e\\f', '/'), 'srv/a\\*b\\?c\\[d]e\\\\f/');
  t.equal(alpmTargetPattern('/!x', '/'), '\\!x/', 'not a negation');
  t.equal(alpmTargetPattern('/ x', '/'), '\\ x/', 'not trimmed');
  t.equal(alpmTargetPattern('/\\x', '/'), '\\\\\\x/', 'libalpm drops the first backslash, fnmatch reads the escaped one');
  t.equal(alpmTargetPattern("/srv/vm images/it's \"q\" 100%", '/'), "srv/vm images/it's \"q\" 100%/", 'blanks and quotes inside: as they are');
});

t.test('GIVEN a marker longer than pacman reads in one line WHEN written as alpm hook comments THEN every line fits and the words are all there', async (t) => {
  const text = `Generated from ${Array.from({ length: 300 }, (_, i) => `config:/a/long/path/to/declaration-${i}.yaml,`).join(' ')} ${'x'.repeat(5000)}`;
  const lines = alpmComment(text).split('\n');
  t.ok(lines.length > 2, `${lines.length} lines`);
  t.same(lines.filter((l) => !l.startsWith('#') || Buffer.byteLength(l) > ALPM_LINE_MAX), [], `each a # line of at most ${ALPM_LINE_MAX} bytes`);
  t.equal(lines.map((l) => l.slice(1)).join('').replaceAll(' ', ''), text.replaceAll(' ', ''), 'nothing lost');
  t.equal(alpmComment('short marker'), '# short marker');
});

t.test('GIVEN hostile values WHEN yamlQuote-d (and tagged !unsafe) THEN PyYAML, as Ansible reads YAML, reads back exactly each string', async (t) => {
  const values = [...NASTY, 'yes', 'on', 'null', '~', '0755', '1e3', '- x', '#c', 'a: b', "'", '\u0085\u0080\u00a0\u00e9', '\u2028\ufeff\u{1f600}', '\u0001\u007f'];
  const doc = values.map((v, i) => `v${i}: ${yamlQuote(v)}\nu${i}: ${ansibleUnsafe(v)}\n`).join('');
  t.notMatch(doc, /[^\n\x20-\x7e]/, 'printable ASCII only');
  const script = `import json, sys, yaml
yaml.SafeLoader.add_constructor('!unsafe', lambda loader, node: loader.construct_scalar(node))
print(json.dumps(yaml.load(sys.stdin, Loader=yaml.SafeLoader)))`;
  const read = JSON.parse((await execa('python3', ['-c', script], { input: doc })).stdout) as Record<string, string>;
  values.forEach((v, i) => {
    // The names in ASCII: a raw U+2028 would break the TAP line.
    const name = JSON.stringify(v).replace(/[^\x20-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
    t.equal(read[`v${i}`], v, name);
    t.equal(read[`u${i}`], v, `!unsafe ${name}`);
  });
});
