// The fast path (src/cli-fast.ts) gives a command its arguments without yargs, from the command line as
// src/cli-argv.ts read it for both paths. It must give exactly the arguments yargs makes of the same
// reading, or decline: on a corpus of argv, hand-written and generated from each command's own options,
// every argv it takes is one yargs parses without error into the same object; and every argv the
// reader refuses is refused by both paths in the same one line.
import t from 'tap';
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildParser, COMMANDS, commandName, definitionOf, fastPathArgs, GLOBAL_OPTIONS, readCommandLine, type CommandModule } from '../src/main.js';
import { recordDefinition, yargsArgv, type Scanned } from '../src/cli-argv.js';
import type { Io } from '../src/io.js';
import { builtCli } from './helpers/cli.js';
import { runMain } from './helpers/capture.js';

const quiet: Io = { out: () => {}, err: () => {} };

/** What yargs hands the command's handler for what the reader read, or the error it stops with. */
async function viaYargs(scanned: Scanned): Promise<{ args: Record<string, unknown> } | { error: string }> {
  let args: Record<string, unknown> | undefined;
  const parser = await buildParser({
    io: quiet,
    columns: 80,
    scanned,
    runCommand: async (_c, parsed) => {
      args = { ...parsed };
      return 0;
    },
  });
  try {
    await parser.parseAsync(yargsArgv(scanned), {}, () => {});
  } catch (error) {
    return { error: (error as Error).message };
  }
  return args ? { args } : { error: 'no command ran (help or completion output)' };
}

const command = (name: string): CommandModule => COMMANDS.find((c) => commandName(c) === name)!;

/** A small deterministic generator (mulberry32): the corpus is the same every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const VALUES = ['x', '/srv/vm', 'mariadb', 'libvirt,machines', 'a,,b', '-', '', ' padded ', '12', 'true', 'false', '--json', '-n', 'é/ü', 'nope'];
const ODD = ['--', '-h', '--help', '-V', '--version', '--debug', '--no-json', '--json=false', '--json=true', '--nope', '-x', '-o=x', '-ox', '--output=d', '--kickstart-log=/l', '--profile=', '--profile=mariadb', '--dryRun', '--dry-run', '-np', '--root=/', '--root='];

/** Every flag a command's definition gives, with and without values, and its positionals. */
function tokens(c: CommandModule): string[][] {
  const def = definitionOf(c);
  const out: string[][] = [];
  for (const [key, spec] of [...GLOBAL_OPTIONS, ...def.options]) {
    const aliases = spec.alias === undefined ? [] : typeof spec.alias === 'string' ? [spec.alias] : [...spec.alias];
    for (const flag of [key, ...aliases].map((f) => (f.length === 1 ? `-${f}` : `--${f}`))) {
      if (spec.type === 'boolean') out.push([flag], [flag], [flag, 'true'], [flag, 'false']);
      else for (const v of VALUES) out.push([flag, v]);
    }
  }
  const choices = (def.positional?.spec.choices ?? []) as string[];
  for (const p of [...choices, 'nope', '/var/lib/mysql', 'rel/path', '0x10', 'true', 'false', '']) out.push([p]);
  for (const odd of ODD) out.push([odd]);
  return out;
}

