#!/bin/sh
# Record what BuildKit builds for the cases in build/ (or only the named ones):
#   testdata/conformance/record.sh [--dir build-multi] [CASE...]
# --dir names another cases folder beside build/ (build-multi/: multi-platform cases, whose
# expected/CASE.args hold --platform; BuildKit needs QEMU's binfmt_misc handlers for them).
# Needs buildctl and BUILDKIT_HOST from `../shared/tools/buildkit-ref up` (on this machine:
# `. /work/bk/env.sh`). The cases are first copied with the modes a git checkout gives
# (dirs 0755, files 0644 or 0755), the same normalisation cli/tests/it/build_conformance.rs
# applies before building them with rbuild, so both engines see the same context.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=build
if [ "${1:-}" = --dir ]; then
  dir=${2:?--dir needs a folder name}; shift 2
fi
[ -d "$here/$dir" ] || { echo "record.sh: no cases folder $here/$dir" >&2; exit 2; }
tools=${RBUILD_SHARED:-$here/../../../shared}/tools
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/build/expected"
if [ $# -eq 0 ]; then
  set -- $(cd "$here/$dir" && for d in */; do [ -f "$d/Dockerfile" ] && echo "${d%/}"; done)
fi
for c in "$@"; do
  cp -a "$here/$dir/$c" "$tmp/build/$c"
  [ -f "$here/$dir/expected/$c.args" ] && cp "$here/$dir/expected/$c.args" "$tmp/build/expected/"
done
find "$tmp/build" -type d -exec chmod 0755 {} +
find "$tmp/build" -type f -perm /111 -exec chmod 0755 {} +
find "$tmp/build" -type f ! -perm /111 -exec chmod 0644 {} +
"$tools/conform-build" record "$tmp/build"
for c in "$@"; do
  [ -f "$tmp/build/expected/$c.json" ] && cp "$tmp/build/expected/$c.json" "$here/$dir/expected/"
done
