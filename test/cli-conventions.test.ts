// The command line's conventions (issue 8, item 4): unknown and missing commands, -V, --help at
// 80 columns with every exit status, the man page and the shell completions generated from the
// parser itself, and a start-up that loads nothing it does not need. The built CLI, as a subprocess.
import t from 'tap';
import { execa } from 'execa';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMANDS, HELP, commandName } from '../src/main.js';
import { describeCli, renderManPage } from '../src/scripts/manpage.js';
import { packageVersion } from '../src/templates.js';
import { builtCli } from './helpers/cli.js';
import { runBuilt } from './helpers/capture.js';

const cli = builtCli();
const DIST = join(import.meta.dirname, '..', 'dist');
const UNKNOWN = 'nocow: error: unknown command "frobnicate"; commands: generate, status, apply, migrate, revert, convert, defrag\n';

const nocow = (args: string[], env: Record<string, string> = {}) => runBuilt(args, { env: { COLUMNS: '80', ...env } });

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-conventions-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A directory with an executable `nocow` that runs the built CLI, for scripts that call it by name. */
async function binDir(): Promise<string> {
  const dir = await tempDir();
  await writeFile(join(dir, 'nocow'), `#!/bin/sh\nexec node '${cli}' "$@"\n`);
  await chmod(join(dir, 'nocow'), 0o755);
  return dir;
}

t.test('GIVEN an unknown command WHEN run THEN exactly one error line naming it and the commands, status 2, nothing on stdout', async (t) => {
  t.same(await nocow(['frobnicate']), { rc: 2, out: '', err: UNKNOWN });
  t.same(await nocow(['frobnicate', '--help']), { rc: 2, out: '', err: UNKNOWN }, 'also with --help');
  t.same(await nocow(['-h', 'frobnicate', '-p', 'libvirt']), { rc: 2, out: '', err: UNKNOWN }, 'whatever options surround it');
  const odd = await nocow(['gen\u001b[31m']);
  t.equal(odd.err, 'nocow: error: unknown command "gen\\u001b[31m"; commands: generate, status, apply, migrate, revert, convert, defrag\n', 'control characters escaped');
});

t.test('GIVEN no command WHEN run THEN one error line and one hint, status 2', async (t) => {
  for (const args of [[], ['--json']]) {
    t.same(await nocow(args), {
      rc: 2,
      out: '',
      err:
        'nocow: error: no command given; commands: generate, status, apply, migrate, revert, convert, defrag\n' +
        'nocow: hint: nocow --help says what each command does; nocow COMMAND --help gives its options and examples\n',
    });
  }
});

t.test('GIVEN -V WHEN run THEN the version alone, as --version prints it', async (t) => {
  const version = `${await packageVersion()}\n`;
  t.same(await nocow(['-V']), { rc: 0, out: version, err: '' });
  t.same(await nocow(['--version']), { rc: 0, out: version, err: '' });
  t.match((await nocow(['--help'])).out, /^ {2}-V, --version {2}Print the version and exit/m, '--help lists -V');
});

t.test('GIVEN a value not among the choices WHEN reported THEN it is one nocow: error: line in nocow\'s words, naming the choices', async (t) => {
  t.same(await nocow(['completion', 'fish']), { rc: 2, out: '', err: 'nocow: error: unknown shell "fish"; expected one of: bash, zsh\n' });
});