function corpus(): string[][] {
  const argvs: string[][] = [
    ['generate'],
    ['generate', '-o', 'out'],
    ['generate', '--output', 'out'],
    ['generate', '--output=out'],
    ['generate', 'posttrans', '-p', 'mariadb'],
    ['generate', 'posttrans', 'kickstart', '--profile', 'libvirt', '--profile', 'gnome-boxes'],
    ['generate', '-p', 'libvirt,mariadb', 'tmpfiles', '-o', 'd'],
    ['generate', '-c', 'nocow.yaml', '-o', 'build/'],
    ['generate', '-c', '-'],
    ['generate', 'kickstart', '-o', 'ks/', '--kickstart-log', '/root/nocow-post.log'],
    ['generate', '--kickstart-log', '/a', '--kickstart-log', '/b'],
    ['generate', '-o', 'a', '-o', 'b'],
    ['generate', '--debug'],
    ['--debug', 'generate', 'hook'],
    ['generate', 'hook', '--debug', '-o', '/tmp/x'],
    ['status'],
    ['status', '--json'],
    ['status', '-p', 'mariadb', '--json'],
    ['status', '--root', '/mnt/sysroot', '-c', 'nocow.yaml'],
    ['status', '-p', 'gnome-boxes', '--home', '/home/u'],
    ['status', '/srv/vm'],
    ['status', '/srv/vm', '/var/lib/mysql', '--root', '/'],
    ['status', '--root', '/a', '--root', '/b'],
    ['status', '--home', '/a', '--home', '/b'],
    ['apply'],
    ['apply', '--dry-run'],
    ['apply', '-n', '--json'],
    ['apply', '--root', '/mnt/sysroot', '-c', 'nocow.yaml'],
    ['apply', '--dry-run', '-p', 'libvirt', '-p', 'mariadb'],
  ];
  const next = random(10);
  for (const name of ['generate', 'status', 'apply', 'migrate', 'revert', 'convert', 'defrag', 'completion']) {
    const pool = tokens(command(name));
    for (let i = 0; i < 200; i++) {
      const argv = [name];
      const n = Math.floor(next() * 5);
      for (let k = 0; k < n; k++) argv.push(...pool[Math.floor(next() * pool.length)]!);
      // The command word elsewhere than first, now and then.
      if (next() < 0.1) argv.splice(0, 1), argv.splice(Math.floor(next() * (argv.length + 1)), 0, name);
      argvs.push(argv);
    }
  }
  return argvs;
}

/** The argv the fast path must take: the common invocations of each command's --help examples and more. */
const MUST_TAKE = [
  ['generate'],
  ['generate', '-o', 'out'],
  ['generate', 'posttrans', '--profile', 'mariadb'],
  ['generate', '-c', 'nocow.yaml', '-o', 'build/'],
  ['generate', 'tmpfiles', 'user-tmpfiles', '-p', 'libvirt', '-p', 'gnome-boxes'],
  ['generate', 'kickstart', '-o', 'ks/', '--kickstart-log', '/root/nocow-post.log'],
  ['generate', '-c', '-'],
  ['generate', 'repart', 'mkfs', 'kiwi', 'boot-unit', '-p', 'libvirt', '--repart-definition', '50-root', '-o', 'img/'],
  ['status'],
  ['status', '-p', 'mariadb', '--json'],
  ['status', '--root', '/mnt/sysroot', '-c', 'nocow.yaml'],
  ['status', '/srv/vm'],
  ['apply', '--dry-run', '-p', 'libvirt', '-p', 'mariadb'],
];

/** What the reader makes of argv for the command it names, or the line it refuses it with; undefined for --help and no command. */
function read(argv: string[]): { c: CommandModule; scanned: Scanned } | { refused: string } | undefined {
  const c = COMMANDS.find((m) => commandName(m) === argv.find((a) => !a.startsWith('-')));
  if (!c) return undefined;
  try {
    const scanned = readCommandLine(c, argv);
    return scanned.options.has('help') ? undefined : { c, scanned };
  } catch (error) {
    return { refused: (error as Error).message };
  }
}

t.test('GIVEN a corpus of argv WHEN the fast path takes one THEN yargs parses the same reading without error into the same arguments', async (t) => {
  const argvs = corpus();
  let taken = 0;
  let refused = 0;
  const disagreements: string[] = [];
  for (const argv of argvs) {
    const r = read(argv);
    if (r === undefined) continue;
    if ('refused' in r) {
      refused++;
      continue;
    }
    const fast = fastPathArgs(r.c, r.scanned);
    if (fast === undefined) continue;
    taken++;
    const slow = await viaYargs(r.scanned);
    if (!('args' in slow)) disagreements.push(`${JSON.stringify(argv)}: the fast path took it, yargs says: ${slow.error}`);
    else if (JSON.stringify(sorted(fast)) !== JSON.stringify(sorted(slow.args))) {
      disagreements.push(`${JSON.stringify(argv)}:\n  fast  ${JSON.stringify(sorted(fast))}\n  yargs ${JSON.stringify(sorted(slow.args))}`);
    }
  }
  t.comment(`${argvs.length} argv, ${taken} taken by the fast path, ${refused} refused by the reader`);
  t.same(disagreements, [], 'no argv the two read differently');
  t.ok(taken > 300, `the fast path takes a good part of the corpus (${taken})`);
  t.ok(refused > 100, `and the corpus has mistakes in it (${refused})`);
});

