// The one way the live commands run a program: the tool environment of the shell library, stdin
// closed, never a rejection (what went wrong is in the result), through node:child_process (execa
// costs about 65 ms to import, and sets each extra stdio entry up at a cost: a filefrag handed 200
// descriptors took 100 ms a call through execa, 15 ms through spawn). And the argument batcher:
// many files per process, each command line well under ARG_MAX.
import type { spawn as Spawn } from 'node:child_process';
import { lstat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

// As the shell library's nocow_init: sbin first, where btrfs and filefrag live on most distributions.
export const TOOL_ENV = { LC_ALL: 'C', PATH: `/usr/sbin:/usr/bin:/sbin:/bin${process.env.PATH ? `:${process.env.PATH}` : ''}` };

/** What a program did. */
export interface ToolRun {
  /** Started, and exited 0. */
  ok: boolean;
  /** Its exit status; null when it could not start or was killed. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Why it could not start, if it could not. */
  spawnError?: NodeJS.ErrnoException;
  /** It is not installed (ENOENT from spawn, the directory it was to run in being there). */
  missing: boolean;
  stdout: string;
  /** All that was kept of it (STDERR_KEPT). */
  stderr: string;
  /** Why it did not end well, in one line: its first line of stderr, or that it was killed, not installed, or its exit status. */
  error: string;
}

export interface RunOptions {
  cwd?: string;
  /** Open descriptors handed to the program as its 3, 4… (src/host/files.ts fdPath). */
  fds?: readonly number[];
  /** Its stdout as it comes, in text (then not in the result). */
  onStdout?: (text: string) => void;
  /** Its stdout is not read. */
  ignoreStdout?: boolean;
}

/** What stderr keeps of a program: enough for its first lines. */
const STDERR_KEPT = 64 * 1024;

// Imported at the first program run: a status of a missing target, or one not on Btrfs, needs none.
let spawner: Promise<typeof Spawn> | undefined;

const exists = (path: string) => lstat(path).then(() => true, () => false);

/** Runs COMMAND ARGS… (TOOL_ENV, stdin closed); never rejects. */
export async function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<ToolRun> {
  const spawn = await (spawner ??= import('node:child_process').then((m) => m.spawn));
  return new Promise((resolve) => {
    const stdio = ['ignore', opts.ignoreStdout ? 'ignore' : 'pipe', 'pipe', ...(opts.fds ?? [])] as ('ignore' | 'pipe' | number)[];
    const child = spawn(command, args, { cwd: opts.cwd, env: { ...process.env, ...TOOL_ENV }, stdio });
    const out: Buffer[] = [];
    const decoder = new StringDecoder('utf8');
    let err = Buffer.alloc(0);
    let spawnError: NodeJS.ErrnoException | undefined;
    child.stdout?.on('data', (chunk: Buffer) => (opts.onStdout ? opts.onStdout(decoder.write(chunk)) : out.push(chunk)));
    child.stderr!.on('data', (chunk: Buffer) => {
      if (err.length < STDERR_KEPT) err = Buffer.concat([err, chunk]);
    });
    child.on('error', (error: NodeJS.ErrnoException) => (spawnError = error));
    child.on('close', async (code, signal) => {
      let cwdThere = true;
      if (spawnError?.code === 'ENOENT' && opts.cwd !== undefined) cwdThere = await exists(opts.cwd);
      if (opts.onStdout) opts.onStdout(decoder.end());
      // ENOENT from spawn: the program, or the directory it was to run in, is not there.
      const missing = spawnError?.code === 'ENOENT' && cwdThere;
      const stderr = err.toString('utf8');
      const reason = spawnError
        ? missing
          ? `${command}: not installed`
          : cwdThere
            ? `${command}: ${spawnError.message}`
            : `${command}: cannot run in ${opts.cwd}: no such directory`
        : signal !== null
          ? `${command} was killed by ${signal}`
          : `${command} failed with exit status ${code}`;
      resolve({
        ok: spawnError === undefined && code === 0,
        exitCode: spawnError ? null : code,
        signal,
        ...(spawnError ? { spawnError } : {}),
        missing,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr,
        // Killed, it has no exit status, and whatever it said before is not why it ended.
        error: (signal === null && stderr.split('\n').find(Boolean)) || reason,
      });
    });
  });
}

/** Like run(), but a failure throws its one line. */
export async function mustRun(command: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(command, args, opts);
  if (!r.ok) throw new Error(r.error);
  return r.stdout;
}

// Well under ARG_MAX (2 MiB on Linux, environment included), so any number of files takes few processes.
const ARGS_BYTES = 128 * 1024;

/** NAMES cut into lists that fit one command line each. */
export function argumentLists(names: readonly string[]): string[][] {
  const lists: string[][] = [];
  let list: string[] = [];
  let bytes = 0;
  for (const name of names) {
    const size = argumentBytes(name);
    if (list.length > 0 && bytes + size > ARGS_BYTES) {
      lists.push(list);
      list = [];
      bytes = 0;
    }
    list.push(name);
    bytes += size;
  }
  if (list.length > 0) lists.push(list);
  return lists;
}

const argumentBytes = (name: string) => Buffer.byteLength(name) + 1;

/**
 * Items gathered into argument lists of at most ARGS_BYTES (their names, NAME), each handed to
 * `run` when full; the runs go one after the other (as xargs runs them), while the caller goes on
 * gathering.
 */
export function batcher<T>(name: (item: T) => string, run: (items: T[], names: string[]) => Promise<void> | void) {
  let items: T[] = [];
  let names: string[] = [];
  let bytes = 0;
  let chain = Promise.resolve();
  const flush = (): void => {
    if (items.length === 0) return;
    const [batch, batchNames] = [items, names];
    items = [];
    names = [];
    bytes = 0;
    chain = chain.then(() => run(batch, batchNames));
  };
  return {
    add(item: T): void {
      const n = name(item);
      const size = argumentBytes(n);
      if (items.length > 0 && bytes + size > ARGS_BYTES) flush();
      items.push(item);
      names.push(n);
      bytes += size;
    },
    /** Runs what is left; resolves when every run has ended. */
    async end(): Promise<void> {
      flush();
      await chain;
    },
  };
}
