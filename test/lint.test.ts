// nocow lint (src/lint/, src/commands/lint.ts): each format's parser on its own, then the built CLI
// on a corpus of realistic files (test/fixtures/lint/: clean ones silent with status 0, bad ones
// one line per finding with its FILE:LINE, status 1), its errors (one line, status 2, nothing
// printed or changed), and the two kernel facts its rules rest on, shown on a real Btrfs.
import t from 'tap';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fsKey, iniSettings, mkfsDataProfile, quotedWords, shellWords } from '../src/lint/text.js';
import { fstabField, parseFstab } from '../src/lint/fstab.js';
import { parseKickstart } from '../src/lint/kickstart.js';
import { parseMountUnit, parseRepart, repartDefinition, unitPath } from '../src/lint/systemd.js';
import { mkosiProject, parseMkosi } from '../src/lint/mkosi.js';
import { detectFormat } from '../src/lint/detect.js';
import { lint } from '../src/lint/rules.js';
import { runBuilt } from './helpers/capture.js';
import { builtCli } from './helpers/cli.js';
import { runInFs, section } from './helpers/fs.js';

const CORPUS = join(import.meta.dirname, 'fixtures', 'lint');
const nocow = (args: string[]) => runBuilt(['lint', ...args], { cwd: CORPUS, env: { COLUMNS: '80' } });

const NOCOW_FIX = 'drop nodatacow and make the directory NOCOW itself: chattr +C on it while it is empty, or declare it for nocow generate / nocow apply';
const REDUNDANT_FIX = (what: string) =>
  `drop ${what} and declare the directory for nocow generate / nocow apply with redundancy: keep-checksums (the default), which leaves it copy-on-write on a redundant profile, or choose a single data profile`;

/** The files under DIR (relative to the corpus), sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(join(CORPUS, dir), { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(CORPUS.length + 1))
    .sort();
}

/** `FILE:LINE rule` of each finding, from --json. */
async function where(files: string[]): Promise<string[]> {
  const r = await nocow(['--json', ...files]);
  const report = JSON.parse(r.out) as { version: number; findings: { file: string; line: number; rule: string }[] };
  return report.findings.map((f) => `${f.file}:${f.line} ${f.rule}`);
}

t.test('GIVEN the words of each format WHEN split THEN quotes, escapes, comments and continuations are read as the tools read them', async (t) => {
  t.same(shellWords(`btrfs / --subvol --name=root --fsoptions="subvol=a b,nodatacow" 'x y' z\\ w # comment`), ['btrfs', '/', '--subvol', '--name=root', '--fsoptions=subvol=a b,nodatacow', 'x y', 'z w']);
  t.same(shellWords('part /x --fsoptions "a\\"b"'), ['part', '/x', '--fsoptions', 'a"b']);
  t.same(quotedWords('/a:nodatacow "/b c":ro'), ['/a:nodatacow', '/b c:ro']);
  t.same(quotedWords('"/path/with:colon":"zstd:1,noatime"', ':'), ['/path/with:colon', 'zstd:1,noatime']);
  t.same(quotedWords('/srv', ':'), ['/srv']);
  t.same(
    iniSettings('# c\n[Mount]\nOptions=a,\\\n   b\nWhat = /dev/x \n; other\n[Install]\nWantedBy=x\n'),
    [
      { line: 3, section: 'Mount', key: 'Options', value: 'a, b' },
      { line: 5, section: 'Mount', key: 'What', value: '/dev/x' },
      { line: 8, section: 'Install', key: 'WantedBy', value: 'x' },
    ],
    'a continued line starts where it starts, the backslash read as one blank',
  );
  t.equal(fstabField('/srv/virtual\\040machines'), '/srv/virtual machines', 'fstab octal escapes undone (src/host/mounts.ts decodeField)');
  t.equal(fstabField('/srv/caf\\351'), '/srv/caf\\xe9', 'a byte that is not UTF-8 shown as \\xHH, not as U+FFFD');
  t.equal(fsKey('UUID=0E7A-B1'), fsKey('/dev/disk/by-uuid/0e7a-b1'), 'one key for UUID= and its by-uuid path, case aside');
  t.equal(fsKey('LABEL="data"'), fsKey('/dev/disk/by-label/data'));
  t.not(fsKey('LABEL=Data'), fsKey('LABEL=data'), 'labels keep their case');
  t.same(mkfsDataProfile(['-d', 'RAID1', '-m', 'raid1']), { profile: 'raid1', said: '-d RAID1' });
  t.same(mkfsDataProfile(['--data=dup']), { profile: 'dup', said: '--data=dup' });
  t.same(mkfsDataProfile(['-draid10']), { profile: 'raid10', said: '-draid10' });
  t.equal(mkfsDataProfile(['-m', 'dup', '--nodiscard']), undefined, 'a metadata profile is no data profile');
  t.equal(unitPath('/etc/systemd/system/var-lib-libvirt-images.mount'), '/var/lib/libvirt/images');
  t.equal(unitPath('srv-vm\\x2dimages.mount'), '/srv/vm-images');
  t.equal(unitPath('-.mount'), '/');
  t.equal(repartDefinition('repart.d/10-root.conf.d/nocow.conf'), 'repart.d/10-root.conf');
  t.equal(mkosiProject('p/mkosi.repart/10-root.conf.d/nocow.conf'), 'p');
  t.equal(mkosiProject('mkosi.conf'), '.');
  t.equal(mkosiProject('etc/fstab'), undefined);
});

