#!/usr/bin/env bash
# Smoke test of the images built by scripts/build-images.sh: each database image starts with
# --network none, initialises from the official env contract, reports ready only after its init
# scripts, and authenticates as documented in images/README.md. Containers are removed afterwards.
# Usage: images/smoke-test.sh
# shellcheck disable=SC2016 # $VARS in single quotes are expanded by the container's shell
set -euo pipefail

PREFIX="dbb-smoke-$$"
TMP="$(mktemp -d)"
chmod 755 "$TMP" # the database users read the mounted files
CONTAINERS=()
cleanup() {
	local c
	for c in "${CONTAINERS[@]+"${CONTAINERS[@]}"}"; do docker rm -f -v "$c" > /dev/null 2>&1 || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

FAILS=0
ok() { printf 'ok    %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; FAILS=$((FAILS + 1)); }
check() { # check DESCRIPTION command...: the command must succeed
	local d=$1
	shift
	if "$@" > /dev/null 2>&1; then ok "$d"; else bad "$d"; fi
}
check_fails() { # check_fails DESCRIPTION command...: the command must fail
	local d=$1
	shift
	if "$@" > /dev/null 2>&1; then bad "$d"; else ok "$d"; fi
}
start() { # start NAME docker-run-args...
	local name="$PREFIX-$1"
	shift
	CONTAINERS+=("$name")
	docker run -d --name "$name" --network none "$@" > /dev/null
}
# wait_ready NAME PROBE...: poll until PROBE succeeds (60 s); prints the number of failed polls.
wait_ready() {
	local name="$PREFIX-$1" n=0
	shift
	until docker exec "$name" "$@" > /dev/null 2>&1; do
		n=$((n + 1))
		if [ "$n" -ge 300 ] || [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
			docker logs "$name" 2>&1 | tail -n 20
			return 1
		fi
		sleep 0.2
	done
	echo "$n"
}

# --- PostgreSQL ----------------------------------------------------------------------------------
PG=dbb-test/postgres:15
mkdir -p "$TMP/pginit"
cat > "$TMP/pginit/01-slow.sh" <<'EOF'
sleep 3
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c 'create table marker (x int)'
EOF
echo 'insert into marker values (42);' > "$TMP/pginit/02-data.sql"
printf 'from-file' > "$TMP/pgpw"
chmod 644 "$TMP/pgpw" "$TMP/pginit"/*

start pg1 -e POSTGRES_PASSWORD=secret -v "$TMP/pginit:/docker-entrypoint-initdb.d:ro" "$PG"
polls=$(wait_ready pg1 pg_isready -U postgres) || bad "pg1 ready"
if [ "${polls:-0}" -gt 5 ]; then ok "pg_isready failed during init ($polls polls)"; else bad "pg_isready during init ($polls polls)"; fi
check "pg: init scripts ran before ready" \
	sh -c "[ \"\$(docker exec $PREFIX-pg1 psql -U postgres -Atc 'select x from marker')\" = 42 ]"
check "pg: psql -U postgres select version()" docker exec "$PREFIX-pg1" psql -U postgres -c 'select version()'
for tool in psql pg_dump pg_dumpall pg_isready pgbench; do
	check "pg: $tool in /usr/lib/postgresql/15/bin" \
		sh -c "[ \"\$(docker exec $PREFIX-pg1 sh -c 'command -v $tool')\" = /usr/lib/postgresql/15/bin/$tool ]"
done
check "pg: dump trailer" sh -c "docker exec $PREFIX-pg1 pg_dumpall -U postgres | grep -q 'dump complete'"

start pg2 -e POSTGRES_PASSWORD_FILE=/run/secrets/pw -e POSTGRES_USER=app -e POSTGRES_DB=appdb \
	-v "$TMP/pgpw:/run/secrets/pw:ro" "$PG"
wait_ready pg2 pg_isready -U app -d appdb > /dev/null || bad "pg2 ready"
check "pg: POSTGRES_USER/POSTGRES_DB" docker exec "$PREFIX-pg2" psql -U app -d appdb -c 'select 1'
check "pg: POSTGRES_PASSWORD_FILE (host auth)" \
	docker exec -e PGPASSWORD=from-file "$PREFIX-pg2" psql -h 127.0.0.1 -U app -d appdb -c 'select 1'

start pg3 -e POSTGRES_PASSWORD=secret \
	-e POSTGRES_INITDB_ARGS="--auth-local=scram-sha-256 --auth-host=scram-sha-256" "$PG"
wait_ready pg3 pg_isready -U postgres > /dev/null || bad "pg3 ready"
check_fails "pg scram: wrong password fails" docker exec -e PGPASSWORD=wrong "$PREFIX-pg3" psql -U postgres -c 'select 1'
check "pg scram: right password works" docker exec -e PGPASSWORD=secret "$PREFIX-pg3" psql -U postgres -c 'select 1'

# --- MariaDB -------------------------------------------------------------------------------------
mkdir -p "$TMP/myinit"
cat > "$TMP/myinit/01-slow.sh" <<'EOF'
sleep 3
docker_process_sql --database="$MARIADB_DATABASE" -e 'create table marker (x int)'
EOF
echo 'insert into marker values (42);' > "$TMP/myinit/02-data.sql"
printf 'root-from-file' > "$TMP/mypw"
chmod 644 "$TMP/mypw" "$TMP/myinit"/*

for img in dbb-test/mariadb:10.11 dbb-test/mariadb-nodump:10.11; do
	n="my-${img##*/}"
	n="${n%%:*}"
	start "$n" -e MARIADB_ROOT_PASSWORD=secret -e MARIADB_DATABASE=appdb \
		-e MARIADB_USER=app -e MARIADB_PASSWORD=apppw -v "$TMP/myinit:/docker-entrypoint-initdb.d:ro" "$img"
	polls=$(wait_ready "$n" mariadb-admin ping) || bad "$img ready"
	if [ "${polls:-0}" -gt 5 ]; then
		ok "$img: mariadb-admin ping failed during init ($polls polls)"
	else
		bad "$img: ping during init ($polls polls)"
	fi
	c="$PREFIX-$n"
	check "$img: root with password" docker exec "$c" sh -c 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -e "select version()"'
	check_fails "$img: root with wrong password fails" docker exec "$c" sh -c 'MYSQL_PWD=wrong mariadb -uroot -e "select 1"'
	check_fails "$img: root without password fails" docker exec "$c" mariadb -uroot -e 'select 1'
	check "$img: init scripts ran before ready" \
		sh -c "[ \"\$(docker exec $c sh -c 'MYSQL_PWD=secret mariadb -uroot -N -e \"select x from appdb.marker\"')\" = 42 ]"
	check "$img: MARIADB_USER/PASSWORD/DATABASE" docker exec "$c" sh -c 'MYSQL_PWD=apppw mariadb -uapp appdb -e "select 1"'
	check "$img: mariadb-dump trailer" \
		sh -c "docker exec $c sh -c 'MYSQL_PWD=secret mariadb-dump -uroot --all-databases' | tail -n 1 | grep -q 'Dump completed'"
	if [ "$img" = dbb-test/mariadb:10.11 ]; then
		check "$img: has mysqldump" docker exec "$c" sh -c 'command -v mysqldump'
	else
		check_fails "$img: has no mysqldump" docker exec "$c" sh -c 'command -v mysqldump'
	fi
done

start my-file -e MYSQL_ROOT_PASSWORD_FILE=/run/secrets/pw -v "$TMP/mypw:/run/secrets/pw:ro" dbb-test/mariadb:10.11
wait_ready my-file mariadb-admin ping > /dev/null || bad "my-file ready"
check "mariadb: MYSQL_ROOT_PASSWORD_FILE" docker exec -e MYSQL_PWD=root-from-file "$PREFIX-my-file" mariadb -uroot -e 'select 1'

# --- rust and app --------------------------------------------------------------------------------
check "rust:1-bookworm cargo --version (no network)" docker run --rm --network none rust:1-bookworm cargo --version
check "db-backup:test --help" docker run --rm --network none db-backup:test --help

echo
if [ "$FAILS" -eq 0 ]; then echo "all checks passed"; else echo "$FAILS check(s) failed"; exit 1; fi
