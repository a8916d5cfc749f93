// nocow completion [bash|zsh]: the shell completion script, yargs' own. The script asks the nocow
// command for its completions (`nocow --get-yargs-completions WORDS…`), so the commands and options
// it offers are always those of the installed parser, never a copy that could drift.
import type { Argv } from 'yargs';
import { defineCommand, type ArgsOf } from '../cli-command.js';
import type { Io } from '../io.js';
import type { CommandHelp } from '../cli-options.js';

export const SHELLS = ['bash', 'zsh'] as const;
export type Shell = (typeof SHELLS)[number];

const command = 'completion [shell]';
const describe = 'Print the bash or zsh completion script';

const help: CommandHelp = {
  notes: [
    'The script completes commands, options and artifact names by asking nocow itself, so it always matches the installed version. ' +
      'Packages install it (bash: /usr/share/bash-completion/completions/nocow, zsh: /usr/share/zsh/site-functions/_nocow); ' +
      'npm install -g does not, so add it by hand there.',
  ],
  examples: [
    ['source <(nocow completion bash)', 'Completion in this bash session (add the line to ~/.bashrc to keep it)'],
    ['nocow completion bash >~/.local/share/bash-completion/completions/nocow', 'For your user, loaded on demand by bash-completion'],
    ['nocow completion zsh >"${fpath[1]}/_nocow"', 'For zsh: a directory of $fpath, then compinit'],
  ],
  exitStatus: [
    [0, 'the script printed'],
    [2, 'bad arguments (a shell other than bash or zsh)'],
  ],
};

function builder(yargs: Argv) {
  return yargs.positional('shell', {
    describe: 'The shell to complete in',
    choices: SHELLS,
    defaultDescription: 'zsh when $SHELL is zsh, else bash',
  });
}

type CompletionArgs = ArgsOf<typeof builder>;

async function run(args: CompletionArgs, io: Io): Promise<number> {
  const shell = args.shell ?? (/(^|\/)zsh$/.test(process.env.SHELL ?? '') ? 'zsh' : 'bash');
  io.out(await completionScript(shell));
  return 0;
}

/**
 * yargs' completion script for SHELL. yargs picks the template, and later the form of its answers
 * (zsh: "word:description", bash: "word"), by $SHELL and $ZSH_NAME; so the script is made with
 * those set for SHELL, and it sets $SHELL itself when it calls nocow, so that a bash started from
 * a zsh login (or the reverse) gets answers it can read.
 */
export async function completionScript(shell: Shell): Promise<string> {
  const { default: yargs } = await import('yargs');
  const saved = { SHELL: process.env.SHELL, ZSH_NAME: process.env.ZSH_NAME };
  process.env.SHELL = `/bin/${shell}`;
  delete process.env.ZSH_NAME;
  let script = '';
  try {
    yargs()
      .scriptName('nocow')
      .exitProcess(false)
      .completion('completion', false)
      .parse(['completion'], {}, (_error, _argv, output) => {
        script = output;
      });
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
  // Where the script runs nocow for its answers: there, say which shell asks.
  const call = shell === 'zsh' ? 'COMP_CWORD=' : 'nocow --get-yargs-completions';
  const parts = script.split(call);
  if (parts.length !== 2) throw new Error(`yargs' ${shell} completion script has changed: "${call}" is not in it once`);
  return `${parts[0]}SHELL=${shell} ZSH_NAME= ${call}${parts[1]}\n`;
}

export default defineCommand({ command, describe, help, builder, run });
