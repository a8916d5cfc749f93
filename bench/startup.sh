#!/bin/sh
# Start-up cost of the nocow command against docs/design.md's target: within 1.5× of
# `node -e 0`. Run after `npm run build`; needs hyperfine (apt-get install hyperfine).
# Prints hyperfine's table and each command's ratio to the baseline; the numbers
# that were measured are kept in BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "bench: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
[ -f dist/bin/nocow.js ] || { echo "bench: run npm run build first" >&2; exit 1; }
out=$(mktemp)
hyperfine -N --warmup 5 --runs 30 --export-json "$out" \
  'node -e 0' \
  'node dist/bin/nocow.js --version' \
  'node dist/bin/nocow.js --help' \
  'node dist/bin/nocow.js generate' \
  'node dist/bin/nocow.js generate tmpfiles' >/dev/null
node -e '
  const { results } = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const base = results[0].mean;
  console.log("| command | mean (ms) | σ (ms) | × node -e 0 |");
  console.log("|---|---|---|---|");
  for (const r of results) console.log(`| \`${r.command}\` | ${(r.mean * 1000).toFixed(1)} | ${(r.stddev * 1000).toFixed(1)} | ${(r.mean / base).toFixed(2)} |`);
' "$out"
rm -f "$out"
