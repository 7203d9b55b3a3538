#!/usr/bin/env bash
# Benchmark of db-backup against the shell baselines peers use (see bench/README.md).
#
#   bench/run.sh [--scale S] [--runs N] [--only realistic|pgbench|mariadb|idle|latency[,…]]
#                [--no-double] [--pgbench-s N] [--idle-containers N] [--no-build] [--direct] [--keep]
#
# --scale S      dataset size; 1 (default) gives plain dumps of about 1 GB, 0.05 a quick smoke run
# --runs N       repetitions of every measurement, methods alternating (1,2,3,4,1,2,3,4,…);
#                tables show the median (default 2)
# --only LIST    some parts only (comma-separated or repeated); default: all of them
# --no-double    skip db-backup on the realistic PostgreSQL set doubled (RSS must not grow)
# --pgbench-s N  pgbench scale factor (default: 70 × S, as in the issue)
# --idle-containers N   labeled containers the idle daemon watches (default 50)
# --no-build     use target/release/db-backup as it is (default: cargo build --release first)
# --direct       do not confine the idle/latency daemon to the benchmark's containers (by default
#                DB_BACKUP_SCOPE, or bench/helper.py's label-filtering proxy for binaries without
#                it); it then also sees every other labeled container on the engine
# --keep         keep the work directory (dumps, archives, logs) and print its path
# --level-too N  also run db-backup with DB_BACKUP_GZIP_LEVEL=N on every dataset (method (4L)):
#                what a lower level buys in time and costs in size
# --zstd-too     also back up with DB_BACKUP_COMPRESSION=zstd (method (4Z)) and restore that
#                archive (5Z) on every dataset
#
# Needs: Docker with the local test images (scripts/build-images.sh), cargo, python3, and
# /usr/bin/time, gzip, jq (installed with apt-get when missing and running as root).
# Every container it starts carries the label dbb-bench=<run id>, runs with --network none, and is
# removed on exit. The results go to the terminal and to bench/results-<date>[-<variant>].md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CMDLINE="bench/run.sh${*:+ $*}"

SCALE=1
RUNS=2
ONLY=()
DOUBLE=1
BUILD=1
DIRECT=0
KEEP=0
LEVEL_TOO=""
ZSTD_TOO=0
IDLE_N=50
PGBENCH_S=""
ALL_PARTS=(realistic pgbench mariadb idle latency)

PG_IMAGE=dbb-test/postgres:15
MARIADB_IMAGE=dbb-test/mariadb:10.11
BASE_IMAGE=dbb-test/base:bookworm
APP_IMAGE="db-backup:test"
# Rows for a plain dump just over 1 GB (10^9 bytes) at scale 1. Measured: 524 bytes per row in
# pg_dumpall's COPY format (1.9 M rows gave 996 MB); 726 in mariadb-dump's extended INSERTs
# (gen_sql.py gives MariaDB rows with more words), plus 2.5 MB of system tables.
PG_ROWS_PER_SCALE=1930000
MARIADB_ROWS_PER_SCALE=1390000
NEVER='0 0 1 1 *' # schedule label: midnight on January 1st, i.e. not during the benchmark

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- arguments --------------------------------------------------------------------------------
while [ $# -gt 0 ]; do
	case "$1" in
		--scale) [ $# -ge 2 ] || die "--scale needs a value"; SCALE="$2"; shift 2 ;;
		--scale=*) SCALE="${1#*=}"; shift ;;
		--runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS="$2"; shift 2 ;;
		--runs=*) RUNS="${1#*=}"; shift ;;
		--only) [ $# -ge 2 ] || die "--only needs a value"; IFS=, read -r -a more <<< "$2"; ONLY+=("${more[@]}"); shift 2 ;;
		--only=*) IFS=, read -r -a more <<< "${1#*=}"; ONLY+=("${more[@]}"); shift ;;
		--no-double) DOUBLE=0; shift ;;
		--double) DOUBLE=1; shift ;;
		--pgbench-s) [ $# -ge 2 ] || die "--pgbench-s needs a value"; PGBENCH_S="$2"; shift 2 ;;
		--idle-containers) [ $# -ge 2 ] || die "--idle-containers needs a value"; IDLE_N="$2"; shift 2 ;;
		--no-build) BUILD=0; shift ;;
		--direct) DIRECT=1; shift ;;
		--keep) KEEP=1; shift ;;
		--level-too) [ $# -ge 2 ] || die "--level-too needs a value"; LEVEL_TOO="$2"; shift 2 ;;
		--zstd-too) ZSTD_TOO=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$SCALE" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] && awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' \
	|| die "--scale must be a positive number, got '$SCALE'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
