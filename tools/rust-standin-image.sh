#!/usr/bin/env bash
# A local stand-in for the official rust image that the Dockerfile's builder stage starts from,
# so the builder stage can be tested on a machine that cannot pull images (this project's CI).
# Prints the image's tag on its last line of stdout (everything else goes to stderr); give it
# to the build as the same build argument a user could pass:
#
#   tag=$(tools/rust-standin-image.sh)
#   docker-compose build --build-arg RUST_IMAGE="$tag"
#
# Two images, each built only when its tag is missing, so a second run takes a second:
#
#   replog-local/rust:<ver>-slim-bookworm
#       what rust:<ver>-slim-bookworm holds, made from Debian packages: a bookworm root
#       (mmdebstrap, variant apt, as debian:bookworm-slim) with ca-certificates, gcc, libc6-dev
#       and wget, and this machine's Rust toolchain (`rustc --print sysroot`, without its
#       HTML docs) in the official image's layout: RUSTUP_HOME=/usr/local/rustup,
#       CARGO_HOME=/usr/local/cargo, /usr/local/cargo/bin on PATH (rustup's proxies when the
#       host has rustup), RUST_VERSION. Keyed on the toolchain's version; imported with
#       `docker import`.
#   replog-local/rust:<ver>-slim-bookworm-crates-<hash of Cargo.lock>
#       the above plus every crate of Cargo.lock (`cargo vendor`, run on the host) as a
#       directory source in $CARGO_HOME/config.toml. Containers here cannot reach crates.io
#       (the TLS connection fails verification inside them), so this stands in for the
#       registry the way the first image stands in for Docker Hub; the Dockerfile itself stays
#       the one users build. Stale ones (other lock files) older than a day are removed.
#
# Needs: docker, mmdebstrap (apt-get install mmdebstrap) and root for it, cargo with network
# access on the host (for `cargo vendor`), flock. Concurrent runs wait for each other.
set -euo pipefail