t.test('GIVEN one file of each format WHEN parsed THEN the Btrfs mounts, data profiles and NOCOW requests come out with their lines', async (t) => {
  const fstab = parseFstab('f', '# c\n\nUUID=a / btrfs subvol=@ 0 0\n/dev/sda1 /boot ext4 defaults 1 2\nUUID=a /v\\040m btrfs\n');
  t.same(
    fstab.mounts.map((m) => [m.line, m.point, m.options]),
    [
      [3, '/', ['subvol=@']],
      [5, '/v m', ['defaults']],
    ],
    'Btrfs lines only; options default to defaults',
  );
  const ks = parseKickstart(
    'k',
    [
      'btrfs none --data raid1 --label=pool btrfs.01 btrfs.02',
      'btrfs / --subvol --name=root pool',
      'btrfs /db --subvol --name=db LABEL=pool --fsoptions="nodatacow"',
      'logvol /srv --vgname=vg --name=srv --fstype=btrfs --fsoptions=compress=zstd',
      'part /x --fstype=ext4 --fsoptions=nodatacow',
      '%post',
      'chattr -R +C /db',
      '# chattr +C /commented',
      '%end',
      '%post --nochroot',
      '# Generated by nocow-kit 0.1.0 from profile:mariadb. Do not edit.',
      'chattr +C -- "$d"',
      '%end',
    ].join('\n'),
  );
  t.same(
    ks.mounts.map((m) => [m.line, m.point, m.options]),
    [
      [4, '/srv', ['compress=zstd']],
      [2, '/', ['subvol=root']],
      [3, '/db', ['subvol=db', 'nodatacow']],
    ],
    'subvolumes after their volume, named by label or LABEL=; no ext4',
  );
  t.equal(ks.mounts[1]!.fs, ks.mounts[2]!.fs, 'both subvolumes of one volume');
  t.same(ks.profiles.map((p) => [p.line, p.profile, p.said]), [[1, 'raid1', '--data=raid1']]);
  t.same(ks.requests.map((r) => r.line), [7], "chattr +C in %post, not in a comment, not in nocow-kit's own section");
  const unit = parseMountUnit('/etc/systemd/system/srv-vm.mount', '[Mount]\nWhat=LABEL=d\nOptions=subvol=vm,nodatacow\n');
  t.same(unit.mounts.map((m) => [m.line, m.point, m.fs]), [[3, '/srv/vm', fsKey('LABEL=d')]], 'no Type= but Btrfs options; Where= from the name');
  t.same(parseMountUnit('x.mount', '[Mount]\nWhat=/dev/sdb1\nType=ext4\nOptions=nodatacow\n').mounts, [], 'another file system type: nothing');
  const repart = parseRepart('r/10-root.conf', '[Partition]\nFormat=btrfs\nSubvolumes=/a:nodatacow "/b c":ro,nodatacow /d\nMountPoint=/:compress=zstd\n', 's');
  t.same(repart.requests.map((r) => r.what), ['Subvolumes=/a:nodatacow', 'Subvolumes=/b c:nodatacow']);
  t.same(repart.mounts.map((m) => [m.line, m.point, m.options]), [[4, '/', ['compress=zstd']]]);
  t.same(parseRepart('r/x.conf', '[Partition]\nFormat=ext4\nMountPoint=/:nodatacow\n', 's'), { mounts: [], profiles: [], requests: [] });
  const mkosi = parseMkosi('mkosi.conf', '[Content]\nKernelCommandLine=quiet "rootflags=subvol=@,nodatacow"\n[Build]\nEnvironment=A=1 SYSTEMD_REPART_MKFS_OPTIONS_BTRFS="-d raid1"\n', 'p');
  t.same(mkosi.mounts.map((m) => [m.line, m.point, m.options]), [[2, '/', ['subvol=@', 'nodatacow']]]);
  t.same(mkosi.profiles.map((p) => [p.line, p.profile, p.scope]), [[4, 'raid1', 'p']]);
  const reset = parseMkosi('mkosi.conf', '[Content]\nKernelCommandLine=rootflags=nodatacow\nKernelCommandLine=\nKernelCommandLine=quiet rootflags=ro rootflags=compress=zstd\n', 'p');
  t.same(reset.mounts.map((m) => [m.line, m.options]), [[4, ['compress=zstd']]], 'an empty assignment empties the list; the last rootflags= counts');
});

