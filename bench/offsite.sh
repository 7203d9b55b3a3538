#!/usr/bin/env bash
# Upload benchmark of the offsite copy (see bench/README.md, "Offsite upload"): `db-backup sync`
# of one ~1 GiB archive against `rclone copyto` of the same file to the same local Garage.
#
#   bench/offsite.sh [--size-mib N] [--runs N] [--no-build] [--keep]
#
# --size-mib N   size of the archive to upload, in MiB (default 1024: the issue's 1 GB)
# --runs N       timed uploads per method, alternating (db-backup, rclone, db-backup, …; default 3);
#                tables show every run and the median
# --no-build     use target/release/db-backup as it is (default: cargo build --release first)
# --keep         keep the work directory (archive, Garage's data, logs) and print its path
#
# The archive is a real one: a PostgreSQL container (dbb-test/postgres:15, --network none) is
# filled with random bytes (base64 text, which gzip cannot shrink much) and backed up by
# `db-backup backup` at DB_BACKUP_GZIP_LEVEL=1, so it carries its manifest and its verification
# record, and `sync` uploads it as it would any archive.
#
# Needs: Docker with the local test images (scripts/build-images.sh), cargo, rclone, python3,
# /usr/bin/time (GNU), and Garage (scripts/build-garage.sh; run here if the binary is missing).
# Credentials live in files of the work directory (mode 600), never on a command line.
# Results go to the terminal and to bench/results-<date>-offsite[-<variant>].md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
CMDLINE="bench/offsite.sh${*:+ $*}"

SIZE_MIB=1024
RUNS=3
BUILD=1
KEEP=0
PG_IMAGE=dbb-test/postgres:15
BUCKET=bench
TIME_TARGET=1.2  # db-backup's upload time ≤ 1.2 × rclone copyto's
RSS_TARGET_MIB=32

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
		--size-mib) [ $# -ge 2 ] || die "--size-mib needs a value"; SIZE_MIB="$2"; shift 2 ;;
		--size-mib=*) SIZE_MIB="${1#*=}"; shift ;;
		--runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS="$2"; shift 2 ;;
		--runs=*) RUNS="${1#*=}"; shift ;;
		--no-build) BUILD=0; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$SIZE_MIB" =~ ^[1-9][0-9]*$ ]] || die "--size-mib must be a positive integer, got '$SIZE_MIB'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- tools ------------------------------------------------------------------------------------
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "bash 5 or newer is needed (for \$EPOCHREALTIME)"
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker Engine is not reachable (docker info failed)"
command -v python3 >/dev/null || die "python3 is needed (free ports)"
missing=()
[ -x /usr/bin/time ] || missing+=(time)
command -v rclone >/dev/null || missing+=(rclone)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		|| die "missing: ${missing[*]} (install them; /usr/bin/time is GNU time)"
	log "installing ${missing[*]} with apt-get"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
		|| die "apt-get install ${missing[*]} failed"
fi
time_says=$(/usr/bin/time -v true 2>&1 || true)
grep -q 'Maximum resident set size' <<< "$time_says" || die "/usr/bin/time is not GNU time (no -v)"
docker image inspect "$PG_IMAGE" >/dev/null 2>&1 \
	|| die "image $PG_IMAGE is missing: build the test images with scripts/build-images.sh (see images/README.md)"
GARAGE=$("$REPO/scripts/build-garage.sh") || die "scripts/build-garage.sh failed"

BIN="$REPO/target/release/db-backup"
if [ "$BUILD" = 1 ]; then
	command -v cargo >/dev/null || die "cargo is needed to build db-backup (or pass --no-build)"
	log "building db-backup (cargo build --release)"
	(cd "$REPO" && cargo build --release --locked -q) || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "$BIN is missing: run cargo build --release"

