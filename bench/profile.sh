#!/usr/bin/env bash
# Where the CPU goes during one `db-backup backup` of the realistic PostgreSQL set: a machine-wide
# `perf record` (cpu-clock samples, so it works in VMs without hardware counters), reported by
# process and, for db-backup's own threads, by function.
#
#   bench/profile.sh [--rows N]     (default 1930000 rows: a plain dump of about 1 GB)
#
# Needs the test images (scripts/build-images.sh), perf (Debian: linux-perf; installed with
# apt-get when missing and running as root), python3 and cargo. Builds db-backup with symbols into
# target/profile-build. The container runs with --network none and is removed on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
ROWS=1930000
while [ $# -gt 0 ]; do
	case "$1" in
		--rows) ROWS="$2"; shift 2 ;;
		*) echo "usage: bench/profile.sh [--rows N]" >&2; exit 2 ;;
	esac
done
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! command -v perf > /dev/null; then
	[ "$(id -u)" = 0 ] || { log "perf is missing (Debian: linux-perf)"; exit 1; }
	apt-get update -qq > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf > /dev/null
fi

log "building db-backup with symbols"
(cd "$REPO" && CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 \
	cargo build --release --quiet --target-dir target/profile-build)
BIN="$REPO/target/profile-build/release/db-backup"

TAG="dbb-profile-$$"
WORK="$(mktemp -d /var/tmp/dbb-profile.XXXXXX)"
cleanup() { docker rm -f -v "$TAG" > /dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

docker run -d --name "$TAG" --network none -e POSTGRES_PASSWORD="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
	-l "$TAG=1" -l db-backup.type=postgres -l db-backup.service="$TAG" -l 'db-backup.schedule=0 0 1 1 *' \
	-l db-backup.on-startup=false dbb-test/postgres:15 > /dev/null
for _ in $(seq 120); do docker exec "$TAG" pg_isready -q 2> /dev/null && break; sleep 0.5; done
log "loading $ROWS rows"
docker exec "$TAG" psql -X -q -U postgres -c 'CREATE DATABASE bench' > /dev/null
python3 "$HERE/gen_sql.py" postgres --rows "$ROWS" | docker exec -i "$TAG" psql -X -q -U postgres -d bench > /dev/null
docker exec "$TAG" psql -X -q -U postgres -d bench -c 'VACUUM (ANALYZE)' -c CHECKPOINT > /dev/null
sync

log "recording"
perf record -F 499 -e cpu-clock -a -g -o "$WORK/perf.data" -- \
	env DB_BACKUP_ROOT="$WORK/root" DB_BACKUP_SCOPE="$TAG=1" "$BIN" backup "$TAG" 2> "$WORK/perf.log"
samples=$(perf report -i "$WORK/perf.data" --stdio --sort comm 2> /dev/null | awk '/^# Samples:/ { print $3 }')
echo
echo "$samples samples at 499 Hz on $(nproc) cores (one sample ≈ 2 ms of one core)"
echo
echo "## By process (db-backup's threads are named tokio-rt-worker: compression, verification, I/O)"
perf report -i "$WORK/perf.data" --no-children --sort comm --stdio -g none 2> /dev/null | grep -E '^ +[0-9.]+%' | head -12
echo
echo "## db-backup by function (share of all samples)"
perf report -i "$WORK/perf.data" --no-children --comm tokio-rt-worker,db-backup --sort sym --stdio -g none 2> /dev/null \
	| grep -E '^ +[0-9.]+%' | head -12
