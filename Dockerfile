# syntax=docker/dockerfile:1
#
# Open Bedrock Server — container image.
#
#   docker build -t open-bedrock-server .
#   docker run --rm -p 8000:8000 -e API_KEY=change-me -e AWS_REGION=us-east-1 open-bedrock-server
#
# Runtime base: debian:bookworm-slim rather than distroless. The gateway has no
# self-check subcommand, and distroless has no shell or curl, so a HEALTHCHECK
# (and the ECS `CMD-SHELL curl` health check in deploy/ecs/) would be
# impossible there. The slim image adds curl + ca-certificates (~10 MB) and a
# fixed numeric non-root user (10001) so Kubernetes `runAsNonRoot` can verify it.

# The toolchain link/symbol-order.txt was written with (its first lines say which): the names it
# lists carry the compiler's version, so another one keeps only part of the code layout (build.rs
# warns when they differ; scripts/symbol-order rewrites the file).
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

############################
# Stage 1: build
############################
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder

# aws-lc-sys (rustls' crypto provider, used by hyper-rustls and the AWS SDK)
# compiles C code: it needs a C toolchain (in the rust image), cmake and perl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl make pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Dependency-caching layer: build every dependency against stub sources, so this
# layer is only rebuilt when Cargo.toml / Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
# Cargo.toml declares the criterion benches; their files must exist for cargo to read the manifest.
COPY benches ./benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && cargo build --profile dist --locked --features redis \
 && rm -rf src \
    target/dist/open-bedrock-server* \
    target/dist/deps/open_bedrock_server* \
    target/dist/deps/libopen_bedrock_server* \
    target/dist/.fingerprint/open-bedrock-server-*

# The real sources. The fingerprints of the stub crate were removed above, so
# cargo rebuilds the crate even if COPY gave the files an older mtime.
COPY src ./src
# build.rs links the binary with the code requests run placed together (link/symbol-order.txt):
# less of the binary resident, less CPU per request.
COPY build.rs ./
COPY link ./link
RUN cargo build --profile dist --locked --features redis \
 && strip target/dist/open-bedrock-server \
 && ./target/dist/open-bedrock-server --version

############################
# Stage 2: runtime
############################
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates: trust store for outbound TLS; curl: HEALTHCHECK / ECS health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gateway

COPY --from=builder /build/target/dist/open-bedrock-server /usr/local/bin/open-bedrock-server

ENV HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json \
    LOG_LEVEL=info

# The binary never writes to disk: the image runs with a read-only root filesystem.
WORKDIR /
# Numeric UID:GID so that Kubernetes `runAsNonRoot: true` can check it.
USER 10001:10001

EXPOSE 8000

# Uses $PORT so the check follows a PORT override.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT:-8000}/health" || exit 1

ENTRYPOINT ["open-bedrock-server"]