# mmdebstrap's customize hook calls this script back to put the toolchain into the new root.
if [ "${1:-}" = __install-toolchain ]; then
    root=$2
    tc=$root/usr/local/rustup/toolchains/$STANDIN_TOOLCHAIN
    mkdir -p "$tc" "$root/usr/local/cargo/bin"
    tar -C "$STANDIN_SYSROOT" --exclude=./share/doc -cf - . | tar -C "$tc" -xf -
    if [ -n "$STANDIN_RUSTUP" ]; then
        cp "$STANDIN_RUSTUP" "$root/usr/local/cargo/bin/rustup"
        for p in "$tc"/bin/*; do
            ln -s rustup "$root/usr/local/cargo/bin/$(basename "$p")"
        done
        printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' \
            "$STANDIN_TOOLCHAIN" >"$root/usr/local/rustup/settings.toml"
    else
        for p in "$tc"/bin/*; do
            ln -s "/usr/local/rustup/toolchains/$STANDIN_TOOLCHAIN/bin/$(basename "$p")" \
                "$root/usr/local/cargo/bin/$(basename "$p")"
        done
    fi
    chmod -R a+w "$root/usr/local/rustup" "$root/usr/local/cargo"
    exit 0
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/tools/$(basename "${BASH_SOURCE[0]}")
cd "$ROOT"
say() { echo "rust-standin: $*" >&2; }
die() {
    say "FAIL: $*"
    exit 1
}

command -v docker >/dev/null || die "docker is not installed"
command -v rustc >/dev/null || die "rustc is not on PATH (the stand-in copies this machine's toolchain)"
# Without buildx the docker CLI falls back to the classic builder anyway, after a warning.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

VERSION=$(rustc -V | awk '{print $2}')
HOST=$(rustc -vV | sed -n 's/^host: //p')
[ "$HOST" = x86_64-unknown-linux-gnu ] || die "the host toolchain is for $HOST; the image builds x86_64-unknown-linux-gnu"
BASE_TAG=replog-local/rust:$VERSION-slim-bookworm
LOCK_HASH=$(sha256sum Cargo.lock | cut -c1-12)
CRATES_TAG=$BASE_TAG-crates-$LOCK_HASH

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Two runs at once (CI of two branches) would both build a missing image.
exec 9>"${TMPDIR:-/tmp}/replog-rust-standin.lock"
flock 9

if exists "$CRATES_TAG"; then
    say "reusing $CRATES_TAG"
    echo "$CRATES_TAG"
    exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rust-standin.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if exists "$BASE_TAG"; then
    say "reusing $BASE_TAG"
else
    command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"
    STANDIN_SYSROOT=$(rustc --print sysroot)
    STANDIN_TOOLCHAIN=$VERSION-$HOST
    STANDIN_RUSTUP=$(command -v rustup || true)
    export STANDIN_SYSROOT STANDIN_TOOLCHAIN STANDIN_RUSTUP
    say "building $BASE_TAG: Debian bookworm (mmdebstrap) + $(rustc -V) from $STANDIN_SYSROOT"
    t0=$(date +%s)
    # The root goes straight from mmdebstrap's tar output into docker import.
    mmdebstrap --quiet --variant=apt --include=ca-certificates,gcc,libc6-dev,wget \
        --customize-hook="'$SELF' __install-toolchain \"\$1\"" \
        bookworm - |
        docker import \
            -c "ENV RUSTUP_HOME=/usr/local/rustup" \
            -c "ENV CARGO_HOME=/usr/local/cargo" \
            -c "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            -c "ENV RUST_VERSION=$VERSION" \
            -c "LABEL org.replog.standin=\"$(rustc -V)\"" \
            -m "replog: local stand-in for rust:$VERSION-slim-bookworm" \
            - "$BASE_TAG" >/dev/null
    got=$(docker run --rm "$BASE_TAG" sh -c 'rustc -V && cargo -V') ||
        die "$BASE_TAG does not run rustc and cargo"
    say "$BASE_TAG built in $(($(date +%s) - t0)) s: $(echo "$got" | tr '\n' ' ')"
fi

say "building $CRATES_TAG: $BASE_TAG + the crates of Cargo.lock (cargo vendor)"
t0=$(date +%s)
mkdir -p "$TMP/ctx"
cargo vendor --locked --quiet "$TMP/ctx/vendor" >/dev/null ||
    die "cargo vendor failed (it needs crates.io from the host, or the crates in ~/.cargo)"
cat >"$TMP/ctx/config.toml" <<'EOF'
# The stand-in's crates.io: every crate of the lock file, vendored (tools/rust-standin-image.sh).
[source.crates-io]
replace-with = "vendored"

[source.vendored]
directory = "/usr/local/cargo/vendor"
EOF
cat >"$TMP/ctx/Dockerfile" <<EOF
FROM $BASE_TAG
COPY vendor /usr/local/cargo/vendor
COPY config.toml /usr/local/cargo/config.toml
LABEL org.replog.standin.crates="$LOCK_HASH"
EOF
docker build --force-rm -q -t "$CRATES_TAG" "$TMP/ctx" >"$TMP/build.log" 2>&1 || {
    cat "$TMP/build.log" >&2
    die "docker build of $CRATES_TAG failed"
}
say "$CRATES_TAG built in $(($(date +%s) - t0)) s"

# Crates images of other lock files (other branches, older commits) older than a day: a
# concurrent run may still be building on a younger one.
now=$(date +%s)
docker images --format '{{.Repository}}:{{.Tag}}' "replog-local/rust" | { grep -F -- "-crates-" || true; } |
    while read -r old; do
        [ "$old" != "$CRATES_TAG" ] || continue
        created=$(docker image inspect -f '{{.Created}}' "$old" 2>/dev/null) || continue
        age=$((now - $(date -d "$created" +%s)))
        if [ "$age" -gt 86400 ]; then
            docker rmi "$old" >/dev/null 2>&1 && say "removed the stale $old"
        fi
    done
echo "$CRATES_TAG"
