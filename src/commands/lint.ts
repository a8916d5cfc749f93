// nocow lint FILE…: mount options and image definitions that do not do what they say: a subvolume
// mount's nodatacow (only the first mount's options apply to the whole file system), nodatacow with
// compress, NOCOW on a redundant data profile. Reads fstab files, kickstart files, systemd .mount
// units, repart.d definitions and mkosi configuration; changes nothing.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import { UsageError, reasonOf, showArg } from '../errors.js';
import { printable, type Io } from '../io.js';
import { jsonOption, type CommandHelp } from '../cli-options.js';
import { FORMATS, type Format } from '../lint/types.js';

const command = 'lint <files..>';
const describe = 'Find mount options and image definitions where nodatacow does nothing or costs what it should not';

const help: CommandHelp = {
  notes: [
    'It reads fstab files, kickstart files, systemd .mount units, repart.d definitions and mkosi configuration, and changes nothing. ' +
      'It reports, one line each, FILE:LINE, what is wrong and the fix: nodatacow on a mount other than the first of its file system ' +
      '(only the first mount\'s options apply to the whole file system, so a subvolume\'s nodatacow does nothing, and is never per subvolume); ' +
      'nodatacow with compress on the same mount (they exclude each other); nodatacow, chattr +C or a repart Subvolumes=…:nodatacow where the ' +
      'file states a redundant data profile (kickstart --data=raid1, mkfs -d raid1), which NOCOW takes the repair checksums from.',
    'The mounts of all the FILEs given are read together: an fstab and the .mount units beside it are checked as one system. ' +
      'A file system\'s first mount is its mount nearest the root (/ before /home). Silent when nothing is found.',
    'The format comes from the name (fstab, *.fstab; *.ks, *.cfg; *.mount; *.conf in repart.d/ or mkosi.repart/; mkosi.conf, ' +
      'mkosi.conf.d/*.conf), else from the content; --format names it for every FILE.',
  ],
  examples: [
    ['nocow lint /etc/fstab', 'Does a subvolume mount carry a nodatacow that does nothing?'],
    ['nocow lint /etc/fstab /etc/systemd/system/*.mount', 'fstab and mount units, as one set of mounts'],
    ['nocow lint --format kickstart anaconda-ks.txt', 'A kickstart file whose name does not say so'],
    ['nocow lint --json mkosi.conf mkosi.repart/*.conf', 'An mkosi project, as JSON'],
  ],
  exitStatus: [
    [0, 'nothing found'],
    [1, 'something found (one line each on stdout)'],
    [2, 'bad arguments, a FILE that cannot be read, or one whose format is unknown'],
  ],
};

/** --format: one of FORMATS, given once. */
function formatOption(value: string | string[]): Format {
  const values = Array.isArray(value) ? value : [value];
  if (values.length > 1) throw new UsageError(`--format given twice (${values.map(showArg).join(', ')}): name one format`);
  const format = FORMATS.find((f) => f === values[0]);
  if (format === undefined) throw new UsageError(`--format ${showArg(values[0]!)}: unknown format; expected one of: ${FORMATS.join(', ')}`);
  return format;
}

function builder(yargs: Argv) {
  const withFiles = yargs
    .positional('files', {
      describe: 'The files to check',
      type: 'string',
      array: true,
      // Required: no "[default: []]" in --help.
      default: undefined,
    })
    .option('format', { describe: `Read every FILE as this format: ${FORMATS.join(', ')}`, type: 'string', requiresArg: true, coerce: formatOption, defaultDescription: 'from each name, else its content' });
  return jsonOption(withFiles, 'Print the findings as one JSON object (schema version 1)');
}

type LintArgs = ArgsOf<typeof builder>;

async function run(args: LintArgs, io: Io): Promise<number> {
  const [{ readFile }, { detectFormat, parseAs }, { lint }] = await Promise.all([import('node:fs/promises'), import('../lint/detect.js'), import('../lint/rules.js')]);
  const files = [...new Set(args.files ?? [])];
  // Every file read and recognised before anything is printed: a bad one is one line, and no report.
  const parsed = [];
  for (const file of files) {
    if (file === '-') throw new UsageError('- (stdin): nocow lint reads named files only; give the file, with --format if its name does not tell');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new UsageError(`${showArg(file)}: ${reasonOf(error)}`);
    }
    const format = args.format ?? detectFormat(file, text);
    if (format === undefined) throw new UsageError(`${showArg(file)}: cannot tell its format from its name or content; give --format ${FORMATS.join('|')}`);
    parsed.push(parseAs(format, file, text));
  }
  const findings = lint(parsed);
  if (args.json) io.out(`${JSON.stringify({ version: 1, findings: findings.map(({ file, line, rule, message, fix }) => ({ file, line, rule, message, fix })) })}\n`);
  else for (const f of findings) io.out(`${printable(f.file)}:${f.line}: ${printable(f.message)}; fix: ${printable(f.fix)}\n`);
  return findings.length > 0 ? 1 : 0;
}

export default defineCommand({ command, describe, help, builder, run });
