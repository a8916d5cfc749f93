import t from 'tap';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Target } from '../src/declaration/types.js';
import { ARTIFACTS, IMAGE_ARTIFACTS, planArtifacts } from '../src/plan.js';
import { defragCommandLine, markerComment, renderPlan, type RenderedFile, type Templates } from '../src/render/render.js';
import { unitExecHomeWord, unitExecWord, unitPathValue } from '../src/render/escape.js';
import { loadTemplates } from '../src/templates.js';
import { target } from './helpers/target.js';

// Golden files: test/golden/<file>. After an intended change, regenerate them with
// UPDATE_GOLDEN=1 npx tap test/render.test.ts and review the diff like code.
const GOLDEN = join(import.meta.dirname, 'golden');

/** A target of the golden declaration: a path every escaping must survive, with overrides. */
const golden = (overrides: Partial<Target> = {}): Target =>
  target({ path: "/srv/vm images/$(touch /tmp/pwned)/it's 100%", source: 'config:golden.yaml', ...overrides });
const TARGETS: Target[] = [
  golden(),
  golden({ name: 'plain', path: '/var/lib/plain', subvolume: 'never', nocow: false, mode: '0755', group: 'root', redundancy: 'force-nocow' }),
  golden({ name: 'boxes', path: '~/VM images/100%', scope: 'user', user: '-', group: '-', mode: '0700' }),
];
const DECLARATION = { sources: ['config:golden.yaml'], targets: TARGETS };
// Image builders' artifacts refuse user-scope targets, and kiwi paths with blanks: each gets what it can carry.
const SYSTEM_DECLARATION = { sources: ['config:golden.yaml'], targets: TARGETS.filter((t) => t.scope === 'system') };
const KIWI_DECLARATION = { sources: ['config:golden.yaml'], targets: [golden({ path: "/srv/vm-images/it's<100%>&co" }), TARGETS[1]!] };
// The Arch artifacts call the helper, which takes no option for nocow: false or redundancy: force-nocow.
const HELPER_ARTIFACTS = ['alpm-hook', 'pacman-install'] as const;
const ARCH_DECLARATION = {
  sources: ['config:golden.yaml'],
  targets: [golden(), golden({ name: 'data', path: '/srv/data', mode: '0750', user: 'mysql', group: 'mysql', subvolume: 'never' }), TARGETS[2]!],
};

/** Every artifact, each from the golden declaration it can carry. */
function renderEvery(version: string, templates: Templates): RenderedFile[] {
  const image = ARTIFACTS.filter((a) => IMAGE_ARTIFACTS.has(a));
  const helper: readonly string[] = HELPER_ARTIFACTS;
  return [
    ...renderPlan(planArtifacts(DECLARATION, ARTIFACTS.filter((a) => !IMAGE_ARTIFACTS.has(a) && !helper.includes(a)), version), templates),
    ...renderPlan(planArtifacts(SYSTEM_DECLARATION, image.filter((a) => a !== 'kiwi'), version), templates),
    ...renderPlan(planArtifacts(KIWI_DECLARATION, ['kiwi'], version), templates),
    ...renderPlan(planArtifacts(ARCH_DECLARATION, HELPER_ARTIFACTS, version), templates),
  ];
}

t.test('GIVEN a declaration using every option WHEN every artifact is rendered THEN each file matches its golden copy', async (t) => {
  const files = renderEvery('0.0.0-golden', await loadTemplates());
  t.same(
    files.map((f) => f.file),
    [
      'nocow-requires.spec',
      'nocow-posttrans.spec',
      'nocow-post-nochroot.ks',
      'nocow-post-chroot.ks',
      'tmpfiles.d/nocow-vm.conf',
      'tmpfiles.d/nocow-plain.conf',
      'user-tmpfiles.d/nocow-boxes.conf',
      'nocow-apply.sh',
      'macros.nocow',
      'systemd/system/nocow-defrag.service',
      'systemd/system/nocow-defrag.timer',
      'systemd/user/nocow-defrag.service',
      'systemd/user/nocow-defrag.timer',
      'roles/nocow/tasks/main.yml',
      'roles/nocow/defaults/main.yml',
      'roles/nocow/vars/main.yml',
      'roles/nocow/files/nocow-apply.sh',
      'repart.d/10-root.conf.d/nocow.conf',
      'nocow-mkfs.args',
      'systemd/system/nocow-apply.service',
      'nocow-kiwi-volumes.xml',
      'nocow-vm.hook',
      'nocow-data.hook',
      'nocow.install',
    ],
  );
  for (const f of files) {
    const path = join(GOLDEN, f.file.replaceAll('/', '__'));
    if (process.env.UPDATE_GOLDEN) {
      await mkdir(GOLDEN, { recursive: true });
      await writeFile(path, f.content);
    }
    t.equal(f.content, await readFile(path, 'utf8'), `${f.file} matches test/golden`);
  }
});

t.test('GIVEN the same declaration WHEN rendered twice THEN the bytes are identical', async (t) => {
  const templates = await loadTemplates();
  const once = renderEvery('1', templates);
  const twice = renderEvery('1', templates);
  t.same(once, twice);
});

