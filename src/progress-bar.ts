// The progress bar nocow migrate and nocow revert draw on a terminal (cli-progress).
import { printable, size } from './io.js';

export interface Bar {
  setFile(path: string): void;
  add(bytes: number): void;
  tick(): Promise<void>;
  clear(): void;
  stop(): void;
}

/** A progress bar with throughput on a terminal; nothing when stderr is not one. */
export async function progressBar(total: number, firstFile: string): Promise<Bar | undefined> {
  if (!process.stderr.isTTY || total === 0) return undefined;
  const { SingleBar, Presets } = await import('cli-progress');
  const started = Date.now();
  let done = 0;
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {percentage}% | {done}/{all} | {speed}/s | {file}',
      hideCursor: true,
      clearOnComplete: true,
    },
    Presets.shades_classic,
  );
  const payload = (file?: string) => ({
    done: size(done),
    all: size(total),
    speed: size(Math.round(done / Math.max((Date.now() - started) / 1000, 0.001))),
    ...(file === undefined ? {} : { file: printable(file) }),
  });
  bar.start(total, 0, payload(firstFile));
  return {
    setFile: (file) => bar.update(done, payload(file)),
    add: (bytes) => {
      done += bytes;
      bar.update(done, payload());
    },
    tick: () => new Promise((resolve) => setImmediate(resolve)),
    clear: () => process.stderr.write('\r\x1b[K'),
    stop: () => bar.stop(),
  };
}

