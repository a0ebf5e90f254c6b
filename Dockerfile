# replog node image: a builder stage compiles the static `replog` binary from this repository,
# the final image is that one file on an empty base (FROM scratch, about 11 MB).
#
#   docker-compose up --build          # or: docker compose up --build
#
# is the whole set-up on a fresh clone: the builder starts from the official rust image
# (RUST_IMAGE below, pulled once from Docker Hub) and needs crates.io for the dependencies.
# Machines that cannot pull images build the binary on the host and use Dockerfile.prebuilt
# instead (docker-compose.prebuilt.yml; README, "Docker"). Another base with the same layout
# (cargo on PATH, gcc and libc6-dev for the static glibc link) can be chosen with
# `--build-arg RUST_IMAGE=<image>`; CI gives a local stand-in built by
# tools/rust-standin-image.sh.
#
# Works with both builders: BuildKit (docker compose v2, docker buildx) and the classic one
# (docker-compose 1.x, a daemon without buildx). That is why the dependencies are cached in a
# layer of their own (the stub build below) rather than with `RUN --mount=type=cache`, which
# the classic builder rejects.
#
# The binary is statically linked (glibc, crt-static) and resolves peer names with its own DNS
# resolver (hickory, reading /etc/resolv.conf and /etc/hosts, which Docker provides), so it
# needs no shared libraries, NSS modules or shell. The compose healthcheck runs the binary
# itself (`replog status --json`), so no curl is needed either.

# Printed by the classic builder as the first step, so it is on screen next to a failed pull.
ARG OFFLINE_HINT="if the pull of the rust image fails (no registry): RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu, then docker-compose -f docker-compose.yml -f docker-compose.prebuilt.yml up --build (README, Docker)"
ARG RUST_IMAGE=rust:1.95-slim-bookworm

# --- deps: every dependency compiled, against stubs of replog's own targets --------------
# This layer depends on Cargo.toml, Cargo.lock and the base only, so a change under src/ reuses
# it and recompiles replog alone.
# No registry, so the pull fails? Build the binary on the host, use docker-compose.prebuilt.yml (README, Docker).
FROM ${RUST_IMAGE} AS deps
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
# Cargo refuses a manifest whose declared targets ([[bench]], [[test]], [[example]], [[bin]])
# have no file, so each gets an empty `main` at the path Cargo would look for (its `path =`, or
# the directory of its kind). The stub lib and bin are compiled too and then cleaned
# (`cargo clean -p replog`): the real sources copied later may be older than these stubs, and
# Cargo, which compares modification times, would otherwise keep the stubs' binary.
RUN set -eu; \
    mkdir -p src; echo 'fn main() {}' > src/main.rs; : > src/lib.rs; \
    awk -F'"' ' \
        function flush() { if (kind != "" && name != "") print (path != "" ? path : dir[kind] "/" name ".rs") } \
        BEGIN { dir["bench"] = "benches"; dir["test"] = "tests"; dir["example"] = "examples"; dir["bin"] = "src/bin" } \
        /^\[\[(bench|test|example|bin)\]\]/ { flush(); kind = $0; gsub(/[][ \t]/, "", kind); name = ""; path = ""; next } \
        /^\[/ { flush(); kind = ""; next } \
        kind != "" && /^[ \t]*name[ \t]*=/ { name = $2 } \
        kind != "" && /^[ \t]*path[ \t]*=/ { path = $2 } \
        END { flush() }' Cargo.toml | \
    while read -r f; do mkdir -p "$(dirname "$f")"; echo 'fn main() {}' > "$f"; done; \
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --target x86_64-unknown-linux-gnu --locked; \
    cargo clean --release --target x86_64-unknown-linux-gnu --locked -p replog; \
    rm -f src/main.rs src/lib.rs

# --- builder: replog itself ----------------------------------------------------------------
FROM deps AS builder
# src/ is all the crate reads (the cluster page, src/http/page/index.html, is in it).
COPY src ./src
# The same flags as the deps layer (other flags would rebuild every dependency). target/ goes
# in the same step, so this layer holds the binary and not a second copy of the build tree.
RUN RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --target x86_64-unknown-linux-gnu --locked && \
    install -D -m 0755 target/x86_64-unknown-linux-gnu/release/replog /out/replog && \
    rm -rf target

# --- the image: the binary alone -----------------------------------------------------------
# Dockerfile.prebuilt ends the same way (keep the two in step).
FROM scratch
COPY --from=builder /out/replog /replog

# Container defaults; every other setting comes from REPLOG_<SECTION>_<KEY> variables
# (see docker-compose.yml) or a config file mounted and passed with --config.
ENV REPLOG_NODE_DATA_DIR=/data \
    REPLOG_LOG_FILE=/log/app.log

ENTRYPOINT ["/replog"]
CMD ["serve"]
