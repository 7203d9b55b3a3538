#!/usr/bin/env bash
# Every test, for real: builds the local test images (once; cached), then runs unit and
# integration tests against real containers. Usage: scripts/test.sh [cargo test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-images.sh
# Two test threads: each integration test starts database containers on a 2-core machine.
cargo test --locked "$@" -- --test-threads=2
