#!/usr/bin/env bash
# Build the local Docker images used by db-backup's tests, with no container registry:
#
#   base            dbb-test/base:bookworm           debootstrap: PostgreSQL 15 + MariaDB 10.11
#   postgres        dbb-test/postgres:15              (also tagged postgres:16)
#   mariadb         dbb-test/mariadb:10.11
#   mariadb-nodump  dbb-test/mariadb-nodump:10.11     (also tagged mariadb:11; no mysql* names)
#   mongo           dbb-test/mongo:8.2                (also tagged mongo:7) debootstrap: SecantusDB
#                                                     + mongodump/mongorestore/bsondump from source
#   rust            rust:1-bookworm                   debootstrap + this machine's Rust toolchain
#   app             db-backup:test                    the repository's Dockerfile
#
# Usage: scripts/build-images.sh [--only NAME...] [--force] [--help]
#   --only NAME...  build only these images (and whatever they are built FROM, if out of date)
#   --force         rebuild the selected images even if they are up to date (the cached
#                   debootstrap tarballs are still used; delete $DBB_IMAGE_CACHE to refresh them)
#
# Idempotent: every image except `app` carries the label dbb-test-image.hash=<sha256 of
# the inputs that define it> and is skipped when an image with the same hash exists. `app` is
# always handed to `docker build`, whose layer cache makes an unchanged rebuild take seconds.
# Debootstrapped root filesystems are cached as tarballs under
# ${DBB_IMAGE_CACHE:-/var/tmp/db-backup-images}.
#
# Environment:
#   DBB_IMAGE_CACHE      cache directory (default /var/tmp/db-backup-images)
#   DBB_DEBIAN_MIRROR    Debian mirror for debootstrap (default: deb.debian.org if reachable,
#                        else the first reachable mirror from /etc/apt/sources.list*)
#
#   DBB_SHARED_DIR       the project's shared/ directory (default: ../shared beside the repository);
#                        `mongo` builds the tools from its vendor/mongo-tools-100.8.0.tar.gz
#
# Needs: root (debootstrap, chroot), docker (legacy builder is fine), and for `rust` a rustup-managed
# toolchain on this machine. `mongo` installs Debian's golang-go here when `go` is missing, and
# pip-installs SecantusDB from PyPI inside its root filesystem. Nothing is pulled from a registry.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${DBB_IMAGE_CACHE:-/var/tmp/db-backup-images}"
SUITE=bookworm
# Not a db-backup.* key: containers inherit their image's labels, and db-backup reads those.
LABEL_KEY=dbb-test-image.hash
# Bump to force every image to be rebuilt (e.g. after changing this script's build logic).
RECIPE_VERSION=1

IMG_BASE=dbb-test/base:bookworm
IMG_POSTGRES=dbb-test/postgres:15
ALIAS_POSTGRES=postgres:16
IMG_MARIADB=dbb-test/mariadb:10.11
IMG_MARIADB_NODUMP=dbb-test/mariadb-nodump:10.11
ALIAS_MARIADB_NODUMP=mariadb:11
IMG_RUST_ROOTFS=dbb-test/rust-rootfs:bookworm
IMG_RUST=rust:1-bookworm
IMG_APP=db-backup:test
IMG_MONGO_ROOTFS=dbb-test/mongo-rootfs:bookworm
IMG_MONGO=dbb-test/mongo:8.2
ALIAS_MONGO=mongo:7

BASE_PACKAGES=postgresql,postgresql-contrib,mariadb-server,mariadb-client,procps,ca-certificates
# make, autoconf, automake, libtool, nasm: isal-sys builds ISA-L (the archive's deflate) from source.
RUST_PACKAGES=gcc,libc6-dev,ca-certificates,pkg-config,tzdata,make,autoconf,automake,libtool,nasm
MONGO_PACKAGES=python3,python3-venv,ca-certificates,procps
SECANTUSDB_VERSION=0.7.0b3
MONGO_TOOLS_VERSION=100.8.0
MONGO_TOOLS_SHA256=e66bfccb8e7303499e6203928984cbb915fcdbddbf9e8e8a3f5d015a883dc633
SHARED_DIR="${DBB_SHARED_DIR:-$REPO_ROOT/../shared}"
MONGO_TOOLS_TARBALL="$SHARED_DIR/vendor/mongo-tools-$MONGO_TOOLS_VERSION.tar.gz"

