#!/usr/bin/env bash
# Restore drills against their targets (issue #13; see bench/README.md, "Drills"):
#
#   1. a drill of the realistic set takes at most 1.5 × a restore of it:
#      `db-backup drill <service>` against `db-backup restore <service> --no-safety-backup --into
#      <fresh container of the same image>`, alternating (drill, restore, drill, restore, …);
#   2. counting rows adds no more than 2 % to backup time: the row counter's CPU seconds on the
#      very dump the backup streamed (extracted from its archive, counted by bench/rowcount.rs)
#      against the backup's wall time, both measured in this run.
#
#   bench/drill.sh [--scale S] [--runs N] [--only realistic|mariadb[,…]] [--no-build] [--keep]
#
# --scale S    dataset size; 1 (default) gives the ~1 GB realistic set of bench/run.sh
# --runs N     measurements of each method (default 3); the median is reported
# --only LIST  datasets: realistic (PostgreSQL, the issue's target) and mariadb (default: both)
# --no-build   use target/release/db-backup and the rowcount bench as they are
# --keep       keep the work directory (archives, logs) and print its path
#
# Needs Docker with the local test images (scripts/build-images.sh), cargo, python3, jq and GNU
# /usr/bin/time. Every container it starts runs with --network none, carries dbb-bench=<run id> and
# is removed on exit (drill containers are removed by db-backup itself; the script checks). Results
# go to the terminal and to bench/results-drill-<date>[-scale<S>-runs<N>].md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CMDLINE="bench/drill.sh${*:+ $*}"

SCALE=1
RUNS=3
ONLY=()
BUILD=1
KEEP=0
ALL_PARTS=(realistic mariadb)
PG_IMAGE=dbb-test/postgres:15
MARIADB_IMAGE=dbb-test/mariadb:10.11
# As bench/run.sh: rows for a plain dump just over 1 GB at scale 1.
PG_ROWS_PER_SCALE=1930000
MARIADB_ROWS_PER_SCALE=1390000
NEVER='0 0 1 1 *'
DRILL_TARGET=1.5   # drill ≤ 1.5 × restore
COUNT_TARGET=0.02  # counting ≤ 2 % of backup time

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
		--scale) [ $# -ge 2 ] || die "--scale needs a value"; SCALE="$2"; shift 2 ;;
		--scale=*) SCALE="${1#*=}"; shift ;;
		--runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS="$2"; shift 2 ;;
		--runs=*) RUNS="${1#*=}"; shift ;;
		--only) [ $# -ge 2 ] || die "--only needs a value"; IFS=, read -r -a more <<< "$2"; ONLY+=("${more[@]}"); shift 2 ;;
		--only=*) IFS=, read -r -a more <<< "${1#*=}"; ONLY+=("${more[@]}"); shift ;;
		--no-build) BUILD=0; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$SCALE" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] && awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' \
	|| die "--scale must be a positive number, got '$SCALE'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
