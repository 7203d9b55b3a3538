# db-backup container image.
#
#   docker build -t db-backup .
#
# Works with the legacy builder (no BuildKit features). The runtime image is FROM scratch: the
# binary (time zones are compiled in), links naming its commands (`docker exec db-backup restore db`),
# the shared libraries `ldd` lists for it (none: glibc is linked in statically, see below) and an
# empty /tmp.

FROM rust:1-bookworm AS build
WORKDIR /src
# glibc linked statically saves the 3.2 MB of libc, libm, libgcc_s and the loader. Host names
# still resolve: glibc 2.34+ has the files and dns NSS modules inside libc itself, so /etc/hosts
# and Docker's DNS work without any libnss_*.so (and a FROM scratch image has no nsswitch.conf
# either way). The flag reaches only the target: with an explicit --target, build scripts and
# proc-macros are built for the host without it. Host builds (cargo test) are not affected.
ENV RUSTFLAGS="-C target-feature=+crt-static"
# Dependencies first, in a layer of their own that only rebuilds when Cargo.toml or Cargo.lock
# change (a full build takes minutes, the crate alone about one). The crate's own artifacts from
# the placeholder sources are removed so that cargo cannot mistake them for up to date.
COPY Cargo.toml Cargo.lock ./
RUN set -eux; \
    mkdir src; \
    echo 'fn main() {}' > src/main.rs; \
    : > src/lib.rs; \
    triple="$(rustc -vV | sed -n 's/^host: //p')"; \
    cargo build --release --locked --target "$triple" --bin db-backup; \
    out="target/$triple/release"; \
    rm -rf src "$out/db-backup" "$out/db-backup.d" \
        "$out"/deps/db_backup-* "$out"/deps/libdb_backup-* \
        "$out"/.fingerprint/db-backup-*
COPY . .
# Last checks: the binary must start inside the new root (exit status 126/127 would mean that the
# loader or a library is missing); any other status is fine (--version may not be a flag yet).
# The profile's strip=true leaves a static-pie binary's symbol table in place (2.5 MB): strip does it.
RUN set -eux; \
    triple="$(rustc -vV | sed -n 's/^host: //p')"; \
    cargo build --release --locked --target "$triple" --bin db-backup; \
    bin="target/$triple/release/db-backup"; \
    mkdir -p /rootfs/usr/local/bin /rootfs/tmp /rootfs/backup; \
    chmod 1777 /rootfs/tmp; \
    cp "$bin" /rootfs/usr/local/bin/db-backup; \
    strip --strip-all /rootfs/usr/local/bin/db-backup; \
    ldd "$bin" || true; \
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do \
        mkdir -p "/rootfs$(dirname "$lib")"; \
        cp -L "$lib" "/rootfs$lib"; \
    done; \
    for cmd in backup restore list check status prune verify healthcheck sync; do \
        ln -s db-backup "/rootfs/usr/local/bin/$cmd"; \
    done; \
    rc=0; chroot /rootfs /usr/local/bin/db-backup --version || rc=$?; \
    test "$rc" -ne 126 && test "$rc" -ne 127; \
    du -sh /rootfs

FROM scratch AS runtime
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="db-backup" \
      org.opencontainers.image.description="Label-driven backups of the databases running in Docker containers" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /rootfs/ /
ENV DB_BACKUP_ROOT=/backup \
    PATH=/usr/local/bin
VOLUME /backup
# Healthy while the daemon's loop is alive; a failed backup is reported by notifications and
# metrics, not by restarting the container.
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 CMD ["/usr/local/bin/db-backup", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/db-backup"]
CMD ["run"]
