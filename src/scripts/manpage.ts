// npm run build's last step: nocow(1) and the bash and zsh completion scripts, written under dist/
// (dist/man/nocow.1, dist/completions/nocow.bash, dist/completions/_nocow) for the npm package and
// the RPM. The man page is read off the parser main.ts builds (commands, options, their descriptions
// and defaults) and the commands' help (notes, examples, exit statuses), so it cannot drift from --help.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Argv } from 'yargs';
import { valueName, type CommandHelp } from '../cli-options.js';
import { completionScript } from '../commands/completion.js';
import { LOCK_DIR, OPT_OUT_PREFIX } from '../facts.js';
import { buildParser, commandName, COMMANDS, HELP, SUMMARY } from '../main.js';
import { packageVersion } from '../templates.js';

/** What yargs keeps of the options defined, as far as the man page needs it. */
interface YargsOptions {
  key: Record<string, boolean>;
  alias: Record<string, string[]>;
  default: Record<string, unknown>;
  defaultDescription: Record<string, string>;
  choices: Record<string, string[]>;
  boolean: string[];
  string: string[];
  array: string[];
  hiddenOptions: string[];
}

interface Introspectable {
  getOptions(): YargsOptions;
  getGroups(): Record<string, string[]>;
  getInternalMethods(): { getUsageInstance(): { getDescriptions(): Record<string, string>; getPositionalGroupName(): string } };
}

export interface OptionDoc {
  /** "--profile", or the positional's name. */
  name: string;
  /** "-p", "-n": the short forms. */
  short: string[];
  /** What follows the option ("P", "DIR"), null for a boolean. */
  value: string | null;
  describe: string;
  /** "[default: …]", "one of: …", "repeatable"…, as --help shows them. */
  details: string[];
}

export interface CommandDoc {
  name: string;
  /** As yargs has it: "generate [artifacts..]". */
  usage: string;
  describe: string;
  positionals: OptionDoc[];
  options: OptionDoc[];
  help: CommandHelp;
}

/** The options a yargs instance has defined, less those given in `skip` (the global ones). */
function optionDocs(y: Argv, skip: ReadonlySet<string>): { positionals: OptionDoc[]; options: OptionDoc[] } {
  const inner = y as unknown as Introspectable;
  const o = inner.getOptions();
  const usage = inner.getInternalMethods().getUsageInstance();
  const descriptions = usage.getDescriptions();
  const positional = new Set(inner.getGroups()[usage.getPositionalGroupName()] ?? []);
  const aliasesOf = (key: string) => {
    const found = new Set(o.alias[key] ?? []);
    for (const [other, list] of Object.entries(o.alias)) if (list.includes(key)) found.add(other);
    return [...found];
  };
  const positionals: OptionDoc[] = [];
  const options: OptionDoc[] = [];
  for (const key of Object.keys(descriptions)) {
    if (skip.has(key) || o.hiddenOptions.includes(key)) continue;
    const details: string[] = [];
    if (o.choices[key]) details.push(`one of: ${o.choices[key]!.join(', ')}`);
    const fallback = o.defaultDescription[key];
    const value = o.default[key];
    if (fallback !== undefined) details.push(`default: ${fallback}`);
    else if (value !== undefined && value !== false && !(Array.isArray(value) && value.length === 0)) details.push(`default: ${JSON.stringify(value)}`);
    const doc: OptionDoc = {
      name: positional.has(key) ? key : `--${key}`,
      short: aliasesOf(key)
        .filter((a) => a.length === 1)
        .map((a) => `-${a}`),
      value: o.boolean.includes(key) || positional.has(key) ? null : valueName(key),
      describe: descriptions[key]!.replace(/^__yargsString__:/, ''),
      details,
    };
    (positional.has(key) ? positionals : options).push(doc);
  }
  return { positionals, options };
}

