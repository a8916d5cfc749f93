// nocow defrag over a tree of hostile names on real Btrfs (issue 14, item 5): every file is either
// defragmented or named with its reason, whatever bytes its name holds. Each file's extents on disk
// after the run are checked against the report, matched by the name's bytes (hex), and the lines
// name every file, escaped.
import t from 'tap';
import { runInFs } from './helpers/fs.js';
import { builtCli } from './helpers/cli.js';

const NC = `node ${builtCli()}`;

// The names as bash's $'…' writes them, and as nocow's lines show them.
const NAMES: [bash: string, shown: string][] = [
  [String.raw`$'new\nline.img'`, String.raw`new\nline.img`],
  [String.raw`$'tab\there.img'`, String.raw`tab\there.img`],
  // What filefrag prints for a file: a parser that splits its output on ": " or lines would be misled.
  [`'x.img: 1 extent found'`, 'x.img: 1 extent found'],
  [String.raw`$'y.img: 1 extent found\nz.img'`, String.raw`y.img: 1 extent found\nz.img`],
  [`'-leading-dash.img'`, '-leading-dash.img'],
  [`"$(printf '%0246d' 0).img"`, `${'0'.repeat(246)}.img`],
  // Not UTF-8: Latin-1 bytes.
  [String.raw`$'\377\376.img'`, String.raw`\xff\xfe.img`],
  [String.raw`$'caf\351.img'`, String.raw`caf\xe9.img`],
  [String.raw`$'\033[31mred.img'`, String.raw`\u001b[31mred.img`],
  [`'$(touch pwned) *?[a].img'`, '$(touch pwned) *?[a].img'],
  [String.raw`$'trailing newline\n'`, String.raw`trailing newline\n`],
  [String.raw`$'\303\251t\303\251 \342\200\256.img'`, 'été \u202e.img'],
];

interface Report {
  state: string;
  files: { path: string; pathHex: string | null; result: string; reason: string | null; extentsBefore: number | null; extentsAfter: number | null }[];
}