/** Keys in order, so that two objects compare by content. */
function sorted(args: Record<string, unknown>): [string, unknown][] {
  return Object.keys(args)
    .sort()
    .map((k) => [k, args[k]]);
}

t.test('GIVEN the common invocations WHEN read THEN the fast path takes each, as yargs reads it', async (t) => {
  for (const argv of MUST_TAKE) {
    const r = read(argv);
    if (!r || 'refused' in r) return void t.fail(`${argv.join(' ')}: ${JSON.stringify(r)}`);
    const fast = fastPathArgs(r.c, r.scanned);
    t.ok(fast, `${argv.join(' ')}: taken`);
    const slow = await viaYargs(r.scanned);
    t.strictSame(fast, 'args' in slow ? slow.args : slow, argv.join(' '));
  }
});

t.test('GIVEN what GNU getopt reads one way and yargs another WHEN read THEN both paths give the command what getopt would', async (t) => {
  for (const [argv, expected] of [
    [['status', 'a', '--', '-b', '--json'], { paths: ['a', '-b', '--json'], json: false }],
    [['status', '--json', 'false'], { paths: ['false'], json: true }],
    [['status', '--', 'true', '12', '0x10'], { paths: ['true', '12', '0x10'] }],
    [['migrate', '-n', '--', '-rf'], { paths: ['-rf'], 'dry-run': true, dryRun: true }],
    [['convert', '--', '-rf', '--dry-run'], { paths: ['-rf', '--dry-run'], 'dry-run': false }],
    [['generate', '-pmariadb', '--', 'tmpfiles'], { artifacts: ['tmpfiles'], profile: ['mariadb'] }],
    [['generate', '-o=x', 'hook'], { artifacts: ['hook'], output: 'x' }],
    [['apply', '-np', 'mariadb'], { 'dry-run': true, profile: ['mariadb'] }],
    [['defrag', '--min-extents', '64', '-n', 'x'], { 'min-extents': 64, paths: ['x'] }],
    [['completion', '--', 'zsh'], { shell: 'zsh' }],
    [['--debug', 'status', '-', '--root=-x'], { paths: ['-'], root: '-x', debug: true }],
  ] as [string[], Record<string, unknown>][]) {
    const r = read(argv);
    if (!r || 'refused' in r) return void t.fail(`${argv.join(' ')}: ${JSON.stringify(r)}`);
    const slow = await viaYargs(r.scanned);
    t.match('args' in slow ? slow.args : slow, expected, `${argv.join(' ')}: through yargs`);
    const fast = fastPathArgs(r.c, r.scanned);
    t.match(fast, expected, `${argv.join(' ')}: the fast path`);
  }
});

