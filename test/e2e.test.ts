// The product's promise, end to end: whatever put the files on disk (rsync, GNU tar,
// bsdtar, unsquashfs, rpm), once the artifact that belongs to that path has run, the
// declared directories are in their declared state on Btrfs, and untouched elsewhere.
// Every other artifact run afterwards, in either order, converges on the same state,
// and a repeat of all of them changes nothing.
import t from 'tap';
import { execa } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Target } from '../src/declaration/types.js';
import { planArtifacts } from '../src/plan.js';
import { renderPlan } from '../src/render/render.js';
import { loadTemplates } from '../src/templates.js';
import { target } from './helpers/target.js';
import { runInFs, type FsType } from './helpers/fs.js';
import { shellOf } from './helpers/shell-of.js';

const TARGETS: Target[] = [
  target({ name: 'images', path: '/var/lib/libvirt/images', mode: '0711', group: 'root' }),
  target({ name: 'machines', path: '/var/lib/machines', mode: '0700', group: 'root' }),
];
const ARTIFACTS = ['ks-nochroot', 'ks-chroot', 'posttrans', 'tmpfiles', 'hook'] as const;
type ArtifactRun = (typeof ARTIFACTS)[number];
const METHODS = ['rsync', 'tar', 'bsdtar', 'squashfs', 'rpm'] as const;
type Method = (typeof METHODS)[number];

/** The artifact that belongs to each install path. */
const BELONGS: Record<Method, ArtifactRun> = {
  rsync: 'ks-nochroot', // Anaconda's live-image install copies with rsync, then runs %post --nochroot
  tar: 'ks-chroot', // a tarball install (e.g. liveimg --url=*.tar) runs the chroot %post
  bsdtar: 'hook', // an image builder unpacking with bsdtar runs nocow-apply.sh --root
  squashfs: 'tmpfiles', // an image that boots: systemd-tmpfiles at first boot
  rpm: 'posttrans', // rpm runs %posttrans in its own transaction
};

const CHROOT_SH = join(import.meta.dirname, 'helpers', 'chroot.sh');
const SPEC = `Name: nocow-e2e
Version: 1
Release: 1
Summary: nocow-kit end-to-end test package
License: MIT
BuildArch: noarch
%include %{_sourcedir}/nocow-requires.spec

%description
Declared directories for nocow-kit's end-to-end tests.

%install
mkdir -p %{buildroot}/var/lib/libvirt/images %{buildroot}/var/lib/machines
cp %{_sourcedir}/disk.img %{buildroot}/var/lib/libvirt/images/disk.img

%files
%dir %attr(0711,root,root) /var/lib/libvirt/images
%attr(0644,root,root) /var/lib/libvirt/images/disk.img
%dir %attr(0700,root,root) /var/lib/machines

%include %{_sourcedir}/nocow-posttrans.spec
`;

interface Fixture {
  dir: string;
  sha: string;
}