ALL_TARGETS=(base postgres mariadb mariadb-nodump mongo rust app)

# ----------------------------------------------------------------------------------------------
# output and timing

SCRIPT_T0=$EPOCHREALTIME
log() { printf '[build-images] %s\n' "$*" >&2; }
die() { printf '[build-images] error: %s\n' "$*" >&2; exit 1; }
elapsed() { # elapsed T0 -> seconds with one decimal
	local t0=$1 t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
# step "description" command...: run a command, print its duration.
step() {
	local desc=$1 t0=$EPOCHREALTIME
	shift
	log "==> $desc"
	"$@"
	log "<== $desc: $(elapsed "$t0") s"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

# ----------------------------------------------------------------------------------------------
# arguments

FORCE=0
TARGETS=()
while [ "$#" -gt 0 ]; do
	case "$1" in
		--only)
			shift
			while [ "$#" -gt 0 ] && [ "${1:0:2}" != '--' ]; do
				TARGETS+=("$1")
				shift
			done
			[ "${#TARGETS[@]}" -gt 0 ] || die "--only needs at least one image name"
			;;
		--force) FORCE=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
	case " ${ALL_TARGETS[*]} " in
		*" $t "*) ;;
		*) die "unknown image name '$t' (one of: ${ALL_TARGETS[*]})" ;;
	esac
done
selected() { case " ${TARGETS[*]} " in *" $1 "*) return 0 ;; esac; return 1; }

# ----------------------------------------------------------------------------------------------
# prerequisites, lock, cleanup

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v docker > /dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' > /dev/null || die "cannot reach the Docker engine"
mkdir -p "$CACHE_DIR/work"

exec 9> "$CACHE_DIR/.lock"
if ! flock -n 9; then
	log "another build-images.sh is running; waiting for its lock ($CACHE_DIR/.lock)"
	flock 9
fi

WORK_DIRS=()
cleanup() {
	local d m
	for d in "${WORK_DIRS[@]+"${WORK_DIRS[@]}"}"; do
		[ -e "$d" ] || continue
		# Anything debootstrap/chroot left mounted inside the work dir, deepest first.
		while IFS= read -r m; do
			umount -l "$m" 2> /dev/null || true
		done < <(awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r)
		rm -rf --one-file-system "$d"
	done
}
trap cleanup EXIT
NEW_DIR=''
new_work_dir() { # new_work_dir NAME -> NEW_DIR: a fresh directory, removed on exit
	NEW_DIR="$(mktemp -d "$CACHE_DIR/work/$1.XXXXXX")"
	WORK_DIRS+=("$NEW_DIR")
}

# ----------------------------------------------------------------------------------------------
# hashing

sha() { sha256sum | cut -d' ' -f1; }
# dir_digest DIR: content and executable bit of every file below DIR.
dir_digest() {
	local dir=$1 f
	(
		cd "$dir"
		find . -type f -print | LC_ALL=C sort | while IFS= read -r f; do
			printf '%s %s %s\n' "$f" "$([ -x "$f" ] && echo x || echo -)" "$(sha < "$f")"
		done
	) | sha
}
image_hash() { # image_hash IMAGE -> the label value, or nothing
	docker image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$1" 2> /dev/null || true
}
# up_to_date IMAGE HASH: the image exists with this hash (and --force was not given for it).
up_to_date() {
	[ "$FORCE_THIS" = 0 ] && [ "$(image_hash "$1")" = "$2" ]
}
image_exists() { docker image inspect "$1" > /dev/null 2>&1; }
# tag_alias IMAGE ALIAS: tag, but never overwrite a foreign image (e.g. a real official image
# pulled from a registry, recognisable by the missing label).
tag_alias() {
	local img=$1 alias=$2
	if image_exists "$alias" && [ -z "$(image_hash "$alias")" ]; then
		log "    $alias exists and was not built by this script; leaving it alone"
		return 0
	fi
	docker tag "$img" "$alias"
	log "    tagged $alias"
}