[ ${#ONLY[@]} -gt 0 ] || ONLY=("${ALL_PARTS[@]}")
for p in "${ONLY[@]}"; do
	[[ " ${ALL_PARTS[*]} " == *" $p "* ]] || die "--only: unknown dataset '$p' (datasets: ${ALL_PARTS[*]})"
done
want() { [[ " ${ONLY[*]} " == *" $1 "* ]]; }
mul() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", a * b + 0.5 }'; }
PG_ROWS=$(mul "$PG_ROWS_PER_SCALE" "$SCALE")
MARIADB_ROWS=$(mul "$MARIADB_ROWS_PER_SCALE" "$SCALE")
[ "$PG_ROWS" -ge 1000 ] && [ "$MARIADB_ROWS" -ge 1000 ] || die "--scale $SCALE is too small"

# --- tools, images, binaries --------------------------------------------------------------------
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "bash 5 or newer is needed (for \$EPOCHREALTIME)"
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker Engine is not reachable (docker info failed)"
for tool in python3 jq tar; do command -v "$tool" >/dev/null || die "$tool is needed"; done
time_says=$(/usr/bin/time -v true 2>&1 || true)
grep -q 'Maximum resident set size' <<< "$time_says" || die "/usr/bin/time is not GNU time (apt-get install time)"
need_image() {
	docker image inspect "$1" >/dev/null 2>&1 || die "image $1 is missing: build the test images with scripts/build-images.sh"
}
want realistic && need_image "$PG_IMAGE"
want mariadb && need_image "$MARIADB_IMAGE"

BIN="$REPO/target/release/db-backup"
if [ "$BUILD" = 1 ]; then
	command -v cargo >/dev/null || die "cargo is needed (or pass --no-build)"
	log "building db-backup and the row-counter bench (release)"
	(cd "$REPO" && cargo build --release --locked -q) || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "$BIN is missing: run cargo build --release"
# The rowcount bench's executable (built now, or found from the last build with --no-build).
COUNTER=$(cd "$REPO" && cargo bench --locked -q --bench rowcount --no-run --message-format=json 2>/dev/null |
	jq -r 'select(.reason == "compiler-artifact" and .target.name == "rowcount" and .executable != null) | .executable' |
	tail -n 1)
[ -n "$COUNTER" ] && [ -x "$COUNTER" ] || die "cannot build the rowcount bench (cargo bench --bench rowcount --no-run)"

# --- work directory, cleanup ----------------------------------------------------------------------
RUN_ID="$(date +%Y%m%d%H%M%S)-$$"
TAG="d$$"
LABEL="dbb-bench=$RUN_ID"
WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/dbb-drill-bench.XXXXXX")"
ROOT="$WORK/backups"
RESULTS="$WORK/results.tsv"
mkdir -m 700 "$ROOT"
: > "$RESULTS"
T_START=$EPOCHREALTIME

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local ids
	ids="$(docker ps -aq --filter "label=$LABEL" 2>/dev/null || true)"
	if [ -n "$ids" ]; then
		log "removing $(echo "$ids" | wc -l) benchmark container(s)"
		# shellcheck disable=SC2086
		docker rm -f -v $ids >/dev/null 2>&1 || log "warning: could not remove some containers labeled $LABEL"
	fi
	if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; } # dataset key run value

# timed DATASET METHOD RUN COMMAND…: wall seconds and db-backup's own CPU seconds (user + sys).
timed() {
	local ds="$1" method="$2" run="$3" t0 t1 rc=0
	shift 3
	sync
	t0=$EPOCHREALTIME
	/usr/bin/time -v -o "$WORK/last.time" "$@" > "$WORK/last.out" 2> "$WORK/last.err" || rc=$?
	t1=$EPOCHREALTIME
	if [ "$rc" != 0 ]; then
		tail -n 20 "$WORK/last.err" >&2
		die "$ds/$method run $run failed (exit $rc): $*"
	fi
	local wall cpu
	wall=$(elapsed "$t0" "$t1")
	cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.3f", s }' "$WORK/last.time")
	record "$ds" "$method" "$run" "$wall"
	record "$ds" "$method.cpu" "$run" "$cpu"
	log "  $ds $method #$run: $wall s (db-backup CPU $cpu s)"
}

# --- containers ---------------------------------------------------------------------------------------
new_password() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
MY_CLIENT='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb -uroot "$@"'
psql_in() { local c="$1" db="$2"; shift 2; docker exec -i "$c" psql -X -U postgres -v ON_ERROR_STOP=1 -q -At -d "$db" "$@"; }
my_in() { local c="$1"; shift; docker exec -i "$c" sh -c "$MY_CLIENT" sh "$@"; }

wait_ready() { # ENGINE CONTAINER
	local i
	for ((i = 0; i < 720; i++)); do
		case "$1" in
			postgres) docker exec "$2" pg_isready -q >/dev/null 2>&1 && return 0 ;;
			mariadb) my_in "$2" -e 'SELECT 1' >/dev/null 2>&1 && return 0 ;;
		esac
		sleep 0.25
	done
	docker logs --tail 30 "$2" >&2 || true
	die "$2 did not become ready within 180 s"
}

