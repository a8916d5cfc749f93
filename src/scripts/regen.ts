// npm run regen: rebuild scriptlets/ and kickstart/ from the built-in profiles.
// test/regen.test.ts renders the same layout to a temp dir and compares, so stale files fail the suite.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BUILTIN_PROFILES } from '../declaration/profiles.js';
import { processIo, type Io } from '../io.js';
import { main } from '../main.js';
import { PACKAGE_ROOT } from '../paths.js';

/** Where each built-in profile's artifacts live in the repository. */
export function regenRuns(root: string): { out: string; argv: string[] }[] {
  return Object.keys(BUILTIN_PROFILES)
    .sort()
    .flatMap((profile) => {
      const user = BUILTIN_PROFILES[profile]!.scope === 'user';
      const scriptlets = user ? ['user-tmpfiles'] : ['posttrans', 'tmpfiles', 'hook'];
      const runs = [{ out: join(root, 'scriptlets', profile), argv: ['generate', ...scriptlets, '--profile', profile] }];
      if (!user) runs.push({ out: join(root, 'kickstart', profile), argv: ['generate', 'kickstart', '--profile', profile] });
      return runs;
    })
    // The RPM macros take the path as their argument: one file for every profile.
    .concat([{ out: join(root, 'scriptlets'), argv: ['generate', 'macros'] }])
    .map((run) => ({ ...run, argv: [...run.argv, '-o', run.out] }));
}

export async function regen(root: string, io: Io): Promise<number> {
  await rm(join(root, 'scriptlets'), { recursive: true, force: true });
  await rm(join(root, 'kickstart'), { recursive: true, force: true });
  for (const run of regenRuns(root)) {
    const status = await main(run.argv, io);
    if (status !== 0) return status;
  }
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await regen(PACKAGE_ROOT, processIo);
}