// The words of every refusal: one line, exit 2, the same whichever way main() runs the command, and
// nothing of yargs' own wording. Each is refused before the command's run (nothing here touches a disk).
const REFUSED: [string[], string][] = [
  [['generate', '--frobnicate'], "unknown option '--frobnicate'; nocow generate takes: --profile (-p), --config (-c), --output (-o), --kickstart-log, --repart-definition, --debug, --help (-h)"],
  [['status', '-x'], "unknown option '-x'; nocow status takes: --profile (-p), --config (-c), --root, --home, --json, --debug, --help (-h)"],
  [['status', '--p', 'mariadb'], "unknown option '--p'; nocow status takes: --profile (-p), --config (-c), --root, --home, --json, --debug, --help (-h)"],
  [['status', '--version'], "unknown option '--version'; nocow status takes: --profile (-p), --config (-c), --root, --home, --json, --debug, --help (-h)"],
  [['migrate', '--dryRun'], "unknown option '--dryRun'; nocow migrate takes: --profile (-p), --config (-c), --root, --force, --force-nocow, --dry-run (-n), --json, --debug, --help (-h)"],
  [['migrate', '--dry-run=yes', '/srv/vm'], "option '--dry-run' doesn't allow an argument: give --dry-run alone, or leave it out"],
  [['migrate', '--dry-run=true', '/srv/vm'], "option '--dry-run' doesn't allow an argument: give --dry-run alone, or leave it out"],
  [['migrate', '--dry-run=', '/srv/vm'], "option '--dry-run' doesn't allow an argument: give --dry-run alone, or leave it out"],
  [['convert', '-n=1', '/srv/vm'], "option '-n' doesn't allow an argument: give -n alone, or leave it out"],
  [['defrag', '--debug=0'], "option '--debug' doesn't allow an argument: give --debug alone, or leave it out"],
  [['apply', '--no-dry-run'], "unknown option '--no-dry-run': a flag is off unless given, so to leave --dry-run off, leave it out"],
  [['apply', '--no-json'], "unknown option '--no-json': a flag is off unless given, so to leave --json off, leave it out"],
  [['generate', '--no-profile'], "unknown option '--no-profile'; nocow generate takes: --profile (-p), --config (-c), --output (-o), --kickstart-log, --repart-definition, --debug, --help (-h)"],
  [['generate', '-o'], "option '-o' needs a value (write -o DIR)"],
  [['status', '--root'], "option '--root' needs a value (write --root DIR)"],
  [['defrag', '--min-extents'], "option '--min-extents' needs a value (write --min-extents N)"],
  [['generate', '-o', '-x'], 'option \'-o\' needs a value, and "-x" is not taken as one (write --output=-x if you mean it)'],
  [['generate', 'rpmspec'], 'unknown artifact "rpmspec"; expected one of: posttrans, kickstart, tmpfiles, user-tmpfiles, hook, macros, defrag-timer, user-defrag-timer, repart, mkfs, kiwi, boot-unit, alpm-hook, pacman-install, ansible'],
  [['generate', '--', ''], 'unknown artifact ""; expected one of: posttrans, kickstart, tmpfiles, user-tmpfiles, hook, macros, defrag-timer, user-defrag-timer, repart, mkfs, kiwi, boot-unit, alpm-hook, pacman-install, ansible'],
  [['completion', 'fish'], 'unknown shell "fish"; expected one of: bash, zsh'],
  [['completion', 'bash', 'zsh'], 'unexpected operand "zsh": nocow completion takes one SHELL at most'],
  [['apply', 'extra'], 'unexpected operand "extra": nocow apply takes none'],
  [['apply', '--', '-n'], 'unexpected operand "-n": nocow apply takes none'],
  [['convert'], 'no PATH given: nocow convert needs at least one'],
  [['convert', '-n', '--'], 'no PATH given: nocow convert needs at least one'],
  [['migrate', ''], 'an empty PATH names nothing (write . for the current directory)'],
  [['defrag', '--min-extents', 'abc'], '--min-extents abc: not a number; expected a whole number of extents, at least 1'],
  [['defrag', '--min-extents=', 'x'], '--min-extents "": not a number; expected a whole number of extents, at least 1'],
  [['defrag', '--min-extents', '0'], '--min-extents 0: expected a whole number of extents, at least 1'],
  [['defrag', '--min-extents', '1.5'], '--min-extents 1.5: not a number; expected a whole number of extents, at least 1'],
  [['--', '-x', 'status'], 'unknown command "-x"; commands: generate, status, apply, migrate, revert, convert, defrag'],
];

t.test('GIVEN a mistake on the command line WHEN run by the fast path and by yargs THEN the same one line in nocow\'s words, exit 2', async (t) => {
  for (const [argv, line] of REFUSED) {
    for (const fastPath of [true, false]) {
      t.same(await runMain(argv, { fastPath }), { rc: 2, out: '', err: `nocow: error: ${line}\n` }, `${argv.join(' ')}${fastPath ? '' : ' (yargs)'}`);
    }
  }
});