t.test('GIVEN any artifact WHEN rendered THEN its first comment names tool, version and declaration', async (t) => {
  const files = renderEvery('9.9.9', await loadTemplates());
  for (const f of files) {
    const firstComment = f.content
      .split('\n')
      .find((l) => (l.startsWith('#') && !l.startsWith('#!')) || l.startsWith('<!--'))
      ?.replace(/^<!-- /, '# ');
    // macros.nocow's content depends on no declaration, so its marker names none (issue 8).
    const source = f.file === 'macros.nocow' ? /; the same for every declaration\./ : / from config:golden\.yaml\./;
    t.match(firstComment, new RegExp(`^# Generated by nocow-kit 9\\.9\\.9${source.source}`), f.file);
  }
});

t.test('GIVEN spec artifacts WHEN rendered THEN every % other than the section header is doubled for rpm', async (t) => {
  const files = renderPlan(planArtifacts(DECLARATION, ['posttrans'], '1'), await loadTemplates());
  for (const f of files) {
    const lines = f.content.split('\n').filter((l) => l !== '%posttrans');
    const single = lines.filter((l) => /(^|[^%])%([^%]|$)/.test(l.replace(/%%/g, '')));
    t.same(single, [], `${f.file}: no lone %`);
  }
  const posttrans = files.find((f) => f.file === 'nocow-posttrans.spec')!.content;
  t.match(posttrans, /^%posttrans\n/);
  t.match(posttrans, `'/srv/vm images/$(touch /tmp/pwned)/it'\\''s 100%%'`);
});

t.test('GIVEN user-scope targets only WHEN a system artifact is requested THEN planning refuses with the reason', async (t) => {
  t.throws(() => planArtifacts({ sources: ['x'], targets: [TARGETS[2]!] }, ['posttrans'], '1'), /posttrans needs a target of scope system/);
  const files = planArtifacts({ sources: ['x'], targets: [TARGETS[2]!] }, [], '1').files;
  t.same(files.map((f) => f.artifact), ['user-tmpfiles'], 'the default set is what applies');
});

t.test('GIVEN a source name with a line break WHEN it reaches the marker THEN the marker stays one comment line', async (t) => {
  const marker = markerComment({ tool: 'nocow-kit', version: '1', sources: [], files: [] }, [golden({ source: 'config:a\n%post\nb' })]);
  t.equal(marker.split('\n').length, 1);
});

t.test('GIVEN values with quotes, backslashes, % and $ WHEN written as unit file words THEN each is one double-quoted word systemd reads back as the value', async (t) => {
  t.equal(unitExecWord('/srv/vm images'), '"/srv/vm images"');
  t.equal(unitExecWord(`/srv/"q" it's`), `"/srv/\\"q\\" it's"`);
  t.equal(unitExecWord('/srv/a\\b\\'), '"/srv/a\\\\b\\\\"', 'a trailing backslash stays inside the quotes');
  t.equal(unitExecWord('/srv/100%h'), '"/srv/100%%h"', 'no specifier');
  t.equal(unitExecWord('/srv/$HOME/${X}'), '"/srv/$$HOME/$${X}"', 'no variable substitution');
  t.equal(unitExecWord('/srv/;'), '"/srv/;"');
  t.equal(unitExecHomeWord('~/VM images/100% "x"'), '"%h/VM images/100%% \\"x\\""', '%h stays a specifier');
  t.equal(unitPathValue("/srv/vm images/$(x)/it's 100%"), "/srv/vm images/$(x)/it's 100%%", 'Condition values: only specifiers');
  t.equal(unitPathValue('~/VM images'), '%h/VM images');
  for (const path of ['/srv/vm ', '/srv/vm\\', '~/vm\t']) t.equal(unitPathValue(path), undefined, `${JSON.stringify(path)} cannot end a unit file line`);
});

