// The image builders' artifacts (nocow generate repart, mkfs, kiwi, boot-unit) run by the tools
// that read them, today's versions: systemd-repart 262, mkfs.btrfs 7.3, sfdisk and kiwi 11 from the
// Debian sid tool root (test/helpers/tool-root.sh, made by test/deps.sh), which Debian 12 has too
// old or not at all. Each image is built from a tree that already holds files in the targets, as
// rpm, tar or squashfs leave it, then loop-mounted and compared with the tree.
import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Test } from 'tap';
import { parseTree, runInFs, section, type TreeEntry } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const cli = builtCli();
const TOOL_ROOT_SH = join(import.meta.dirname, 'helpers', 'tool-root.sh');

t.before(async () => {
  const check = await execa('sh', [TOOL_ROOT_SH, 'check'], { reject: false });
  if (check.exitCode !== 0) throw new Error('the sid tool root is missing or out of date: run sh test/deps.sh --install (test/helpers/tool-root.sh)');
});

// Two profiles combined, and a target whose parent the tree lacks, with a path that needs
// repart's quoting at both of its readings (blank, quote, %, colon).
const ODD = "/srv/vm images/it's 100%:x";
const EXTRA_YAML = `targets:\n  - name: odd\n    path: "${ODD}"\n    mode: "0750"\n`;
const TARGETS = ['/var/lib/libvirt/images', '/var/lib/mysql', ODD];
const FLAGS = ['-p', 'libvirt', '-p', 'mariadb', '-c', 'extra.yaml'];

// The tree as a package leaves it: the libvirt and MariaDB directories with their data, owners
// and modes, files beside them; no /srv. `tools CMD…` runs CMD in the tool root, in $MNT.
const TREE = String.raw`
tools() { sh "$TOOL_ROOT_SH" run "$MNT" "$@"; }
T=$MNT/tree
mkdir -p "$T/etc" "$T/usr/bin" "$T/var/lib/libvirt/images/sub" "$T/var/lib/mysql"
echo image >"$T/etc/hostname"
head -c 200000 /dev/urandom >"$T/usr/bin/tool"
chmod 0755 "$T/usr/bin/tool"
head -c 3000000 /dev/urandom >"$T/var/lib/libvirt/images/disk.qcow2"
printf small >"$T/var/lib/libvirt/images/sub/small"
chown 0:36 "$T/var/lib/libvirt/images"
chmod 0711 "$T/var/lib/libvirt/images"
head -c 1000000 /dev/urandom >"$T/var/lib/mysql/ibdata1"
chown -R 27:27 "$T/var/lib/mysql"
chmod 0755 "$T/var/lib/mysql"
cd "$A"
`;

