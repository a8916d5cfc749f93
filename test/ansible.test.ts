// The fleet path (docs/fleet.md): the role nocow generate ansible writes, run by Debian 12's
// ansible-core (ansible-playbook, default callback, builtin modules only) over four hosts at once,
// each a local connection whose nocow_root is its own loop-mounted root: three Btrfs, one ext4,
// all in one private mount namespace (runInFs takes them all down, also on failure).
import t from 'tap';
import { execa } from 'execa';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { planArtifacts } from '../src/plan.js';
import { renderPlan } from '../src/render/render.js';
import { loadTemplates } from '../src/templates.js';
import { builtCli } from './helpers/cli.js';
import { parseObservations, runInFs, section } from './helpers/fs.js';
import { target } from './helpers/target.js';

const CLI = builtCli();
const WORK = await mkdtemp(join(tmpdir(), 'nocow-ansible-'));
t.teardown(() => rmSync(WORK, { recursive: true, force: true }));

// A target made with +C as a subvolume; one whose path Ansible would read as a template if the
// role let it (it must stay this path, on disk and in the state); one whose owner no host has,
// which makes the hook warn each time it creates the directory.
const IMAGES = '/srv/fleet/images';
const ODD = "/srv/fleet/{{ 6 * 7 }} it's";
const DATA = '/srv/fleet/data';
const DECLARATION = `targets:
  - {name: images, path: ${IMAGES}, mode: "0711"}
  - {name: odd, path: ${JSON.stringify(ODD)}}
  - {name: data, path: ${DATA}, user: nocow-nobody-here}
`;
const PATHS = [IMAGES, ODD, DATA];
const BTRFS_HOSTS = ['h1', 'h2', 'h3'];
const HOSTS = [...BTRFS_HOSTS, 'h4'];

// The playbook beside the generated roles/: the role, then each host's nocow_state to a file
// (not a change, and written in check mode too) for the test to read.
const SITE = `- hosts: fleet
  gather_facts: false
  roles: [nocow]
  post_tasks:
    - name: record the state
      ansible.builtin.copy:
        content: "{{ nocow_state | to_json }}"
        dest: "{{ state_dir }}/{{ inventory_hostname }}.json"
      check_mode: false
      changed_when: false
`;

const sq = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

// h1 is runInFs's Btrfs ($MNT), h4 its ext4 ($MNT2); h2 and h3 are two more Btrfs images beside
// them (mount -o loop: their devices go with the namespace). Each play: its recap and exit status,
// each host's state, and what is on each root.
const SCRIPT = `
R=$RUNINFS_DIR
for h in h2 h3; do
  truncate -s 256M "$R/$h.img"
  mkfs.btrfs -q -f "$R/$h.img" >/dev/null 2>&1
  mkdir "$R/$h"
  mount -t btrfs -o loop "$R/$h.img" "$R/$h"
done
declare -A ROOT=([h1]=$MNT [h2]=$R/h2 [h3]=$R/h3 [h4]=$MNT2)
{
  echo '[fleet]'
  for h in ${HOSTS.join(' ')}; do echo "$h ansible_connection=local nocow_root=\${ROOT[$h]}"; done
  echo '[fleet:vars]'
  echo 'ansible_python_interpreter=/usr/bin/python3'
} >"$R/inventory"
mkdir "$R/home"
: >"$R/ansible.cfg"
export HOME=$R/home ANSIBLE_CONFIG=$R/ansible.cfg ANSIBLE_LOCAL_TEMP=$R/home/local ANSIBLE_REMOTE_TEMP=$R/home/remote
export ANSIBLE_NOCOLOR=1 ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_DEPRECATION_WARNINGS=0

play() {
  local phase=$1 rc=0 h
  shift
  mkdir "$R/state-$phase"
  section "play-$phase"
  ansible-playbook -i "$R/inventory" -f 10 "$WORK/site.yml" -e "state_dir=$R/state-$phase" "$@" 2>&1 || rc=$?
  echo "RC $rc"
  section "state-$phase"
  for h in ${HOSTS.join(' ')}; do
    [ ! -f "$R/state-$phase/$h.json" ] || printf 'STATE %s %s\\n' "$h" "$(cat "$R/state-$phase/$h.json")"
  done
  for h in ${HOSTS.join(' ')}; do
    section "fs-$phase-$h"
    MNT=\${ROOT[$h]} observe ${PATHS.map((p) => `"\${ROOT[$h]}"${sq(p)}`).join(' ')}
  done
}
play check --check
play strict --check -e nocow_fail_on_warning=true
play first
play second --diff
`;

interface Recap {
  ok: number;
  changed: number;
  failed: number;
  unreachable: number;
}

