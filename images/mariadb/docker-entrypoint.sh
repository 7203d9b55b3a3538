#!/bin/bash
# Entrypoint of the local MariaDB test image (dbb-test/mariadb:10.11; dbb-test/mariadb-nodump:10.11,
# also tagged mariadb:11, is the same image without the mysql* compatibility names).
# Follows the contract of the official mariadb image's docker-entrypoint.sh; each variable may also
# be given as VAR_FILE, and the MARIADB_ name wins over the MYSQL_ one:
#   MARIADB_ROOT_PASSWORD / MYSQL_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH,
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD / MYSQL_ALLOW_EMPTY_PASSWORD,
#   MARIADB_RANDOM_ROOT_PASSWORD / MYSQL_RANDOM_ROOT_PASSWORD, MARIADB_ROOT_HOST (default %),
#   MARIADB_DATABASE / MYSQL_DATABASE, MARIADB_USER / MYSQL_USER,
#   MARIADB_PASSWORD / MYSQL_PASSWORD, MARIADB_PASSWORD_HASH,
#   MARIADB_INITDB_SKIP_TZINFO / MYSQL_INITDB_SKIP_TZINFO,
#   /docker-entrypoint-initdb.d/*.sh, *.sql, *.sql.gz, *.sql.xz, *.sql.zst.
# root@localhost authenticates by password only (no unix_socket), so a wrong password fails even
# for the OS user root. The temporary server used during initialisation has networking off and its
# own socket (/tmp/init.sock), so `mariadb-admin ping` (final socket /run/mysqld/mysqld.sock) only
# succeeds once the final server is up and the init scripts have run.
# No `set -u`: *.sh init scripts are sourced into this shell (as in the official image).
set -Eeo pipefail

DATADIR=/var/lib/mysql
INIT_SOCKET=/tmp/init.sock
INIT_PIDFILE=/tmp/init.pid

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

# mariadb_env NAME [DEFAULT]: MARIADB_NAME[_FILE], falling back to MYSQL_NAME[_FILE].
mariadb_env() {
	local name="$1" def="${2:-}" mysqlVar="MYSQL_$1"
	file_env "$mysqlVar" "$def"
	file_env "MARIADB_$name" "${!mysqlVar}"
}