/** Runs SCRIPT after TREE in a scratch ext4 in its own mount namespace; the tree's and the image's observe_tree lines. */
async function build(t: Test, script: string): Promise<{ tree: Map<string, TreeEntry>; image: Map<string, TreeEntry>; stdout: string }> {
  const a = await mkdtemp(join(tmpdir(), 'nocow-image-a-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  await writeFile(join(a, 'extra.yaml'), EXTRA_YAML);
  const run = await runInFs({ fs: 'ext4', sizeMiB: 1536, env: { A: a, CLI: cli, TOOL_ROOT_SH }, script: `${TREE}${script}` });
  t.equal(run.exitCode, 0, `the build ran\n${run.stderr}`);
  return { tree: parseTree(section(run.stdout, 'tree')), image: parseTree(section(run.stdout, 'image')), stdout: run.stdout };
}

const under = (rel: string, target: string): boolean => rel === target.slice(1) || rel.startsWith(`${target.slice(1)}/`);

/** THEN: each target a subvolume with +C, its files +C and byte for byte the tree's; mode and owner kept; nothing else +C. */
function assertImage(t: Test, tree: Map<string, TreeEntry>, image: Map<string, TreeEntry>): void {
  for (const target of TARGETS) {
    const rel = target.slice(1);
    const entry = image.get(rel);
    t.equal(entry?.kind, 'dir', `${target} is in the image`);
    t.equal(entry?.subvol, true, `${target} is a subvolume`);
    t.equal(entry?.nocow, true, `${target} has +C`);
  }
  for (const [rel, before] of tree) {
    if (rel === '.') continue;
    const after = image.get(rel);
    const inTarget = TARGETS.some((target) => under(rel, target));
    t.ok(after, `${rel} is in the image`);
    if (!after) continue;
    t.same([after.kind, after.content, after.mode, after.uid, after.gid], [before.kind, before.content, before.mode, before.uid, before.gid], `${rel}: kind, bytes, mode and owner kept`);
    if (after.kind === 'file') t.equal(after.nocow, inTarget, `${rel} ${inTarget ? 'has' : 'has no'} +C`);
  }
  const stray = [...image].filter(([rel, e]) => e.nocow && !TARGETS.some((target) => under(rel, target))).map(([rel]) => rel);
  t.same(stray, [], 'nothing outside the targets has +C');
}

t.test('GIVEN a tree with files in the libvirt and MariaDB directories and a target whose parent it lacks WHEN systemd-repart 262 builds the image with the generated drop-in THEN each target is a NOCOW subvolume holding its files as they were', async (t) => {
  const { tree, image, stdout } = await build(
    t,
    String.raw`
node "$CLI" generate repart ${FLAGS.join(' ')} -o "$MNT/out" 2>/dev/null
printf '[Partition]\nType=root\nFormat=btrfs\nCopyFiles=/\n' >"$MNT/out/repart.d/10-root.conf"
tools systemd-repart --offline=yes --dry-run=no --empty=create --size=auto --seed=9a4d8d0e-5a0b-4cb5-a0d8-1c6c0e0f3b11 \
  --definitions=/work/out/repart.d --root=/work/tree /work/image.raw >"$MNT/repart.log" 2>&1 || { cat "$MNT/repart.log" >&2; exit 1; }
start=$(tools sfdisk --dump /work/image.raw | sed -n 's/^[^:]*image.raw1 *: *start= *\([0-9]*\),.*/\1/p')
mkdir "$MNT/image"
mount -t btrfs -o loop,ro,offset=$((start * 512)) "$MNT/image.raw" "$MNT/image"
section tree; observe_tree "$T"
section image; observe_tree "$MNT/image"
section odd; stat -c '%a %u %g' "$MNT/image/srv/vm images"
`,
  );
  assertImage(t, tree, image);
  t.same([image.get(ODD.slice(1))?.mode, image.get(ODD.slice(1))?.uid], [0o755, 0], 'MakeDirectories= made the missing target 0755 root, as the drop-in says');
  t.equal(section(stdout, 'odd').trim(), '755 0 0', 'and its missing parent');
});

t.test('GIVEN the same tree, the missing target made in it WHEN mkfs.btrfs 7.3 --rootdir takes the generated nocow-mkfs.args THEN each target is a NOCOW subvolume holding its files as they were', async (t) => {
  const { tree, image } = await build(
    t,
    String.raw`
node "$CLI" generate mkfs ${FLAGS.join(' ')} -o "$MNT/out" 2>/dev/null
# As the file says: each directory must exist in the tree.
mkdir -p "$T${ODD}"
truncate -s 400M "$MNT/image.btrfs"
tools sh -c "grep -v '^#' out/nocow-mkfs.args | xargs -d '\n' mkfs.btrfs -q --rootdir tree image.btrfs" >&2
mkdir "$MNT/image"
mount -t btrfs -o loop,ro "$MNT/image.btrfs" "$MNT/image"
section tree; observe_tree "$T"
section image; observe_tree "$MNT/image"
`,
  );
  assertImage(t, tree, image);
});

t.test('GIVEN the generated kiwi volumes WHEN kiwi 11 loads an image description holding them THEN its schema accepts them, and refuses them once altered', async (t) => {
  const a = await mkdtemp(join(tmpdir(), 'nocow-kiwi-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  await execa('node', [cli, 'generate', 'kiwi', '-p', 'libvirt', '-p', 'mariadb', '-o', a]);
  const volumes = await readFile(join(a, 'nocow-kiwi-volumes.xml'), 'utf8');
  t.match(volumes, /^<volume name="var\/lib\/libvirt\/images" copy_on_write="false"\/>$/m);
  const description = (elements: string) => `<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="8.0" name="nocow-check">
  <description type="system">
    <author>nocow-kit</author>
    <contact>nocow-kit@example.invalid</contact>
    <specification>kiwi schema check of nocow-kit's volumes</specification>
  </description>
  <preferences>
    <version>1.0.0</version>
    <packagemanager>apt</packagemanager>
    <type image="oem" filesystem="btrfs">
      <systemdisk>
${elements}
      </systemdisk>
    </type>
  </preferences>
  <repository><source path="obs://some/repo"/></repository>
  <packages type="image"><package name="systemd"/></packages>
  <packages type="bootstrap"><package name="apt"/></packages>
</image>
`;
  await writeFile(join(a, 'good.xml'), description(volumes));
  await writeFile(join(a, 'bad.xml'), description(volumes.replace(/^(<volume .*)copy_on_write="false"/m, '$1copy_on_write="no"')));
  const load = (file: string) =>
    execa('sh', [TOOL_ROOT_SH, 'run', a, 'python3', '-c', `from kiwi.xml_description import XMLDescription; XMLDescription('/work/${file}').load()`], { reject: false });
  const good = await load('good.xml');
  t.equal(good.exitCode, 0, `kiwi accepts the volumes\n${good.stderr}`);
  const bad = await load('bad.xml');
  t.not(bad.exitCode, 0, 'kiwi refuses a volume its schema does not allow (the check can fail)');
});

t.test('GIVEN a Btrfs root that is not a subvolume, as in image mode WHEN the tmpfiles.d snippet runs, nocow status looks and nocow-apply.service runs its hook THEN v made a plain directory, status says why, the hook makes it a NOCOW subvolume and is silent the next time; the unit passes systemd-analyze verify', async (t) => {
  const a = await mkdtemp(join(tmpdir(), 'nocow-bootunit-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  const run = await runInFs({
    fs: 'btrfs',
    env: { A: a, CLI: cli, TOOL_ROOT_SH },
    script: String.raw`
# An ostree deployment's root: a plain directory on the Btrfs file system, not a subvolume.
R=$MNT/deploy
mkdir -p "$R/etc/systemd/system" "$R/usr/libexec/nocow-kit" "$R/usr/lib/systemd" "$R/var/lib/libvirt"
node "$CLI" generate boot-unit hook tmpfiles -p libvirt -p machines -o "$A/out" 2>/dev/null
install -m 0755 "$A/out/nocow-apply.sh" "$R/usr/libexec/nocow-kit/nocow-apply.sh"
cp "$A/out/systemd/system/nocow-apply.service" "$R/etc/systemd/system/"
section unit; cat "$R/etc/systemd/system/nocow-apply.service"
# The units it is ordered against, from systemd 252 (this machine) and 262 (the tool root).
cp -a /usr/lib/systemd/system "$R/usr/lib/systemd/"
verify() { rc=0; "$@" 2>&1 || rc=$?; echo "rc=$rc"; }
section verify252; verify systemd-analyze verify --man=no --root="$R" nocow-apply.service
rm -r "$R/usr/lib/systemd/system"
sh "$TOOL_ROOT_SH" run "$MNT" cp -a /usr/lib/systemd/system /work/deploy/usr/lib/systemd/
section verify262; verify sh "$TOOL_ROOT_SH" run "$MNT" systemd-analyze verify --man=no --root=/work/deploy nocow-apply.service
mv "$R/usr/libexec/nocow-kit/nocow-apply.sh" "$A/hook"
section verify-nohook; verify systemd-analyze verify --man=no --root="$R" nocow-apply.service
mv "$A/hook" "$R/usr/libexec/nocow-kit/nocow-apply.sh"
systemd-tmpfiles --root="$R" --create "$A/out/tmpfiles.d/nocow-libvirt.conf" 2>&1 || :
section tmpfiles; observe "$R/var/lib/libvirt/images"
section status; node "$CLI" status --root "$R" -p libvirt --json || :
# The file system's top level is a subvolume (inode 256): there v makes subvolumes, and status says nothing of it.
section status-subvolume; node "$CLI" status --root "$MNT" -p libvirt --json || :
section hook1; "$R/usr/libexec/nocow-kit/nocow-apply.sh" --root "$R" 2>&1
section after; observe "$R/var/lib/libvirt/images" "$R/var/lib/machines"
section hook2; verify strace -f -qq -z -e trace=execve -e signal=none -o "$A/trace" "$R/usr/libexec/nocow-kit/nocow-apply.sh" --root "$R"
section execs; grep -c execve "$A/trace"
`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const out = run.stdout;
  const unit = section(out, 'unit');
  t.match(unit, /^After=local-fs\.target$/m);
  t.match(unit, /^Before=libvirtd\.service systemd-machined\.service$/m, 'before the services of both profiles');
  t.match(unit, /^Type=oneshot$/m);
  t.match(unit, /^ExecStart="\/usr\/libexec\/nocow-kit\/nocow-apply\.sh"$/m);
  t.equal(section(out, 'verify252').trim(), 'rc=0', 'systemd-analyze verify (systemd 252) finds nothing');
  t.equal(section(out, 'verify262').trim(), 'rc=0', 'systemd-analyze verify (systemd 262) finds nothing');
  t.match(section(out, 'verify-nohook'), /nocow-apply\.sh is not executable[^]*rc=[1-9]/, 'and verify does fail without the hook in place (the check can fail)');
  t.match(section(out, 'tmpfiles'), /^OBS\t\S+\tdir\t\d+\t711\t0\t\d+\t.*\tno\tbtrfs$/m, "tmpfiles' v line made a plain directory");
  const status = JSON.parse(section(out, 'status')) as { targets: { notes: string[] }[] };
  t.match(status.targets[0]!.notes.join('\n'), /systemd-tmpfiles' v line makes a plain directory here, not a subvolume: .* is not a Btrfs subvolume/, 'status says why');
  const onSubvolume = JSON.parse(section(out, 'status-subvolume')) as { targets: { notes: string[]; deviations: string[] }[] };
  t.match(onSubvolume.targets[0]!.deviations.join('\n'), /^missing/, 'a missing target under a root that is a subvolume');
  t.notMatch(onSubvolume.targets[0]!.notes.join('\n'), /plain directory/, 'gets no such note');
  t.match(section(out, 'hook1'), /converted: empty directory .*\/var\/lib\/libvirt\/images into a subvolume/);
  const after = section(out, 'after');
  t.match(after, /^OBS\t\/deploy\/var\/lib\/libvirt\/images\tdir\t256\t711\t.*C.*\tyes\tbtrfs$/m, 'libvirt: a NOCOW subvolume');
  t.match(after, /^OBS\t\/deploy\/var\/lib\/machines\tdir\t256\t700\t.*C.*\tyes\tbtrfs$/m, 'machines: a NOCOW subvolume');
  t.equal(section(out, 'hook2').trim(), 'rc=0', 'silent when all is in place');
  t.comment(`processes the hook starts when all is in place (itself included): ${section(out, 'execs').trim()}`);
});

t.test('GIVEN what an image builder artifact cannot take WHEN generated with -o DIR THEN one error line, exit status 2, and DIR is not even made', async (t) => {
  const a = await mkdtemp(join(tmpdir(), 'nocow-image-refuse-'));
  t.teardown(() => rm(a, { recursive: true, force: true }));
  await writeFile(join(a, 'blank.yaml'), 'targets:\n  - name: vm\n    path: /srv/vm images\n');
  const cases: [string[], RegExp][] = [
    [['repart', '-p', 'libvirt', '-p', 'gnome-boxes'], /^nocow: error: artifact repart is for an image, which holds no home directory: .* user-scope target gnome-boxes \(~\/\.local\/share\/gnome-boxes\/images\)/],
    [['mkfs', 'kiwi', 'boot-unit', '-p', 'gnome-boxes'], /^nocow: error: artifact mkfs is for an image, which holds no home directory/],
    [['kiwi', '-c', 'blank.yaml'], /^nocow: error: artifact kiwi cannot carry the path of target vm, "\/srv\/vm images": expected a path without blanks/],
    [['repart', '-p', 'libvirt', '--repart-definition', 'a/b'], /^nocow: error: --repart-definition "a\/b": expected the file name of a repart\.d definition/],
  ];
  for (const [args, error] of cases) {
    const run = await execa('node', [cli, 'generate', ...args, '-o', 'out'], { cwd: a, reject: false });
    t.equal(run.exitCode, 2, args.join(' '));
    t.match(run.stderr, error, args.join(' '));
    t.equal(run.stderr.split('\n').length, 1, 'one line');
    t.equal(await readFile(join(a, 'out')).then(() => 'made', (e: NodeJS.ErrnoException) => e.code), 'ENOENT', 'no output directory');
  }
  const named = await execa('node', [cli, 'generate', 'repart', '-p', 'libvirt', '--repart-definition', '50-root.conf', '-o', 'out'], { cwd: a });
  t.match(named.stderr, /wrote out\/repart\.d\/50-root\.conf\.d\/nocow\.conf$/, '--repart-definition names the drop-in directory, ".conf" or not');
});