/** The PLAY RECAP lines of a play's output, by host. */
function recap(output: string): Map<string, Recap> {
  const found = new Map<string, Recap>();
  const at = output.lastIndexOf('PLAY RECAP');
  if (at < 0) throw new Error(`no PLAY RECAP in:\n${output}`);
  for (const m of output.slice(at).matchAll(/^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/gm)) {
    found.set(m[1]!, { ok: Number(m[2]), changed: Number(m[3]), unreachable: Number(m[4]), failed: Number(m[5]) });
  }
  return found;
}

type State = Record<string, { path: string; state: string; lines: string[]; warnings: string[] }>;

function states(text: string): Map<string, State> {
  return new Map(
    text
      .split('\n')
      .filter((l) => l.startsWith('STATE '))
      .map((l) => {
        const [, host, json] = /^STATE (\S+) (.*)$/.exec(l)!;
        return [host!, JSON.parse(json!) as State];
      }),
  );
}

t.test('GIVEN four hosts (three Btrfs roots, one ext4) WHEN the generated role runs with --check, then twice THEN check changes nothing, the first run makes +C subvolumes, the second changes nothing', async (t) => {
  await writeFile(join(WORK, 'nocow.yaml'), DECLARATION);
  await writeFile(join(WORK, 'site.yml'), SITE);
  const gen = await execa('node', [CLI, 'generate', 'ansible', '-c', join(WORK, 'nocow.yaml'), '-o', WORK], { reject: false });
  t.equal(gen.exitCode, 0, gen.stderr);
  const result = await runInFs({ fs: 'btrfs', second: 'ext4', script: SCRIPT, env: { WORK } });
  t.equal(result.exitCode, 0, result.stderr);
  const out = result.stdout;
  const play = (phase: string) => section(out, `play-${phase}`);

  await t.test('--check on fresh hosts: changed on the Btrfs ones, ok on ext4, nothing made, the warning shown', async (t) => {
    const check = play('check');
    t.match(check, /^RC 0$/m, 'the play succeeds');
    const r = recap(check);
    for (const h of BTRFS_HOSTS) t.match(r.get(h), { changed: 1, failed: 0, unreachable: 0 }, `${h}: changed, not failed`);
    t.match(r.get('h4'), { changed: 0, failed: 0, unreachable: 0 }, 'h4 (ext4): ok');
    for (const h of HOSTS) {
      const fs = parseObservations(section(out, `fs-check-${h}`));
      for (const p of PATHS) t.equal(fs.get(p)?.kind, 'missing', `${h}: ${p} not made`);
    }
    t.match(check, /"nocow: data: warning: user nocow-nobody-here is not in [^"]*\/etc\/passwd; owner left as root"/, 'the warning is in the output');
    const s = states(section(out, 'state-check'));
    t.same([...s.keys()].sort(), HOSTS, 'every host registered its state');
    for (const h of BTRFS_HOSTS) {
      t.same(Object.fromEntries(Object.entries(s.get(h)!).map(([n, v]) => [n, v.state])), { images: 'would-change', odd: 'would-change', data: 'would-change' }, `${h}: would change`);
      t.ok(s.get(h)!.images!.lines.some((l) => l.startsWith('would: btrfs subvolume create -- ')), `${h}: the would lines are kept`);
      t.match(s.get(h)!.data!.warnings, [/^user nocow-nobody-here is not in .*\/etc\/passwd; owner left as root$/], `${h}: data's warning, in its state`);
    }
    t.same(s.get('h4'), { images: { path: IMAGES, state: 'unchanged', lines: [], warnings: [] }, odd: { path: ODD, state: 'unchanged', lines: [], warnings: [] }, data: { path: DATA, state: 'unchanged', lines: [], warnings: [] } }, 'h4: unchanged');
    t.equal(s.get('h1')!.odd!.path, ODD, 'a path like a Jinja expression stays that path');
  });

  await t.test('nocow_fail_on_warning=true: the Btrfs hosts that warn fail, ext4 does not', async (t) => {
    const strict = play('strict');
    t.match(strict, /^RC 2$/m, 'ansible-playbook reports failed hosts');
    const r = recap(strict);
    for (const h of BTRFS_HOSTS) t.match(r.get(h), { failed: 1 }, `${h}: failed`);
    t.match(r.get('h4'), { failed: 0 }, 'h4: not failed');
  });

  await t.test('the first run: +C subvolumes on Btrfs, nothing on ext4', async (t) => {
    const first = play('first');
    t.match(first, /^RC 0$/m, 'the play succeeds (warnings do not fail it)');
    const r = recap(first);
    for (const h of BTRFS_HOSTS) t.match(r.get(h), { changed: 1, failed: 0 }, `${h}: changed`);
    t.match(r.get('h4'), { changed: 0, failed: 0 }, 'h4: ok');
    for (const h of BTRFS_HOSTS) {
      const fs = parseObservations(section(out, `fs-first-${h}`));
      for (const p of PATHS) t.match(fs.get(p), { kind: 'dir', subvol: true, nocow: true }, `${h}: ${p} is a +C subvolume`);
      t.equal(fs.get(IMAGES)?.mode, 0o711, `${h}: the declared mode`);
    }
    for (const p of PATHS) t.equal(parseObservations(section(out, 'fs-first-h4')).get(p)?.kind, 'missing', `h4: ${p} left alone`);
    const s = states(section(out, 'state-first'));
    for (const h of BTRFS_HOSTS) {
      t.same(Object.values(s.get(h)!).map((v) => v.state), ['changed', 'changed', 'changed'], `${h}: every target changed`);
      t.ok(s.get(h)!.odd!.lines.some((l) => l.includes('{{ 6 * 7 }}')), `${h}: the lines keep the path as it is`);
    }
  });

  await t.test('the second run (with --diff): changed=0 everywhere', async (t) => {
    const second = play('second');
    t.match(second, /^RC 0$/m);
    const r = recap(second);
    t.same([...r.keys()].sort(), HOSTS);
    for (const h of HOSTS) t.match(r.get(h), { changed: 0, failed: 0, unreachable: 0 }, `${h}: nothing changed`);
    const s = states(section(out, 'state-second'));
    for (const h of HOSTS) t.same(Object.values(s.get(h)!).map((v) => v.state), ['unchanged', 'unchanged', 'unchanged'], `${h}: unchanged`);
  });
});

