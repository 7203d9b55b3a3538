# db-backup container image.
#
#   docker build -t db-backup .
#
# Works with the legacy builder (no BuildKit features). The runtime image is FROM scratch: the
# binary (time zones are compiled in), links naming its commands (`docker exec db-backup restore db`),
# exactly the shared libraries `ldd` lists for it (and the dynamic loader), and an empty /tmp.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own that only rebuilds when Cargo.toml or Cargo.lock
# change (a full build takes minutes, the crate alone about one). The crate's own artifacts from
# the placeholder sources are removed so that cargo cannot mistake them for up to date.
COPY Cargo.toml Cargo.lock ./
RUN set -eux; \
    mkdir src; \
    echo 'fn main() {}' > src/main.rs; \
    : > src/lib.rs; \
    cargo build --release --locked --bin db-backup; \
    rm -rf src target/release/db-backup target/release/db-backup.d \
        target/release/deps/db_backup-* target/release/deps/libdb_backup-* \
        target/release/.fingerprint/db-backup-*
COPY . .
# Last checks: the binary must start inside the new root (exit status 126/127 would mean that the
# loader or a library is missing); any other status is fine (--version may not be a flag yet).
RUN set -eux; \
    cargo build --release --locked --bin db-backup; \
    bin=target/release/db-backup; \
    mkdir -p /rootfs/usr/local/bin /rootfs/tmp /rootfs/backup; \
    chmod 1777 /rootfs/tmp; \
    cp "$bin" /rootfs/usr/local/bin/db-backup; \
    ldd "$bin"; \
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
