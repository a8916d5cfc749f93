// npm run build's last step: nocow(1) and the bash and zsh completion scripts, written under dist/
// (dist/man/nocow.1, dist/completions/nocow.bash, dist/completions/_nocow) for the npm package and
// the RPM. The man page is read off the parser main.ts builds (commands, options, their descriptions
// and defaults) and the commands' help (notes, examples, exit statuses), so it cannot drift from --help.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { valueName, type CommandHelp } from '../cli-options.js';
import { completionScript } from '../commands/completion.js';
import { LOCK_DIR, OPT_OUT_PREFIX } from '../facts.js';
import { commandName, COMMANDS, definitionOf, GLOBAL_OPTIONS, HELP, SUMMARY, TOP_OPTIONS } from '../main.js';
import type { OptionSpec } from '../cli-argv.js';
import { packageVersion } from '../templates.js';

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

/** An option or positional as the man page shows it, from its definition (src/cli-argv.ts). */
function optionDoc(key: string, spec: OptionSpec, positional: boolean): OptionDoc {
  const details: string[] = [];
  if (spec.choices) details.push(`one of: ${spec.choices.join(', ')}`);
  const value = spec.default;
  if (spec.defaultDescription !== undefined) details.push(`default: ${spec.defaultDescription}`);
  else if (value !== undefined && value !== false && !(Array.isArray(value) && value.length === 0)) details.push(`default: ${JSON.stringify(value)}`);
  const aliases = spec.alias === undefined ? [] : typeof spec.alias === 'string' ? [spec.alias] : [...spec.alias];
  return {
    name: positional ? key : `--${key}`,
    short: aliases.filter((a) => a.length === 1).map((a) => `-${a}`),
    value: spec.type === 'boolean' || positional ? null : valueName(key),
    describe: spec.describe ?? '',
    details,
  };
}

/** Every command and the global options, read off the definitions the parser main() uses is built from. */
export async function describeCli(): Promise<{ global: OptionDoc[]; commands: CommandDoc[] }> {
  const global = [...GLOBAL_OPTIONS, ...TOP_OPTIONS].map(([key, spec]) => optionDoc(key, spec, false));
  const commands = COMMANDS.map((c): CommandDoc => {
    const { positional, options } = definitionOf(c);
    return {
      name: commandName(c),
      usage: c.command,
      describe: c.describe,
      positionals: positional ? [optionDoc(positional.name, positional.spec, true)] : [],
      options: [...options].map(([key, spec]) => optionDoc(key, spec, false)),
      help: c.help,
    };
  });
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
      'nocow-posttrans.spec, nocow-requires.spec, nocow-post-chroot.ks, nocow-post-nochroot.ks, tmpfiles.d/nocow-NAME.conf, user-tmpfiles.d/nocow-NAME.conf, nocow-apply.sh, macros.nocow, nocow-NAME.hook, nocow.install, systemd/…, roles/nocow/ (the Ansible role: tasks/main.yml, defaults/main.yml, vars/main.yml, files/nocow-apply.sh)',
      'What nocow generate -o DIR writes under DIR (without -o, all to stdout). Installed: /usr/lib/tmpfiles.d/nocow-NAME.conf, /usr/share/user-tmpfiles.d/nocow-NAME.conf, /usr/lib/rpm/macros.d/macros.nocow, /usr/libexec/nocow-kit/nocow-apply.sh, /usr/share/libalpm/hooks/nocow-NAME.hook, /usr/lib/systemd/system/nocow-defrag.timer.',
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