t.test('GIVEN targets with each defrag setting WHEN the defrag-timer units are planned THEN only those nocow defrag works on are in them, --if-redundant where it depends on the data profile', async (t) => {
  const targets: Target[] = [
    golden({ name: 'auto', path: '/srv/auto' }),
    golden({ name: 'cow', path: '/srv/cow', nocow: false }),
    golden({ name: 'on', path: '/srv/on', redundancy: 'force-nocow', defrag: 'on' }),
    golden({ name: 'forced', path: '/srv/forced', redundancy: 'force-nocow' }),
    golden({ name: 'off', path: '/srv/off', nocow: false, defrag: 'off' }),
  ];
  t.equal(defragCommandLine(targets.slice(0, 3)), '/usr/bin/nocow defrag --ignore-missing --if-redundant "/srv/auto" "/srv/cow" "/srv/on"');
  const files = renderPlan(planArtifacts({ sources: ['config:x'], targets }, ['defrag-timer'], '1'), await loadTemplates());
  t.same(files.map((f) => f.file), ['systemd/system/nocow-defrag.service', 'systemd/system/nocow-defrag.timer']);
  const service = files[0]!.content;
  t.match(service, /^ExecStart=\/usr\/bin\/nocow defrag --ignore-missing --if-redundant "\/srv\/auto" "\/srv\/cow" "\/srv\/on"$/m);
  t.same(service.match(/^ConditionPathIsDirectory=.*$/gm), ['ConditionPathIsDirectory=|/srv/auto', 'ConditionPathIsDirectory=|/srv/cow', 'ConditionPathIsDirectory=|/srv/on']);
  t.notMatch(service, /forced|off/, 'defrag: off, and auto with redundancy: force-nocow, are left out');
  t.match(service, /^CPUSchedulingPolicy=idle$/m);
  t.match(service, /^IOSchedulingClass=idle$/m);
  t.match(files[1]!.content, /^\[Timer\]\nOnCalendar=weekly\nRandomizedDelaySec=6h\nPersistent=true\n/m);
  t.throws(
    () => planArtifacts({ sources: ['config:x'], targets: targets.slice(3) }, ['defrag-timer'], '1'),
    /^artifact defrag-timer needs a target of scope system that nocow defrag works on \(defrag: on, or auto unless nocow: true with redundancy: force-nocow\); the declaration \(config:x\) has none$/,
  );
  t.throws(() => planArtifacts({ sources: ['config:x'], targets }, ['user-defrag-timer'], '1'), /user-defrag-timer needs a target of scope user/);
  t.same(planArtifacts({ sources: ['config:x'], targets }, [], '1').files.filter((f) => f.artifact.includes('defrag')), [], 'not in the default set');
});

t.test('GIVEN a path ending in a blank WHEN the defrag-timer service is rendered THEN it has no ConditionPathIsDirectory= at all, and says why', async (t) => {
  const targets: Target[] = [
    golden({ name: 'a', path: '/srv/a' }),
    golden({ name: 'b', path: '/srv/b ' }),
  ];
  const [service] = renderPlan(planArtifacts({ sources: ['config:x'], targets }, ['defrag-timer'], '1'), await loadTemplates());
  t.notMatch(service!.content, /^ConditionPathIsDirectory=/m, 'a lone condition would keep the other path from ever running');
  t.match(service!.content, /^# No ConditionPathIsDirectory=: a path ends in a blank or a backslash/m);
  t.match(service!.content, /^ExecStart=.* "\/srv\/b "$/m);
});

t.test('GIVEN targets the helper cannot carry WHEN alpm-hook or pacman-install is planned THEN planning refuses in one line, naming the target and the value', async (t) => {
  for (const artifact of HELPER_ARTIFACTS) {
    t.throws(
      () => planArtifacts({ sources: ['config:x'], targets: [golden({ name: 'cow', path: '/srv/cow', nocow: false })] }, [artifact], '1'),
      new RegExp(`^artifact ${artifact} cannot carry target cow \\("/srv/cow"\\): expected nocow: true \\(the helper nocow-apply.sh takes no option for nocow: false\\)$`),
    );
    t.throws(
      () => planArtifacts({ sources: ['config:x'], targets: [golden({ name: 'raid', path: '/srv/raid', redundancy: 'force-nocow' })] }, [artifact], '1'),
      /cannot carry target raid \("\/srv\/raid"\): expected redundancy: keep-checksums \(the helper nocow-apply.sh takes no option for redundancy: force-nocow\)$/,
    );
    t.throws(() => planArtifacts({ sources: ['config:x'], targets: [TARGETS[2]!] }, [artifact], '1'), new RegExp(`^artifact ${artifact} needs a target of scope system`));
  }
  const long = `/srv/${'a'.repeat(255)}`.repeat(16).slice(0, 4000);
  const longTarget = golden({ name: 'long', path: long });
  t.throws(() => planArtifacts({ sources: ['config:x'], targets: [longTarget] }, ['alpm-hook'], '1'), /^artifact alpm-hook cannot carry target long \(.*\): expected a path that fits an alpm hook's lines: at most 4095 bytes each, as pacman reads them \(its Target= or Exec= line would take \d+\)$/);
  const [install] = renderPlan(planArtifacts({ sources: ['config:x'], targets: [longTarget] }, ['pacman-install'], '1'), await loadTemplates());
  t.match(install!.content, long, 'the .install file has no line limit');
  const ok = `/srv/${'b'.repeat(200)}/x`;
  const [hook] = renderPlan(planArtifacts({ sources: ['config:x'], targets: [golden({ name: 'ok', path: ok })] }, ['alpm-hook'], '1'), await loadTemplates());
  t.match(hook!.content, new RegExp(`^Target = srv/b{200}/x/\\*$`, 'm'));
});

t.test('GIVEN a declaration WHEN alpm-hook is planned THEN one nocow-NAME.hook per system-scope target, user-scope ones left out', async (t) => {
  const files = planArtifacts(ARCH_DECLARATION, ['alpm-hook', 'pacman-install'], '1').files;
  t.same(files.map((f) => [f.file, f.targets.map((x) => x.name)]), [['nocow-vm.hook', ['vm']], ['nocow-data.hook', ['data']], ['nocow.install', ['vm', 'data']]]);
});
