// Runs a bash script against a real file system made on a loop device, inside its own
// private mount namespace: when the script ends, the namespace dies and takes the mount
// (and with it the auto-clearing loop device) along. Nothing is mocked, nothing leaks.
import { execa } from 'execa';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type FsType = 'btrfs' | 'ext4' | 'xfs';

export interface FsRun {
  fs: FsType;
  script: string;
  env?: Record<string, string>;
  /** Two-device btrfs with data and metadata in raid1. */
  raid1?: boolean;
}

const MKFS: Record<FsType, string[]> = {
  btrfs: ['mkfs.btrfs', '-q', '-f'],
  ext4: ['mkfs.ext4', '-q', '-F'],
  xfs: ['mkfs.xfs', '-q', '-f'],
};

// xfsprogs 6 refuses file systems under 300 MiB; images are sparse, so size costs nothing.
const SIZE = 320 * 1024 * 1024;

export async function runInFs(run: FsRun): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-fs-'));
  try {
    const images = run.raid1 ? [join(dir, 'a.img'), join(dir, 'b.img')] : [join(dir, 'fs.img')];
    for (const image of images) {
      await writeFile(image, '');
      await truncate(image, SIZE);
    }
    const mount = run.raid1
      ? `a=$(losetup --find --show ${images[0]}); b=$(losetup --find --show ${images[1]})
         trap 'umount "$MNT" 2>/dev/null; losetup -d "$a" "$b"' EXIT
         mkfs.btrfs -q -f -d raid1 -m raid1 "$a" "$b" >/dev/null
         btrfs device scan "$a" "$b" >/dev/null 2>&1 || :
         mount "$a" "$MNT"`
      : `${MKFS[run.fs].join(' ')} ${images[0]} >/dev/null
         mount -o loop ${images[0]} "$MNT"`;
    const mnt = join(dir, 'mnt');
    const script = `set -euo pipefail\nmkdir -p "$MNT"\n${mount}\n${run.script}`;
    const result = await execa('unshare', ['--mount', '--propagation', 'private', 'bash', '-c', script], {
      env: { ...run.env, MNT: mnt },
      reject: false,
    });
    return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode ?? -1 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