[ -z "$LEVEL_TOO" ] || [[ "$LEVEL_TOO" =~ ^[1-9]$ ]] || die "--level-too must be a gzip level from 1 to 9, got '$LEVEL_TOO'"
[[ "$IDLE_N" =~ ^[1-9][0-9]*$ ]] || die "--idle-containers must be a positive integer, got '$IDLE_N'"
[ -z "$PGBENCH_S" ] || [[ "$PGBENCH_S" =~ ^[1-9][0-9]*$ ]] || die "--pgbench-s must be a positive integer"
[ ${#ONLY[@]} -gt 0 ] || ONLY=("${ALL_PARTS[@]}")
for p in "${ONLY[@]}"; do
	[[ " ${ALL_PARTS[*]} " == *" $p "* ]] || die "--only: unknown part '$p' (parts: ${ALL_PARTS[*]})"
done
want() { [[ " ${ONLY[*]} " == *" $1 "* ]]; }

mul() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", a * b + 0.5 }'; } # rounded product
PG_ROWS=$(mul "$PG_ROWS_PER_SCALE" "$SCALE")
MARIADB_ROWS=$(mul "$MARIADB_ROWS_PER_SCALE" "$SCALE")
[ -n "$PGBENCH_S" ] || PGBENCH_S=$(mul 70 "$SCALE")
[ "$PGBENCH_S" -ge 1 ] || PGBENCH_S=1
[ "$PG_ROWS" -ge 1000 ] && [ "$MARIADB_ROWS" -ge 1000 ] || die "--scale $SCALE is too small"

# --- tools and images -------------------------------------------------------------------------
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "bash 5 or newer is needed (for \$EPOCHREALTIME)"
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker Engine is not reachable (docker info failed)"
command -v python3 >/dev/null || die "python3 is needed"
missing=()
[ -x /usr/bin/time ] || missing+=(time)
command -v gzip >/dev/null || missing+=(gzip)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		|| die "missing: ${missing[*]} (install them; /usr/bin/time is GNU time)"
	log "installing ${missing[*]} with apt-get"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
		|| die "apt-get install ${missing[*]} failed"
fi
# Captured first: `grep -q` stops reading at the match, and under pipefail time's SIGPIPE would fail the check.
time_says=$(/usr/bin/time -v true 2>&1 || true)
grep -q 'Maximum resident set size' <<< "$time_says" || die "/usr/bin/time is not GNU time (no -v)"

need_image() {
	docker image inspect "$1" >/dev/null 2>&1 \
		|| die "image $1 is missing: build the test images with scripts/build-images.sh (see images/README.md)"
}
{ want realistic || want pgbench; } && need_image "$PG_IMAGE"
want mariadb && need_image "$MARIADB_IMAGE"
{ want idle || want latency; } && need_image "$BASE_IMAGE"

BIN="$REPO/target/release/db-backup"
if [ "$BUILD" = 1 ]; then
	command -v cargo >/dev/null || die "cargo is needed to build db-backup (or pass --no-build)"
	log "building db-backup (cargo build --release)"
	(cd "$REPO" && cargo build --release --locked -q) || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "$BIN is missing: run cargo build --release"

# --- work directory, run id, cleanup ----------------------------------------------------------
RUN_ID="$(date +%Y%m%d%H%M%S)-$$"
TAG="b$$"                       # prefix of container and service names
LABEL="dbb-bench=$RUN_ID"       # on every container we start
WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/dbb-bench.XXXXXX")"
ROOT="$WORK/backups"            # DB_BACKUP_ROOT for the CLI runs
RESULTS="$WORK/results.tsv"
mkdir -m 700 "$ROOT"
: > "$RESULTS"
DAEMON_PID=""
PROXY_PID=""
T_START=$EPOCHREALTIME

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$DAEMON_PID" 2>/dev/null || true
	fi
	if [ -n "$PROXY_PID" ]; then kill -TERM "$PROXY_PID" 2>/dev/null || true; fi
	local ids
	ids="$(docker ps -aq --filter "label=$LABEL" 2>/dev/null || true)"
	if [ -n "$ids" ]; then
		log "removing $(echo "$ids" | wc -l) benchmark container(s)"
		# shellcheck disable=SC2086
		docker rm -f -v $ids >/dev/null 2>&1 || log "warning: could not remove some containers labeled $LABEL"
	fi
	if [ "$KEEP" = 1 ]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- recording and measuring ------------------------------------------------------------------
info() { printf 'I\t%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }   # dataset key value
global() { printf 'G\t%s\t%s\n' "$1" "$2" >> "$RESULTS"; }          # key value
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --- CPU accounting: where the time goes ---------------------------------------------------------
# Seconds of CPU, read before and after each measurement: the database container's cgroup (the
# server and every process `docker exec` starts in it), the Docker engine's processes (dockerd,
# containerd and the containerd shims, which carry every exec stream), and the whole machine.
CLK_TCK=$(getconf CLK_TCK)
CPU_CONTAINER="" # full id of the container being measured

container_cpu_s() {
	local id="$1" f
	for f in "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" "/sys/fs/cgroup/cpu,cpuacct/docker/$id/cpuacct.usage"; do
		[ -r "$f" ] && { awk '{ printf "%.3f", $1 / 1e9 }' "$f"; return; }
	done
	for f in "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat" "/sys/fs/cgroup/docker/$id/cpu.stat"; do
		[ -r "$f" ] && { awk '$1 == "usage_usec" { printf "%.3f", $2 / 1e6 }' "$f"; return; }
	done
	echo ""
}
engine_cpu_s() {
	local p
	for p in $(pgrep -x 'dockerd|containerd|containerd-shim' || true); do cat "/proc/$p/stat" 2>/dev/null || true; done |
		awk -v t="$CLK_TCK" '{ sub(/^.*\) /, ""); s += $12 + $13 } END { printf "%.3f", s / t }'
}
machine_cpu_s() { awk -v t="$CLK_TCK" '$1 == "cpu" { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / t; exit }' /proc/stat; }
cpu_snapshot() {
	local db=""
	[ -z "$CPU_CONTAINER" ] || db=$(container_cpu_s "$CPU_CONTAINER")
	printf '%s %s %s' "${db:--}" "$(engine_cpu_s)" "$(machine_cpu_s)"
}

# measure DATASET METHOD RUN OUTPUT_FILE|archive:SERVICE|- COMMAND…
# Runs COMMAND under /usr/bin/time -v, stdout to /dev/null, stderr to $WORK/last.err; records
# wall seconds, peak RSS (KiB) of the largest process and the size of OUTPUT_FILE (archive:SERVICE:
# the newest archive of SERVICE, which the command must have written), and the CPU
# seconds used meanwhile by the database container, the Docker engine, the command itself (with
# its children: docker CLI, gzip) and the whole machine.
measure() {
	local ds="$1" method="$2" run="$3" output="$4"
	shift 4
	local t0 t1 rc=0 cpu0 cpu1
	cpu0=$(cpu_snapshot)
	t0=$EPOCHREALTIME
	/usr/bin/time -v -o "$WORK/last.time" "$@" > /dev/null 2> "$WORK/last.err" || rc=$?
	t1=$EPOCHREALTIME
	cpu1=$(cpu_snapshot)
	if [ "$rc" != 0 ]; then
		log "$ds/$method run $run failed (exit $rc): $*"
		tail -n 20 "$WORK/last.err" >&2
		die "$ds/$method failed"
	fi
	local wall rss size=""
	wall=$(elapsed "$t0" "$t1")
	rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/last.time")
	if [[ "$output" == archive:* ]]; then
		output=$(newest_archive "${output#archive:}")
		[ -n "$output" ] || die "$ds/$method: db-backup backup made no archive"
	fi
	[ "$output" = - ] || size=$(stat -c %s "$output")
	local own
	own=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.3f", s }' "$WORK/last.time")
	# C dataset method run database engine command machine (CPU seconds; "-" when unknown)
	awk -v a="$cpu0" -v b="$cpu1" -v own="$own" -v pre="C\t$ds\t$method\t$run" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		db = (x[1] == "-" || y[1] == "-") ? "-" : sprintf("%.3f", y[1] - x[1])
		printf "%s\t%s\t%.3f\t%s\t%.3f\n", pre, db, y[2] - x[2], own, y[3] - x[3] }' >> "$RESULTS"
	printf 'M\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$method" "$run" "$wall" "$rss" "$size" >> "$RESULTS"
	log "  $ds $method #$run: ${wall} s, peak RSS $((rss / 1024)) MiB${size:+, output $size bytes}"
}

# newest_archive <service> [extension]: the newest archive of the service, of either format by default.
newest_archive() {
	{ ls -t "$ROOT/$1"/*${2:-.tar.gz} "$ROOT/$1"/*${2:-.tar.zst} 2>/dev/null || true; } | { grep -v '/safety-' || true; } | head -n 1
}

# --- containers -------------------------------------------------------------------------------
new_password() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

wait_until() { # SECONDS WHAT COMMAND…
	local limit="$1" i # $2: what we wait for (for the reader)
	shift 2
	for ((i = 0; i < limit * 4; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.25
	done
	return 1
}

# start_db ENGINE NAME SERVICE
start_db() {
	local engine="$1" name="$2" svc="$3" image type envs=()
	case "$engine" in
		postgres)
			image=$PG_IMAGE type=postgres
			envs=(-e "POSTGRES_PASSWORD=$(new_password)")
			;;
		mariadb)
			image=$MARIADB_IMAGE type=mysql
			envs=(-e "MARIADB_ROOT_PASSWORD=$(new_password)" -e MARIADB_INITDB_SKIP_TZINFO=1)
			;;
	esac
	log "starting $name ($image, service $svc)"
	docker run -d --name "$name" --network none \
		-l "$LABEL" -l "db-backup.type=$type" -l "db-backup.service=$svc" \
		-l "db-backup.schedule=$NEVER" -l db-backup.on-startup=false \
		"${envs[@]}" "$image" > /dev/null || die "docker run $image failed"
	local ok=0
	case "$engine" in
		postgres) wait_until 180 "pg_isready" docker exec "$name" pg_isready -q && ok=1 ;;
		mariadb) wait_until 180 "mariadb" docker exec "$name" sh -c "$MY_CLIENT" sh -e 'SELECT 1' && ok=1 ;;
	esac
	if [ "$ok" != 1 ]; then
		docker logs --tail 30 "$name" >&2 || true
		die "$name did not become ready within 180 s"
	fi
}

# Commands run inside the database containers. Passwords never leave the container: they come
# from its own environment.
MY_CLIENT='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb -uroot "$@"'
psql_in() { local c="$1" db="$2"; shift 2; docker exec -i "$c" psql -X -U postgres -v ON_ERROR_STOP=1 -q -At -d "$db" "$@"; }
my_in() { local c="$1"; shift; docker exec -i "$c" sh -c "$MY_CLIENT" sh "$@"; }

# settle ENGINE CONTAINER [heavy]: untimed, between measurements. PostgreSQL: after a load or a
# restore, VACUUM ANALYZE (hint bits, visibility map, statistics: otherwise autovacuum and the
# first reader pay for them during the next measurement); always CHECKPOINT. MariaDB: flush the
# buffer pool's dirty pages. Then sync the host's page cache (output files of the last method).
settle() {
	local engine="$1" c="$2" heavy="${3:-}"
	case "$engine" in
		postgres)
			if [ -n "$heavy" ]; then psql_in "$c" bench -c 'VACUUM (ANALYZE)' > /dev/null; fi
			psql_in "$c" postgres -c 'CHECKPOINT' > /dev/null
			;;
		mariadb)
			# Flush fast (io capacity up for the flush only), then back to the defaults.
			my_in "$c" -e 'SET GLOBAL innodb_io_capacity_max = 20000, GLOBAL innodb_io_capacity = 10000, GLOBAL innodb_max_dirty_pages_pct = 0' > /dev/null
			local i dirty t0=$EPOCHREALTIME
			for ((i = 0; i < 600; i++)); do
				dirty=$(my_in "$c" -N -B -e "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | awk '{ print $2 }')
				[ "${dirty:-0}" -gt 64 ] || break
				sleep 0.5
			done
			[ "${dirty:-0}" -le 64 ] || log "warning: MariaDB still has $dirty dirty pages after 300 s"
			[ "$i" -lt 20 ] || log "  (waited $(elapsed "$t0" "$EPOCHREALTIME") s for MariaDB to flush its buffer pool)"
			my_in "$c" -e 'SET GLOBAL innodb_max_dirty_pages_pct = DEFAULT, GLOBAL innodb_io_capacity = DEFAULT, GLOBAL innodb_io_capacity_max = DEFAULT' > /dev/null
			;;
	esac
	sync
}

# count_rows ENGINE CONTAINER TABLE
count_rows() {
	case "$1" in
		postgres) psql_in "$2" bench -c "SELECT count(*) FROM $3" ;;
		mariadb) my_in "$2" -N -B -e "SELECT count(*) FROM bench.$3" ;;
	esac
}

# --- one dataset: (1)–(5) ---------------------------------------------------------------------
# bench_dataset DS ENGINE CONTAINER SERVICE TABLE EXPECTED_ROWS
bench_dataset() {
	local ds="$1" engine="$2" c="$3" svc="$4" table="$5" rows="$6"
	local dump=() client=()
	case "$engine" in
		postgres)
			dump=(pg_dumpall -U postgres)
			client=(psql -X -U postgres -v ON_ERROR_STOP=0 -q -d postgres)
			info "$ds" dump_tool "pg_dumpall"
			;;
		mariadb)
			dump=(sh -c 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb-dump -uroot --all-databases --single-transaction')
			client=(sh -c "$MY_CLIENT" sh)
			info "$ds" dump_tool "mariadb-dump --all-databases --single-transaction"
			;;
	esac
	local gz="$WORK/$ds.sql.gz"
	CPU_CONTAINER=$(docker inspect -f '{{.Id}}' "$c")
	[ -n "$(container_cpu_s "$CPU_CONTAINER")" ] || log "warning: no CPU accounting for $c (cgroup not found): the database column stays empty"

	# Warm-up (page cache) that also measures the plain dump size; the dump must succeed.
	local plain
	plain=$(docker exec "$c" bash -o pipefail -c '"$@" | wc -c' bash "${dump[@]}") || die "$ds: warm-up dump failed"
	info "$ds" plain_bytes "$plain"
	log "$ds: plain dump $plain bytes"

	local r m
	for ((r = 1; r <= RUNS; r++)); do
		# db-backup's gzip run comes last: a plain `restore` below picks its archive.
		local zstd_method=""
		[ "$ZSTD_TOO" = 0 ] || zstd_method=dbbz
		for m in own cli shell ${LEVEL_TOO:+dbbl} $zstd_method dbb; do
			settle "$engine" "$c"
			case "$m" in
				own) measure "$ds" own "$r" - docker exec "$c" sh -c '"$@" > /dev/null' sh "${dump[@]}" ;;
				cli) measure "$ds" cli "$r" - docker exec "$c" "${dump[@]}" ;;
				shell)
					measure "$ds" shell "$r" "$gz" bash -o pipefail -c 'c="$1" out="$2"; shift 2; docker exec "$c" "$@" | gzip -6 > "$out"' \
						bash "$c" "$gz" "${dump[@]}"
					;;
				dbb | dbbl)
					rm -f "$ROOT/$svc"/*.tar.gz
					local level=6
					[ "$m" = dbb ] || level=$LEVEL_TOO
					measure "$ds" "$m" "$r" "archive:$svc" \
						env DB_BACKUP_ROOT="$ROOT" DB_BACKUP_GZIP_LEVEL="$level" "$BIN" backup "$svc"
					;;
				dbbz)
					rm -f "$ROOT/$svc"/*.tar.zst
					measure "$ds" dbbz "$r" "archive:$svc" \
						env DB_BACKUP_ROOT="$ROOT" DB_BACKUP_COMPRESSION=zstd "$BIN" backup "$svc"
					;;
			esac
		done
	done

	# Restores: the baseline replays the last gzip file of (3), db-backup its newest archive.
	local errors_allowed
	for ((r = 1; r <= RUNS; r++)); do
		settle "$engine" "$c"
		case "$engine" in
			postgres)
				measure "$ds" rshell "$r" - bash -o pipefail -c \
					'c="$1" gz="$2"; shift 2
					 docker exec "$c" psql -X -U postgres -q -d postgres -c "DROP DATABASE IF EXISTS bench WITH (FORCE)" &&
					 gunzip -c "$gz" | docker exec -i "$c" "$@"' bash "$c" "$gz" "${client[@]}"
				# pg_dumpall output recreates the role we connect as: that one error is expected.
				errors_allowed='role "postgres" already exists'
				;;
			mariadb)
				measure "$ds" rshell "$r" - bash -o pipefail -c \
					'c="$1" gz="$2"; shift 2
					 docker exec "$c" "$@" -e "DROP DATABASE IF EXISTS bench" &&
					 gunzip -c "$gz" | docker exec -i "$c" "$@"' bash "$c" "$gz" "${client[@]}"
				errors_allowed='^$'
				;;
		esac
		local unexpected
		unexpected=$(grep -E 'ERROR' "$WORK/last.err" | grep -vE "$errors_allowed" || true)
		[ -z "$unexpected" ] || { echo "$unexpected" | head -n 10 >&2; die "$ds: the baseline restore reported errors"; }
		if [ "$engine" = postgres ]; then
			info "$ds" restore_note "The baseline restore drops the database, then replays the pg_dumpall output into the live cluster: psql reported $(grep -c 'ERROR' "$WORK/last.err" || true) expected error(s) (role \"postgres\" already exists)."
		fi
		[ "$(count_rows "$engine" "$c" "$table")" = "$rows" ] || die "$ds: after the baseline restore, $table does not hold $rows rows"
		settle "$engine" "$c" heavy

		measure "$ds" rdbb "$r" - env DB_BACKUP_ROOT="$ROOT" "$BIN" restore "$svc" --no-safety-backup
		[ "$(count_rows "$engine" "$c" "$table")" = "$rows" ] || die "$ds: after db-backup restore, $table does not hold $rows rows"
		settle "$engine" "$c" heavy
		if [ "$ZSTD_TOO" = 1 ]; then
			local zst
			zst=$(newest_archive "$svc" .tar.zst)
			[ -n "$zst" ] || die "$ds: no zstd archive to restore"
			measure "$ds" rdbbz "$r" - env DB_BACKUP_ROOT="$ROOT" "$BIN" restore "$svc" --archive "$(basename "$zst")" --no-safety-backup
			[ "$(count_rows "$engine" "$c" "$table")" = "$rows" ] || die "$ds: after the zstd restore, $table does not hold $rows rows"
			settle "$engine" "$c" heavy
		fi
	done
	rm -f "$gz"
}

# --- datasets ---------------------------------------------------------------------------------
run_realistic() {
	local c="dbb-bench-$TAG-realistic" svc="$TAG-realistic" t0
	start_db postgres "$c" "$svc"
	info realistic describe "Table events ($PG_ROWS rows): id, md5 hex, free text (words from a fixed vocabulary of 24 000 pseudo-words), timestamp, small JSON document"
	log "realistic: generating $PG_ROWS rows"
	t0=$EPOCHREALTIME
	psql_in "$c" postgres -c 'CREATE DATABASE bench' > /dev/null
	python3 "$HERE/gen_sql.py" postgres --rows "$PG_ROWS" | psql_in "$c" bench > /dev/null
	info realistic gen_s "$(elapsed "$t0" "$EPOCHREALTIME")"
	settle postgres "$c" heavy
	bench_dataset realistic postgres "$c" "$svc" events "$PG_ROWS"

	if [ "$DOUBLE" = 1 ]; then
		log "realistic: doubling to $((2 * PG_ROWS)) rows"
		python3 "$HERE/gen_sql.py" postgres --rows "$PG_ROWS" --start "$PG_ROWS" | psql_in "$c" bench > /dev/null
		settle postgres "$c" heavy
		local plain r
		plain=$(docker exec "$c" bash -o pipefail -c 'pg_dumpall -U postgres | wc -c') || die "realistic: warm-up dump failed"
		info realistic plain_bytes_2x "$plain"
		for ((r = 1; r <= RUNS; r++)); do
			settle postgres "$c"
			rm -f "$ROOT/$svc"/*.tar.gz
			measure realistic dbb2x "$r" "archive:$svc" env DB_BACKUP_ROOT="$ROOT" "$BIN" backup "$svc"
		done
	fi
	docker rm -f -v "$c" > /dev/null
}

run_pgbench() {
	local c="dbb-bench-$TAG-pgbench" svc="$TAG-pgbench" t0
	start_db postgres "$c" "$svc"
	info pgbench describe "pgbench -i -s $PGBENCH_S ($((PGBENCH_S * 100000)) accounts)"
	log "pgbench: pgbench -i -s $PGBENCH_S"
	t0=$EPOCHREALTIME
	psql_in "$c" postgres -c 'CREATE DATABASE bench' > /dev/null
	docker exec "$c" pgbench -i -q -s "$PGBENCH_S" -U postgres bench > "$WORK/pgbench.log" 2>&1 \
		|| { tail -n 20 "$WORK/pgbench.log" >&2; die "pgbench -i failed"; }
	info pgbench gen_s "$(elapsed "$t0" "$EPOCHREALTIME")"
	settle postgres "$c" heavy
	bench_dataset pgbench postgres "$c" "$svc" pgbench_accounts "$((PGBENCH_S * 100000))"
	docker rm -f -v "$c" > /dev/null
}

run_mariadb() {
	local c="dbb-bench-$TAG-mariadb" svc="$TAG-mariadb" t0
	start_db mariadb "$c" "$svc"
	info mariadb describe "Table events ($MARIADB_ROWS rows), same kind as the realistic PostgreSQL set"
	log "mariadb: generating $MARIADB_ROWS rows"
	t0=$EPOCHREALTIME
	my_in "$c" -e 'CREATE DATABASE bench'
	python3 "$HERE/gen_sql.py" mariadb --rows "$MARIADB_ROWS" | my_in "$c" bench
	info mariadb gen_s "$(elapsed "$t0" "$EPOCHREALTIME")"
	settle mariadb "$c" heavy
	bench_dataset mariadb mariadb "$c" "$svc" events "$MARIADB_ROWS"
	docker rm -f -v "$c" > /dev/null
}

# --- daemon: idle RSS and pickup latency ------------------------------------------------------
DROOT="$WORK/daemon-root"

start_daemon() {
	[ -d "$DROOT" ] || mkdir -m 700 "$DROOT"
	# The engine is shared: other people's labeled containers come and go. The daemon must see
	# only ours (and never exec into theirs). db-backup's own DB_BACKUP_SCOPE does that where
	# the binary has it; otherwise bench/helper.py's proxy adds the label filter to the daemon's
	# container lists and event subscriptions.
	local daemon_env=(DB_BACKUP_ROOT="$DROOT")
	if [ "$DIRECT" = 1 ]; then
		global daemon_note "The daemon talked to the engine directly (--direct): it also saw every other labeled container on the engine."
	elif grep -qa DB_BACKUP_SCOPE "$BIN"; then
		daemon_env+=(DB_BACKUP_SCOPE="$LABEL")
		global daemon_note "The daemon ran with DB_BACKUP_SCOPE=$LABEL, so it saw only the benchmark's containers (the engine is shared)."
	else
		local upstream="${DOCKER_HOST:-unix:///var/run/docker.sock}"
		[[ "$upstream" == unix://* ]] || die "the label-filtering proxy needs a unix socket DOCKER_HOST (got $upstream); use --direct"
		python3 "$HERE/helper.py" proxy "$WORK/docker.sock" "${upstream#unix://}" "$LABEL" > "$WORK/proxy.log" 2>&1 &
		PROXY_PID=$!
		wait_until 10 "proxy socket" test -S "$WORK/docker.sock" || { cat "$WORK/proxy.log" >&2; die "the proxy did not start"; }
		daemon_env+=(DOCKER_HOST="unix://$WORK/docker.sock")
		global daemon_note "This binary has no DB_BACKUP_SCOPE: the daemon reached the engine through bench/helper.py's proxy, which adds the label filter $LABEL to container lists and event subscriptions, so it saw only the benchmark's containers (the engine is shared). The proxy's memory is not counted."
	fi
	env "${daemon_env[@]}" "$BIN" run > "$WORK/daemon.log" 2>&1 &
	DAEMON_PID=$!
	# Ready once its status says it is connected to the engine (it writes the file before that).
	if ! wait_until 60 "daemon connected" sh -c 'env DB_BACKUP_ROOT="$1" "$2" status --json | jq -e .engine_connected' sh "$DROOT" "$BIN"; then
		tail -n 20 "$WORK/daemon.log" >&2
		die "the daemon did not report a connection to the engine within 60 s"
	fi
	kill -0 "$DAEMON_PID" 2>/dev/null || { tail -n 20 "$WORK/daemon.log" >&2; die "the daemon exited"; }
}

stop_daemon() {
	[ -n "$DAEMON_PID" ] || return 0
	kill -TERM "$DAEMON_PID"
	local rc=0 i
	for ((i = 0; i < 120; i++)); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.25; done
	if kill -0 "$DAEMON_PID" 2>/dev/null; then
		log "warning: the daemon did not exit within 30 s of SIGTERM; killing it"
		kill -KILL "$DAEMON_PID" 2>/dev/null || true
	fi
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=""
	[ "$rc" = 0 ] || log "warning: the daemon exited with $rc after SIGTERM (log: $WORK/daemon.log)"
	if [ -n "$PROXY_PID" ]; then kill -TERM "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""; fi
}

services_in_status() { env DB_BACKUP_ROOT="$DROOT" "$BIN" status --json | jq '[.services[] | select(.next_run != null)] | length'; }

run_idle() {
	log "idle: starting $IDLE_N labeled containers (sleep infinity)"
	seq "$IDLE_N" | xargs -P 4 -I{} docker run -d --name "dbb-bench-$TAG-idle-{}" --network none \
		-l "$LABEL" -l db-backup.type=postgres -l "db-backup.service=$TAG-idle-{}" \
		-l "db-backup.schedule=$NEVER" -l db-backup.on-startup=false \
		--entrypoint sleep "$BASE_IMAGE" infinity > /dev/null || die "starting the idle containers failed"
	start_daemon
	local seen=0 i
	for ((i = 0; i < 240; i++)); do
		seen=$(services_in_status || echo 0)
		[ "$seen" -lt "$IDLE_N" ] || break
		sleep 0.25
	done
	[ "$seen" -ge "$IDLE_N" ] || log "warning: the daemon shows $seen of $IDLE_N services after 60 s"
	log "idle: the daemon schedules $seen services; watching it for 10 s"
	sleep 10
	local hwm rss
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status")
	global idle_containers "$IDLE_N"
	global idle_seen "$seen"
	global idle_hwm_kb "$hwm"
	global idle_rss_kb "$rss"
	log "idle: VmHWM $((hwm / 1024)) MiB, VmRSS $((rss / 1024)) MiB"
}

run_latency() {
	[ -n "$DAEMON_PID" ] || start_daemon
	local i name svc t0 ms found
	for i in 1 2 3 4 5; do
		name="dbb-bench-$TAG-lat-$i" svc="$TAG-lat-$i"
		docker run -d --name "$name" --network none -l "$LABEL" -l db-backup.type=postgres \
			-l "db-backup.service=$svc" -l "db-backup.schedule=$NEVER" -l db-backup.on-startup=false \
			--entrypoint sleep "$BASE_IMAGE" infinity > /dev/null || die "docker run $BASE_IMAGE failed"
		t0=$EPOCHREALTIME # docker run -d returns once the engine has started the container
		found=0
		while awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a < 30) }'; do
			if env DB_BACKUP_ROOT="$DROOT" "$BIN" status --json 2>/dev/null \
				| jq -e --arg s "$svc" --arg c "$name" 'any(.services[]; .service == $s and .container == $c and .next_run != null)' > /dev/null; then
				found=1
				break
			fi
		done
		ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
		if [ "$found" = 1 ]; then
			global latency_ms "$ms"
			log "latency #$i: $ms ms"
		else
			global latency_timeout "$svc"
			log "warning: latency #$i: the daemon did not schedule $svc within 30 s; its log ends:"
			tail -n 10 "$WORK/daemon.log" >&2
		fi
		docker rm -f -v "$name" > /dev/null
		sleep 1
	done
}

# --- main -------------------------------------------------------------------------------------
DATE="$(date -u +%Y-%m-%d)"
global date "$(date -u '+%Y-%m-%d %H:%M UTC')"
global command "$CMDLINE"
global runs "$RUNS"
[ -z "$LEVEL_TOO" ] || global level_too "$LEVEL_TOO"
[ "$ZSTD_TOO" = 0 ] || global zstd_too 1
global machine "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
global cores "$(nproc)"
global engine "$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
global version "$("$BIN" --version 2>/dev/null | awk '{ print $2 }') at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+local changes')"
global binary "target/release/db-backup, $(stat -c %s "$BIN") bytes"
log "run $RUN_ID: scale $SCALE ($PG_ROWS PostgreSQL rows, pgbench -s $PGBENCH_S, $MARIADB_ROWS MariaDB rows), $RUNS run(s), parts: ${ONLY[*]}; work directory $WORK"

want realistic && run_realistic
want pgbench && run_pgbench
want mariadb && run_mariadb
want idle && run_idle
want latency && run_latency
stop_daemon

if docker image inspect "$APP_IMAGE" > /dev/null 2>&1; then
	global image_name "$APP_IMAGE"
	global image_bytes "$(docker image inspect "$APP_IMAGE" --format '{{.Size}}')"
else
	global image_missing "$APP_IMAGE not built (docker build -t $APP_IMAGE .)"
fi
global note "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). The whole run took $(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s."
awk -v s="$SCALE" 'BEGIN { exit !(s < 1) }' && global note "Scale $SCALE: dumps are smaller than the issue's 1 GB; the 1 GB targets are indicative only."

# results-<date>.md for the full benchmark; otherwise the options that differ are in the name.
variant=""
awk -v s="$SCALE" 'BEGIN { exit !(s < 1) }' && variant+="-smoke"
awk -v s="$SCALE" 'BEGIN { exit !(s != 1) }' && variant+="-scale$SCALE"
[ "$RUNS" -ge 2 ] || variant+="-runs$RUNS"
[ -z "$LEVEL_TOO" ] || variant+="-level$LEVEL_TOO"
[ "$ZSTD_TOO" = 0 ] || variant+="-zstd"
[ ${#ONLY[@]} -eq ${#ALL_PARTS[@]} ] || variant+="-$(IFS=-; echo "${ONLY[*]}")"
MD="$HERE/results-$DATE$variant.md"
echo
python3 "$HERE/helper.py" report "$RESULTS" "$MD"
log "markdown written to ${MD#"$REPO"/}"
