// Errors the user can act on: printed as their message alone (one line per problem), the process
// exiting with the error's own exitStatus. main.ts reads that property, not the class: a module
// bundled apart from the core (esbuild.config.mjs) has its own copy of each class, so instanceof
// would miss errors thrown there.
export class NocowError extends Error {
  constructor(
    message: string,
    /** The exit status of a run that ends with this error: 2 bad usage or declaration, 1 failed. */
    readonly exitStatus: number,
    readonly problems: string[] = [message],
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A mistake in the arguments or the declaration: nothing is done, exit status 2. */
export class UsageError extends NocowError {
  constructor(message: string, problems: string[] = [message]) {
    super(message, 2, problems);
  }
}

/** Something the command could not do (a file it could not write…): one line, exit status 1. */
export class FailedError extends NocowError {
  constructor(message: string) {
    super(message, 1);
  }
}

/** The exit status ERROR asks for: its own (a NocowError, whichever copy of the class), else 1. */
export function exitStatusOf(error: unknown): number {
  const status = (error as { exitStatus?: unknown } | null | undefined)?.exitStatus;
  return typeof status === 'number' ? status : 1;
}

// What an errno means, in the words of strerror(3), kept short; a hint where the cause is usually one thing.
const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted (immutable?)',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EEXIST: 'already exists',
  ENOENT: 'no such file or directory',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  EIO: 'input/output error',
  EMLINK: 'too many links',
  EBUSY: 'device or resource busy',
  ETXTBSY: 'text file busy',
  EFBIG: 'file too large',
  EINVAL: 'invalid argument',
  ENOTSUP: 'operation not supported',
  EOPNOTSUPP: 'operation not supported',
  EXDEV: 'on another file system',
};

/** The reason of a failed system call in words ("permission denied"), without Node's "CODE: …, syscall 'path'" frame. */
export function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code && Object.hasOwn(REASONS, code)) return REASONS[code]!;
  const message = error instanceof Error ? error.message : String(error);
  // "EXYZ: some words, open '/x'" → "some words"
  return message.replace(/^E[A-Z]+: /, '').replace(/, \w+ '.*'$/s, '') || code || 'unknown error';
}

/**
 * A value from the command line as an error line shows it: as typed when it is plain
 * printable text, else JSON-quoted (empty, blanks at either end, control characters,
 * U+FFFD from bytes that were not UTF-8), so the line stays one terminal-safe line.
 */
export function showArg(value: string): string {
  if (value !== '' && !/^\s|\s$|[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufffd"]/.test(value)) return value;
  return JSON.stringify(value).replace(/[\u007f-\u009f\u2028\u2029\ufffd]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Node decodes argv as UTF-8 and turns bytes that are not UTF-8 into U+FFFD: a directory
 * named so would be another directory than the one given, so such a value is refused.
 */
export function exactPath(option: string, value: string): string {
  // An empty path would resolve to the current directory: never a default in disguise.
  if (value === '') throw new UsageError(`${option} "": an empty path names nothing (write . for the current directory)`);
  if (value.includes('\ufffd')) {
    throw new UsageError(`${option} ${showArg(value)}: not valid UTF-8 (or contains U+FFFD); give a path whose name is UTF-8`);
  }
  return value;
}

/** What a live command refuses to work on, or could not do to one file, in one line (src/host/targets.ts, nocow migrate). */
export class TargetError extends FailedError {}
