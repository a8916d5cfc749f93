#!/bin/sh
# Start-up cost of the nocow command against docs/design.md's target: within 1.5× of `node -e 0`.
# Run after `npm run build`. Every command runs once per round, the order rotating, each timed as a
# ratio to `node -e 0` in the same round; the table gives the median of the ratios (bench/ab.mjs), so a
# machine shared with other work slows both sides of a ratio alike. Prints Markdown for BENCHMARKS.md.
#
#   bench/startup.sh [--rounds N] [--build DIR] [--against DIR]
#   --against DIR: also measure the build in DIR (another checkout, `npm run build` done there), in the
#   same rounds: before and after a change, side by side.
#   --build DIR: measure the build in DIR instead of this checkout's. For either option DIR is any
#   directory with dist/bin/nocow.js beside templates/ and package.json: also an installed layout, such
#   as /usr/lib/nocow-kit unpacked from an RPM (rpm2cpio FILE.rpm | cpio -idm). Rows of a DIR are
#   labelled with its name.
set -eu
cd "$(dirname "$0")/.."
rounds=40
build=
against=
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --against) against=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: bench/startup.sh [--rounds N] [--build DIR] [--against DIR]" >&2; exit 2 ;;
  esac
done
if [ -n "$build" ]; then
  [ -f "$build/dist/bin/nocow.js" ] || { echo "bench: $build/dist/bin/nocow.js missing" >&2; exit 1; }
else
  [ -f dist/bin/nocow.js ] || { echo "bench: run npm run build first" >&2; exit 1; }
fi
[ -z "$against" ] || [ -f "$against/dist/bin/nocow.js" ] || { echo "bench: $against/dist/bin/nocow.js missing: run npm run build there" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node=$(command -v node)

# The rows of one build: label, then the nocow.js to run.
rows() {
  label=$1 cli=$2 dir=$work/out-$3
  mkdir -p "$dir"
  cat <<EOF
  { "name": "\`nocow --version\`$label", "argv": ["$node", "$cli", "--version"] },
  { "name": "\`nocow --help\`$label", "argv": ["$node", "$cli", "--help"] },
  { "name": "\`nocow generate -o DIR\`$label", "argv": ["$node", "$cli", "generate", "-o", "$dir"] },
  { "name": "\`nocow generate\` (stdout)$label", "argv": ["$node", "$cli", "generate"] },
  { "name": "\`nocow status\`$label", "argv": ["$node", "$cli", "status"] },
  { "name": "\`nocow status --json\`$label", "argv": ["$node", "$cli", "status", "--json"] },
  { "name": "\`nocow apply --dry-run\`$label", "argv": ["$node", "$cli", "apply", "--dry-run"] }
EOF
}
{
  echo "{ \"rounds\": $rounds, \"warmup\": 3, \"commands\": ["
  echo "  { \"name\": \"\`node -e 0\`\", \"argv\": [\"$node\", \"-e\", \"0\"] },"
  if [ -n "$build" ]; then
    rows " ($(basename "$build"))" "$build/dist/bin/nocow.js" this
  else
    rows '' "$PWD/dist/bin/nocow.js" this
  fi
  if [ -n "$against" ]; then
    echo ','
    rows " ($(basename "$against"))" "$against/dist/bin/nocow.js" against
  fi
  echo '] }'
} >"$work/spec.json"

version=$(node -p 'require("./package.json").version')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain -- src package.json esbuild.config.mjs 2>/dev/null)" ] || commit="$commit + uncommitted changes"
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
echo "\`bench/startup.sh --rounds $rounds${build:+ --build $build}${against:+ --against $against}\`, $(date -u +%Y-%m-%d), nocow-kit $version ($commit), Node $(node --version),"
echo "$(nproc) cores ($cpu), Linux $(uname -r). \`generate -o DIR\` writes to $(stat -f -c %T "$work") ($(df --output=source "$work" | tail -n 1))."
echo "Default declaration (the libvirt profile); here /var/lib/libvirt/images is $( [ -d /var/lib/libvirt/images ] && echo "on $(stat -f -c %T /var/lib/libvirt/images)" || echo "missing, under $(stat -f -c %T /var/lib)")."
echo
node bench/ab.mjs "$work/spec.json"