/** Artifacts as files the scripts run, a 1 MiB image, and a real RPM built from the generated %posttrans. */
async function fixture(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-e2e-'));
  t.teardown(() => rm(dir, { recursive: true, force: true })); // when the file's last test ends, passed or not
  const image = randomBytes(1024 * 1024);
  await writeFile(join(dir, 'disk.img'), image);
  for (const f of renderPlan(planArtifacts({ sources: ['config:e2e.yaml'], targets: TARGETS }, ['posttrans', 'kickstart', 'tmpfiles', 'hook'], 'test'), await loadTemplates())) {
    const name = f.file.replace(/^.*\//, '');
    await writeFile(join(dir, name), f.content);
    const shell = shellOf(name, f.content);
    if (name === 'nocow-post-nochroot.ks') await writeFile(join(dir, 'ks-nochroot.sh'), shell!);
    if (name === 'nocow-post-chroot.ks') await writeFile(join(dir, 'ks-chroot.sh'), shell!);
    if (name === 'nocow-posttrans.spec') await writeFile(join(dir, 'posttrans.sh'), shell!);
  }
  await chmod(join(dir, 'nocow-apply.sh'), 0o755);
  await writeFile(join(dir, 'e2e.spec'), SPEC);
  await mkdir(join(dir, 'top'));
  await execa('rpmbuild', ['--quiet', '--define', `_topdir ${dir}/top`, '--define', `_sourcedir ${dir}`, '-bb', join(dir, 'e2e.spec')]);
  await execa('cp', [join(dir, 'top/RPMS/noarch/nocow-e2e-1-1.noarch.rpm'), join(dir, 'pkg.rpm')]);
  return { dir, sha: createHash('sha256').update(image).digest('hex') };
}

const SCRIPT = String.raw`
mkdir -p "$A"
. "$CHROOT_SH"
S=$MNT/src

make_source() {
  mkdir -p "$S/var/lib/libvirt"
  if [ "$FS" = btrfs ]; then
    btrfs subvolume create "$S/var/lib/libvirt/images" >/dev/null
    btrfs subvolume create "$S/var/lib/machines" >/dev/null
    chattr +C "$S/var/lib/libvirt/images" "$S/var/lib/machines"
  else
    mkdir -p "$S/var/lib/libvirt/images" "$S/var/lib/machines"
  fi
  cp "$F/disk.img" "$S/var/lib/libvirt/images/disk.img"
  chmod 0711 "$S/var/lib/libvirt/images"
  chmod 0700 "$S/var/lib/machines"
}

transfer() {
  case $1 in
  rsync) rsync -aAXH "$S/" "$2/" ;;
  tar) tar --xattrs --acls -C "$S" -cf - var | tar --xattrs --acls -C "$2" -xpf - ;;
  bsdtar) bsdtar --fflags -C "$S" -cf - var | bsdtar --fflags -C "$2" -xpf - ;;
  squashfs)
    mksquashfs "$S" "$MNT/os.sqfs" -quiet -noappend >/dev/null
    unsquashfs -q -f -d "$2" "$MNT/os.sqfs" >/dev/null ;;
  rpm) rpm_root "$2" -i --noscripts "$F/pkg.rpm" ;;
  esac
}

artifact() {
  case $1 in
  ks-nochroot) ANA_INSTALL_PATH="$2" sh "$F/ks-nochroot.sh" ;;
  ks-chroot) chroot "$2" /bin/sh -s <"$F/ks-chroot.sh" ;;
  posttrans) chroot "$2" /bin/sh -s <"$F/posttrans.sh" ;;
  # tmpfiles complains on stderr where +C is unsupported (ext4): kept apart, not asserted.
  tmpfiles) systemd-tmpfiles --create --root="$2" "$F/nocow-images.conf" "$F/nocow-machines.conf" 2>>"$A/tmpfiles.err" || : ;;
  hook) sh "$F/nocow-apply.sh" --root "$2" ;;
  esac
}

# One line per declared directory and for the image: what the promise is about.
state() {
  local p kind flag
  for p in /var/lib/libvirt/images /var/lib/machines /var/lib/libvirt/images/disk.img; do
    if [ -f "$1$p" ]; then kind="file $(sha256sum <"$1$p" | cut -d' ' -f1)"
    elif btrfs subvolume show "$1$p" >/dev/null 2>&1; then kind=subvolume
    else kind=directory; fi
    case $(lsattr -d "$1$p" | cut -d' ' -f1) in *C*) flag=+C ;; *) flag=-C ;; esac
    echo "$p $kind $flag $(stat -c '%a %u:%g' "$1$p")"
  done >"$A/$2.state"
}

# Everything below /var (observe_tree, test/helpers/observe.sh): inodes, times, flags, checksums, xattrs.
snap() { observe_tree "$1/var" >"$A/$2.snap"; }

make_source
make_root "$MNT/alone"
transfer "$METHOD" "$MNT/alone"
state "$MNT/alone" alone

for order in forward reverse; do
  D=$MNT/$order
  make_root "$D"
  if [ "$METHOD" = rpm ]; then
    rpm_root "$D" -i "$F/pkg.rpm" >"$A/belong-$order.out" 2>"$A/belong-$order.err"
    snap "$D" transferred-$order
  else
    transfer "$METHOD" "$D"
    snap "$D" transferred-$order
    artifact "$BELONGS" "$D" >"$A/belong-$order.out" 2>"$A/belong-$order.err"
  fi
  state "$D" belong-$order
  ls -i "$D/var/lib/libvirt/images/disk.img" | cut -d' ' -f1 >"$A/inode-belong-$order"
  others=$OTHERS
  [ $order = forward ] || others=$(echo $OTHERS | tr ' ' '\n' | tac | tr '\n' ' ')
  for a in $others; do artifact "$a" "$D"; done >"$A/others-$order.out" 2>"$A/others-$order.err"
  state "$D" all-$order
  ls -i "$D/var/lib/libvirt/images/disk.img" | cut -d' ' -f1 >"$A/inode-all-$order"
  snap "$D" first-$order
  for a in $ALL; do artifact "$a" "$D"; done >"$A/repeat-$order.out" 2>"$A/repeat-$order.err"
  snap "$D" repeat-$order
done
`;

/** What the transfer alone leaves: every method drops the subvolumes; all but bsdtar --fflags drop +C. */
function aloneState(fs: FsType, method: Method, sha: string): string {
  const flag = fs === 'btrfs' && method === 'bsdtar' ? '+C' : '-C';
  return [
    `/var/lib/libvirt/images directory ${flag} 711 0:0`,
    `/var/lib/machines directory ${flag} 700 0:0`,
    `/var/lib/libvirt/images/disk.img file ${sha} ${flag} 644 0:0`,
    '',
  ].join('\n');
}

/**
 * The declared state after an artifact: on Btrfs the empty directory becomes a +C
 * subvolume; the one holding an image is never moved (docs/design.md step 5), it gets +C for
 * new files and the image keeps its bytes (and its own flags). tmpfiles.d makes a
 * subvolume only for a missing path (`v`), so on its own it leaves +C directories.
 */
function declaredState(fs: FsType, method: Method, sha: string, tmpfilesOnly: boolean): string {
  if (fs !== 'btrfs') return aloneState(fs, method, sha);
  const fileFlag = method === 'bsdtar' ? '+C' : '-C';
  return [
    '/var/lib/libvirt/images directory +C 711 0:0',
    `/var/lib/machines ${tmpfilesOnly ? 'directory' : 'subvolume'} +C 700 0:0`,
    `/var/lib/libvirt/images/disk.img file ${sha} ${fileFlag} 644 0:0`,
    '',
  ].join('\n');
}

const fixtures = fixture();

for (const fs of ['btrfs', 'ext4'] as FsType[]) {
  for (const method of METHODS) {
    const belongs = BELONGS[method];
    t.test(`GIVEN an OS tree put onto ${fs} by ${method} WHEN ${belongs} runs, then every other artifact in two orders, then all again THEN the declared state is reached, converges and stays`, async (t) => {
      const { dir, sha } = await fixtures;
      const run = await runInFs({
        fs,
        script: SCRIPT,
        env: {
          F: dir,
          A: join(dir, `${fs}-${method}`),
          CHROOT_SH,
          FS: fs,
          METHOD: method,
          BELONGS: belongs,
          OTHERS: ARTIFACTS.filter((a) => a !== belongs).join(' '),
          ALL: ARTIFACTS.join(' '),
        },
      });
      t.equal(run.exitCode, 0, run.stderr);
      const read = (name: string) => readFile(join(dir, `${fs}-${method}`, name), 'utf8');

      t.equal(await read('alone.state'), aloneState(fs, method, sha), `${method} alone: what survives the transfer`);
      const declared = declaredState(fs, method, sha, belongs === 'tmpfiles');
      for (const order of ['forward', 'reverse']) {
        t.equal(await read(`belong-${order}.state`), declared, `${order}: ${belongs} reaches the declared state`);
        t.equal(await read(`belong-${order}.err`), '', `${order}: ${belongs} warns of nothing`);
        t.equal(await read(`inode-all-${order}`), await read(`inode-belong-${order}`), `${order}: the image was never moved`);
        t.equal(await read(`all-${order}.state`), declaredState(fs, method, sha, false), `${order}: every artifact converges`);
        t.equal(await read(`others-${order}.err`), '', `${order}: no artifact warns`);
        t.equal(await read(`repeat-${order}.snap`), await read(`first-${order}.snap`), `${order}: a repeat of all changes nothing`);
        t.equal(await read(`repeat-${order}.out`), '', `${order}: and says nothing`);
        t.equal(await read(`repeat-${order}.err`), '', `${order}: and warns of nothing`);
      }
      if (fs !== 'btrfs') {
        t.equal(await read('belong-forward.out'), '', `not Btrfs: ${belongs} says nothing`);
        for (const order of ['forward', 'reverse']) {
          t.equal(await read(`first-${order}.snap`), await read(`transferred-${order}.snap`), `not Btrfs, ${order}: no artifact changed anything (inodes, times, flags)`);
        }
      }
    });
  }
}