t.test('GIVEN file names and contents WHEN the format is told THEN the name decides first, else the content, else none', async (t) => {
  const cases: [string, string, string | undefined][] = [
    ['/etc/fstab', '', 'fstab'],
    ['host.fstab', '', 'fstab'],
    ['anaconda-ks.cfg', '', 'kickstart'],
    ['server.ks', '', 'kickstart'],
    ['srv.mount', '', 'mount'],
    ['/usr/lib/repart.d/10-root.conf', '', 'repart'],
    ['mkosi.repart/10-root.conf.d/nocow.conf', '', 'repart'],
    ['mkosi.conf', '', 'mkosi'],
    ['mkosi.conf.d/10-x.conf', '', 'mkosi'],
    ['a.conf', '[Partition]\nFormat=btrfs\n', 'repart'],
    ['a.conf', '[Mount]\nWhat=x\n', 'mount'],
    ['a.conf', '[Output]\nFormat=disk\n', 'mkosi'],
    ['a.conf', '[Journal]\nStorage=auto\n', undefined],
    ['notes', 'text\nlang en_US\n%post\n%end\n', 'kickstart'],
    ['table', 'UUID=x /home btrfs subvol=home 0 0\n', 'fstab'],
    ['notes.txt', 'Put nodatacow on the subvolume.\n', undefined],
  ];
  for (const [file, text, format] of cases) t.equal(detectFormat(file, text), format, `${file}: ${format}`);
});

t.test('GIVEN mounts of one file system WHEN the rules run THEN the first mount is the one nearest the root, and only its nodatacow counts', async (t) => {
  const fstab = parseFstab('f', 'UUID=a /home btrfs subvol=home,nodatacow\nUUID=a / btrfs subvol=@\nUUID=a /var btrfs subvol=var,nodatacow\n');
  t.same(
    lint([fstab]).map((f) => `${f.line} ${f.rule}`),
    ['1 later-mount', '3 later-mount'],
    '/ mounts before /home though listed after it',
  );
  const both = parseFstab('f', 'UUID=a / btrfs nodatacow\nUUID=a /var btrfs subvol=var,nodatacow\n');
  t.same(lint([both]), [], 'a later nodatacow on a file system the first mount already makes nodatacow: nothing to say');
  const undone = parseFstab('f', 'UUID=a / btrfs nodatacow,compress\nUUID=a /v btrfs subvol=v,nodatacow\n');
  t.same(lint([undone]).map((f) => `${f.line} ${f.rule}`), ['1 nodatacow-compress', '2 later-mount'], "the first mount's compress undoes its nodatacow");
});

