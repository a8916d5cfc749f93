// The tmpfiles.d and user tmpfiles.d output, applied by the real systemd-tmpfiles on Btrfs:
// hostile paths land exactly where declared and nothing in them runs.
import t from 'tap';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chmod, copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Target } from '../src/declaration/types.js';
import { planArtifacts } from '../src/plan.js';
import { renderPlan } from '../src/render/render.js';
import { loadTemplates } from '../src/templates.js';
import { target } from './helpers/artifacts.js';
import { runInFs } from './helpers/fs.js';

const HOSTILE = '/srv/vm images/$(touch /tmp/pwned)';

async function snippets(targets: Target[], artifacts: ('tmpfiles' | 'user-tmpfiles')[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'nocow-tmpfiles-'));
  await chmod(dir, 0o755); // the user-scope test reads it as nobody
  for (const f of renderPlan(planArtifacts({ sources: ['config:test.yaml'], targets }, artifacts, 'test'), await loadTemplates())) {
    await writeFile(join(dir, f.file.replace(/^.*\//, '')), f.content);
  }
  return dir;
}

t.test('GIVEN a tmpfiles.d snippet for a path with spaces and $(…) WHEN systemd-tmpfiles --create --root runs on Btrfs THEN that exact path is a +C subvolume and nothing ran', async (t) => {
  rmSync('/tmp/pwned', { force: true });
  const dir = await snippets([target({ path: HOSTILE, group: 'root' })], ['tmpfiles']);
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      btrfs subvolume create "$MNT/root" >/dev/null   # v makes subvolumes only below a subvolume root
      systemd-tmpfiles --create --root="$MNT/root" "$D/nocow-vm.conf"
      P="$MNT/root/srv/vm images/\$(touch /tmp/pwned)"
      (cd "$MNT/root" && find srv | sort)
      echo "$(btrfs subvolume show "$P" >/dev/null 2>&1 && echo subvolume) $(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%a %u %g' "$P")"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(
    run.stdout,
    'srv\nsrv/vm images\nsrv/vm images/$(touch \nsrv/vm images/$(touch /tmp\nsrv/vm images/$(touch /tmp/pwned)\n' +
      `subvolume ${'-'.repeat(15)}C${'-'.repeat(6)} 711 0 0`,
  );
  t.notOk(existsSync('/tmp/pwned'), 'the $(…) in the path never ran');
});

t.test('GIVEN a user tmpfiles.d snippet with %h WHEN an unprivileged user runs systemd-tmpfiles --user --create THEN the directory is made in that home with +C', async (t) => {
  rmSync('/tmp/pwned', { force: true });
  const path = '~/VM images/$(touch /tmp/pwned) 100%';
  const dir = await snippets([target({ name: 'boxes', scope: 'user', path, user: '-', group: '-', mode: '0700' })], ['user-tmpfiles']);
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      chmod 0755 "$(dirname "$MNT")"   # let nobody reach the mount point
      mkdir -p "$MNT/home/n"; chown nobody: "$MNT/home/n"
      runuser -u nobody -- env HOME="$MNT/home/n" systemd-tmpfiles --user --create "$D/nocow-boxes.conf"
      P="$MNT/home/n/VM images/\$(touch /tmp/pwned) 100%"
      echo "$(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%a %U' "$P")"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.stdout, `${'-'.repeat(15)}C${'-'.repeat(6)} 700 nobody`);
  t.notOk(existsSync('/tmp/pwned'), 'the $(…) in the path never ran');
});

t.test('GIVEN a tmpfiles.d snippet WHEN systemd-tmpfiles runs on ext4 THEN the directory is made and +C is reported as unsupported, not applied', async (t) => {
  const dir = await snippets([target({ path: '/var/lib/libvirt/images', group: 'root' })], ['tmpfiles']);
  const run = await runInFs({
    fs: 'ext4',
    env: { D: dir },
    script: String.raw`
      systemd-tmpfiles --create --root="$MNT/root" "$D/nocow-vm.conf" 2>/dev/null || :
      lsattr -d "$MNT/root/var/lib/libvirt/images" | cut -d' ' -f1`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.notMatch(run.stdout, /C/, 'no NOCOW flag outside Btrfs');
});

t.test('GIVEN the shipped gnome-boxes user tmpfiles.d snippet WHEN an unprivileged user logs in (systemd-tmpfiles --user --create) with a home on Btrfs THEN ~/.local/share/gnome-boxes/images exists with +C, owned by the user', async (t) => {
  const snippet = join(import.meta.dirname, '..', 'scriptlets', 'gnome-boxes', 'user-tmpfiles.d', 'nocow-gnome-boxes.conf');
  const dir = await mkdtemp(join(tmpdir(), 'nocow-tmpfiles-'));
  await chmod(dir, 0o755);
  await copyFile(snippet, join(dir, 'nocow-gnome-boxes.conf')); // readable by nobody, unlike the work tree may be
  const run = await runInFs({
    fs: 'btrfs',
    env: { D: dir },
    script: String.raw`
      chmod 0755 "$(dirname "$MNT")"
      mkdir -p "$MNT/home/n/.local/share"; chown -R nobody: "$MNT/home/n"
      login() { runuser -u nobody -- env HOME="$MNT/home/n" systemd-tmpfiles --user --create "$D/nocow-gnome-boxes.conf"; }
      login
      P="$MNT/home/n/.local/share/gnome-boxes/images"
      echo "$(lsattr -d "$P" | cut -d' ' -f1) $(stat -c '%a %U' "$P")"
      before=$(stat -c '%i %Z' "$P")
      login
      [ "$(stat -c '%i %Z' "$P")" = "$before" ] && echo "second login: unchanged"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.stdout, `${'-'.repeat(15)}C${'-'.repeat(6)} 755 nobody\nsecond login: unchanged`);
});