# start_db ENGINE NAME [SERVICE]: a database container; with SERVICE, labeled for db-backup.
start_db() {
	local engine="$1" name="$2" svc="${3:-}" image type labels=(-l "$LABEL") envs=()
	case "$engine" in
		postgres) image=$PG_IMAGE type=postgres envs=(-e "POSTGRES_PASSWORD=$(new_password)") ;;
		mariadb) image=$MARIADB_IMAGE type=mysql envs=(-e "MARIADB_ROOT_PASSWORD=$(new_password)" -e MARIADB_INITDB_SKIP_TZINFO=1) ;;
	esac
	[ -z "$svc" ] || labels+=(-l "db-backup.type=$type" -l "db-backup.service=$svc" -l "db-backup.schedule=$NEVER" -l db-backup.on-startup=false)
	docker run -d --name "$name" --network none "${labels[@]}" "${envs[@]}" "$image" > /dev/null || die "docker run $image failed"
	wait_ready "$engine" "$name"
}

count_rows() { # ENGINE CONTAINER
	case "$1" in
		postgres) psql_in "$2" bench -c 'SELECT count(*) FROM events' ;;
		mariadb) my_in "$2" -N -B -e 'SELECT count(*) FROM bench.events' ;;
	esac
}

drill_containers() { docker ps -aq --filter "label=db-backup-drill=$1" | wc -l; }

