// The only place generate touches disk. All files or none: everything is checked first,
// then every directory is made and every file written under a temporary name, and only
// then are the temporary files renamed into place. A failure before the renames removes
// every temporary file and every directory this run made, and leaves one error line.
import { access, constants, lstat, mkdir, open, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { FailedError, UsageError, reasonOf, showArg } from './errors.js';
import type { RenderedFile } from './render/render.js';

/** Suffix of a file being written; a run that was killed leaves it, the next run replaces it. */
export const TEMP_SUFFIX = '.nocow-tmp';

const errno = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;

async function unlinkIfPresent(path: string): Promise<void> {
  await unlink(path).catch((error: unknown) => {
    if (errno(error) !== 'ENOENT') throw error;
  });
}

export async function writeRendered(outDir: string, files: RenderedFile[]): Promise<string[]> {
  const option = `-o ${showArg(outDir)}`;
  const cannot = (path: string, reason: string) => `${option}: cannot write ${showArg(path)}: ${reason}`;
  const entries = files.map((f) => ({ path: join(outDir, f.file), content: f.content, mode: f.executable ? 0o755 : 0o644 }));

  // 1. Check, changing nothing: each directory needed exists as a directory or can be made
  // under one that does; no file to be written is a directory. Never `mkdir -p`: on /proc,
  // Node's recursive mkdir retries ENOENT for ever.
  const missing = new Set<string>();
  const known = new Set<string>();
  const checkDir = async (dir: string, forFile: string): Promise<void> => {
    if (known.has(dir) || missing.has(dir)) return;
    const st = await stat(dir).catch((error: unknown) => error as NodeJS.ErrnoException);
    if (st instanceof Error) {
      const parent = dirname(dir);
      // ENOTDIR: some ancestor is not a directory, which the walk up names.
      if ((st.code === 'ENOENT' || st.code === 'ENOTDIR') && parent !== dir) {
        await checkDir(parent, forFile);
        missing.add(dir);
        return;
      }
      throw new FailedError(cannot(forFile, `${showArg(dir)}: ${reasonOf(st)}`));
    }
    if (!st.isDirectory()) {
      if (resolve(dir) === resolve(outDir)) throw new UsageError(`${option}: exists and is not a directory`);
      throw new UsageError(cannot(forFile, `${showArg(dir)} is not a directory`));
    }
    known.add(dir);
  };
  const replaces = new Set<string>();
  for (const { path } of entries) {
    await checkDir(dirname(path), path);
    // lstat: a symbolic link in the way is replaced itself, as rename does.
    const st = await lstat(path).catch(() => undefined);
    if (st?.isDirectory()) throw new UsageError(cannot(path, 'a directory of that name is in the way'));
    if (st?.isFile()) replaces.add(path);
  }

  // 2. Prepare: directories (parents first, one level at a time) and temporary files,
  // each synced, so a crash after the renames cannot leave an empty file.
  const madeDirs: string[] = [];
  const temps: string[] = [];
  const undo = async (): Promise<void> => {
    for (const temp of temps) await unlinkIfPresent(temp).catch(() => undefined);
    // rmdir only: it cannot remove anything that holds data.
    for (const dir of madeDirs.reverse()) await rmdir(dir).catch(() => undefined);
  };
  const makeDir = async (dir: string, forFile: string): Promise<void> => {
    if (!missing.has(dir)) return;
    await makeDir(dirname(dir), forFile);
    try {
      await mkdir(dir);
    } catch (error) {
      // ENOENT with the parent there: a file system that takes no new directories (/proc).
      const reason = errno(error) === 'ENOENT' ? 'the file system does not allow it' : reasonOf(error);
      throw new FailedError(cannot(forFile, `cannot create directory ${showArg(dir)}: ${reason}`));
    }
    missing.delete(dir);
    madeDirs.push(dir);
  };
  try {
    for (const { path, content, mode } of entries) {
      await makeDir(dirname(path), path);
      if (replaces.has(path)) {
        // An immutable file cannot be replaced; found now, rather than half-way through the renames.
        await access(path, constants.W_OK).catch((error: unknown) => {
          if (errno(error) === 'EPERM' || errno(error) === 'EROFS') throw new FailedError(cannot(path, reasonOf(error)));
        });
      }
      const temp = `${path}${TEMP_SUFFIX}`;
      try {
        await unlinkIfPresent(temp);
        temps.push(temp);
        const handle = await open(temp, 'wx', mode);
        try {
          await handle.writeFile(content);
          await handle.chmod(mode); // the mode given to open is cut by the umask
          await handle.sync();
        } finally {
          await handle.close();
        }
      } catch (error) {
        throw new FailedError(cannot(path, reasonOf(error)));
      }
    }
  } catch (error) {
    await undo();
    throw error;
  }

  // 3. Commit. Each rename is atomic; they can fail only for reasons step 2 did not meet.
  const written: string[] = [];
  for (const [i, { path }] of entries.entries()) {
    try {
      await rename(temps[i]!, path);
    } catch (error) {
      temps.splice(0, i);
      await undo();
      const before = written.length === 0 ? '' : `; ${written.length} file${written.length === 1 ? ' was' : 's were'} written before it (${written.map(showArg).join(', ')})`;
      throw new FailedError(`${cannot(path, reasonOf(error))}${before}`);
    }
    written.push(path);
  }
  return written;
}

/** All files as one stream for stdout, each introduced by a line naming its conventional file. */
export function concatenate(files: RenderedFile[]): string {
  return files.map((f) => `# ==> ${f.file} <==\n${f.content.endsWith('\n') ? f.content : `${f.content}\n`}`).join('\n');
}
