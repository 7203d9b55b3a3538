#!/usr/bin/env bash
# Deflate libraries and levels on the benchmark's own data: makes a realistic PostgreSQL dump
# (bench/gen_sql.py, --rows, default 1,000,000: about 520 MB) and a pgbench dump (-s 35, about
# 340 MB) in a throwaway container (--network none), then runs `cargo bench --bench codecs`.
# Dumps are kept in $BENCH_DUMPS (default /var/tmp/dbb-codecs) and reused.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROWS=1000000
[ "${1:-}" = "--rows" ] && ROWS="$2"
DUMPS="${BENCH_DUMPS:-/var/tmp/dbb-codecs}"
mkdir -p "$DUMPS"
if [ ! -s "$DUMPS/realistic-$ROWS.sql" ] || [ ! -s "$DUMPS/pgbench-35.sql" ]; then
	TAG="dbb-codecs-$$"
	trap 'docker rm -f -v "$TAG" > /dev/null 2>&1 || true' EXIT
	docker run -d --name "$TAG" --network none -e POSTGRES_PASSWORD=bench dbb-test/postgres:15 > /dev/null
	for _ in $(seq 120); do docker exec "$TAG" pg_isready -q 2> /dev/null && break; sleep 0.5; done
	sleep 1
	docker exec "$TAG" psql -X -q -U postgres -c 'CREATE DATABASE bench' > /dev/null
	python3 "$HERE/gen_sql.py" postgres --rows "$ROWS" | docker exec -i "$TAG" psql -X -q -U postgres -d bench > /dev/null
	docker exec "$TAG" pg_dump -U postgres bench > "$DUMPS/realistic-$ROWS.sql"
	docker exec "$TAG" pgbench -U postgres -i -s 35 -q postgres > /dev/null 2>&1
	docker exec "$TAG" pg_dump -U postgres postgres > "$DUMPS/pgbench-35.sql"
fi
for f in "$DUMPS/realistic-$ROWS.sql" "$DUMPS/pgbench-35.sql"; do
	printf '%s: gzip -6 ratio %s\n' "$f" "$(awk -v a="$(stat -c %s "$f")" -v b="$(gzip -6 -c "$f" | wc -c)" 'BEGIN { printf "%.3f", a / b }')"
done
cd "$HERE/.." && cargo bench --bench codecs -- "$DUMPS/realistic-$ROWS.sql" "$DUMPS/pgbench-35.sql"
