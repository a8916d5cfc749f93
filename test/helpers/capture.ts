// The one way tests capture what a command did: its exit status, stdout and stderr as a `Ran`,
// whether the command is main() in this process, the built CLI as a subprocess, or a command a
// test script runs (`capture LABEL CMD…` writes LABEL.out, .err and .rc, `readRan` reads them back).
import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { main as Main } from '../../src/main.js';
import { builtCli } from './cli.js';

export interface Ran {
  /** The exit status; undefined when the command was killed (the subprocess timeout). */
  rc: number | undefined;
  out: string;
  err: string;
}

type MainOptions = Parameters<typeof Main>[2];

/** main(argv) in this process, what it prints kept instead of written. Imported when first run: loading main is not free. */
export async function runMain(argv: string[], options?: MainOptions): Promise<Ran & { rc: number }> {
  const { main } = await import('../../src/main.js');
  let out = '';
  let err = '';
  const rc = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) }, options);
  return { rc, out, err };
}

let cli: string | undefined;

/**
 * The built CLI as a subprocess, output as written (final newline kept), stdin empty unless given;
 * killed after 20 s (a hang fails the test rather than the run).
 */
export async function runBuilt(args: string[], opts: { input?: string; env?: Record<string, string>; cwd?: string } = {}): Promise<Ran> {
  cli ??= builtCli();
  const { input = '', env, cwd } = opts;
  const r = await execa('node', [cli, ...args], { input, env, cwd, reject: false, timeout: 20_000, stripFinalNewline: false });
  return { rc: r.timedOut ? undefined : r.exitCode, out: r.stdout, err: r.stderr };
}

/** `capture LABEL CMD…` in a test script: runs CMD; its stdout, stderr and exit status in $A/LABEL.out, .err, .rc. */
export const CAPTURE_FN = String.raw`
capture() { label=$1; shift; rc=0; "$@" >"$A/$label.out" 2>"$A/$label.err" || rc=$?; echo $rc >"$A/$label.rc"; }
`;

/** `nocow LABEL ARGS…` in a test script: the built CLI ($CLI) under `capture`. */
export const NOCOW_FN = String.raw`${CAPTURE_FN}
nocow() { label=$1; shift; capture "$label" node "$CLI" "$@"; }
`;

/** What `capture LABEL …` left in dir. */
export async function readRan(dir: string, label: string): Promise<Ran & { rc: number }> {
  const [out, err, rc] = await Promise.all(['out', 'err', 'rc'].map((ext) => readFile(join(dir, `${label}.${ext}`), 'utf8')));
  return { out: out!, err: err!, rc: Number(rc) };
}