t.test('GIVEN the clean corpus WHEN linted, each file alone and all together THEN nothing is printed and the status is 0', async (t) => {
  const files = await filesUnder('clean');
  t.ok(files.length >= 8, files.join(' '));
  for (const file of files) t.same(await nocow([file]), { rc: 0, out: '', err: '' }, file);
  t.same(await nocow(files), { rc: 0, out: '', err: '' }, 'all together');
  t.same(await nocow(['--json', ...files]), { rc: 0, out: '{"version":1,"findings":[]}\n', err: '' }, '--json');
});

t.test('GIVEN the bad fstab WHEN linted THEN one line per finding, FILE:LINE first, status 1', async (t) => {
  const later = (line: number, point: string, fs: string) =>
    `bad/fstab:${line}: nodatacow on ${point} does nothing: ${fs} is first mounted at / (line 4), and only the first mount's options apply to the whole file system; fix: ${NOCOW_FIX}\n`;
  t.same(await nocow(['bad/fstab']), {
    rc: 1,
    err: '',
    out:
      later(8, '/var/lib/libvirt/images', 'UUID=0E7A5C2D-4B18-4F9E-A3C6-58D1F2B9E074') +
      later(9, '/var/lib/mysql', '/dev/disk/by-uuid/0e7a5c2d-4b18-4f9e-a3c6-58d1f2b9e074') +
      later(10, '/srv/virtual machines', 'UUID=0e7a5c2d-4b18-4f9e-a3c6-58d1f2b9e074') +
      `bad/fstab:13: nodatacow on the mount of subvolume @data is not per subvolume: as the first mount of LABEL=data it turns off copy-on-write, checksums and compression for the whole file system, and after another mount of it it does nothing; fix: ${NOCOW_FIX}\n` +
      'bad/fstab:13: nodatacow and compress=zstd exclude each other: the one given last wins, so compress=zstd does nothing; fix: keep compress=zstd for the file system and make only the directories that need it NOCOW: chattr +C, or declare them for nocow generate / nocow apply\n',
  });
});

t.test('GIVEN the other bad files WHEN linted THEN each finding names its FILE:LINE and rule', async (t) => {
  t.same(await where(['bad/server.ks']), ['bad/server.ks:14 later-mount', 'bad/server.ks:15 nodatacow-compress', 'bad/server.ks:15 redundant-profile', 'bad/server.ks:25 redundant-profile']);
  const ks = (await nocow(['bad/server.ks'])).out.split('\n');
  t.equal(ks[3], `bad/server.ks:25: chattr +C on a raid1 data profile (--data=raid1, line 12) drops the checksums raid1 needs to repair a bad copy from a good one; fix: ${REDUNDANT_FIX('chattr +C')}`);
  t.equal(ks[2], `bad/server.ks:15: nodatacow on a dup data profile (-d dup, line 15) drops the checksums dup needs to repair a bad copy from a good one; fix: ${REDUNDANT_FIX('nodatacow')}`, "the part's own profile, not the pool's");
  t.same(await where(['bad/var-lib-libvirt-images.mount']), ['bad/var-lib-libvirt-images.mount:9 subvolume-mount'], 'alone, a subvolume mount unit');
  t.same(await where(['bad/repart.d/10-root.conf']), ['bad/repart.d/10-root.conf:10 later-mount']);
  t.same(await where(['bad/mkosi/mkosi.conf']), ['bad/mkosi/mkosi.conf:10 nodatacow-compress'], 'rootflags=nodatacow,compress=zstd: compress wins, so no NOCOW to meet the dup profile');
  t.same(
    await where(['bad/mkosi/mkosi.repart/10-root.conf']),
    [],
    'the repart definition alone states no data profile',
  );
  const project = await nocow(['bad/mkosi/mkosi.conf', 'bad/mkosi/mkosi.repart/10-root.conf']);
  t.equal(project.rc, 1);
  t.equal(
    project.out.split('\n')[1],
    `bad/mkosi/mkosi.repart/10-root.conf:5: Subvolumes=/var/lib/libvirt/images:nodatacow on a dup data profile (--data=dup, bad/mkosi/mkosi.conf:14) drops the checksums dup needs to repair a bad copy from a good one; fix: ${REDUNDANT_FIX('Subvolumes=/var/lib/libvirt/images:nodatacow')}`,
    "with its mkosi.conf, the project's profile meets the repart subvolume",
  );
});

