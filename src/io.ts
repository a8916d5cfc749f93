// Where a command's output goes (the terminal in the bin, buffers in tests), and the two
// helpers every printed line goes through: control characters escaped, sizes in one unit style.
import { fstatSync, writeSync } from 'node:fs';

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

/**
 * Writes to fd 1 or 2 with write(2) itself, as process.stdout and process.stderr do on Linux for
 * files, pipes and terminals (synchronously), without making those streams: they load Node's stream
 * modules, a few milliseconds of every run. Should a write fail (EAGAIN on a descriptor another
 * process made non-blocking, EPIPE…), this and every later write goes to the stream, which deals
 * with it as it always has.
 */
function descriptorWriter(fd: 1 | 2, stream: () => NodeJS.WriteStream): (text: string) => void {
  let viaStream = false;
  return (text) => {
    if (viaStream) {
      stream().write(text);
      return;
    }
    const bytes = Buffer.from(text);
    let done = 0;
    try {
      while (done < bytes.length) done += writeSync(fd, bytes, done);
    } catch {
      viaStream = true;
      stream().write(bytes.subarray(done));
    }
  };
}

export const processIo: Io = {
  out: descriptorWriter(1, () => process.stdout),
  err: descriptorWriter(2, () => process.stderr),
};

/**
 * Whether stdout is a terminal, without making process.stdout where it cannot be one: only a
 * character device can, and never one of major 1 (/dev/null, /dev/zero…).
 */
export function stdoutIsTerminal(): boolean {
  let st;
  try {
    st = fstatSync(1);
  } catch {
    return false;
  }
  if (!st.isCharacterDevice() || (st.rdev >> 8) % 4096 === 1) return false;
  return process.stdout.isTTY === true;
}

const SHORT: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };

/** Text as a terminal line shows it: every control character (C0, DEL, C1) escaped, `\n` `\t` `\r` or `\uXXXX`. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Where the first byte sequence that is not UTF-8 starts (RFC 3629, as TextDecoder reads it), or -1. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i += 1;
      continue;
    }
    // The lead byte fixes the length and the range of the first continuation byte
    // (which rules out overlong forms, surrogates and code points above U+10FFFF).
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) length = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      length = 3;
      if (b === 0xe0) low = 0xa0;
      if (b === 0xed) high = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      length = 4;
      if (b === 0xf0) low = 0x90;
      if (b === 0xf4) high = 0x8f;
    } else return i;
    for (let k = 1; k < length; k += 1) {
      const c = bytes[i + k];
      if (c === undefined || c < (k === 1 ? low : 0x80) || c > (k === 1 ? high : 0xbf)) return i;
    }
    i += length;
  }
  return -1;
}

/**
 * A name's bytes as text: UTF-8 where they are, each byte that is not as `\xHH` (a string path
 * would hold U+FFFD there, which names another file). Lines still go through printable for control characters.
 */
export function nameText(bytes: Uint8Array): string {
  let text = '';
  let rest = bytes;
  for (let at = firstInvalidUtf8(rest); at >= 0; at = firstInvalidUtf8(rest)) {
    text += `${Buffer.from(rest.subarray(0, at)).toString('utf8')}\\x${rest[at]!.toString(16).padStart(2, '0')}`;
    rest = rest.subarray(at + 1);
  }
  return text + Buffer.from(rest).toString('utf8');
}

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/**
 * A size as every line prints it: bytes below 1 KiB ("512 B"), else the largest binary unit
 * that keeps the number at least 1, with one decimal ("1.0 KiB", "8.0 MiB", "1.5 GiB").
 */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let n = bytes / 1024;
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  // 1023.96 MiB would round to "1024.0 MiB": say 1.0 GiB instead.
  if (Number(n.toFixed(1)) >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(1)} ${UNITS[i]}`;
}

/**
 * Splits a stream of text chunks into whole lines: `push` hands each complete line (without
 * its newline) to `line`, `end` the last one if the text did not end with a newline.
 */
export function lineSplitter(line: (text: string) => void): { push(chunk: string): void; end(): void } {
  let rest = '';
  return {
    push(chunk) {
      const parts = (rest + chunk).split('\n');
      rest = parts.pop()!;
      for (const part of parts) line(part);
    },
    end() {
      if (rest !== '') line(rest);
      rest = '';
    },
  };
}