t.test('GIVEN fragmented files with hostile names, non-UTF-8 ones and a reflinked pair among them WHEN nocow defrag runs THEN each is defragmented or named with its reason, and its extents on disk agree', async (t) => {
  const run = await runInFs({
    fs: 'btrfs',
    env: { NC },
    script: String.raw`
      set +e
      H="$MNT/hostile"; mkdir "$H"
      n=0
      fragmented() {  # NAME: 4 MiB written whole, then 2 MiB of random 4 KiB writes (O_DIRECT: an extent each)
        n=$((n + 1)); head -c 4M /dev/urandom >"$MNT/work"
        fio --name=frag --filename="$MNT/work" --rw=randwrite --bs=4k --size=4M --io_size=2M --direct=1 --ioengine=psync \
          --randrepeat=1 --randseed=$n --norandommap --output=/dev/null
        mv "$MNT/work" "$H/$1"
      }
      ${NAMES.map(([bash]) => `fragmented ${bash}`).join('\n      ')}
      # A reflinked pair, one name not UTF-8: both shared, so both skipped, by design.
      fragmented $'shared\377.img'; cp --reflink=always "$H"/$'shared\377.img' "$H/shared copy.img"
      sync
      # Every file below, by the hex of its name's bytes (find -print0 keeps every byte), with its extents.
      listing() {
        find "$H" -type f -print0 | while IFS= read -r -d '' f; do
          # filefrag names the file /dev/stdin: its count is read off a line no name can disturb.
          echo "$1 $(printf %s "$f" | od -An -tx1 -v | tr -d ' \n') $(filefrag /dev/stdin <"$f" | sed -E 's/^\/dev\/stdin: ([0-9]+) extents? found$/\1/')"
        done
      }
      listing before
      $NC defrag -n "$H" >"$MNT/dry.out" 2>"$MNT/dry.err"; echo "dry $?"
      $NC defrag --json "$H" >"$MNT/json.out" 2>"$MNT/json.err"; echo "json $?"
      listing after
      echo "pwned $([ -e pwned ] || [ -e "$H/pwned" ] && echo yes || echo no)"
      # The lines, newlines kept apart from those in names (which the lines show escaped).
      printf 'dry.out %s\n' "$(od -An -tx1 -v "$MNT/dry.out" | tr -d ' \n')"
      printf 'dry.err %s\n' "$(od -An -tx1 -v "$MNT/dry.err" | tr -d ' \n')"
      printf 'json.out %s\n' "$(od -An -tx1 -v "$MNT/json.out" | tr -d ' \n')"
      printf 'json.err %s\n' "$(od -An -tx1 -v "$MNT/json.err" | tr -d ' \n')"`,
  });
  t.equal(run.exitCode, 0, run.stderr);
  const lines = run.stdout.split('\n');
  const value = (key: string) => lines.find((l) => l.startsWith(`${key} `))?.slice(key.length + 1) ?? '';
  const text = (key: string) => Buffer.from(value(key), 'hex').toString('utf8');
  const listing = (when: string) => new Map(lines.filter((l) => l.startsWith(`${when} `)).map((l) => l.split(' ').slice(1) as [string, string]).map(([hex, n]) => [hex, Number(n)]));
  const before = listing('before');
  const after = listing('after');
  t.equal(before.size, NAMES.length + 2, `${before.size} files made`);
  for (const [hex, n] of before) t.ok(n > 256, `${Buffer.from(hex, 'hex').toString('latin1')}: fragmented, ${n} extents`);
  t.equal(value('pwned'), 'no', 'no name ran as a command');

  // The dry run names every file in its lines, escaped: one line each (a name's newline is shown as \n).
  t.equal(value('dry'), '0');
  const dry = [...text('dry.out').split('\n'), ...text('dry.err').split('\n')].filter(Boolean);
  t.equal(dry.length, NAMES.length + 2, dry.join('\n'));
  for (const [, shown] of NAMES) {
    const line = dry.find((l) => l.startsWith('nocow: /') && l.includes(`/hostile/${shown}: would defragment: `));
    t.ok(line, `named: ${shown}`);
  }
  t.equal(dry.filter((l) => /\/hostile\/(shared\\xff\.img|shared copy\.img): skipped: \d+ of its extents are shared/.test(l)).length, 2, 'the reflinked pair named, skipped');

  // The real run: every file on disk has its entry, matched by its bytes, and what it says holds on disk.
  t.equal(value('json'), '0', 'skipping shared files is by design');
  t.equal(text('json.err'), '');
  const report = JSON.parse(text('json.out')) as Report;
  t.equal(report.state, 'defragmented');
  const byBytes = new Map(report.files.map((f) => [f.pathHex ?? Buffer.from(f.path).toString('hex'), f]));
  t.equal(report.files.length, before.size, 'one entry per file');
  t.same([...byBytes.keys()].sort(), [...after.keys()].sort(), 'the entries name exactly the files on disk, byte for byte');
  for (const [hex, extents] of after) {
    const entry = byBytes.get(hex);
    const name = Buffer.from(hex, 'hex').toString('latin1');
    if (!entry) {
      t.fail(`not in the report: ${name}`);
      continue;
    }
    if (/shared/.test(name)) {
      t.match(entry, { result: 'skipped', reason: /extents are shared with another file/ }, `${entry.path}: skipped, with its reason`);
      t.equal(extents, before.get(hex), `${entry.path}: left as it was`);
    } else {
      t.equal(entry.result, 'defragmented', `${entry.path}: defragmented`);
      t.ok(extents <= 256 && extents === entry.extentsAfter, `${entry.path}: ${before.get(hex)} → ${extents} extents on disk, as reported (${entry.extentsAfter})`);
    }
  }
  const latin = report.files.find((f) => f.path.endsWith('/hostile/caf\\xe9.img'));
  t.ok(latin?.pathHex?.endsWith(Buffer.from('/hostile/caf\xe9.img', 'latin1').toString('hex')), 'a name that is not UTF-8: shown escaped, its bytes in pathHex');
});
