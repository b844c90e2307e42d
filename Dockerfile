# syntax=docker/dockerfile:1
#
# One image for both binaries of ADE Runs: `ade-api` (default command
# `ade-api serve`; `ade-api migrate` for the one-shot migration) and
# `ade-worker`. Used by docker-compose.yml; see docs/operations.md.
#
#   docker build -t ade-runs:local .

# ---------------------------------------------------------------- builder --
# rust-version in Cargo.toml is 1.95. (If the bookworm tag is ever retired,
# use rust:1-slim-bookworm; keep the builder on the runtime's Debian release
# so the binaries link against the same glibc.)
ARG RUST_IMAGE=rust:1.95-slim-bookworm
FROM ${RUST_IMAGE} AS builder
WORKDIR /src

# Only what the two binaries compile from: the workspace, its three crates,
# the migrations (embedded with refinery) and the starter config template
# (embedded into ade-api with include_bytes!).
COPY Cargo.toml Cargo.lock ./
COPY common/ common/
COPY api/ api/
COPY worker/ worker/
COPY migrations/ migrations/
COPY engine/templates/ engine/templates/

# The registry and target/ live in BuildKit cache mounts, so a rebuild after a
# source change recompiles only the workspace crates, not every dependency.
# The binaries are copied out because the cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin ade-api --bin ade-worker \
 && mkdir -p /out \
 && cp target/release/ade-api target/release/ade-worker /out/

# ---------------------------------------------------------------- runtime --
FROM debian:bookworm-slim AS runtime

# python3: the interpreter every build venv is made from (ADE_PYTHON).
# uv: makes the venvs and installs the engine and config packages (ADE_UV).
#   Pinned inside the engine's `uv_build>=0.8.0,<0.14` range, so uv builds the
#   engine and uv_build-based config packages itself, without fetching a build
#   backend from PyPI. python3-venv is not needed: uv creates the venvs.
# ca-certificates: for config packages that declare PyPI dependencies.
# bubblewrap: the sandbox configuration code runs in (ADE_ENGINE_SANDBOX);
#   it also uses prlimit, from util-linux, which the base image has.
# curl: the API's container healthcheck (and handy for poking at the API).
ARG UV_VERSION=0.13.9
# Debian package versions follow the bookworm-slim base; uv is pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      bubblewrap ca-certificates curl python3 python3-pip \
 && python3 -m pip install --no-cache-dir --break-system-packages "uv==${UV_VERSION}" \
 && rm -rf /var/lib/apt/lists/* \
 && uv --version \
 && bwrap --version && prlimit --version

# A non-root user; /data and /venvs belong to it, so the named and anonymous
# volumes mounted there start out writable by it.
RUN groupadd --system --gid 10001 ade \
 && useradd --system --uid 10001 --gid ade --home-dir /home/ade --create-home \
      --shell /usr/sbin/nologin ade \
 && mkdir -p /data /venvs \
 && chown ade:ade /data /venvs

COPY --from=builder /out/ade-api /out/ade-worker /usr/local/bin/
# The engine source that the worker installs into every venv (read-only is fine).
COPY engine/ /app/engine/

# ADE_DATA_DIR: shared storage (documents, config packages, run outputs).
# ADE_VENVS_DIR: host-local venv cache of a worker (never shared).
# UV_CACHE_DIR: uv's download/build cache, kept on the same filesystem as the
#   venvs so uv can hardlink instead of copying (the worker passes it through).
ENV ADE_ENGINE_DIR=/app/engine \
    ADE_DATA_DIR=/data \
    ADE_VENVS_DIR=/venvs \
    UV_CACHE_DIR=/venvs/.uv-cache

USER 10001:10001
WORKDIR /home/ade
EXPOSE 8000
CMD ["ade-api", "serve"]