t.test('GIVEN --help WHEN read THEN yargs shows it, whatever operands the command would need', async (t) => {
  for (const argv of [['generate', '--help'], ['convert', '-h'], ['apply', '-nh']]) {
    const ran = await runMain(argv);
    t.equal(ran.rc, 0, argv.join(' '));
    t.match(ran.out, new RegExp(`^nocow ${argv[0]}`), `${argv.join(' ')}: its help`);
  }
});

t.test('GIVEN a builder whose command line the reader cannot read as yargs would WHEN recorded THEN it throws; every command is readable', async (t) => {
  t.throws(() => recordDefinition('x', (y) => y.option('a', { type: 'string' }).check(() => true)), /\.check\(\)/, '.check');
  t.throws(() => recordDefinition('x', (y) => y.option('a', { type: 'number' })), /type number/, 'a number option');
  t.throws(() => recordDefinition('x', (y) => y.option('a', { type: 'string', demandOption: true })), /demandOption/, 'demandOption');
  t.throws(() => recordDefinition('x [a] [b]', (y) => y), /more than one positional/, 'two positionals');
  t.same(recordDefinition('x <paths..>', (y) => y.positional('paths', { type: 'string', array: true })).positional, { name: 'paths', spec: { type: 'string', array: true }, variadic: true, required: true }, 'a required positional');
  t.ok(recordDefinition('x [paths..]', (y) => y.positional('paths', { type: 'string', array: true }).option('a', { type: 'boolean' })), 'option and positional');
  for (const c of COMMANDS) t.ok(definitionOf(c), commandName(c));
});

t.test('GIVEN generate, status and apply --dry-run WHEN run by the fast path and by yargs THEN the same output and status', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'nocow-fast-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  for (const argv of [
    ['generate'],
    ['generate', 'tmpfiles', 'user-tmpfiles', '-p', 'libvirt,gnome-boxes'],
    ['generate', 'hook', '-p', 'nope'],
    ['status', '--root', root],
    ['status', '--root', root, '--json', '-p', 'mariadb', '-p', 'postgresql'],
    ['status', '--root', join(root, 'missing')],
    ['apply', '--dry-run', '--root', root],
  ]) {
    t.same(await runMain(argv), await runMain(argv, { fastPath: false }), argv.join(' '));
  }
});

t.test('GIVEN the built nocow WHEN generate and status run THEN neither loads yargs, zod, yaml or execa, and status off Btrfs starts no process', async (t) => {
  const cli = builtCli();
  const dir = await mkdtemp(join(tmpdir(), 'nocow-fast-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const args of [['generate', '-o', join(dir, 'out')], ['status', '--root', dir], ['status', '--root', dir, '--json']]) {
    const trace = join(dir, 'trace');
    const r = await execa('strace', ['-f', '-qq', '-e', 'trace=openat,execve', '-o', trace, 'node', cli, ...args], { reject: false });
    t.equal(r.exitCode, 0, `${args.join(' ')}: ${r.stderr}`);
    const text = await readFile(trace, 'utf8');
    const opened = text.match(/node_modules\/(yargs|zod|yaml|execa|cli-progress)\//g) ?? [];
    t.same([...new Set(opened)], [], `${args[0]}: none of yargs, zod, yaml, execa, cli-progress`);
    // The file system is told by statfs(2) where stat -f names it from a table (src/inspect/inspect.ts); elsewhere stat runs.
    const fstype = (await execa('stat', ['-f', '-c', '%T', dir])).stdout;
    const known = ['btrfs', 'ext2/ext3', 'xfs', 'tmpfs'].includes(fstype);
    if (args[0] === 'status') t.equal(text.match(/execve\(/g)?.length, known ? 1 : 2, `status on ${fstype}: ${known ? 'node alone, no program run' : 'node and stat -f'}`);
  }
});