/** Every command and the global options, read off the parser main() uses. */
export async function describeCli(): Promise<{ global: OptionDoc[]; commands: CommandDoc[] }> {
  // yargs defines a command's options on the parser itself and takes them away again once the
  // command is parsed: they are read while its builder has just run.
  const found = new Map<string, ReturnType<typeof optionDocs>>();
  let skip = new Set<string>();
  const parser = await buildParser({ io: { out: () => {}, err: () => {} }, onCommand: (name, y) => found.set(name, optionDocs(y, skip)) });
  const global = optionDocs(parser, new Set()).options;
  skip = new Set(global.map((g) => g.name.replace(/^--/, '')));
  const commands: CommandDoc[] = [];
  for (const c of COMMANDS) {
    const name = commandName(c);
    // `COMMAND --help` runs the command's builder (and prints nothing: the output is the callback's).
    await parser.parseAsync([name, '--help'], {}, () => {});
    const docs = found.get(name);
    if (!docs) throw new Error(`the builder of ${name} did not run`);
    commands.push({ name, usage: c.command, describe: c.describe, ...docs, help: c.help });
  }
  return { global, commands };
}

/** Text for roff: backslashes, hyphens (so that options copy as ASCII "-"), leading dots and quotes, and non-ASCII as \[uXXXX]. */
export function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1')
    .replace(/[^\x20-\x7e\n]/gu, (c) => `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`);
}

/** A line that must not be broken (a command line, an option with its value): spaces unbreakable. */
const unbroken = (text: string) => roff(text).replace(/ /g, '\\ ');

/** "generate [artifacts..]" → the synopsis line, in roff. */
function synopsis(usage: string): string {
  const [name, ...args] = usage.split(' ');
  const shown = args.map((a) => {
    const m = /^([[<])(\w[\w-]*)(\.\.)?[\]>]$/.exec(a);
    if (!m) return roff(a);
    const word = `\\fI${roff(m[2]!.toUpperCase())}\\fR${m[3] ? '...' : ''}`;
    return m[1] === '[' ? `[${word}]` : word;
  });
  return `\\fBnocow ${roff(name!)}\\fR ${[...shown, '[\\fIOPTION\\fR...]'].join(' ')}`;
}

function optionLines(doc: OptionDoc): string[] {
  const forms = [...doc.short, doc.name].map((f) => `\\fB${roff(f)}\\fR`).join(', ');
  const tag = doc.name.startsWith('--') ? `${forms}${doc.value ? ` \\fI${roff(doc.value)}\\fR` : ''}` : `\\fI${roff(doc.name.toUpperCase())}\\fR`;
  const details = doc.details.length > 0 ? ` [${doc.details.map(roff).join('; ')}]` : '';
  return ['.TP', tag, `${roff(doc.describe)}${details}`];
}

function helpLines(help: CommandHelp, heading: (title: string) => string): string[] {
  const lines: string[] = [];
  for (const note of help.notes) lines.push('.PP', roff(note));
  if (help.examples.length > 0) {
    lines.push(heading('Examples'));
    for (const [cmd, what] of help.examples) lines.push('.TP', `\\fB${unbroken(cmd)}\\fR`, roff(what));
  }
  lines.push(heading('Exit status'));
  for (const [code, what] of help.exitStatus) lines.push('.TP', `\\fB${code}\\fR`, roff(what));
  return lines;
}

