#!/bin/bash
# Entrypoint of the local PostgreSQL test image (dbb-test/postgres:15, also tagged postgres:16).
# Follows the contract of the official postgres image's docker-entrypoint.sh:
#   POSTGRES_PASSWORD[_FILE], POSTGRES_USER[_FILE] (default postgres),
#   POSTGRES_DB[_FILE] (default: the user), POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR,
#   POSTGRES_HOST_AUTH_METHOD, PGDATA (default /var/lib/postgresql/data),
#   /docker-entrypoint-initdb.d/*.sh, *.sql, *.sql.gz, *.sql.xz.
# The temporary server used during initialisation listens on no TCP address and on a private
# socket directory (/tmp/init-sock), so `pg_isready` (default socket dir /var/run/postgresql)
# only succeeds once the final server is up and the init scripts have run.
# No `set -u`: *.sh init scripts are sourced into this shell (as in the official image).
set -Eeo pipefail

FINAL_SOCKET_DIR=/var/run/postgresql
INIT_SOCKET_DIR=/tmp/init-sock
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"; }
die() { log "error: $*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR or VAR_FILE (not both) -> VAR; unsets VAR_FILE.
file_env() {
	local var="$1" fileVar="${1}_FILE" def="${2:-}" val
	if [ -n "${!var:-}" ] && [ -n "${!fileVar:-}" ]; then
		die "both $var and $fileVar are set (but are exclusive)"
	fi
	val="$def"
	if [ -n "${!var:-}" ]; then
		val="${!var}"
	elif [ -n "${!fileVar:-}" ]; then
		[ -r "${!fileVar}" ] || die "$fileVar=${!fileVar} is not readable"
		val="$(< "${!fileVar}")"
	fi
	export "$var"="$val"
	unset "$fileVar"
}

# Command-line options that only print something (postgres --help / --version / -C ...).
want_help() {
	local arg
	for arg; do
		case "$arg" in
			-'?'|--help|--describe-config|-V|--version|-C|--config) return 0 ;;
		esac
	done
	return 1
}

if [ "$#" -eq 0 ]; then
	set -- postgres
