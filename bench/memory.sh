#!/usr/bin/env bash
# Peak RSS of db-backup's backups and restores, two binaries side by side (issue 14: ≤ 32 MiB).
#
#   bench/memory.sh NEW_BINARY [BASELINE_BINARY] [--pg-rows N] [--my-rows N]
#
# Starts a PostgreSQL and a MariaDB container (--network none, label dbb-bench-memory) with the
# benchmark's realistic table (bench/gen_sql.py; the default row counts give plain dumps of about
# 250 MB, scale 0.25 of bench/run.sh), then, for each binary in turn: a gzip backup, a restore of
# it, a zstd backup and a restore of that, on each engine (`/usr/bin/time -v`: the maximum
# resident set size of the db-backup process). Prints one table and the ratio new ÷ baseline.
# Wall times are printed too but mean little: use bench/run.sh for time.
# Needs the test images (scripts/build-images.sh). Containers are removed on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NEW="${1:?usage: bench/memory.sh NEW_BINARY [BASELINE_BINARY] [--pg-rows N] [--my-rows N]}"
shift
OLD=""
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then OLD="$1"; shift; fi
PG_ROWS=482500 # 0.25 × bench/run.sh's PG_ROWS_PER_SCALE
MY_ROWS=347500 # 0.25 × bench/run.sh's MARIADB_ROWS_PER_SCALE
while [ $# -gt 0 ]; do
	case "$1" in
		--pg-rows) PG_ROWS="$2"; shift 2 ;;
		--my-rows) MY_ROWS="$2"; shift 2 ;;
		*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done
for bin in "$NEW" $OLD; do [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }; done

TAG="dbbmem$$"
WORK="$(mktemp -d /var/tmp/dbb-memory.XXXXXX)"
cleanup() { docker rm -f "$TAG-pg" "$TAG-my" > /dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
pw() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
labels=(-l dbb-bench-memory=1 -l 'db-backup.schedule=0 0 1 1 *' -l db-backup.on-startup=false)
MY_CLIENT='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb -uroot "$@"'

echo "loading $PG_ROWS PostgreSQL rows and $MY_ROWS MariaDB rows" >&2
docker run -d --name "$TAG-pg" --network none "${labels[@]}" -l db-backup.type=postgres \
	-l "db-backup.service=$TAG-pg" -e "POSTGRES_PASSWORD=$(pw)" dbb-test/postgres:15 > /dev/null
docker run -d --name "$TAG-my" --network none "${labels[@]}" -l db-backup.type=mysql \
	-l "db-backup.service=$TAG-my" -e "MARIADB_ROOT_PASSWORD=$(pw)" -e MARIADB_INITDB_SKIP_TZINFO=1 \
	dbb-test/mariadb:10.11 > /dev/null
for _ in $(seq 1 360); do docker exec "$TAG-pg" pg_isready -q 2> /dev/null && break; sleep 0.5; done
sleep 2
docker exec "$TAG-pg" psql -U postgres -qc 'CREATE DATABASE bench'
python3 "$HERE/gen_sql.py" postgres --rows "$PG_ROWS" | docker exec -i "$TAG-pg" psql -X -U postgres -v ON_ERROR_STOP=1 -q -d bench > /dev/null
for _ in $(seq 1 360); do docker exec "$TAG-my" sh -c "$MY_CLIENT" sh -e 'SELECT 1' > /dev/null 2>&1 && break; sleep 0.5; done
docker exec "$TAG-my" sh -c "$MY_CLIENT" sh -e 'CREATE DATABASE bench'
python3 "$HERE/gen_sql.py" mariadb --rows "$MY_ROWS" | docker exec -i "$TAG-my" sh -c "$MY_CLIENT" sh bench

# measure BIN SERVICE WHAT ENV…: one command; prints "WHAT<TAB>peak KiB<TAB>wall".
measure() {
	local bin="$1" svc="$2" what="$3" cmd
	shift 3
	case "$what" in
		backup*) cmd=(backup "$svc") ;;
		restore*) cmd=(restore "$svc" --no-safety-backup) ;;
	esac
	if ! /usr/bin/time -v -o "$WORK/time" env DB_BACKUP_ROOT="$WORK/root" "$@" "$bin" "${cmd[@]}" > "$WORK/out" 2>&1; then
		tail -5 "$WORK/out" >&2
		echo "$bin ${cmd[*]} failed" >&2
		exit 1
	fi
	printf '%s\t%s\t%s\n' "$what" "$(awk -F': ' '/Maximum resident/ { print $2 }' "$WORK/time")" \
		"$(awk -F': ' '/Elapsed/ { print $2 }' "$WORK/time")"
}

# The newest archive is the one a plain restore picks: each restore follows its backup.
run_all() {
	local bin="$1" svc
	for svc in "$TAG-pg" "$TAG-my"; do
		measure "$bin" "$svc" "backup gzip ${svc##*-}"
		measure "$bin" "$svc" "restore gzip ${svc##*-}"
		measure "$bin" "$svc" "backup zstd ${svc##*-}" DB_BACKUP_COMPRESSION=zstd
		measure "$bin" "$svc" "restore zstd ${svc##*-}"
	done
}

run_all "$NEW" > "$WORK/new"
[ -z "$OLD" ] || run_all "$OLD" > "$WORK/old"
echo
echo "peak RSS (MiB) of db-backup; new = $NEW${OLD:+, baseline = $OLD}"
if [ -z "$OLD" ]; then
	awk -F'\t' '{ printf "%-20s %7.1f   (%s)\n", $1, $2 / 1024, $3 }' "$WORK/new"
else
	paste "$WORK/new" "$WORK/old" | awk -F'\t' '{ printf "%-20s new %7.1f  baseline %7.1f  ratio %.2f\n", $1, $2 / 1024, $5 / 1024, $2 / $5 }'
fi
