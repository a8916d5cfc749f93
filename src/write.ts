// The only place generate touches disk: each file written whole (temp + rename), nothing on error before.
import { chmod, mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UsageError } from './errors.js';
import type { RenderedFile } from './render/render.js';

export async function writeRendered(outDir: string, files: RenderedFile[]): Promise<string[]> {
  const existing = await stat(outDir).catch(() => undefined);
  if (existing && !existing.isDirectory()) throw new UsageError(`-o ${outDir}: exists and is not a directory`);
  const written: string[] = [];
  for (const f of files) {
    const path = join(outDir, f.file);
    await mkdir(dirname(path), { recursive: true });
    const temp = `${path}.nocow-tmp`;
    await writeFile(temp, f.content, { mode: f.executable ? 0o755 : 0o644 });
    await chmod(temp, f.executable ? 0o755 : 0o644);
    await rename(temp, path);
    written.push(path);
  }
  return written;
}

/** All files as one stream for stdout, each introduced by a line naming its conventional file. */
export function concatenate(files: RenderedFile[]): string {
  return files.map((f) => `# ==> ${f.file} <==\n${f.content.endsWith('\n') ? f.content : `${f.content}\n`}`).join('\n');
}