# ----------------------------------------------------------------------------------------------
# debootstrap root filesystems (cached as tarballs)

# Commands run inside the chroot after debootstrap. Part of the image hash.
base_customize() {
	cat <<'EOS'
set -eu
# No service starts during package installation in derived images either.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
# Remove the cluster the postgresql package created (our entrypoint runs initdb into PGDATA)
# and do not create one on later installs.
if command -v pg_lsclusters > /dev/null; then
	pg_lsclusters -h | while read -r ver name _; do
		pg_dropcluster "$ver" "$name" || echo "pg_dropcluster $ver $name failed; removing it directly"
	done
	rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main
	sed -i 's/^#* *create_main_cluster *=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
fi
# Remove the data directory the mariadb-server package initialised (root via unix_socket).
if [ -d /var/lib/mysql ]; then
	find /var/lib/mysql -mindepth 1 -delete
	chown mysql:mysql /var/lib/mysql
fi
EOS
}
rust_customize() {
	cat <<'EOS'
set -eu
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
command -v cc
EOS
}
# Common to all root filesystems: slim down.
common_customize() {
	cat <<'EOS'
set -eu
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/*
# Keep derived images slim too.
cat > /etc/dpkg/dpkg.cfg.d/docker-nodoc <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /tmp/* /var/tmp/*
: > /etc/machine-id
rm -f /etc/hostname /etc/resolv.conf
EOS
}

DEBIAN_MIRROR=''
pick_mirror() {
	[ -z "$DEBIAN_MIRROR" ] || return 0
	if [ -n "${DBB_DEBIAN_MIRROR:-}" ]; then
		DEBIAN_MIRROR=$DBB_DEBIAN_MIRROR
		return 0
	fi
	local candidates=(http://deb.debian.org/debian) m fetch
	# Mirrors this machine's apt already uses (one-line and deb822 formats).
	while IFS= read -r m; do
		candidates+=("${m%/}")
	done < <(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2> /dev/null \
		| grep -E '^[[:space:]]*(deb[[:space:]]|URIs:)' | grep -oE '(https?|ftp)://[^[:space:]]+' || true)
	if command -v curl > /dev/null; then
		fetch=(curl -fsS -m 15 -o /dev/null)
	elif command -v wget > /dev/null; then
		fetch=(wget -q -T 15 -t 1 -O /dev/null)
	else
		DEBIAN_MIRROR=${candidates[0]}
		return 0
	fi
	for m in "${candidates[@]}"; do
		if "${fetch[@]}" "$m/dists/$SUITE/Release" 2> /dev/null; then
			DEBIAN_MIRROR=$m
			log "    Debian mirror: $m"
			return 0
		fi
	done
	die "no reachable Debian mirror with $SUITE (tried: ${candidates[*]}); set DBB_DEBIAN_MIRROR"
}

ensure_debootstrap() {
	if ! command -v debootstrap > /dev/null; then
		log "    installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap > /dev/null
	fi
}

# rootfs_tarball NAME PACKAGES CUSTOMIZE_FN HASH -> ROOTFS_TARBALL: the cached rootfs tarball,
# debootstrapped first when it is not cached.
ROOTFS_TARBALL=''
rootfs_tarball() {
	local name=$1 packages=$2 customize=$3 hash=$4
	local tarball="$CACHE_DIR/rootfs-$name-$SUITE-${hash:0:16}.tar" dir t0
	ROOTFS_TARBALL=$tarball
	if [ -s "$tarball" ]; then
		log "    using cached root filesystem $tarball"
		return 0
	fi
	ensure_debootstrap
	pick_mirror
	new_work_dir "rootfs-$name"
	dir="$NEW_DIR/root"
	t0=$EPOCHREALTIME
	log "    debootstrap --variant=minbase --include=$packages $SUITE ($DEBIAN_MIRROR)"
	if ! debootstrap --variant=minbase --include="$packages" "$SUITE" "$dir" "$DEBIAN_MIRROR" \
		> "$dir.debootstrap.log" 2>&1; then
		tail -n 30 "$dir.debootstrap.log" >&2
		[ ! -f "$dir/debootstrap/debootstrap.log" ] || tail -n 30 "$dir/debootstrap/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	fi
	log "    debootstrap: $(elapsed "$t0") s"
	t0=$EPOCHREALTIME
	# Name resolution and this machine's CA bundle (it may trust a TLS-inspecting proxy) for
	# customizations that download (mongo's pip); common_customize removes both.
	cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2> /dev/null || true
	cp -L /etc/ssl/certs/ca-certificates.crt "$dir/tmp/host-ca-certificates.crt" 2> /dev/null || true
	if ! { "$customize"; common_customize; } \
		| env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 chroot "$dir" /bin/sh -s \
			> "$dir.customize.log" 2>&1; then
		tail -n 30 "$dir.customize.log" >&2
		die "customizing the $name root filesystem failed (log above)"
	fi
	log "    customize + clean: $(elapsed "$t0") s ($(du -sh --one-file-system "$dir" | cut -f1))"
	t0=$EPOCHREALTIME
	tar --numeric-owner --xattrs -C "$dir" -cf "$tarball.partial" .
	mv "$tarball.partial" "$tarball"
	# Drop tarballs of older recipes.
	find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$name-$SUITE-*.tar" ! -path "$tarball" -delete
	log "    cached $tarball ($(du -h "$tarball" | cut -f1), $(elapsed "$t0") s)"
}

# ----------------------------------------------------------------------------------------------
# image builders

FORCE_THIS=0
set_force() { if [ "$FORCE" = 1 ] && selected "$1"; then FORCE_THIS=1; else FORCE_THIS=0; fi; }

base_hash() {
	{
		echo "recipe=$RECIPE_VERSION suite=$SUITE variant=minbase packages=$BASE_PACKAGES"
		base_customize
		common_customize
		echo 'import: ENV LANG=C.UTF-8; CMD ["bash"]'
	} | sha
}
build_base() {
	local hash tarball
	hash=$(base_hash)
	set_force base
	if up_to_date "$IMG_BASE" "$hash"; then
		log "    $IMG_BASE is up to date (${hash:0:12})"
		return 0
	fi
	rootfs_tarball base "$BASE_PACKAGES" base_customize "$hash"
	docker import \
		--change "LABEL $LABEL_KEY=$hash" \
		--change 'ENV LANG=C.UTF-8' \
		--change 'CMD ["bash"]' \
		--message "debootstrap $SUITE minbase + $BASE_PACKAGES" \
		"$ROOTFS_TARBALL" "$IMG_BASE" > /dev/null
	log "    built $IMG_BASE (${hash:0:12})"
}

# build_log NAME -> BUILD_LOG: where the full `docker build` output of NAME goes.
BUILD_LOG=''
build_log() { mkdir -p "$CACHE_DIR/logs"; BUILD_LOG="$CACHE_DIR/logs/$1.log"; }
build_failed() { # build_failed IMAGE
	tail -n 40 "$BUILD_LOG" >&2
	die "docker build of $1 failed (full log: $BUILD_LOG)"
}
# docker_build_dir IMAGE HASH DIR [extra docker build args...]
docker_build_dir() {
	local img=$1 hash=$2 dir=$3
	shift 3
	build_log "$(basename "$dir")"
	[ "$FORCE_THIS" = 0 ] || set -- --no-cache "$@"
	docker build --label "$LABEL_KEY=$hash" -t "$img" "$@" "$dir" > "$BUILD_LOG" 2>&1 \
		|| build_failed "$img"
	log "    built $img (${hash:0:12})"
}

postgres_hash() { printf '%s\n' "$(base_hash)" "$(dir_digest "$REPO_ROOT/images/postgres")" | sha; }
build_postgres() {
	local hash
	hash=$(postgres_hash)
	set_force postgres
	if up_to_date "$IMG_POSTGRES" "$hash"; then
		log "    $IMG_POSTGRES is up to date (${hash:0:12})"
	else
		docker_build_dir "$IMG_POSTGRES" "$hash" "$REPO_ROOT/images/postgres"
	fi
	tag_alias "$IMG_POSTGRES" "$ALIAS_POSTGRES"
}

mariadb_hash() { printf '%s\n' "$(base_hash)" "$(dir_digest "$REPO_ROOT/images/mariadb")" | sha; }
build_mariadb() {
	local hash
	hash=$(mariadb_hash)
	set_force mariadb
	if up_to_date "$IMG_MARIADB" "$hash"; then
		log "    $IMG_MARIADB is up to date (${hash:0:12})"
	else
		docker_build_dir "$IMG_MARIADB" "$hash" "$REPO_ROOT/images/mariadb"
	fi
}

mariadb_nodump_hash() {
	printf '%s\n' "$(mariadb_hash)" "$(dir_digest "$REPO_ROOT/images/mariadb-nodump")" | sha
}
build_mariadb_nodump() {
	local hash
	hash=$(mariadb_nodump_hash)
	set_force mariadb-nodump
	if up_to_date "$IMG_MARIADB_NODUMP" "$hash"; then
		log "    $IMG_MARIADB_NODUMP is up to date (${hash:0:12})"
	else
		docker_build_dir "$IMG_MARIADB_NODUMP" "$hash" "$REPO_ROOT/images/mariadb-nodump"
	fi
	tag_alias "$IMG_MARIADB_NODUMP" "$ALIAS_MARIADB_NODUMP"
}

# --- dbb-test/mongo:8.2 (SecantusDB + the real MongoDB Database Tools) --------------------------

mongo_customize() {
	cat <<EOS
set -eu
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
# A venv of its own: the server and pymongo, pinned; nothing else of Python's world in PATH.
python3 -m venv /opt/secantusdb
cert=''
[ ! -s /tmp/host-ca-certificates.crt ] || cert='--cert /tmp/host-ca-certificates.crt'
/opt/secantusdb/bin/pip install --no-cache-dir --disable-pip-version-check \$cert --pre secantusdb==$SECANTUSDB_VERSION
/opt/secantusdb/bin/secantusd-py --help > /dev/null
/opt/secantusdb/bin/python -c 'import pymongo, secantus'
EOS
}
mongo_rootfs_hash() {
	{
		echo "recipe=$RECIPE_VERSION suite=$SUITE variant=minbase packages=$MONGO_PACKAGES"
		mongo_customize
		common_customize
	} | sha
}
ensure_go() {
	command -v go > /dev/null && return 0
	log "    installing golang-go (to build the MongoDB tools)"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq golang-go > /dev/null
	command -v go > /dev/null || die "golang-go installed but go is not in PATH"
}
# mongo_tools -> MONGO_TOOLS_BIN: mongodump, mongorestore and bsondump built from the vendored
# source (static), cached by the tarball's sha256.
MONGO_TOOLS_BIN=''
mongo_tools() {
	local sum dir src t0 tool
	[ -f "$MONGO_TOOLS_TARBALL" ] || die "$MONGO_TOOLS_TARBALL not found (the project's shared/vendor; set DBB_SHARED_DIR)"
	sum=$(sha < "$MONGO_TOOLS_TARBALL")
	[ "$sum" = "$MONGO_TOOLS_SHA256" ] \
		|| die "$MONGO_TOOLS_TARBALL has sha256 $sum, expected $MONGO_TOOLS_SHA256 (shared/vendor/README.md)"
	dir="$CACHE_DIR/mongo-tools-${sum:0:16}"
	MONGO_TOOLS_BIN="$dir/bin"
	if [ -x "$dir/bin/mongodump" ] && [ -x "$dir/bin/mongorestore" ] && [ -x "$dir/bin/bsondump" ]; then
		log "    using cached MongoDB tools $dir/bin"
		return 0
	fi
	ensure_go
	new_work_dir mongo-tools
	src="$NEW_DIR/src"
	mkdir -p "$src" "$NEW_DIR/bin"
	tar -xzf "$MONGO_TOOLS_TARBALL" -C "$src"
	t0=$EPOCHREALTIME
	for tool in mongodump mongorestore bsondump; do
		(cd "$src" && env GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 GOCACHE="$NEW_DIR/gocache" \
			GOPATH="$NEW_DIR/gopath" go build -tags "ssl failpoints" \
			-ldflags "-X main.VersionStr=$MONGO_TOOLS_VERSION" -o "$NEW_DIR/bin/$tool" "./$tool/main") \
			> "$NEW_DIR/build.log" 2>&1 || { tail -n 30 "$NEW_DIR/build.log" >&2; die "go build of $tool failed"; }
	done
	log "    built mongodump, mongorestore, bsondump $MONGO_TOOLS_VERSION: $(elapsed "$t0") s"
	rm -rf "$dir"
	mkdir -p "$dir.partial"
	mv "$NEW_DIR/bin" "$dir.partial/bin"
	mv "$dir.partial" "$dir"
	find "$CACHE_DIR" -maxdepth 1 -name 'mongo-tools-*' ! -path "$dir" -exec rm -rf {} +
}
mongo_hash() {
	{
		mongo_rootfs_hash
		dir_digest "$REPO_ROOT/images/mongo"
		echo "tools=$MONGO_TOOLS_SHA256"
	} | sha
}
build_mongo() {
	local hash rootfs_hash ctx
	set_force mongo
	hash=$(mongo_hash)
	if up_to_date "$IMG_MONGO" "$hash"; then
		log "    $IMG_MONGO is up to date (${hash:0:12})"
		tag_alias "$IMG_MONGO" "$ALIAS_MONGO"
		return 0
	fi
	rootfs_hash=$(mongo_rootfs_hash)
	if [ "$FORCE_THIS" = 1 ] || [ "$(image_hash "$IMG_MONGO_ROOTFS")" != "$rootfs_hash" ]; then
		rootfs_tarball mongo "$MONGO_PACKAGES" mongo_customize "$rootfs_hash"
		docker import --change "LABEL $LABEL_KEY=$rootfs_hash" --change 'ENV LANG=C.UTF-8' \
			--change 'CMD ["bash"]' --message "debootstrap $SUITE minbase + $MONGO_PACKAGES + secantusdb" \
			"$ROOTFS_TARBALL" "$IMG_MONGO_ROOTFS" > /dev/null
		log "    built $IMG_MONGO_ROOTFS (${rootfs_hash:0:12})"
	fi
	mongo_tools
	new_work_dir mongo-context
	ctx="$NEW_DIR/mongo" # the directory's name names the build log
	mkdir -p "$ctx"
	cp -a "$REPO_ROOT/images/mongo/." "$ctx/"
	cp -a "$MONGO_TOOLS_BIN" "$ctx/bin"
	docker_build_dir "$IMG_MONGO" "$hash" "$ctx"
	tag_alias "$IMG_MONGO" "$ALIAS_MONGO"
}

# --- rust:1-bookworm ---------------------------------------------------------------------------

HOST_RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
HOST_CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
TOOLCHAIN_DIR=''
rust_host_facts() { # sets TOOLCHAIN_DIR
	[ -z "$TOOLCHAIN_DIR" ] || return 0
	command -v rustup > /dev/null || die "rustup not found: the rust image copies this machine's rustup toolchain"
	local sysroot
	sysroot="$(cd "$REPO_ROOT" && rustc --print sysroot)" || die "rustc --print sysroot failed"
	TOOLCHAIN_DIR="$(readlink -f "$sysroot")"
	[ -f "$TOOLCHAIN_DIR/lib/rustlib/components" ] \
		|| die "$TOOLCHAIN_DIR does not look like a rustup toolchain"
	[ -x "$HOST_CARGO_HOME/bin/rustup" ] || die "$HOST_CARGO_HOME/bin/rustup not found"
}
# The host's cargo config, if it replaces crates.io with a mirror (the registry cache directory
# names depend on it).
host_cargo_config() {
	local f
	for f in "$HOST_CARGO_HOME/config.toml" "$HOST_CARGO_HOME/config"; do
		if [ -f "$f" ] && grep -qE '^\s*(\[source|replace-with)' "$f"; then
			printf '%s\n' "$f"
			return 0
		fi
	done
}
rust_rootfs_hash() {
	{
		echo "recipe=$RECIPE_VERSION suite=$SUITE variant=minbase packages=$RUST_PACKAGES"
		rust_customize
		common_customize
	} | sha
}
rust_hash() {
	rust_host_facts
	local cfg
	cfg="$(host_cargo_config || true)"
	{
		rust_rootfs_hash
		dir_digest "$REPO_ROOT/images/rust"
		basename "$TOOLCHAIN_DIR"
		(cd "$REPO_ROOT" && rustc -vV && cargo -vV)
		cat "$TOOLCHAIN_DIR/lib/rustlib/components"
		"$HOST_CARGO_HOME/bin/rustup" --version 2> /dev/null
		[ -z "$cfg" ] || cat "$cfg"
		# The crates the project needs end up in the image's registry.
		sha < "$REPO_ROOT/Cargo.lock"
	} | sha
}
build_rust() {
	local hash rootfs_hash ctx tcname cfg rust_version t0
	set_force rust
	rust_host_facts # sets TOOLCHAIN_DIR here, not only in the $(...) subshell below
	hash=$(rust_hash)
	if up_to_date "$IMG_RUST" "$hash"; then
		log "    $IMG_RUST is up to date (${hash:0:12})"
		return 0
	fi
	if image_exists "$IMG_RUST" && [ -z "$(image_hash "$IMG_RUST")" ]; then
		log "    $IMG_RUST exists and was not built by this script (official image?); leaving it alone"
		return 0
	fi

	rootfs_hash=$(rust_rootfs_hash)
	if [ "$FORCE_THIS" = 1 ] || [ "$(image_hash "$IMG_RUST_ROOTFS")" != "$rootfs_hash" ]; then
		rootfs_tarball rust "$RUST_PACKAGES" rust_customize "$rootfs_hash"
		docker import --change "LABEL $LABEL_KEY=$rootfs_hash" --change 'ENV LANG=C.UTF-8' \
			--change 'CMD ["bash"]' --message "debootstrap $SUITE minbase + $RUST_PACKAGES" \
			"$ROOTFS_TARBALL" "$IMG_RUST_ROOTFS" > /dev/null
		log "    built $IMG_RUST_ROOTFS (${rootfs_hash:0:12})"
	fi

	# Crates for offline builds: fetch what Cargo.lock needs into the host's registry.
	t0=$EPOCHREALTIME
	(cd "$REPO_ROOT" && cargo fetch --locked --quiet) || die "cargo fetch --locked failed"
	log "    cargo fetch --locked: $(elapsed "$t0") s"

	# Build context, streamed as one tar: Dockerfile + settings.toml + cargo config from a small
	# staging directory, the toolchain (without docs), rustup and its proxies, registry cache+index.
	new_work_dir rust-context
	ctx=$NEW_DIR
	tcname=$(basename "$TOOLCHAIN_DIR")
	rust_version=$(rustc --version | awk '{ print $2 }')
	cp "$REPO_ROOT/images/rust/Dockerfile" "$ctx/Dockerfile"
	mkdir -p "$ctx/rustup" "$ctx/cargo/bin"
	{
		grep -E '^version *=' "$HOST_RUSTUP_HOME/settings.toml" 2> /dev/null || echo 'version = "12"'
		printf 'default_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' "$tcname"
	} > "$ctx/rustup/settings.toml"
	cfg="$(host_cargo_config || true)"
	if [ -n "$cfg" ]; then
		log "    copying cargo config $cfg (registry replacement)"
		cp "$cfg" "$ctx/cargo/config.toml"
	else
		: > "$ctx/cargo/config.toml"
	fi
	# rustup and the proxies that point at it (cargo, rustc, rustdoc, clippy-driver, ...).
	cp "$HOST_CARGO_HOME/bin/rustup" "$ctx/cargo/bin/rustup"
	local p
	for p in "$HOST_CARGO_HOME"/bin/*; do
		[ "$(basename "$p")" != rustup ] || continue
		if { [ -L "$p" ] && [ "$(basename "$(readlink "$p")")" = rustup ]; } \
			|| [ "$p" -ef "$HOST_CARGO_HOME/bin/rustup" ]; then
			ln -s rustup "$ctx/cargo/bin/$(basename "$p")"
		fi
	done
	local registry_dirs=()
	[ -d "$HOST_CARGO_HOME/registry/cache" ] && registry_dirs+=(registry/cache)
	[ -d "$HOST_CARGO_HOME/registry/index" ] && registry_dirs+=(registry/index)

	t0=$EPOCHREALTIME
	build_log rust
	local no_cache=()
	[ "$FORCE_THIS" = 0 ] || no_cache=(--no-cache)
	tar -c --numeric-owner --owner=0 --group=0 \
		--exclude="./$tcname/share/doc" --exclude="$tcname/share/doc" \
		-C "$ctx" Dockerfile rustup cargo \
		-C "$(dirname "$TOOLCHAIN_DIR")" \
		--transform "s,^$tcname\\(/\\|\$\\),toolchains/$tcname\\1,S" "$tcname" \
		--transform "s,^registry/,cargo/registry/,S" \
		-C "$HOST_CARGO_HOME" "${registry_dirs[@]}" \
		| docker build "${no_cache[@]+"${no_cache[@]}"}" --label "$LABEL_KEY=$hash" \
			--build-arg "RUST_VERSION=$rust_version" --build-arg "TOOLCHAIN=$tcname" \
			-t "$IMG_RUST" - > "$BUILD_LOG" 2>&1 \
		|| build_failed "$IMG_RUST"
	log "    built $IMG_RUST (${hash:0:12}) from toolchain $tcname ($rust_version): $(elapsed "$t0") s"
	docker run --rm --network none "$IMG_RUST" cargo --version > /dev/null \
		|| die "$IMG_RUST: cargo --version failed"
}

# --- db-backup:test ------------------------------------------------------------------------------

build_app() {
	local args=()
	if git -C "$REPO_ROOT" rev-parse -q --verify HEAD > /dev/null 2>&1; then
		args+=(--build-arg "REVISION=$(git -C "$REPO_ROOT" rev-parse HEAD)")
	fi
	args+=(--build-arg "VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO_ROOT/Cargo.toml" | head -n 1)")
	[ "$FORCE" = 0 ] || ! selected app || args+=(--no-cache)
	# This is the step that fails when the Rust code does not compile.
	build_log app
	docker build "${args[@]}" -t "$IMG_APP" "$REPO_ROOT" > "$BUILD_LOG" 2>&1 || build_failed "$IMG_APP"
	log "    built $IMG_APP ($(docker image inspect --format '{{.Size}}' "$IMG_APP" \
		| awk '{ printf "%.1f MB", $1 / 1e6 }'))"
}

# ----------------------------------------------------------------------------------------------
# dependency order: base -> postgres, mariadb -> mariadb-nodump; mongo; rust -> app

need_base=0; need_mariadb=0; need_rust=0
selected base && need_base=1
selected postgres && need_base=1
selected mariadb && need_base=1 && need_mariadb=1
selected mariadb-nodump && need_base=1 && need_mariadb=1
selected rust && need_rust=1
selected app && need_rust=1

log "images: ${TARGETS[*]} (cache: $CACHE_DIR)"
[ "$need_base" = 0 ] || step "base ($IMG_BASE)" build_base
! selected postgres || step "postgres ($IMG_POSTGRES, $ALIAS_POSTGRES)" build_postgres
[ "$need_mariadb" = 0 ] || step "mariadb ($IMG_MARIADB)" build_mariadb
! selected mariadb-nodump || step "mariadb-nodump ($IMG_MARIADB_NODUMP, $ALIAS_MARIADB_NODUMP)" build_mariadb_nodump
! selected mongo || step "mongo ($IMG_MONGO, $ALIAS_MONGO)" build_mongo
[ "$need_rust" = 0 ] || step "rust ($IMG_RUST)" build_rust
! selected app || step "app ($IMG_APP)" build_app
log "done in $(elapsed "$SCRIPT_T0") s"
