# syntax=docker/dockerfile:1.7
# stratix-gateway: the obsync_api-gateway image.
#   docker build -t <registry>/obsync/sync/stratix-gateway:<tag> .
# Builder and runtime are both Debian 13 (trixie), so the binary links against the glibc it
# runs with.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-trixie AS builder
# Stamped into the binary (`--version`, /status, gateway_build_info; see build.rs): the
# context has no .git, so the revision comes as an argument (`--build-arg REVISION=$(git
# rev-parse --short=12 HEAD)`).
ARG VERSION=0.1.0
ARG REVISION=unknown
ENV STRATIX_VERSION=${VERSION} STRATIX_REVISION=${REVISION}
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# The registry and target directories live in BuildKit caches: a rebuild after a source change
# recompiles only this crate, not its dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin stratix-gateway \
    && install -D -m 0755 target/release/stratix-gateway /out/stratix-gateway

FROM gcr.io/distroless/cc-debian13:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="stratix-gateway" \
      org.opencontainers.image.description="API gateway for ObSync on Docker Swarm (drop-in for obsync_api-gateway)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/obsync/stratix-gateway"
COPY --from=builder /out/stratix-gateway /usr/local/bin/stratix-gateway
# The production config; the stack mounts its versioned Swarm config over this path.
COPY stack/gateway.toml /etc/stratix-gateway/gateway.toml
ENV GATEWAY_CONFIG=/etc/stratix-gateway/gateway.toml
# The breaker lab's scenarios and the old gateway's configs, to rehearse with the image alone.
COPY lab /etc/stratix-gateway/lab
USER 65532:65532
EXPOSE 8090 9090
STOPSIGNAL SIGTERM
# No shell or curl in distroless: the binary probes its own /health.
HEALTHCHECK --interval=30s --timeout=10s --start-period=40s --retries=3 \
    CMD ["/usr/local/bin/stratix-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/stratix-gateway"]