t.test('GIVEN an fstab and a .mount unit of the same file system WHEN linted together THEN the unit is a later mount of the fstab\'s', async (t) => {
  const r = await nocow(['bad/fstab', 'bad/var-lib-libvirt-images.mount']);
  t.equal(r.rc, 1);
  t.equal(
    r.out.split('\n')[5],
    `bad/var-lib-libvirt-images.mount:9: nodatacow on /var/lib/libvirt/images does nothing: UUID=0e7a5c2d-4b18-4f9e-a3c6-58d1f2b9e074 is first mounted at / (bad/fstab:4), and only the first mount's options apply to the whole file system; fix: ${NOCOW_FIX}`,
  );
});

/** Each corpus file's bytes and times, to show a run changed none. */
async function snapshot(): Promise<string[]> {
  const files = [...(await filesUnder('clean')), ...(await filesUnder('bad'))];
  return Promise.all(
    files.map(async (f) => {
      const s = await stat(join(CORPUS, f));
      return `${f} ${createHash('sha256').update(await readFile(join(CORPUS, f))).digest('hex')} ${s.mtimeMs} ${s.ctimeMs}`;
    }),
  );
}

t.test('GIVEN bad input WHEN linted THEN one error line, status 2, nothing on stdout and no file changed', async (t) => {
  const before = await snapshot();
  const usage = (err: string) => ({ rc: 2, out: '', err: `nocow: error: ${err}\n` });
  t.same(await nocow(['bad/fstab', 'missing/fstab']), usage('missing/fstab: no such file or directory'), 'a missing file: no report for the others either');
  t.same(await nocow(['bad/notes.txt']), usage('bad/notes.txt: cannot tell its format from its name or content; give --format fstab|kickstart|mount|repart|mkosi'));
  t.same(await nocow(['bad']), usage('bad: is a directory'));
  t.same(await nocow([]), usage('no FILE given: nocow lint needs at least one'));
  t.same(await nocow(['--format', 'yaml', 'bad/fstab']), usage('--format yaml: unknown format; expected one of: fstab, kickstart, mount, repart, mkosi'));
  t.same(await nocow(['--format=fstab', '--format=mount', 'bad/fstab']), usage('--format given twice (fstab, mount): name one format'));
  t.same(await nocow(['--json=yes', 'bad/fstab']), usage("option '--json' doesn't allow an argument: give --json alone, or leave it out"));
  t.same(await nocow(['-']), usage('- (stdin): nocow lint reads named files only; give the file, with --format if its name does not tell'));
  t.same(await snapshot(), before, 'every corpus file as it was');
});

t.test('GIVEN -- and --format WHEN linting a file named -weird-name THEN it is linted as that format', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-lint-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await copyFile(join(CORPUS, 'bad', 'server.ks'), join(dir, '-weird-name'));
  const run = (args: string[]) => runBuilt(['lint', ...args], { cwd: dir });
  t.match(await run(['-weird-name']), { rc: 2, out: '', err: /^nocow: error: unknown option '-w'/ }, 'without --, an option');
  const r = await run(['--', '-weird-name']);
  t.equal(r.rc, 1, r.err);
  t.match(r.out, /^-weird-name:14: nodatacow on \/var\/lib\/pgsql does nothing/, 'named by its content as a kickstart');
  t.same(await run(['--format', 'fstab', '--', '-weird-name']), { rc: 0, out: '', err: '' }, '--format fstab: no Btrfs fstab line in a kickstart');
});

