// The built CLI, for scripts that run it inside a test's mount namespace. `npm test`
// builds dist/ once before tap starts; running one test file alone needs `npm run build`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..');
export const NOCOW_BIN = join(REPO, 'dist', 'bin', 'nocow.js');

/** Fails loudly rather than test yesterday's build. */
export function builtCli(): string {
  const built = statSync(NOCOW_BIN, { throwIfNoEntry: false })?.mtimeMs;
  const sources = readdirSync(join(REPO, 'src'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  const newest = Math.max(...sources.map((e) => statSync(join(e.parentPath, e.name)).mtimeMs));
  if (built === undefined || built < newest) throw new Error(`${NOCOW_BIN} is missing or older than src/: run npm run build (npm test does)`);
  return NOCOW_BIN;
}
