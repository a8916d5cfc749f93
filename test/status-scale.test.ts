// nocow status on many files (src/inspect/inspect.ts: find's list read as it comes, lsattr and filefrag
// in batches, names relative to the target) and the file system told without a process: what it reports
// must be exactly what the tools say, file by file, whatever the names, however many batches it takes.
import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInFs, type FsType } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';
import { NOCOW_FN, readRan } from './helpers/capture.js';

const cli = builtCli();
const P = '/var/lib/libvirt/images';

interface CowFileJson {
  path: string;
  size: number;
  extents: number | null;
}

t.test('GIVEN 3,000 files (names with spaces, a newline, a leading "-", quotes, UTF-8; some with +C; one in a nested subvolume) WHEN status --json runs THEN cowFiles is, file for file, what find, lsattr and filefrag say', async (t) => {
  const a = await mkdtemp(join(tmpdir(), 'nocow-status-scale-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  const run = await runInFs({
    fs: 'btrfs',
    env: { A: a, CLI: cli },
    script: String.raw`${NOCOW_FN}
R=$MNT/root
D=$R${P}
mkdir -p "$D/sub dir"
cd "$D"
# Long names: 3,000 of them take several argument lists of 128 KiB.
i=0
while [ $i -lt 2990 ]; do
  printf 'x' >"sub dir/file-with-a-long-name-to-fill-the-argument-lists-$(printf %04d $i)"
  i=$((i + 1))
done
printf 'a' >'-leading dash'
printf 'b' >'two  spaces '
printf 'c' >"$(printf 'new\nline')"
printf 'd' >"quote'\"s"
printf 'e' >'été 😀'
head -c 1048576 /dev/urandom >big.img
for f in plus-c-1 plus-c-2 plus-c-3; do : >"$f"; chattr +C "$f"; printf 'z' >>"$f"; done
btrfs -q subvolume create nested >/dev/null
printf 'n' >nested/not-this-one
sync
# What the tools say: every regular file on this file system, its flags, its extent count.
find "$D" -xdev -type f -printf '%P\0' | sort -z >"$A/all"
cd /
nocow status status --root "$R" --json
cd "$D"
tr '\0' '\n' <"$A/all" | grep -c '' >"$A/count" || :
xargs -0 lsattr -- <"$A/all" >"$A/lsattr"
xargs -0 filefrag -- <"$A/all" >"$A/filefrag"
`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const read = (name: string) => readFile(join(a, name), 'utf8');
  const status = await readRan(a, 'status');
  t.equal(status.rc, 1, 'deviates: files without +C');
  t.equal(status.err, '');
  const report = JSON.parse(status.out) as { targets: { cowFiles: CowFileJson[] }[] };
  const files = (await read('all')).split('\0').filter(Boolean);
  t.equal(files.length, 2990 + 5 + 1 + 3, 'find saw every file, and none in the nested subvolume');
  // lsattr and filefrag print one line per file, in argument order: walk them by the known names.
  const lsattr = await read('lsattr');
  const filefrag = await read('filefrag');
  const expected: { path: string; extents: number }[] = [];
  const unread: string[] = [];
  let at = 0;
  let fragAt = 0;
  for (const file of files) {
    const space = lsattr.indexOf(' ', at);
    const flags = lsattr.slice(at, space);
    const head = `${file}: `;
    const m = /^(\d+) extents? found\n/.exec(filefrag.slice(fragAt + head.length, fragAt + head.length + 100));
    if (!lsattr.startsWith(`${file}\n`, space + 1) || !filefrag.startsWith(head, fragAt) || !m) {
      unread.push(file);
      break;
    }
    at = space + 1 + file.length + 1;
    fragAt += head.length + m[0].length;
    if (!flags.includes('C')) expected.push({ path: file, extents: Number(m[1]) });
  }
  t.same(unread, [], 'the tools\' own lines read, file by file');
  expected.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  const cow = report.targets[0]!.cowFiles;
  t.equal(cow.length, files.length - 3, 'every file but the three with +C');
  t.strictSame(
    cow.map((c) => ({ path: c.path, extents: c.extents })),
    expected,
    'the same files, in the same order, with the extent counts filefrag gives',
  );
  t.strictSame(cow.find((c) => c.path === 'big.img')?.size, 1048576, 'sizes as find gives them');
  t.ok(cow.some((c) => c.path === 'new\nline') && cow.some((c) => c.path === '-leading dash') && cow.some((c) => c.path === 'été 😀'), 'odd names kept exact');
});

for (const fs of ['btrfs', 'ext4', 'xfs'] as FsType[]) {
  t.test(`GIVEN a root on ${fs} WHEN status runs THEN it names the file system as stat -f -c %T does`, async (t) => {
    const a = await mkdtemp(join(tmpdir(), 'nocow-status-fs-'));
    t.teardown(() => rm(a, { recursive: true, force: true }));
    const run = await runInFs({
      fs,
      env: { A: a, CLI: cli },
      script: String.raw`${NOCOW_FN}
mkdir -p "$MNT/root${P}"
stat -f -c %T "$MNT/root${P}" >"$A/stat"
nocow status status --root "$MNT/root" --json`,
    });
    t.equal(run.exitCode, 0, run.stderr);
    const report = JSON.parse((await readRan(a, 'status')).out) as { targets: { fstype: string }[] };
    t.equal(report.targets[0]!.fstype, (await readFile(join(a, 'stat'), 'utf8')).trim());
  });
}
