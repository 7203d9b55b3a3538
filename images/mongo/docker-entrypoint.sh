#!/usr/bin/env bash
# Entrypoint of the mongo stand-in, honouring the official image's contract:
# MONGO_INITDB_ROOT_USERNAME[_FILE] and MONGO_INITDB_ROOT_PASSWORD[_FILE] create a root user in
# `admin` on first start, and authentication is on whenever they are set. The server has no
# localhost exception, so the user is created on a temporary server without --auth that listens
# only on 127.0.0.1:$INIT_PORT (never 27017: nothing can mistake it for the final server), which is
# then stopped; the final server starts with --auth. 27017 answers only once initialisation is over.
set -Eeuo pipefail

SECANTUS=/opt/secantusdb/bin
DATA=/data/db
INIT_PORT=27099
INIT_DONE="$DATA/.dbb-initdb-done"

log() { printf '%s docker-entrypoint: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

# file_env VAR: VAR, else the contents of the file named by VAR_FILE; both set is an error.
file_env() {
	local var=$1 fvar="${1}_FILE" val=''
	if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
		log "error: both $var and $fvar are set (but are exclusive)"
		exit 1
	fi
	if [ -n "${!var:-}" ]; then
		val=${!var}
	elif [ -n "${!fvar:-}" ]; then
		[ -r "${!fvar}" ] || { log "error: $fvar names ${!fvar}, which cannot be read"; exit 1; }
		val=$(< "${!fvar}")
	fi
	export "$var"="$val"
	unset "$fvar"
}

# wait_ready PORT PID: until the server on PORT answers `hello` (no auth needed), or PID died.
wait_ready() {
	local port=$1 pid=$2 i
	for i in $(seq 1 120); do
		kill -0 "$pid" 2> /dev/null || { log "error: the server exited during start-up"; exit 1; }
		if DBB_PORT=$port "$SECANTUS/python" - 2> /dev/null <<'PY'
import os, pymongo
c = pymongo.MongoClient("127.0.0.1", int(os.environ["DBB_PORT"]), directConnection=True, serverSelectionTimeoutMS=500)
c.admin.command("hello")
PY
		then return 0; fi
		sleep 0.5
	done
	log "error: the server did not answer on port $port within 60 s"
	exit 1
}

# The root user, with the password from the environment (never argv).
create_root_user() {
	DBB_PORT=$INIT_PORT "$SECANTUS/python" - <<'PY'
import os, pymongo
c = pymongo.MongoClient("127.0.0.1", int(os.environ["DBB_PORT"]), directConnection=True)
c.admin.command("createUser", os.environ["MONGO_INITDB_ROOT_USERNAME"],
                pwd=os.environ["MONGO_INITDB_ROOT_PASSWORD"], roles=[{"role": "root", "db": "admin"}])
PY
}

initialise() {
	local pid
	log "initialising $DATA: creating root user '$MONGO_INITDB_ROOT_USERNAME' on a temporary server (127.0.0.1:$INIT_PORT, no auth)"
	"$SECANTUS/secantusd-py" --host 127.0.0.1 --port "$INIT_PORT" --storage-path "$DATA" --standalone \
		--log-level WARNING &
	pid=$!
	wait_ready "$INIT_PORT" "$pid"
	create_root_user
	kill -TERM "$pid"
	wait "$pid" || true
	: > "$INIT_DONE"
	log "initialisation done; starting the server with --auth"
}

if [ "${1:-}" = mongod ]; then
	shift
	[ "$#" = 0 ] || log "ignoring mongod arguments this stand-in does not know: $*"
	file_env MONGO_INITDB_ROOT_USERNAME
	file_env MONGO_INITDB_ROOT_PASSWORD
	if [ -n "$MONGO_INITDB_ROOT_USERNAME" ] && [ -z "$MONGO_INITDB_ROOT_PASSWORD" ]; then
		log "error: MONGO_INITDB_ROOT_USERNAME is set but MONGO_INITDB_ROOT_PASSWORD is not"
		exit 1
	fi
	if [ -z "$MONGO_INITDB_ROOT_USERNAME" ] && [ -n "$MONGO_INITDB_ROOT_PASSWORD" ]; then
		log "error: MONGO_INITDB_ROOT_PASSWORD is set but MONGO_INITDB_ROOT_USERNAME is not"
		exit 1
	fi
	mkdir -p "$DATA"
	auth=()
	if [ -n "$MONGO_INITDB_ROOT_USERNAME" ]; then
		auth=(--auth)
		[ -e "$INIT_DONE" ] || initialise
	fi
	exec "$SECANTUS/secantusd-py" --host 0.0.0.0 --port 27017 --storage-path "$DATA" --standalone \
		--log-level WARNING "${auth[@]}"
fi

exec "$@"