fi
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = 'postgres' ] && ! want_help "$@"; then
	# --- as root: prepare directories, then re-exec this script as user postgres ---------------
	if [ "$(id -u)" = '0' ]; then
		mkdir -p "$PGDATA" "$FINAL_SOCKET_DIR"
		chown postgres:postgres "$FINAL_SOCKET_DIR"
		chmod 3777 "$FINAL_SOCKET_DIR"
		# Only touch ownership of a directory we are going to initialise or that postgres owns.
		if [ ! -s "$PGDATA/PG_VERSION" ]; then
			chown postgres:postgres "$PGDATA"
			chmod 700 "$PGDATA"
		fi
		if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
			mkdir -p "$POSTGRES_INITDB_WALDIR"
			chown postgres:postgres "$POSTGRES_INITDB_WALDIR"
			chmod 700 "$POSTGRES_INITDB_WALDIR"
		fi
		exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
	fi

	# --- as postgres ------------------------------------------------------------------------------
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		file_env POSTGRES_PASSWORD
		file_env POSTGRES_USER 'postgres'
		file_env POSTGRES_DB "$POSTGRES_USER"
		file_env POSTGRES_INITDB_ARGS
		: "${POSTGRES_HOST_AUTH_METHOD:=}"

		if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
			die "database is uninitialized and superuser password is not specified.
  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value,
  or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password."
		fi
		if [ "${#POSTGRES_PASSWORD}" -ge 100 ]; then
			log "warning: POSTGRES_PASSWORD is 100+ characters; psql prompts truncate such passwords"
		fi

		log "initialising database cluster in $PGDATA"
		initdb_args=(--username="$POSTGRES_USER")
		if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
			initdb_args+=(--waldir="$POSTGRES_INITDB_WALDIR")
		fi
		pwdir=''
		if [ -n "$POSTGRES_PASSWORD" ]; then
			# The password goes through a private temporary file, never the command line.
			pwdir="$(mktemp -d /tmp/pgpw.XXXXXX)"
			( umask 077; printf '%s\n' "$POSTGRES_PASSWORD" > "$pwdir/pw" )
			initdb_args+=(--pwfile="$pwdir/pw")
		fi
		# POSTGRES_INITDB_ARGS is word-split on purpose (as in the official image).
		# Without --auth-local/--auth-host in it, initdb's default applies: local and
		# host 127.0.0.1/32, ::1/128 use "trust" (initdb prints a warning about that).
		# shellcheck disable=SC2086
		if ! initdb "${initdb_args[@]}" $POSTGRES_INITDB_ARGS; then
			[ -z "$pwdir" ] || rm -rf "$pwdir"
			die "initdb failed"
		fi
		[ -z "$pwdir" ] || rm -rf "$pwdir"

		# pg_hba.conf: append a catch-all rule for remote hosts, like the official image.
		if [ -z "$POSTGRES_HOST_AUTH_METHOD" ]; then
			POSTGRES_HOST_AUTH_METHOD="$(postgres -C password_encryption)"
		fi
		{
			printf '\n'
			if [ "$POSTGRES_HOST_AUTH_METHOD" = 'trust' ]; then
				printf '# warning trust is enabled for all connections\n'
			fi
			printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
		} >> "$PGDATA/pg_hba.conf"
		# Listen on all addresses (the official image does the same); the final socket directory
		# is the compiled-in default, stated explicitly.
		{
			printf '\n# added by docker-entrypoint.sh\n'
			printf "listen_addresses = '*'\n"
			printf "unix_socket_directories = '%s'\n" "$FINAL_SOCKET_DIR"
		} >> "$PGDATA/postgresql.conf"

		# Temporary server: no TCP, private socket directory.
		rm -rf "$INIT_SOCKET_DIR"
		mkdir -m 700 "$INIT_SOCKET_DIR"
		export PGHOST="$INIT_SOCKET_DIR"
		export PGPORT="${PGPORT:-5432}"
		export PGUSER="$POSTGRES_USER"
		export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
		log "starting temporary server (socket $INIT_SOCKET_DIR, no TCP)"
		pg_ctl -D "$PGDATA" -w -t 60 \
			-o "-c listen_addresses='' -c unix_socket_directories=$INIT_SOCKET_DIR -p $PGPORT" \
			start

		psql_init=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc)
		# Name used by the official entrypoint; sourced init scripts may call it.
		docker_process_sql() { "${psql_init[@]}" --dbname "$POSTGRES_DB" "$@"; }
		if [ "$POSTGRES_DB" != 'postgres' ]; then
			exists="$("${psql_init[@]}" --dbname postgres -tA --set db="$POSTGRES_DB" \
				<<< "SELECT 1 FROM pg_database WHERE datname = :'db';")"
			if [ -z "$exists" ]; then
				log "creating database $POSTGRES_DB"
				"${psql_init[@]}" --dbname postgres --set db="$POSTGRES_DB" \
					<<< 'CREATE DATABASE :"db";'
			fi
		fi

		shopt -s nullglob
		for f in /docker-entrypoint-initdb.d/*; do
			case "$f" in
				*.sh)
					if [ -x "$f" ]; then
						log "running $f"
						"$f"
					else
						log "sourcing $f"
						# shellcheck disable=SC1090
						. "$f"
					fi
					;;
				*.sql)    log "running $f"; "${psql_init[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
				*.sql.gz) log "running $f"; gunzip -c "$f" | "${psql_init[@]}" --dbname "$POSTGRES_DB" ;;
				*.sql.xz) log "running $f"; xz -dc "$f" | "${psql_init[@]}" --dbname "$POSTGRES_DB" ;;
				*)        log "ignoring $f" ;;
			esac
		done
		shopt -u nullglob

		log "stopping temporary server"
		pg_ctl -D "$PGDATA" -m fast -w -t 60 stop
		rm -rf "$INIT_SOCKET_DIR"
		unset PGHOST PGPORT PGUSER PGPASSWORD
		log "initialisation complete; starting the server"
	else
		log "database directory $PGDATA already initialised; skipping initialisation"
	fi
	unset POSTGRES_PASSWORD_FILE POSTGRES_USER_FILE POSTGRES_DB_FILE
fi

exec "$@"