# --- one dataset ----------------------------------------------------------------------------------------
bench_dataset() {
	local ds="$1" engine="$2" rows="$3"
	local c="dbb-bench-$TAG-$ds" svc="$TAG-$ds" t0 r
	log "$ds: starting $c and generating $rows rows"
	start_db "$engine" "$c" "$svc"
	t0=$EPOCHREALTIME
	case "$engine" in
		postgres)
			psql_in "$c" postgres -c 'CREATE DATABASE bench' > /dev/null
			python3 "$HERE/gen_sql.py" postgres --rows "$rows" | psql_in "$c" bench > /dev/null
			psql_in "$c" bench -c 'VACUUM (ANALYZE)' > /dev/null
			psql_in "$c" postgres -c 'CHECKPOINT' > /dev/null
			;;
		mariadb)
			my_in "$c" -e 'CREATE DATABASE bench'
			python3 "$HERE/gen_sql.py" mariadb --rows "$rows" | my_in "$c" bench
			;;
	esac
	record "$ds" gen_s 0 "$(elapsed "$t0" "$EPOCHREALTIME")"
	[ "$(count_rows "$engine" "$c")" = "$rows" ] || die "$ds: the generated table does not hold $rows rows"

	# (a) Backups (row counting is always on): wall time and db-backup's CPU.
	for ((r = 1; r <= RUNS; r++)); do
		rm -f "$ROOT/$svc"/*.tar.gz
		timed "$ds" backup "$r" env DB_BACKUP_ROOT="$ROOT" "$BIN" backup "$svc"
	done
	local archive entry
	archive=$(ls -t "$ROOT/$svc"/*.tar.gz | head -n 1)
	record "$ds" archive_bytes 0 "$(stat -c %s "$archive")"
	# The counts the backup recorded must be the table's real count.
	entry="databases/bench.sql"
	local recorded
	recorded=$(tar -xzOf "$archive" manifest.json | jq -r --arg e "$entry" '.entries[] | select(.name == $e) | .tables | to_entries[] | select(.key | test("events")) | .value')
	[ "$recorded" = "$rows" ] || die "$ds: the manifest records '$recorded' rows for events, the table holds $rows"

	# (b) The counter's CPU on that very dump, in 32 KiB chunks as the stream delivers it.
	tar -xzOf "$archive" "$entry" > "$WORK/dump.sql"
	record "$ds" dump_bytes 0 "$(stat -c %s "$WORK/dump.sql")"
	local counted bytes cpu counted_rows
	counted=$(DBB_BENCH_DUMP="$WORK/dump.sql" DBB_BENCH_ENGINE="$engine" DBB_BENCH_TSV=1 "$COUNTER") || die "$ds: the counter failed"
	IFS=$'\t' read -r bytes cpu counted_rows <<< "$counted"
	[ "$counted_rows" = "$rows" ] || die "$ds: the counter found $counted_rows rows, the table holds $rows"
	record "$ds" count_cpu 0 "$cpu"
	log "  $ds counter: $bytes bytes in $cpu CPU s ($counted_rows rows)"
	rm -f "$WORK/dump.sql"

	# (c) Drill and restore --into a fresh container of the same image, alternating.
	for ((r = 1; r <= RUNS; r++)); do
		timed "$ds" drill "$r" env DB_BACKUP_ROOT="$ROOT" "$BIN" drill "$svc"
		grep -q "passed on" "$WORK/last.out" || { cat "$WORK/last.out" "$WORK/last.err" >&2; die "$ds: the drill did not pass"; }
		[ "$(drill_containers "$svc")" = 0 ] || die "$ds: a drill container was left behind"
		local target="dbb-bench-$TAG-$ds-into-$r"
		start_db "$engine" "$target"
		timed "$ds" restore "$r" env DB_BACKUP_ROOT="$ROOT" "$BIN" restore "$svc" --no-safety-backup --into "$target"
		[ "$(count_rows "$engine" "$target")" = "$rows" ] || die "$ds: the restore into $target does not hold $rows rows"
		docker rm -f -v "$target" > /dev/null
	done
	docker rm -f -v "$c" > /dev/null
}

log "run $RUN_ID: scale $SCALE, $RUNS runs, datasets ${ONLY[*]}"
want realistic && bench_dataset realistic postgres "$PG_ROWS"
want mariadb && bench_dataset mariadb mariadb "$MARIADB_ROWS"

# --- report ---------------------------------------------------------------------------------------------
DATE=$(date +%Y-%m-%d)
SUFFIX=""
[ "$SCALE" = 1 ] && [ "$RUNS" = 3 ] || SUFFIX="-scale$SCALE-runs$RUNS"
OUT="$HERE/results-drill-$DATE$SUFFIX.md"
python3 - "$RESULTS" "$OUT" "$CMDLINE" "$(elapsed "$T_START" "$EPOCHREALTIME")" "$DRILL_TARGET" "$COUNT_TARGET" <<'PY'
import collections, statistics, sys
results, out, cmdline, total, drill_target, count_target = sys.argv[1:]
drill_target, count_target = float(drill_target), float(count_target)
data = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(results):
    ds, key, run, value = line.rstrip("\n").split("\t")
    data[ds][key].append(float(value))
med = lambda xs: statistics.median(xs)
lines = [f"# Drill benchmark ({cmdline})", "", f"Total time {float(total):.0f} s.", ""]
verdicts = []
for ds, d in data.items():
    backup, drill, restore = med(d["backup"]), med(d["drill"]), med(d["restore"])
    count_cpu = d["count_cpu"][0]
    gb = d["dump_bytes"][0] / 1e9
    lines += [f"## {ds}", "",
              f"Plain dump {d['dump_bytes'][0] / 1e6:.0f} MB, archive {d['archive_bytes'][0] / 1e6:.0f} MB, "
              f"generated in {d['gen_s'][0]:.0f} s.", "",
              "| method | runs (s) | median (s) | db-backup CPU, median (s) |", "|---|---|---|---|"]
    for m in ("backup", "drill", "restore"):
        runs = ", ".join(f"{x:.1f}" for x in d[m])
        lines.append(f"| {m} | {runs} | {med(d[m]):.1f} | {med(d[m + '.cpu']):.1f} |")
    ratio = drill / restore
    share = count_cpu / backup
    v1 = "PASS" if ratio <= drill_target else "MISS"
    v2 = "PASS" if share <= count_target else "MISS"
    lines += ["",
              f"- drill / restore --into: **{ratio:.2f}** (target ≤ {drill_target}): **{v1}**",
              f"- row counting: {count_cpu:.2f} CPU s on the {gb:.2f} GB dump ({gb / count_cpu:.2f} GB/s) = "
              f"**{100 * share:.2f} %** of the backup's {backup:.1f} s wall time, an upper bound of what it adds "
              f"(target ≤ {100 * count_target:.0f} %): **{v2}**; {100 * count_cpu / med(d['backup.cpu']):.1f} % of "
              f"db-backup's own CPU", ""]
    verdicts += [(ds, "drill ≤ 1.5 × restore", ratio, v1), (ds, "counting ≤ 2 % of backup", share, v2)]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
for ds, what, value, v in verdicts:
    print(f"{v}  {ds}: {what} ({value:.3f})")
PY
log "results written to $OUT"
