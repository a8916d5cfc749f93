#!/bin/sh
# Builds nocow-kit's source RPM and binary RPMs from this checkout, with rpmbuild.
#
#   packaging/build-rpm.sh [--no-build] [--sign KEY] OUTDIR
#
#   --no-build   use dist/ as it is (default: `npm run build` first)
#   --sign KEY   sign every package with rpmsign, gpg key KEY (GNUPGHOME from the environment)
#
# OUTDIR gets nocow-kit-VERSION-RELEASE.src.rpm and the noarch packages nocow-kit,
# nocow-rpm-macros and nocow-apply-hook. No network: rpmbuild runs from three sources
# made here, from the checkout and its node_modules (npm ci: the versions package-lock.json
# pins, which the bundling checks):
#
#   nocow-kit-VERSION.tgz          `npm pack` of the checkout (what the npm registry gets)
#   nocow-kit-VERSION-bundle.tgz   `npm run bundle`: the command with every npm dependency
#                                  bundled (dist/), and their license files in one text
#                                  (bundled-licenses.txt); always made from src/, even with
#                                  --no-build
#   nocow-kit-VERSION-bundled.txt  "NAME VERSION LICENSE" per npm package in that bundle: the
#                                  spec's bundled() Provides and License
#
# rpmbuild runs with --nodeps: on Debian its database is empty (no nodejs package in it).
set -eu

usage() { echo "usage: $0 [--no-build] [--sign KEY] OUTDIR" >&2; exit 2; }
build=yes sign=
while [ $# -gt 0 ]; do
  case $1 in
    --no-build) build=no ;;
    --sign) [ $# -ge 2 ] || usage; sign=$2; shift ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || usage
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
SPEC=$REPO/packaging/nocow-kit.spec

for tool in node npm rpm rpmbuild rpmspec tar gzip; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-rpm: $tool not found" >&2; exit 1; }
done
if [ -n "$sign" ]; then
  command -v rpmsign >/dev/null 2>&1 || { echo "build-rpm: rpmsign not found" >&2; exit 1; }
fi

cd "$REPO"
version=$(node -p 'require("./package.json").version')
spec_version=$(rpmspec -q --srpm --qf '%{VERSION}' "$SPEC" 2>/dev/null || :)
if [ "$spec_version" != "$version" ]; then
  echo "build-rpm: $SPEC says Version: $spec_version, package.json $version: update the spec (and its %changelog)" >&2
  exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nocow-build-rpm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
TOP=$WORK/rpmbuild
SOURCES=$TOP/SOURCES
mkdir -p "$SOURCES"

# Sources are dated by the checkout's last commit, so the same commit gives the same tarballs.
SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

if [ "$build" = yes ]; then npm run --silent build >&2; fi
[ -f dist/bin/nocow.js ] || { echo "build-rpm: dist/bin/nocow.js missing: run npm run build" >&2; exit 1; }

# prepare would rebuild dist/ in the checkout: built above, or on purpose not (--no-build).
npm pack --ignore-scripts --silent --pack-destination "$SOURCES" >/dev/null
TGZ=$SOURCES/nocow-kit-$version.tgz
[ -f "$TGZ" ] || { echo "build-rpm: npm pack did not write $TGZ" >&2; exit 1; }
missing=
for f in dist/bin/nocow.js dist/man/nocow.1 dist/completions/nocow.bash dist/completions/_nocow templates/macros.nocow.ejs LICENSE; do
  tar -tzf "$TGZ" "package/$f" >/dev/null 2>&1 || missing="$missing $f"
done
if [ -n "$missing" ]; then
  echo "build-rpm: the npm tarball lacks:$missing (npm run build makes dist/man and dist/completions)" >&2
  exit 1
fi

# The command as the RPM ships it, with its npm dependencies bundled: esbuild's metafile
# says which packages' code is in the bundle, and esbuild.config.mjs checks each one's
# version against package-lock.json (the versions the tests ran with).
npm run --silent bundle -- "$WORK/bundle" >&2
cp "$WORK/bundle/bundled.txt" "$SOURCES/nocow-kit-$version-bundled.txt"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$WORK/bundle" -cf - dist bundled-licenses.txt | gzip -9n >"$SOURCES/nocow-kit-$version-bundle.tgz"

# The Packager tag, as a build system sets it: %packager if rpm has one (~/.rpmmacros),
# else RPM_PACKAGER, else the author of the spec's latest %changelog entry.
packager=$(rpm --eval '%{?packager}')
[ -n "$packager" ] || packager=${RPM_PACKAGER:-$(rpmspec -q --srpm --qf '%{CHANGELOGNAME}' "$SPEC" | sed 's/ - [^ ]*$//')}

# _source_payload/_binary_payload: gzip, which every rpm reads (and Debian's 4.18 writes fast).
rpmbuild -ba --nodeps --quiet \
  --define "_topdir $TOP" \
  --define "packager $packager" \
  --define '_source_payload w9.gzdio' \
  --define '_binary_payload w9.gzdio' \
  --define 'use_source_date_epoch_as_buildtime 1' \
  --define 'clamp_mtime_to_source_date_epoch 1' \
  --define '_buildhost reproducible' \
  "$SPEC" >&2

set -- "$TOP"/SRPMS/*.src.rpm "$TOP"/RPMS/*/*.rpm
if [ -n "$sign" ]; then
  # Debian's rpm names /usr/bin/gpg2, which Debian 12 no longer ships.
  gpg=$(rpm --eval '%{?__gpg}')
  [ -x "$gpg" ] || gpg=$(command -v gpg2 || command -v gpg) || { echo "build-rpm: gpg not found" >&2; exit 1; }
  rpmsign --addsign --define "_gpg_name $sign" --define "__gpg $gpg" "$@" </dev/null >&2
fi
cp "$@" "$OUT/"
for f in "$@"; do echo "$OUT/${f##*/}"; done
