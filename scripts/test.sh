#!/usr/bin/env bash
# Every test, for real: builds the local test images (once; cached), then runs unit and
# integration tests against real containers, then checks that no test password ever appeared in
# db-backup's output. Usage: scripts/test.sh [cargo test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-images.sh
# Every db-backup invocation of the tests appends its output here (tests/common/runner.rs).
export DBB_TEST_OUTPUT_LOG="$PWD/target/test-output.log"
mkdir -p target
: > "$DBB_TEST_OUTPUT_LOG"
# Two test threads: each integration test starts database containers on a 2-core machine.
cargo test --locked --no-fail-fast "$@" -- --test-threads=2
scripts/check-secrets.sh "$DBB_TEST_OUTPUT_LOG"