/** The lines of a --help from its "HEADING:" line to the next blank line. */
function block(help: string, heading: string): string[] {
  const lines = help.split('\n');
  const start = lines.indexOf(heading);
  if (start < 0) return [];
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

t.test('GIVEN an 80-column terminal WHEN --help is asked of nocow and of each command THEN no line is longer, every example command is on one line of its own, and every exit status is stated', async (t) => {
  const all: [string[], (typeof HELP)][] = [[[], HELP], ...COMMANDS.map((c) => [[commandName(c)], c.help] as [string[], typeof HELP])];
  for (const [args, help] of all) {
    const name = ['nocow', ...args].join(' ');
    const r = await nocow([...args, '--help']);
    t.equal(r.rc, 0, name);
    const lines = r.out.trimEnd().split('\n');
    t.same(lines.filter((l) => l.length > 80), [], `${name}: no line over 80 columns`);
    const examples = block(r.out, 'Examples:');
    t.same(
      examples.filter((l) => l.startsWith('  nocow') || l.startsWith('  source')),
      help.examples.map(([cmd]) => `  ${cmd}`),
      `${name}: each example command whole, on its own line`,
    );
    t.ok(help.examples.length > 0, `${name}: has examples`);
    const statuses = block(r.out, 'Exit status:').filter((l) => /^ {2}\d {2}/.test(l));
    t.same(
      statuses.map((l) => Number(l.trim().split(' ')[0])),
      help.exitStatus.map(([code]) => code),
      `${name}: every exit status, in order`,
    );
  }
});

t.test('GIVEN apply --help and migrate --help THEN apply states exit 1 and what --dry-run exits with; migrate states exit 2 and its paths are neither required nor default []', async (t) => {
  const apply = (await nocow(['apply', '--help'])).out;
  t.match(apply, /^ {2}1 {2}the script did not run to its end; --dry-run: something would change$/m);
  t.match(apply, /^ {2}0 {2}done \(problems are warnings, as in every artifact\); --dry-run: nothing\n {5}would change$/m);
  t.match(apply, /^ {2}-n, --dry-run {2}Run the script in its dry mode: print what apply would do,/m);
  t.match(apply, /--json/);
  const migrate = (await nocow(['migrate', '--help'])).out;
  t.match(migrate, /^ {2}2 {2}bad arguments or declaration, a PATH refused or missing/m);
  t.notMatch(migrate, /\[required\]/);
  t.notMatch(migrate, /\[default: \[\]\]/);
  t.match(migrate, /\[default: the declared targets' directories\]/);
  for (const option of ['--profile', '--config', '--json']) t.match(migrate, new RegExp(`^ {2}(-\\w, | {4})${option} `, 'm'), `migrate takes ${option}`);
});

/** Every option and positional a command's --help lists, as "--name" or "NAME". */
function optionsOf(help: string): string[] {
  const found: string[] = [];
  for (const line of [...block(help, 'Options:'), ...block(help, 'Positionals:')]) {
    const option = /^ {2}(?:-(\w), )?(?: {4})?--([\w-]+)/.exec(line);
    if (option) {
      if (option[1]) found.push(`-${option[1]}`);
      found.push(`--${option[2]}`);
      continue;
    }
    const positional = /^ {2}(\w+) {2}/.exec(line);
    if (positional) found.push(positional[1]!.toUpperCase());
  }
  return found;
}

t.test('GIVEN the built man page WHEN man renders it THEN it renders without warnings, and names every command with every option --help lists, its examples and exit statuses', async (t) => {
  const page = join(DIST, 'man', 'nocow.1');
  const source = await readFile(page, 'utf8');
  t.equal(source, renderManPage(await describeCli(), await packageVersion()), 'dist/man/nocow.1 is what the parser gives now');
  t.notMatch(source, /[^\x00-\x7f]/, 'ASCII roff (other characters as \\[uXXXX])');
  const man = await execa('man', ['--warnings', '-E', 'UTF-8', '-l', page], { env: { MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '80' }, reject: false });
  t.equal(man.exitCode, 0, man.stderr);
  t.equal(man.stderr, '', 'no warnings from groff');
  const text = man.stdout;
  t.match(text, /^NAME\n {7}nocow - keep Btrfs directories NOCOW \(\+C\) and subvolumes/m);
  for (const section of ['SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'COMMANDS', 'EXAMPLES', 'EXIT STATUS', 'ENVIRONMENT', 'SEE ALSO']) t.match(text, new RegExp(`^${section}$`, 'm'), section);
  const top = await nocow(['--help']);
  for (const option of optionsOf(top.out)) t.match(text, new RegExp(`^ {7}(-\\w, )?${option}\\b`, 'm'), `global option ${option}`);
  for (const c of COMMANDS) {
    const name = commandName(c);
    const part = text.split(new RegExp(`^ {3}nocow ${name}$`, 'm'))[1]?.split(/^ {3}nocow \w+$|^EXAMPLES$/m)[0];
    if (!part) {
      t.fail(`no subsection "nocow ${name}"`);
      continue;
    }
    const help = (await nocow([name, '--help'])).out;
    const options = optionsOf(help).filter((o) => !['--debug', '--help', '-h'].includes(o));
    t.ok(options.length > 0, `${name}: options found in --help`);
    for (const option of options) t.match(part, new RegExp(`(^ +|, )${option}\\b`, 'm'), `${name}: ${option}`);
    for (const [cmd] of c.help.examples) t.ok(part.includes(`\n       ${cmd}\n`), `${name}: example ${cmd}`);
    for (const [code, what] of c.help.exitStatus) t.ok(part.replace(/\s+/g, ' ').includes(` ${code} ${what}`), `${name}: exit status ${code}`);
  }
});

t.test('GIVEN the bash completion script WHEN sourced in bash THEN nocow gen<TAB> completes generate, nocow generate --pro<TAB> --profile, and an artifact name', async (t) => {
  const bin = await binDir();
  const script = (await nocow(['completion', 'bash'])).out;
  t.equal(script, await readFile(join(DIST, 'completions', 'nocow.bash'), 'utf8'), 'dist/completions/nocow.bash is what nocow completion bash prints');
  const complete = async (...words: string[]) => {
    const r = await execa(
      'bash',
      ['-c', 'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _nocow_yargs_completions; printf "%s\\n" "${COMPREPLY[@]}"', join(DIST, 'completions', 'nocow.bash'), ...words],
      // A bash started from a zsh login: the answers must still be bash's.
      { env: { PATH: `${bin}:${process.env.PATH}`, SHELL: '/bin/zsh' }, reject: false },
    );
    t.equal(r.stderr, '');
    return r.stdout.split('\n').filter(Boolean);
  };
  t.same(await complete('nocow', 'gen'), ['generate']);
  t.same(await complete('nocow', 'generate', '--pro'), ['--profile']);
  t.same(await complete('nocow', 'generate', 'kick'), ['kickstart']);
  t.same(await complete('nocow', 'mig'), ['migrate']);
  t.same(await complete('nocow', 'migrate', '--force-'), ['--force-nocow']);
  const registered = await execa('bash', ['-c', 'source "$0"; complete -p nocow', join(DIST, 'completions', 'nocow.bash')]);
  t.equal(registered.stdout, 'complete -o bashdefault -o default -F _nocow_yargs_completions nocow', 'file names complete where nocow has nothing to offer');
});

t.test('GIVEN the zsh completion script WHEN zsh reads it THEN it parses, is a #compdef nocow function, and its function offers nocow\'s commands and options with their descriptions', async (t) => {
  const bin = await binDir();
  const file = join(DIST, 'completions', '_nocow');
  const script = await readFile(file, 'utf8');
  t.equal(script, (await nocow(['completion', 'zsh'])).out, 'dist/completions/_nocow is what nocow completion zsh prints');
  t.match(script, /^#compdef nocow\n/);
  const parsed = await execa('zsh', ['-n', file], { reject: false });
  t.equal(parsed.exitCode, 0, parsed.stderr);
  // compsys itself is not started: _describe and compdef stand in, and print what they are given.
  const offered = async (...words: string[]) => {
    const r = await execa(
      'zsh',
      [
        '-c',
        'compdef() { :; }; _describe() { print -rl -- "${(@P)2}"; }; _default() { print DEFAULT; }; source "$0"; words=("$@"); CURRENT=$#; BUFFER="$*"; CURSOR=${#BUFFER}; _nocow_yargs_completions',
        file,
        ...words,
      ],
      { env: { PATH: `${bin}:${process.env.PATH}`, SHELL: '/bin/bash' }, reject: false },
    );
    t.equal(r.stderr, '');
    return r.stdout.split('\n').filter(Boolean);
  };
  t.match(await offered('nocow', 'gen'), ['generate:Generate RPM, kickstart and tmpfiles.d artifacts from a declaration', 'status:Show whether']);
  const options = await offered('nocow', 'generate', '--pro');
  t.ok(options.some((o) => o.startsWith('--profile:Built-in profile')), options.join('\n'));
});

t.test('GIVEN completion, -V and a completion request WHEN they run THEN none of them loads zod, yaml, ejs or execa (start-up stays cheap)', async (t) => {
  const dir = await tempDir();
  for (const args of [['completion', 'bash'], ['-V'], ['--version'], ['--get-yargs-completions', 'nocow', 'generate', '--pro']]) {
    const trace = join(dir, 'trace');
    const r = await execa('strace', ['-f', '-qq', '-e', 'trace=openat', '-o', trace, 'node', cli, ...args], { reject: false });
    t.equal(r.exitCode, 0, args.join(' '));
    const opened = (await readFile(trace, 'utf8')).match(/node_modules\/(zod|yaml|ejs|execa|cli-progress)\//g) ?? [];
    t.same([...new Set(opened)], [], `${args.join(' ')}: no declaration, template or process module`);
  }
});
