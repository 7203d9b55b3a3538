#!/usr/bin/env bash
# Build Garage (the self-hosted S3-compatible store the offsite tests run against) once per
# machine, from crates.io, into a cache shared by every checkout:
#
#   ${DBB_TOOLS_CACHE:-/var/tmp/db-backup-tools}/bin/garage
#
# Skipped when that binary exists and answers `--version`. Prints the binary's path on stdout.
# Garage is a program we run, not a library we link (AGPL): nothing of it enters db-backup.
set -euo pipefail

GARAGE_VERSION=2.5.0
CACHE_DIR="${DBB_TOOLS_CACHE:-/var/tmp/db-backup-tools}"
BIN="$CACHE_DIR/bin/garage"

garage_ok() { [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -Fq "$GARAGE_VERSION"; }

mkdir -p "$CACHE_DIR"
# One build per machine even when two checkouts ask at once: the second waits, then finds it.
exec 9>"$CACHE_DIR/.garage.lock"
flock 9
if garage_ok; then
  echo "$BIN"
  exit 0
fi

echo "building garage $GARAGE_VERSION into $CACHE_DIR (takes minutes; cached afterwards)" >&2
start=$SECONDS
# A private target directory so the build never touches a checkout's target/ and leaves no junk.
build_dir="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
trap 'rm -rf "$build_dir"' EXIT
CARGO_TARGET_DIR="$build_dir" cargo install garage --locked --version "$GARAGE_VERSION" \
  --root "$CACHE_DIR" --quiet >&2
garage_ok || { echo "garage was built but $BIN --version does not answer $GARAGE_VERSION" >&2; exit 1; }
echo "garage $GARAGE_VERSION built in $((SECONDS - start)) s" >&2
echo "$BIN"