// The generation's other promise: all or none under -o DIR, and a declaration of user-scope targets only is refused.
t.test('GIVEN a user-scope-only declaration WHEN the role is generated THEN it is refused in one line, nothing written', async (t) => {
  const dir = await mkdtemp(join(WORK, 'user-'));
  await writeFile(join(dir, 'user.yaml'), 'targets:\n  - {name: boxes, path: "~/VMs", scope: user}\n');
  const r = await execa('node', [CLI, 'generate', 'ansible', '-c', join(dir, 'user.yaml'), '-o', join(dir, 'out')], { reject: false });
  t.equal(r.exitCode, 2);
  t.match(r.stderr, /^nocow: error: artifact ansible needs a target of scope system/);
  t.equal(r.stderr.trim().split('\n').length, 1);
});

// What Ansible reads: PyYAML (YAML 1.1), with its !unsafe tag for the declaration's strings.
const PYYAML = `import json, sys, yaml
yaml.SafeLoader.add_constructor('!unsafe', lambda loader, node: loader.construct_scalar(node))
print(json.dumps(yaml.load(sys.stdin, Loader=yaml.SafeLoader)))`;

t.test('GIVEN values YAML 1.1 would read as others, quotes, controls and non-ASCII WHEN the role\'s vars and defaults are read by PyYAML THEN each is the declared string, tagged !unsafe', async (t) => {
  const odd = target({ name: 'on', path: "/srv/yes/{{ lookup('pipe', 'id') }}: #x 'q\" \\ ~ null \u0085\u00e9\u2028\u{1f600}", mode: '0755', user: 'no', group: '0770', source: 'config:x' });
  const files = renderPlan(planArtifacts({ sources: ['config:x'], targets: [odd] }, ['ansible'], '1'), await loadTemplates());
  const text = (name: string) => files.find((f) => f.file === `roles/nocow/${name}/main.yml`)!.content;
  t.match(text('vars'), /^ {4}path: !unsafe "/m, 'the path is tagged');
  t.notMatch(text('vars'), /[^\x09\x0a\x20-\x7e]/, 'printable ASCII only');
  const read = async (yaml: string) => JSON.parse((await execa('python3', ['-c', PYYAML], { input: yaml })).stdout) as Record<string, unknown>;
  const vars = await read(text('vars'));
  t.same(vars.nocow_declared_targets, [{ name: 'on', path: odd.path, subvolume: odd.subvolume, nocow: true, mode: '0755', owner: 'no', group: '0770', redundancy: odd.redundancy }]);
  t.same(vars.nocow_change_events, ['created', 'converted', 'set-nocow', 'repaired', 'reverted']);
  t.same(await read(text('defaults')), { nocow_root: '/', nocow_fail_on_warning: false });
});

t.test('GIVEN the generated role WHEN its tasks are read THEN each uses only modules of ansible-core (ansible.builtin)', async (t) => {
  const dir = await mkdtemp(join(WORK, 'role-'));
  const gen = await execa('node', [CLI, 'generate', 'ansible', '-p', 'libvirt', '-o', dir], { reject: false });
  t.equal(gen.exitCode, 0, gen.stderr);
  const tasks = parse(await readFile(join(dir, 'roles/nocow/tasks/main.yml'), 'utf8')) as Record<string, unknown>[];
  const keywords = new Set(['name', 'check_mode', 'register', 'failed_when', 'changed_when', 'when']);
  const modules = tasks.flatMap((task) => Object.keys(task).filter((k) => !keywords.has(k)));
  t.ok(modules.length >= 3, modules.join(', '));
  t.same(modules.filter((m) => !m.startsWith('ansible.builtin.')), []);
});