# SQL string literal / identifier escaping (no NO_BACKSLASH_ESCAPES in our sessions).
sql_string() {
	local s=${1//\\/\\\\}
	s=${s//$'\n'/\\n}
	printf '%s' "${s//\'/\\\'}"
}
sql_ident() { printf '%s' "${1//\`/\`\`}"; }

# The root password for the temporary server goes through a private file, never argv.
passfile=''
write_passfile() {
	passfile="$(mktemp /tmp/mariadb-pass.XXXXXX)"
	chmod 600 "$passfile"
	printf '[client]\npassword="%s"\n' "$(sql_string "$1")" > "$passfile"
}

# run_sql [mariadb options...] < SQL   (against the temporary server, as root)
run_sql() {
	local extra=()
	[ -z "$passfile" ] || extra=(--defaults-extra-file="$passfile")
	mariadb "${extra[@]}" --protocol=socket --socket="$INIT_SOCKET" -uroot \
		--comments --batch --skip-column-names "$@"
}

# Name used by the official entrypoint; sourced init scripts may call it.
docker_process_sql() { run_sql "$@"; }

want_help() {
	local arg
	for arg; do
		case "$arg" in
			-'?'|--help|--print-defaults|-V|--version) return 0 ;;
		esac
	done
	return 1
}

if [ "$#" -eq 0 ]; then
	set -- mariadbd
fi
if [ "${1:0:1}" = '-' ]; then
	set -- mariadbd "$@"
fi

if { [ "$1" = 'mariadbd' ] || [ "$1" = 'mysqld' ]; } && ! want_help "$@"; then
	# --- as root: prepare directories, then re-exec this script as user mysql -------------------
	if [ "$(id -u)" = '0' ]; then
		mkdir -p /run/mysqld "$DATADIR"
		chown mysql:mysql /run/mysqld
		chmod 755 /run/mysqld
		find "$DATADIR" \! -user mysql -exec chown mysql:mysql '{}' +
		exec setpriv --reuid=mysql --regid=mysql --init-groups -- "${BASH_SOURCE[0]}" "$@"
	fi

	# --- as mysql -------------------------------------------------------------------------------
	rm -f "$INIT_SOCKET" "$INIT_SOCKET.lock" "$INIT_PIDFILE"
	if [ ! -d "$DATADIR/mysql" ]; then
		mariadb_env ROOT_HOST '%'
		mariadb_env DATABASE
		mariadb_env USER
		mariadb_env PASSWORD
		file_env MARIADB_PASSWORD_HASH
		mariadb_env ROOT_PASSWORD
		file_env MARIADB_ROOT_PASSWORD_HASH
		mariadb_env RANDOM_ROOT_PASSWORD
		mariadb_env INITDB_SKIP_TZINFO
		file_env MYSQL_ALLOW_EMPTY_PASSWORD
		file_env MARIADB_ALLOW_EMPTY_ROOT_PASSWORD "$MYSQL_ALLOW_EMPTY_PASSWORD"

		if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "$MARIADB_ROOT_PASSWORD_HASH" ] \
			&& [ -z "$MARIADB_ALLOW_EMPTY_ROOT_PASSWORD" ] && [ -z "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
			die "database is uninitialized and password option is not specified.
  You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH,
  MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD"
		fi
		if [ "$MARIADB_USER" = 'root' ]; then
			die "MARIADB_USER=root: use MARIADB_ROOT_PASSWORD for the root user"
		fi
		if [ -n "$MARIADB_USER" ] && [ -z "$MARIADB_PASSWORD" ] && [ -z "$MARIADB_PASSWORD_HASH" ]; then
			die "MARIADB_PASSWORD (or MARIADB_PASSWORD_HASH) is required when MARIADB_USER is set"
		fi
		if [ -n "$MARIADB_RANDOM_ROOT_PASSWORD" ] && [ -z "$MARIADB_ROOT_PASSWORD" ]; then
			MARIADB_ROOT_PASSWORD="$(set +o pipefail; tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 32)"
			export MARIADB_ROOT_PASSWORD
			log "GENERATED ROOT PASSWORD: $MARIADB_ROOT_PASSWORD"
		fi

		log "initialising database files in $DATADIR"
		mariadb-install-db --datadir="$DATADIR" --rpm \
			--auth-root-authentication-method=normal --skip-test-db \
			--cross-bootstrap --skip-name-resolve --default-time-zone=SYSTEM \
			--enforce-storage-engine= --skip-log-bin --expire-logs-days=0 \
			--loose-innodb_buffer_pool_load_at_startup=0 \
			--loose-innodb_buffer_pool_dump_at_shutdown=0 \
			> /tmp/install-db.log 2>&1 || { cat /tmp/install-db.log >&2; die "mariadb-install-db failed"; }
		rm -f /tmp/install-db.log

		log "starting temporary server (socket $INIT_SOCKET, no networking)"
		"$@" --skip-networking --socket="$INIT_SOCKET" --pid-file="$INIT_PIDFILE" \
			--default-time-zone=SYSTEM --wsrep-on=OFF --skip-log-bin --expire-logs-days=0 \
			--skip-slave-start --loose-innodb_buffer_pool_load_at_startup=0 \
			--loose-innodb_buffer_pool_dump_at_shutdown=0 &
		server_pid=$!
		for i in $(seq 1 120); do
			if run_sql -e 'SELECT 1' > /dev/null 2>&1; then
				break
			fi
			kill -0 "$server_pid" 2> /dev/null || die "temporary server exited during startup"
			[ "$i" -lt 120 ] || die "temporary server did not start within 60 s"
			sleep 0.5
		done

		if [ -z "$MARIADB_INITDB_SKIP_TZINFO" ]; then
			log "loading time zone tables"
			# sql_log_bin=0 keeps this out of any binary log.
			{ echo 'SET @@SESSION.SQL_LOG_BIN=0;'; mariadb-tzinfo-to-sql /usr/share/zoneinfo 2> /dev/null; } \
				| run_sql --database=mysql
		fi

		root_pw="$(sql_string "$MARIADB_ROOT_PASSWORD")"
		if [ -n "$MARIADB_ROOT_PASSWORD_HASH" ]; then
			root_auth="IDENTIFIED BY PASSWORD '$(sql_string "$MARIADB_ROOT_PASSWORD_HASH")'"
			root_localhost="ALTER USER 'root'@'localhost' $root_auth;"
		else
			root_auth="IDENTIFIED BY '$root_pw'"
			root_localhost="SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$root_pw');"
		fi
		root_create=''
		if [ -n "$MARIADB_ROOT_HOST" ] && [ "$MARIADB_ROOT_HOST" != 'localhost' ]; then
			root_host="$(sql_string "$MARIADB_ROOT_HOST")"
			root_create="CREATE USER 'root'@'$root_host' $root_auth;
GRANT ALL ON *.* TO 'root'@'$root_host' WITH GRANT OPTION;
GRANT PROXY ON ''@'%' TO 'root'@'$root_host' WITH GRANT OPTION;"
		fi
		create_db=''
		if [ -n "$MARIADB_DATABASE" ]; then
			log "creating database $MARIADB_DATABASE"
			create_db="CREATE DATABASE IF NOT EXISTS \`$(sql_ident "$MARIADB_DATABASE")\`;"
		fi
		create_user=''
		if [ -n "$MARIADB_USER" ]; then
			log "creating user $MARIADB_USER"
			user="'$(sql_string "$MARIADB_USER")'@'%'"
			if [ -n "$MARIADB_PASSWORD_HASH" ]; then
				create_user="CREATE USER $user IDENTIFIED BY PASSWORD '$(sql_string "$MARIADB_PASSWORD_HASH")';"
			else
				create_user="CREATE USER $user IDENTIFIED BY '$(sql_string "$MARIADB_PASSWORD")';"
			fi
			if [ -n "$MARIADB_DATABASE" ]; then
				create_user="$create_user
GRANT ALL ON \`$(sql_ident "$MARIADB_DATABASE")\`.* TO $user;"
			fi
		fi

		# Accounts: root only at localhost (+ MARIADB_ROOT_HOST), password authentication only.
		run_sql --database=mysql --binary-mode <<-EOSQL
			SET @@SESSION.SQL_LOG_BIN=0;
			SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');
			DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
			EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname, '\'');
			$root_localhost
			$root_create
			$create_db
			$create_user
			FLUSH PRIVILEGES;
		EOSQL

		[ -z "$MARIADB_ROOT_PASSWORD" ] || write_passfile "$MARIADB_ROOT_PASSWORD"

		shopt -s nullglob
		db_arg=()
		[ -z "$MARIADB_DATABASE" ] || db_arg=(--database="$MARIADB_DATABASE")
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
				*.sql)     log "running $f"; run_sql "${db_arg[@]}" < "$f" ;;
				*.sql.gz)  log "running $f"; gunzip -c "$f" | run_sql "${db_arg[@]}" ;;
				*.sql.xz)  log "running $f"; xz -dc "$f" | run_sql "${db_arg[@]}" ;;
				*.sql.zst) log "running $f"; zstd -dc "$f" | run_sql "${db_arg[@]}" ;;
				*)         log "ignoring $f" ;;
			esac
		done
		shopt -u nullglob

		log "stopping temporary server"
		kill "$server_pid"
		wait "$server_pid" || die "temporary server did not shut down cleanly"
		[ -z "$passfile" ] || rm -f "$passfile"
		passfile=''
		rm -f "$INIT_SOCKET" "$INIT_SOCKET.lock" "$INIT_PIDFILE"
		log "initialisation complete; starting the server"
	else
		log "database directory $DATADIR already initialised; skipping initialisation"
	fi
fi

exec "$@"