t.test("GIVEN a raid1 kickstart with nocow-kit's own %post sections WHEN linted THEN only a target declared redundancy: force-nocow is reported, at its nocow_target line", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-lint-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'forced.yaml'), 'targets:\n  - name: images\n    path: /var/lib/libvirt/images\n    redundancy: force-nocow\n');
  const storage = 'part btrfs.01 --size=1 --grow --ondisk=sda\npart btrfs.02 --size=1 --grow --ondisk=sdb\nbtrfs none --data=raid1 --metadata=raid1 --label=pool btrfs.01 btrfs.02\nbtrfs / --subvol --name=root pool\n';
  for (const [name, args] of [['default.ks', ['-p', 'libvirt']], ['forced.ks', ['-c', 'forced.yaml']]] as const) {
    const generated = await runBuilt(['generate', 'kickstart', ...args], { cwd: dir });
    t.equal(generated.rc, 0, generated.err);
    await writeFile(join(dir, name), storage + generated.out);
  }
  t.same(await runBuilt(['lint', 'default.ks'], { cwd: dir }), { rc: 0, out: '', err: '' }, 'keep-checksums: its chattr +C is skipped on raid1 by the section itself');
  const text = await readFile(join(dir, 'forced.ks'), 'utf8');
  const calls = text.split('\n').flatMap((l, i) => (/^\s*nocow_target .*'force-nocow'$/.test(l) ? [`forced.ks:${i + 1} redundant-profile`] : []));
  t.ok(calls.length > 0, `the generated sections call nocow_target: ${calls.join(', ')}`);
  const r = await runBuilt(['lint', '--json', 'forced.ks'], { cwd: dir });
  t.equal(r.rc, 1);
  const findings = (JSON.parse(r.out) as { findings: { file: string; line: number; rule: string; message: string }[] }).findings;
  t.same(findings.map((f) => `${f.file}:${f.line} ${f.rule}`), calls);
  t.match(findings[0]!.message, /^redundancy: force-nocow for \/var\/lib\/libvirt\/images on a raid1 data profile \(--data=raid1, line 3\)/);
});

t.test('GIVEN a real Btrfs WHEN a subvolume is mounted second with nodatacow, and nodatacow meets compress THEN the kernel does what the rules say', async (t) => {
  const r = await runInFs({
    fs: 'btrfs',
    script: String.raw`
btrfs -q subvolume create "$MNT/@"
btrfs -q subvolume create "$MNT/@images"
dev=$(losetup --find --show "$RUNINFS_DIR/a.img")
trap 'losetup -d "$dev"' EXIT
umount "$MNT"
mkdir -p "$RUNINFS_DIR/root" "$RUNINFS_DIR/images" "$RUNINFS_DIR/c"
mount -o subvol=@,compress=zstd "$dev" "$RUNINFS_DIR/root"
mount -o subvol=@images,nodatacow "$dev" "$RUNINFS_DIR/images"
section later; findmnt -n -o OPTIONS --mountpoint "$RUNINFS_DIR/images"
umount "$RUNINFS_DIR/images" "$RUNINFS_DIR/root"
mount -o nodatacow,compress=zstd "$dev" "$RUNINFS_DIR/c"
section compress-last; findmnt -n -o OPTIONS --mountpoint "$RUNINFS_DIR/c"
umount "$RUNINFS_DIR/c"
mount -o compress=zstd,nodatacow "$dev" "$RUNINFS_DIR/c"
section nodatacow-last; findmnt -n -o OPTIONS --mountpoint "$RUNINFS_DIR/c"
umount "$RUNINFS_DIR/c"
uuid=$(blkid -o value -s UUID "$dev")
printf 'UUID=%s / btrfs subvol=@,compress=zstd 0 0\nUUID=%s /var/lib/libvirt/images btrfs subvol=@images,nodatacow 0 0\n' "$uuid" "$uuid" >"$RUNINFS_DIR/fstab"
section lint; node ${JSON.stringify(builtCli())} lint "$RUNINFS_DIR/fstab" | sed "s|^$RUNINFS_DIR/||; s/: .*//" || :
`,
  });
  t.equal(r.exitCode, 0, r.stderr);
  const options = (name: string) => section(r.stdout, name).trim().split(',');
  t.notOk(options('later').includes('nodatacow'), `the second mount's nodatacow is not in force: ${options('later').join(',')}`);
  t.ok(options('later').some((o) => o.startsWith('compress=zstd')), "the first mount's compress is");
  t.ok(options('compress-last').some((o) => o.startsWith('compress=zstd')) && !options('compress-last').includes('nodatacow'), 'compress given last wins');
  t.ok(options('nodatacow-last').includes('nodatacow') && !options('nodatacow-last').some((o) => o.startsWith('compress')), 'nodatacow given last wins');
  t.equal(section(r.stdout, 'lint').trim(), 'fstab:2', 'and nocow lint reports the line of that fstab whose nodatacow the kernel ignored, alone');
});
