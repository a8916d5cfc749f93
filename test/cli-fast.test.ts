// The fast path (src/cli-fast.ts) reads a plain argv without yargs. It must give a command exactly the
// arguments yargs would, or decline: on a corpus of argv, hand-written and generated from each command's
// own options, every argv it takes is one yargs parses without error into the same object.
import t from 'tap';
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildParser, COMMANDS, commandName, fastPathArgs, GLOBAL_OPTIONS, main, type CommandModule } from '../src/main.js';
import { recordDefinition } from '../src/cli-fast.js';
import type { Io } from '../src/io.js';
import { builtCli } from './helpers/cli.js';

const quiet: Io = { out: () => {}, err: () => {} };

/** What yargs hands the command's handler for argv, or the error it stops with. */
async function viaYargs(argv: string[]): Promise<{ args: Record<string, unknown> } | { error: string }> {
  let args: Record<string, unknown> | undefined;
  const parser = await buildParser({
    io: quiet,
    columns: 80,
    runCommand: async (_c, parsed) => {
      args = { ...parsed };
      return 0;
    },
  });
  try {
    await parser.parseAsync(argv, {}, () => {});
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
  const def = recordDefinition(c.command, c.builder)!;
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
  for (const name of ['generate', 'status', 'apply']) {
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

t.test('GIVEN a corpus of argv WHEN the fast path takes one THEN yargs parses it without error into the same arguments', async (t) => {
  const argvs = corpus();
  let taken = 0;
  const disagreements: string[] = [];
  for (const argv of argvs) {
    const word = argv.find((a) => !a.startsWith('-'));
    const c = COMMANDS.find((m) => commandName(m) === word);
    if (!c) continue;
    const fast = fastPathArgs(c, argv);
    if (fast === undefined) continue;
    taken++;
    const slow = await viaYargs(argv);
    if (!('args' in slow)) disagreements.push(`${JSON.stringify(argv)}: the fast path took it, yargs says: ${slow.error}`);
    else if (JSON.stringify(sorted(fast)) !== JSON.stringify(sorted(slow.args))) {
      disagreements.push(`${JSON.stringify(argv)}:\n  fast  ${JSON.stringify(sorted(fast))}\n  yargs ${JSON.stringify(sorted(slow.args))}`);
    }
  }
  t.comment(`${argvs.length} argv, ${taken} taken by the fast path`);
  t.same(disagreements, [], 'no argv the two read differently');
  t.ok(taken > 100, `the fast path takes a good part of the corpus (${taken})`);
});

/** Keys in order, so that two objects compare by content. */
function sorted(args: Record<string, unknown>): [string, unknown][] {
  return Object.keys(args)
    .sort()
    .map((k) => [k, args[k]]);
}

t.test('GIVEN the common invocations WHEN read THEN the fast path takes each, as yargs reads it', async (t) => {
  for (const argv of MUST_TAKE) {
    const fast = fastPathArgs(command(argv[0]!), argv);
    t.ok(fast, `${argv.join(' ')}: taken`);
    const slow = await viaYargs(argv);
    t.strictSame(fast, 'args' in slow ? slow.args : slow, argv.join(' '));
  }
});

t.test('GIVEN help, errors and the unusual WHEN read THEN the fast path leaves them to yargs', async (t) => {
  for (const argv of [
    ['generate', '--help'],
    ['generate', '-h'],
    ['status', '--version'],
    ['generate', 'rpmspec'],
    ['generate', '--frobnicate'],
    ['generate', '-o', 'a', '-o', 'b'],
    ['generate', '-o'],
    ['generate', '-o', '-x'],
    ['generate', '--profile', ''],
    ['status', '--json', 'false'],
    ['status', '--no-json'],
    ['status', 'a', '--', '-b'],
    ['apply', 'extra'],
    ['apply', '-np'],
    ['generate', '-ox'],
    ['-p', 'mariadb', 'generate'],
    ['migrate'],
    ['completion', 'bash'],
  ]) {
    const c = COMMANDS.find((m) => commandName(m) === argv.find((a) => !a.startsWith('-')));
    t.equal(c && ['generate', 'status', 'apply'].includes(commandName(c)) ? fastPathArgs(c, argv) : undefined, undefined, argv.join(' '));
  }
});

t.test('GIVEN a builder that calls anything but option and positional WHEN recorded THEN the command is left to yargs', async (t) => {
  t.equal(recordDefinition('x', (y) => y.option('a', { type: 'string' }).check(() => true)), undefined, '.check');
  t.equal(recordDefinition('x', (y) => y.option('a', { type: 'number' })), undefined, 'a number option');
  t.equal(recordDefinition('x', (y) => y.option('a', { type: 'string', demandOption: true })), undefined, 'demandOption');
  t.equal(recordDefinition('x <paths..>', (y) => y.positional('paths', { type: 'string', array: true })), undefined, 'a required positional');
  t.ok(recordDefinition('x [paths..]', (y) => y.positional('paths', { type: 'string', array: true }).option('a', { type: 'boolean' })), 'option and positional');
});

function capture(): Io & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', out: (s: string) => void (io.stdout += s), err: (s: string) => void (io.stderr += s) };
  return io;
}

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
    const [fast, slow] = [capture(), capture()];
    const codes = [await main(argv, fast), await main(argv, slow, { fastPath: false })];
    t.same({ rc: codes[0], out: fast.stdout, err: fast.stderr }, { rc: codes[1], out: slow.stdout, err: slow.stderr }, argv.join(' '));
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
