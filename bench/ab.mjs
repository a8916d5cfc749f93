// The timing harness of bench/startup.sh and bench/status.sh: commands measured side by side in one
// run, on a machine that other work may be using. Each round runs every command once, in an order that
// rotates from round to round; each command's time is divided by the baseline's time of the same round,
// and the table gives the median of those ratios (robust to a busy moment, which slows one round of all
// commands alike) beside the median times. No output, stdin empty; a command may exit 0 or 1 (status
// exits 1 when a target deviates), anything else stops the bench.
//
//   node bench/ab.mjs SPEC.json
//   SPEC: { "title": "…", "rounds": 30, "warmup": 3, "commands": [{ "name": "…", "argv": [...] } | { "name": "…", "sh": "…" }, …] }
//   The first command is the baseline (× 1.00).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { commands, rounds = 30, warmup = 3 } = spec;

function once(c) {
  const [file, args] = c.sh !== undefined ? ['/bin/sh', ['-c', c.sh]] : [c.argv[0], c.argv.slice(1)];
  const start = process.hrtime.bigint();
  const r = spawnSync(file, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...c.env } });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.error || (r.status !== 0 && r.status !== 1)) {
    throw new Error(`bench: ${c.name} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}): ${String(r.stderr).trim().split('\n')[0]}`);
  }
  return ms;
}

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const quartiles = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return [s[Math.floor((s.length - 1) / 4)], s[Math.ceil(((s.length - 1) * 3) / 4)]];
};

const loadBefore = loadavg()[0];
for (let i = 0; i < warmup; i++) for (const c of commands) once(c);
const times = commands.map(() => []);
const ratios = commands.map(() => []);
for (let round = 0; round < rounds; round++) {
  const got = [];
  for (let k = 0; k < commands.length; k++) {
    const i = (k + round) % commands.length;
    got[i] = once(commands[i]);
  }
  got.forEach((ms, i) => {
    times[i].push(ms);
    ratios[i].push(ms / got[0]);
  });
}
const loadAfter = loadavg()[0];

const fmt = (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
const lines = [];
if (spec.title) lines.push(`**${spec.title}** (${rounds} rounds, load average ${loadBefore.toFixed(2)} → ${loadAfter.toFixed(2)})`, '');
lines.push('| command | median (ms) | × baseline (median of ratios) | ratios, middle half |');
lines.push('|---|---:|---:|---:|');
commands.forEach((c, i) => {
  const [q1, q3] = quartiles(ratios[i]);
  lines.push(`| ${c.name} | ${fmt(median(times[i]))} | ${median(ratios[i]).toFixed(2)} | ${i === 0 ? '–' : `${q1.toFixed(2)}–${q3.toFixed(2)}`} |`);
});
console.log(lines.join('\n'));