# --- work directory, cleanup ------------------------------------------------------------------
RUN_ID="$(date +%Y%m%d%H%M%S)-$$"
LABEL="dbb-bench=$RUN_ID"
SVC="offsite-$$"
WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/dbb-bench-offsite.XXXXXX")"
ROOT="$WORK/backups"
mkdir -m 700 "$ROOT" "$WORK/secrets"
GARAGE_PID=""
T_START=$EPOCHREALTIME

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$GARAGE_PID" ]; then kill -TERM "$GARAGE_PID" 2>/dev/null || true; wait "$GARAGE_PID" 2>/dev/null || true; fi
	local ids
	ids="$(docker ps -aq --filter "label=$LABEL" 2>/dev/null || true)"
	# shellcheck disable=SC2086
	[ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || log "warning: could not remove the container labeled $LABEL"
	if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

wait_until() { # SECONDS COMMAND…
	local limit="$1" i
	shift
	for ((i = 0; i < limit * 4; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.25
	done
	return 1
}

# --- Garage: one node on 127.0.0.1 (as tests/integration/offsite/garage.rs) ---------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RPC_PORT=$(free_port) S3_PORT=$(free_port) ADMIN_PORT=$(free_port)
ENDPOINT="http://127.0.0.1:$S3_PORT"
(
	umask 077
	cat > "$WORK/garage.toml" <<EOF
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
EOF
)
garage() { "$GARAGE" -c "$WORK/garage.toml" "$@"; }
log "starting Garage ($("$GARAGE" --version 2>/dev/null | head -n 1)) on $ENDPOINT"
RUST_LOG=garage=warn "$GARAGE" -c "$WORK/garage.toml" server > "$WORK/garage.log" 2>&1 &
GARAGE_PID=$!
wait_until 30 garage status || { tail -n 20 "$WORK/garage.log" >&2; die "Garage did not answer within 30 s"; }
node=$(garage node id -q | cut -d@ -f1)
garage layout assign -z dc1 -c 10G "$node" > /dev/null
garage layout apply --version 1 > /dev/null
(
	umask 077
	garage key create dbb-bench > "$WORK/secrets/key.txt"
	awk -F': *' '/Key ID:/ { printf "%s", $2 > "'"$WORK/secrets/key_id"'" }
	             /Secret key:/ { printf "%s", $2 > "'"$WORK/secrets/secret"'" }' "$WORK/secrets/key.txt"
	rm -f "$WORK/secrets/key.txt"
	[ -s "$WORK/secrets/key_id" ] && [ -s "$WORK/secrets/secret" ] || exit 1
	# rclone reads its remote from this file: the keys never go on a command line.
	cat > "$WORK/secrets/rclone.conf" <<EOF
[g]
type = s3
provider = Other
endpoint = $ENDPOINT
region = garage
access_key_id = $(cat "$WORK/secrets/key_id")
secret_access_key = $(cat "$WORK/secrets/secret")
force_path_style = true
EOF
) || die "garage key create gave no key id and secret"
garage bucket create "$BUCKET" > /dev/null
garage bucket allow --read --write --owner "$BUCKET" --key "$(cat "$WORK/secrets/key_id")" > /dev/null

# rclone and db-backup see only this Garage: no AWS_* or RCLONE_* from the caller's environment.
for v in $(env | awk -F= '/^(AWS_|RCLONE_)/ { print $1 }'); do unset "$v"; done
export RCLONE_CONFIG="$WORK/secrets/rclone.conf"
# db-backup's remote: s3://bench/site, host "bench"; keys from files.
DBB_ENV=(
	DB_BACKUP_ROOT="$ROOT"
	DB_BACKUP_REMOTE="s3://$BUCKET/site"
	DB_BACKUP_HOST=bench
	DB_BACKUP_SCOPE="$LABEL"
	AWS_ENDPOINT_URL="$ENDPOINT"
	AWS_REGION=garage
	AWS_ACCESS_KEY_ID_FILE="$WORK/secrets/key_id"
	AWS_SECRET_ACCESS_KEY_FILE="$WORK/secrets/secret"
)
OURS_KEY="site/bench/$SVC"

# --- the archive: a real backup of a PostgreSQL database holding random bytes -----------------
DB="dbb-bench-$SVC"
log "starting $DB ($PG_IMAGE)"
docker run -d --name "$DB" --network none -l "$LABEL" -l db-backup.type=postgres -l "db-backup.service=$SVC" \
	-l 'db-backup.schedule=0 0 1 1 *' -l db-backup.on-startup=false \
	-e "POSTGRES_PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" "$PG_IMAGE" > /dev/null \
	|| die "docker run $PG_IMAGE failed"
wait_until 180 docker exec "$DB" pg_isready -q -U postgres || { docker logs --tail 30 "$DB" >&2; die "$DB did not become ready"; }
# 768 random bytes a row, as base64 (1,024 characters plus line breaks): gzip -1 keeps about
# 101 % of the random bytes, so SIZE_MIB MiB of them give an archive of a little more than that.
ROWS=$((SIZE_MIB * 1024 * 1024 / 768 + 1))
log "filling $DB with $ROWS rows of 768 random bytes (base64)"
t0=$EPOCHREALTIME
docker exec -i "$DB" psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres > /dev/null <<EOF || die "filling $DB failed"
CREATE DATABASE bench;
\\c bench
CREATE EXTENSION pgcrypto;
CREATE TABLE blobs (id int PRIMARY KEY, body text);
INSERT INTO blobs SELECT g, encode(gen_random_bytes(768), 'base64') FROM generate_series(1, $ROWS) g;
CHECKPOINT;
EOF
log "  filled in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
log "db-backup backup $SVC (DB_BACKUP_GZIP_LEVEL=1, no remote: the upload is measured on its own)"
t0=$EPOCHREALTIME
env DB_BACKUP_ROOT="$ROOT" DB_BACKUP_GZIP_LEVEL=1 DB_BACKUP_SCOPE="$LABEL" "$BIN" backup "$SVC" > "$WORK/backup.log" 2>&1 \
	|| { tail -n 20 "$WORK/backup.log" >&2; die "db-backup backup failed"; }
docker rm -f -v "$DB" > /dev/null # the database is not needed any more: its CPU and memory are freed
ARCHIVE=$(find "$ROOT/$SVC" -maxdepth 1 -name '*.tar.gz' ! -name 'safety-*' | head -n 1)
[ -n "$ARCHIVE" ] || die "db-backup backup made no archive in $ROOT/$SVC"
NAME=$(basename "$ARCHIVE")
BYTES=$(stat -c %s "$ARCHIVE")
log "  archive $NAME: $BYTES bytes ($(awk -v b="$BYTES" 'BEGIN { printf "%.2f", b / 1073741824 }') GiB) in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"

# --- measuring --------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

# measure METHOD RUN COMMAND…: wall seconds, peak RSS (KiB) and CPU seconds (user + system)
# under /usr/bin/time -v.
measure() {
	local method="$1" run="$2" t0 t1 rc=0
	shift 2
	sync
	t0=$EPOCHREALTIME
	/usr/bin/time -v -o "$WORK/last.time" "$@" > "$WORK/last.out" 2>&1 || rc=$?
	t1=$EPOCHREALTIME
	[ "$rc" = 0 ] || { tail -n 20 "$WORK/last.out" >&2; die "$method run $run failed (exit $rc)"; }
	local wall rss cpu
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/last.time")
	cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$WORK/last.time")
	printf '%s\t%s\t%s\t%s\t%s\n' "$method" "$run" "$wall" "$rss" "$cpu" >> "$RESULTS"
	log "  $method #$run: $wall s, $cpu CPU s, peak RSS $((rss / 1024)) MiB"
}

# object_size KEY: the size rclone sees, or nothing.
object_size() { rclone lsjson "g:$BUCKET/$1" 2>/dev/null | python3 -c 'import json, sys; l = json.load(sys.stdin); print(l[0]["Size"] if l else "")'; }
check_object() { # KEY WHO
	local size
	size=$(object_size "$1")
	[ "$size" = "$BYTES" ] || die "$2: the bucket holds ${size:-nothing} bytes at $1, expected $BYTES"
}

# Garage stores blocks by content hash: an upload of bytes it already holds writes nothing to
# disk. So that no timed upload pays for storing what the other method stores for free, each
# method first uploads the file once, untimed, and these copies stay until the end.
log "warm-up (untimed): one upload with each method"
rclone copyto "$ARCHIVE" "g:$BUCKET/warmup/rclone/$NAME" > "$WORK/warmup.log" 2>&1 || { cat "$WORK/warmup.log" >&2; die "rclone copyto (warm-up) failed"; }
env "${DBB_ENV[@]}" "$BIN" sync "$SVC" >> "$WORK/warmup.log" 2>&1 || { cat "$WORK/warmup.log" >&2; die "db-backup sync (warm-up) failed"; }
check_object "$OURS_KEY/$NAME" "db-backup sync (warm-up)"
rclone moveto "g:$BUCKET/$OURS_KEY/$NAME" "g:$BUCKET/warmup/ours/$NAME" >> "$WORK/warmup.log" 2>&1 \
	|| { cat "$WORK/warmup.log" >&2; die "moving the warm-up copy aside failed"; }

log "timed: $RUNS upload(s) per method, alternating"
LOAD_TIMED=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= RUNS; r++)); do
	[ -z "$(object_size "$OURS_KEY/$NAME")" ] || die "the remote already holds $OURS_KEY/$NAME before run $r"
	measure "db-backup sync" "$r" env "${DBB_ENV[@]}" "$BIN" sync "$SVC"
	grep -q 'uploaded 1 archive' "$WORK/last.out" || { cat "$WORK/last.out" >&2; die "db-backup sync did not upload the archive"; }
	check_object "$OURS_KEY/$NAME" "db-backup sync"
	measure "rclone copyto" "$r" rclone copyto "$ARCHIVE" "g:$BUCKET/rclone/$r/$NAME"
	check_object "rclone/$r/$NAME" "rclone copyto"
	rclone deletefile "g:$BUCKET/$OURS_KEY/$NAME"
	rclone deletefile "g:$BUCKET/rclone/$r/$NAME"
done
uploads=$(rclone backend list-multipart-uploads "g:$BUCKET" | python3 -c 'import json, sys; print(sum(len(v or []) for v in json.load(sys.stdin).values()))')
[ "$uploads" = 0 ] || die "$uploads unfinished multipart upload(s) left in the bucket"

# --- report -----------------------------------------------------------------------------------
DATE="$(date -u +%Y-%m-%d)"
variant=""
[ "$SIZE_MIB" = 1024 ] || variant+="-size$SIZE_MIB"
[ "$RUNS" = 3 ] || variant+="-runs$RUNS"
MD="$HERE/results-$DATE-offsite$variant.md"
VERSION="$("$BIN" --version 2>/dev/null | awk '{ print $2 }') at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+local changes')"
python3 - "$RESULTS" "$MD" <<EOF
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for method, run, wall, rss, cpu in rows:
    by.setdefault(method, []).append((float(wall), int(rss), float(cpu)))
ours, theirs = by["db-backup sync"], by["rclone copyto"]
med = lambda v: statistics.median(m[0] for m in v)
peak = lambda v: max(m[1] for m in v)
cpu = lambda v: statistics.median(m[2] for m in v)
size = $BYTES
ratio = med(ours) / med(theirs)
out = []
p = out.append
p("# Offsite upload benchmark")
p("")
p("- date: $(date -u '+%Y-%m-%d %H:%M UTC'); command: \`$CMDLINE\`")
p("- machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; load average at start $LOAD_START, when the timed uploads began $LOAD_TIMED (other builds and tests share the machine)")
p("- db-backup $VERSION; $("$GARAGE" --version 2>/dev/null | head -n 1), one local node; $(rclone version 2>/dev/null | head -n 1) with its defaults")
p("- archive: %d bytes (%.2f GiB), a real \`db-backup backup\` of PostgreSQL holding random bytes (gzip level 1)" % (size, size / 2**30))
p("")
p("| method | runs (s) | median (s) | MB/s | CPU s (median) | peak RSS |")
p("|---|---|---|---|---|---|")
for name, v in (("db-backup sync", ours), ("rclone copyto", theirs)):
    p("| %s | %s | %.2f | %.0f | %.2f | %.1f MiB |" % (name, ", ".join("%.2f" % m[0] for m in v), med(v), size / med(v) / 1e6, cpu(v), peak(v) / 1024))
p("")
time_ok = ratio <= $TIME_TARGET
rss_ok = peak(ours) <= $RSS_TARGET_MIB * 1024
p("| target | measured | |")
p("|---|---|---|")
p("| upload time ≤ $TIME_TARGET × rclone copyto | %.2f × | %s |" % (ratio, "PASS" if time_ok else "MISS"))
p("| db-backup peak RSS ≤ $RSS_TARGET_MIB MiB | %.1f MiB (%.2f × rclone's %.1f MiB) | %s |" % (peak(ours) / 1024, peak(ours) / peak(theirs), peak(theirs) / 1024, "PASS" if rss_ok else "MISS"))
p("| (info) CPU time against rclone's | %.2f × | |" % (cpu(ours) / cpu(theirs)))
if size < 2**30:
    p("")
    p("The archive is smaller than the issue's 1 GB: the targets are indicative only.")
p("")
p("Every timed upload was checked (object size in the bucket); no multipart upload was left behind.")
p("Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). The whole run took %.0f s." % ($EPOCHREALTIME - $T_START))
text = "\n".join(out) + "\n"
print(text)
open(sys.argv[2], "w").write(text)
EOF
log "markdown written to ${MD#"$REPO"/}"
