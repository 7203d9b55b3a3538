#!/usr/bin/env bash
# The engine stream alone (issue 14): do two dumps in flight, or larger read buffers, move what
# bounds a dump's bytes out of its container? Starts a PostgreSQL container (--network none, removed
# on exit) with two realistic databases of --rows rows each (bench/gen_sql.py; 1,000,000 rows: about
# 520 MB of plain dump each) and a pgbench database (-s --pgbench-scale, default 35: about 340 MB),
# then runs `cargo bench --bench stream` (bench/stream.rs), which prints the tables.
#
#   bench/stream.sh [--rows N] [--pgbench-scale S] [--runs N]
#
# Needs the local test image dbb-test/postgres:15 (scripts/build-images.sh --only postgres).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROWS=1000000 SCALE=35 RUNS=3
while [ $# -gt 0 ]; do
	case "$1" in
		--rows) ROWS="$2"; shift 2 ;;
		--pgbench-scale) SCALE="$2"; shift 2 ;;
		--runs) RUNS="$2"; shift 2 ;;
		-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
		*) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
C="dbb-stream-$$"
trap 'docker rm -f -v "$C" > /dev/null 2>&1 || true' EXIT
docker run -d --name "$C" --network none -l "dbb-bench=$C" -e POSTGRES_PASSWORD="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
	dbb-test/postgres:15 > /dev/null
for _ in $(seq 240); do docker exec "$C" pg_isready -q 2> /dev/null && break; sleep 0.5; done
sleep 1
psql_in() { docker exec -i "$C" psql -X -q -v ON_ERROR_STOP=1 -U postgres "$@" > /dev/null; }
for db in alpha beta; do
	echo "loading $db: $ROWS rows" >&2
	psql_in -c "CREATE DATABASE $db"
	python3 "$HERE/gen_sql.py" postgres --rows "$ROWS" | psql_in -d "$db"
done
echo "loading pgbench: -s $SCALE" >&2
psql_in -c 'CREATE DATABASE pgb'
docker exec "$C" pgbench -i -q -s "$SCALE" -U postgres pgb > /dev/null 2>&1
psql_in -c 'CHECKPOINT' -c 'VACUUM (ANALYZE)'
for db in alpha beta pgb; do psql_in -d "$db" -c 'VACUUM (ANALYZE)'; done
echo "machine: $(nproc) cores; $(docker version --format 'Docker Engine {{.Server.Version}}')" >&2
cd "$HERE/.." && cargo bench --bench stream -- "$C" alpha beta --single pgb --runs "$RUNS"