/** nocow(1) in roff (man(7) macros). Deterministic: no date, only the version. */
export function renderManPage(cli: { global: OptionDoc[]; commands: CommandDoc[] }, version: string): string {
  const subheading = (title: string) => `.PP\n\\fI${roff(title)}:\\fR`;
  const lines = [
    `.\\" Generated by src/scripts/manpage.ts from the nocow command line definition; do not edit.`,
    `.TH NOCOW 1 "" "nocow-kit ${roff(version)}" "User Commands"`,
    // Neither hyphenated nor justified: option names and paths stay whole, spaces even.
    '.nh',
    '.ad l',
    '.SH NAME',
    `nocow \\- ${roff(SUMMARY.replace(/^Keep/, 'keep').replace(/\.$/, ''))}`,
    '.SH SYNOPSIS',
    ...cli.commands.flatMap((c) => ['.PP', synopsis(c.usage)]),
    '.PP',
    '\\fBnocow\\fR \\fB\\-\\-help\\fR | \\fB\\-V\\fR',
    '.SH DESCRIPTION',
    ...HELP.notes.flatMap((note) => ['.PP', roff(note)]),
    '.SH OPTIONS',
    'These options are taken by every command:',
    ...cli.global.flatMap(optionLines),
    '.SH COMMANDS',
  ];
  for (const c of cli.commands) {
    lines.push(`.SS "${roff(`nocow ${c.name}`)}"`, synopsis(c.usage), '.PP', roff(c.describe.replace(/$/, '.')));
    if (c.positionals.length > 0) lines.push('.PP', 'Arguments:', '.RS', ...c.positionals.flatMap(optionLines), '.RE');
    if (c.options.length > 0) lines.push('.PP', 'Options:', '.RS', ...c.options.flatMap(optionLines), '.RE');
    lines.push(...helpLines(c.help, subheading));
  }
  lines.push('.SH EXAMPLES');
  for (const [cmd, what] of HELP.examples) lines.push('.TP', `\\fB${unbroken(cmd)}\\fR`, roff(what));
  lines.push('.SH "EXIT STATUS"', 'Each command states its own above; across commands:');
  for (const [code, what] of HELP.exitStatus) lines.push('.TP', `\\fB${code}\\fR`, roff(what));
  const file = (name: string, what: string) => ['.TP', `\\fB${roff(name)}\\fR`, roff(what)];
  lines.push(
    '.SH FILES',
    ...file(
      'FILE of --config FILE',
      'A declaration (YAML or JSON), read only where --config (-c) names it (- reads it from stdin); without one, the built-in --profile (default: libvirt). No configuration file is read otherwise.',
    ),
    ...file(
      `${OPT_OUT_PREFIX}NAME.conf`,
      `The opt-out of the target NAME: masked (ln -s /dev/null ${OPT_OUT_PREFIX}NAME.conf, or an empty file; under --root, in that root), nocow apply and every generated artifact leave that target alone, with one line, and nocow status expects nothing of it; NOCOW_DISABLE=1 opts every target out. NAME is the target's name in the declaration (%nocow_posttrans: its -n, by default the path with / as -). A user-scope target's: ~/.config/user-tmpfiles.d/nocow-NAME.conf or /etc/user-tmpfiles.d/nocow-NAME.conf.`,
    ),
    ...file(
      'nocow-posttrans.spec, nocow-requires.spec, nocow-post-chroot.ks, nocow-post-nochroot.ks, tmpfiles.d/nocow-NAME.conf, user-tmpfiles.d/nocow-NAME.conf, nocow-apply.sh, macros.nocow, systemd/…',
      'What nocow generate -o DIR writes under DIR (without -o, all to stdout). Installed: /usr/lib/tmpfiles.d/nocow-NAME.conf, /usr/share/user-tmpfiles.d/nocow-NAME.conf, /usr/lib/rpm/macros.d/macros.nocow, /usr/libexec/nocow-kit/nocow-apply.sh, /usr/lib/systemd/system/nocow-defrag.timer.',
    ),
    ...file(
      `DIR/${LOCK_DIR}`,
      `The lock every run that changes a target takes: flock(1) on DIR, the directory holding the target (its nearest existing ancestor while it is missing); where flock is missing, the directory ${LOCK_DIR} made in DIR, holding the owner's PID. One lock per directory: runs on other targets and other file systems do not wait.`,
    ),
    ...file('PATH.nocow-new, PATH.nocow-old', 'What an interrupted nocow convert leaves beside PATH; nocow convert PATH clears it.'),
    '.SH ENVIRONMENT',
    '.TP',
    '\\fBNOCOW_DISABLE\\fR',
    roff('Set to 1, it opts every target out: nocow apply (and every generated artifact) does nothing, nocow status expects nothing.'),
    '.TP',
    '\\fBCOLUMNS\\fR',
    roff('The width --help is wrapped to when the output is not a terminal (default 80, at most 100).'),
    '.SH "SEE ALSO"',
    roff('chattr(1), lsattr(1), btrfs-subvolume(8), btrfs-filesystem(8), tmpfiles.d(5), systemd-tmpfiles(8)'),
    '.PP',
    roff('The README and docs/ of nocow-kit describe the declaration format, every artifact and the JSON reports.'),
  );
  return `${lines.join('\n')}\n`;
}

export async function writeDocs(dist: string): Promise<string[]> {
  const files: [string, string][] = [
    [join(dist, 'man', 'nocow.1'), renderManPage(await describeCli(), await packageVersion())],
    [join(dist, 'completions', 'nocow.bash'), await completionScript('bash')],
    [join(dist, 'completions', '_nocow'), await completionScript('zsh')],
  ];
  for (const [path, content] of files) {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content);
  }
  return files.map(([path]) => path);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeDocs(join(dirname(fileURLToPath(import.meta.url)), '..'));
}
