#!/usr/bin/env bash
# End-to-end suite: builds the image (E2E_BUILD below), checks the offline override
# (docker-compose.prebuilt.yml: without the host binary its build names the command that makes
# it; with it, it builds), runs the shipped docker-compose.yml cluster (default settings) and
# drives it from outside:
#   1. self_test_delay.sh                          (fresh cluster)
#   2. self_test_replication_and_quorum.sh         (fresh cluster; pause/unpause)
#   3. network partition of secondary1 (docker network disconnect/connect) while appends go on
#   4. docker-compose restart secondary1 while appends go on
#   5. docker kill -s KILL secondary1, appends, docker-compose start secondary1
#   6. injected errors (fault.error_rate) on secondary1: retries, no duplicates, no gaps
#   7. docker-compose.4-secondaries.yml: master + 4 secondaries, w=5
#   8. the nemesis over compose clusters (tests/nemesis/docker.rs): seeded schedules of pause,
#      kill -9, wipe, partition (master too), /delay and error-rate bursts under concurrent
#      appends and long-polls, each on a fresh cluster, checked by the history checker; then
#      the failover schedules (nemesis_docker_failover: every node a member, the master
#      killed, paused and partitioned off, power losses), checked by the failover checker
# Each phase asserts; the first failure stops the run with a non-zero exit, after printing
# the containers' state and the end of the log. Everything it started (containers, network,
# volumes, images, temp dir) is removed at exit, failure included, but for what the next run
# reuses: the stand-in rust images (replog-local/rust:*) and the dependency layer
# (replog-local/replog-deps:cache, replaced when it changes). At the end it counts the
# phases it ran and the nemesis schedules phase 8 ran, and fails if a phase it was asked
# for did not run or phase 8 ran no schedule (or fewer than it planned).
#
#   e2e/run.sh
#
# Environment:
#   CI                set (to anything but "", 0, false or no), or E2E_REQUIRE_DOCKER=1, or
#                     E2E_PHASES set: Docker is required, and its absence is a failure.
#                     Otherwise (a bare local run) no Docker skips the suite with exit 0.
#                     .ci/run sets everything this script reads.
#   E2E_BUILD         how the image is built:
#                     standin   the Dockerfile's builder stage on a local stand-in of the rust
#                               image (tools/rust-standin-image.sh: Debian packages, this
#                               machine's toolchain, the crates vendored; built when missing),
#                               given as --build-arg RUST_IMAGE; what .ci/run uses
#                     registry  the Dockerfile's builder stage on RUST_IMAGE (pulled if missing)
#                     prebuilt  the static binary built on the host, then Dockerfile.prebuilt
#                               (docker-compose.prebuilt.yml, the offline path)
#                     unset: registry when RUST_IMAGE is here or can be pulled, else standin
#                     when mmdebstrap is installed, else prebuilt
#   RUST_IMAGE        the builder's base for E2E_BUILD=registry (default: the Dockerfile's)
#   E2E_SKIP_BUILD=1  prebuilt, with the static binary already in
#                     target/x86_64-unknown-linux-gnu/release (no cargo build)
#   E2E_KEEP=1        leave the last cluster running (prints how to remove it)
#   E2E_IP_CHANGE=0   skip the check that the master finds secondary1 again at once when it
#                     comes back on another IP address (peer names are resolved uncached)
#   E2E_PHASES        which phases to run, e.g. "3 4" or "3,4" (default: all, 1 to 8); a
#                     name that is not a phase is a failure
#   NEMESIS_SEED, NEMESIS_SEEDS, NEMESIS_FIRST_SEED, NEMESIS_SECS
#                     phase 8: one seed, or a range of seeds (default: each test's CI seeds),
#                     and the length of each schedule (default 20 s); see tests/nemesis.rs
#   NEMESIS_FAILOVER  phase 8: 1 runs only the failover schedules, 0 only those without
#                     failover; unset, both (each with the seeds above)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
START=$(date +%s)

# --- Which phases ------------------------------------------------------------------------
ALL_PHASES="1 2 3 4 5 6 7 8"
WANT_PHASES=$(printf '%s' "${E2E_PHASES:-$ALL_PHASES}" | tr ',' ' ' | xargs)
[ -n "$WANT_PHASES" ] || { echo "e2e: FAIL: E2E_PHASES is set but names no phase (the phases are $ALL_PHASES)" >&2; exit 1; }
for p in $WANT_PHASES; do
    [[ " $ALL_PHASES " == *" $p "* ]] || { echo "e2e: FAIL: E2E_PHASES names '$p', which is not a phase (the phases are $ALL_PHASES)" >&2; exit 1; }
done

# --- Docker present? -------------------------------------------------------------------
if [ -z "${COMPOSE:-}" ]; then
    if command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=docker-compose
    elif docker compose version >/dev/null 2>&1; then
        COMPOSE="docker compose"
    else
        COMPOSE=
    fi
fi
problem=
if ! command -v docker >/dev/null 2>&1; then
    problem="the docker command is not installed"
elif ! docker info >/dev/null 2>&1; then
    problem="the Docker engine does not answer (docker info failed)"
elif [ -z "$COMPOSE" ]; then
    problem="neither docker-compose nor 'docker compose' is installed"
fi
if [ -n "$problem" ]; then
    reasons=()
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        "" | 0 | false | no) ;;
        *) reasons+=("CI=${CI}") ;;
    esac
    [ "${E2E_REQUIRE_DOCKER:-}" != 1 ] || reasons+=("E2E_REQUIRE_DOCKER=1")
    [ -z "${E2E_PHASES:-}" ] || reasons+=("E2E_PHASES=\"${E2E_PHASES}\"")
    if [ "${#reasons[@]}" -gt 0 ]; then
        why=$(printf '%s, ' "${reasons[@]}")
        why=${why%, }
        echo "e2e: FAIL: the container suite needs Docker, and $problem (required by $why: not skipped)" >&2
        exit 1
    fi
    echo "e2e: SKIPPED, NOTHING WAS TESTED: $problem (with CI or E2E_REQUIRE_DOCKER=1 set this is a failure)" >&2
    exit 0
fi
export COMPOSE

# --- An isolated project: own name, ports, log dir and image tag ------------------------
ID="replog-e2e-$$-$RANDOM"
export COMPOSE_PROJECT_NAME=$ID
export E2E_IMAGE="replog:$ID"
BASE_FILES="docker-compose.yml:e2e/docker-compose.e2e.yml"
BIG_FILES="$BASE_FILES:docker-compose.4-secondaries.yml:e2e/docker-compose.e2e-4.yml"
export COMPOSE_FILE=$BASE_FILES
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/replog-e2e.XXXXXX")
export HOST_LOG_DIR=$E2E_TMP/log
mkdir -p "$HOST_LOG_DIR"
# Five free ports in a row, below the ephemeral range and away from 8000-8002 and the
# integration tests' 20000-32000.
read -r P0 P1 P2 P3 P4 < <(python3 - <<'EOF'
import random, socket
for _ in range(200):
    base = random.randrange(12000, 19990)
    socks = []
    try:
        for p in range(base, base + 5):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", p)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(*range(base, base + 5)); break
EOF
)
[ -n "${P4:-}" ] || { echo "e2e: FAIL: found no free ports" >&2; exit 1; }
export HOST_PORT_MASTER=$P0 HOST_PORT_SECONDARY1=$P1 HOST_PORT_SECONDARY2=$P2
export HOST_PORT_SECONDARY3=$P3 HOST_PORT_SECONDARY4=$P4

source "$ROOT/e2e/lib.sh"
SECONDARY3_URL=http://0.0.0.0:$P3
SECONDARY4_URL=http://0.0.0.0:$P4

teardown() {
    local rc=$1
    if [ "$rc" != 0 ]; then
        echo
        echo "=== e2e failed: state of project $ID"
        COMPOSE_FILE=$BIG_FILES compose ps || true
        echo "=== last 60 lines of $APP_LOG"
        tail -n 60 "$APP_LOG" 2>/dev/null || true
    fi
    if [ "${E2E_KEEP:-}" = 1 ]; then
        echo "E2E_KEEP=1: left running; remove with:"
        echo "  COMPOSE_PROJECT_NAME=$ID COMPOSE_FILE=$BIG_FILES E2E_IMAGE=$E2E_IMAGE $COMPOSE down -v && docker rmi $E2E_IMAGE${BUILDER_TAG:+ $BUILDER_TAG}"
        return
    fi
    echo "=== teardown: $COMPOSE down -v (project $ID)"
    docker rm -f "$ID-placeholder" >/dev/null 2>&1 || true
    # A frozen container cannot be stopped (the nemesis pauses some; it unpauses them itself
    # unless it was killed).
    docker ps -q --filter "label=com.docker.compose.project=$ID" --filter status=paused |
        xargs -r docker unpause >/dev/null 2>&1 || true
    COMPOSE_FILE=$BIG_FILES compose down -v --remove-orphans -t 3 >/dev/null 2>&1 || true
    docker rmi "$E2E_IMAGE" >/dev/null 2>&1 || true
    # The builder stage (down to the kept dependency layer) and the offline check's image.
    [ -z "${BUILDER_TAG:-}" ] || docker rmi "$BUILDER_TAG" >/dev/null 2>&1 || true
    [ -z "${OFFLINE_IMAGE:-}" ] || docker rmi "$OFFLINE_IMAGE" >/dev/null 2>&1 || true
    rm -rf "$E2E_TMP" 2>/dev/null || true
}
trap 'rc=$?; teardown $rc; _cleanup; exit $rc' EXIT
trap 'exit 130' INT TERM

phase_on() { [[ " $WANT_PHASES " == *" $1 "* ]]; }
# phase_ran P: phase P got to its end (every phase asserts on its way there).
RAN_PHASES=
phase_ran() { RAN_PHASES="${RAN_PHASES:+$RAN_PHASES }$1"; }

banner() {
    echo
    echo "################ [+$(($(date +%s) - START))s] $*"
}

# --- Build the image (E2E_BUILD: how; see the top) --------------------------------------
banner "build"
BUILD=${E2E_BUILD:-}
if [ "${E2E_SKIP_BUILD:-}" = 1 ]; then
    [ -z "$BUILD" ] || [ "$BUILD" = prebuilt ] ||
        fail "E2E_SKIP_BUILD=1 reuses the host binary (E2E_BUILD=prebuilt), but E2E_BUILD=$BUILD"
    BUILD=prebuilt
fi
RUST_IMAGE=${RUST_IMAGE:-$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile)}
if [ -z "$BUILD" ]; then
    # The path closest to a user's that the machine allows: the Dockerfile's builder stage on
    # its own base, else on the stand-in, else the host-built binary.
    if docker image inspect "$RUST_IMAGE" >/dev/null 2>&1 || docker pull -q "$RUST_IMAGE" >/dev/null 2>&1; then
        BUILD=registry
    elif command -v mmdebstrap >/dev/null 2>&1; then
        BUILD=standin
        info "$RUST_IMAGE cannot be pulled here: the builder stage runs on a local stand-in (E2E_BUILD=standin)"
    else
        BUILD=prebuilt
        info "$RUST_IMAGE cannot be pulled here and mmdebstrap is missing: the image is built from the host's binary (E2E_BUILD=prebuilt)"
    fi
fi
# Without buildx the docker CLI falls back to the classic builder anyway, after a warning.
# The classic builder runs the stages with a lower CPU weight, the daemon's equivalent of
# nice, and removes the containers of failed steps too.
STAGE_FLAGS=()
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
    STAGE_FLAGS=(--force-rm --cpu-shares 256)
fi
BUILD_LOG=$E2E_TMP/build.log
# logged CMD...: runs a build step with its output in $BUILD_LOG, shown when it fails.
logged() {
    echo "$*"
    "$@" >"$BUILD_LOG" 2>&1 || {
        tail -n 60 "$BUILD_LOG"
        fail "build step failed: $*"
    }
}
build_start=$(date +%s)
case "$BUILD" in
    standin | registry)
        if [ "$BUILD" = standin ]; then
            echo "tools/rust-standin-image.sh"
            RUST_IMAGE=$(tools/rust-standin-image.sh) || fail "the stand-in rust image could not be built"
        fi
        ok "builder stage on $RUST_IMAGE"
        # The dependency layer is kept between runs under a tag of its own (removing this
        # run's images below then stops at it): a run recompiles replog alone unless
        # Cargo.toml, Cargo.lock or the base changed. The replaced layer, if any, is removed.
        DEPS_TAG=replog-local/replog-deps:cache
        old_deps=$(docker image inspect -f '{{.Id}}' "$DEPS_TAG" 2>/dev/null || true)
        logged docker build "${STAGE_FLAGS[@]}" --target deps \
            --build-arg RUST_IMAGE="$RUST_IMAGE" -t "$DEPS_TAG" .
        new_deps=$(docker image inspect -f '{{.Id}}' "$DEPS_TAG")
        if [ -n "$old_deps" ] && [ "$old_deps" != "$new_deps" ]; then
            docker rmi "$old_deps" >/dev/null 2>&1 || true
        fi
        ok "dependency layer $DEPS_TAG"
        # The builder stage under a tag of this run, so teardown removes it (a stage image
        # is no parent of the final one, and would stay behind).
        BUILDER_TAG="replog-e2e-builder:$ID"
        logged docker build "${STAGE_FLAGS[@]}" --target builder \
            --build-arg RUST_IMAGE="$RUST_IMAGE" -t "$BUILDER_TAG" .
        # The image itself through compose, with the build argument a user would give it.
        logged compose build --build-arg RUST_IMAGE="$RUST_IMAGE"
        ;;
    prebuilt)
        BIN=target/x86_64-unknown-linux-gnu/release/replog
        if [ "${E2E_SKIP_BUILD:-}" != 1 ]; then
            echo "RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu"
            RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu
        fi
        [ -x "$BIN" ] || fail "no binary at $BIN"
        if command -v file >/dev/null 2>&1; then
            file "$BIN" | grep -q 'static' || fail "$BIN is not statically linked"
        fi
        COMPOSE_FILE="$BASE_FILES:docker-compose.prebuilt.yml" logged compose build
        ;;
    *) fail "E2E_BUILD=$BUILD: the ways are standin, registry and prebuilt" ;;
esac
ok "image $E2E_IMAGE built ($BUILD) in $(($(date +%s) - build_start)) s"

# The offline override (docker-compose.prebuilt.yml, Dockerfile.prebuilt), on a copy of its
# files in a context of its own: without the binary the build fails with the sentence that
# names the command making it; with the binary (taken out of the image just built) it builds
# an image that runs it.
OFFLINE=$E2E_TMP/offline
OFFLINE_IMAGE="replog:$ID-offline"
mkdir -p "$OFFLINE/e2e"
cp Dockerfile.prebuilt .dockerignore docker-compose.yml docker-compose.prebuilt.yml "$OFFLINE/"
cp e2e/docker-compose.e2e.yml "$OFFLINE/e2e/"
offline_build() {
    (cd "$OFFLINE" && COMPOSE_FILE=docker-compose.yml:docker-compose.prebuilt.yml:e2e/docker-compose.e2e.yml \
        COMPOSE_PROJECT_NAME="$ID-offline" E2E_IMAGE="$OFFLINE_IMAGE" $COMPOSE build master)
}
want="the host binary is missing: build it with RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu"
if offline_build >"$BUILD_LOG" 2>&1; then
    fail "docker-compose.prebuilt.yml built an image without the host binary"
fi
grep -qF "$want" "$BUILD_LOG" || {
    cat "$BUILD_LOG"
    fail "the offline build without the binary did not say: $want"
}
ok "offline override without the binary: the build fails, saying \"$want\""
mkdir -p "$OFFLINE/target/x86_64-unknown-linux-gnu/release"
cid=$(docker create "$E2E_IMAGE")
docker cp "$cid:/replog" "$OFFLINE/target/x86_64-unknown-linux-gnu/release/replog" >/dev/null
docker rm "$cid" >/dev/null
offline_build >"$BUILD_LOG" 2>&1 || {
    tail -n 30 "$BUILD_LOG"
    fail "docker-compose.prebuilt.yml did not build with the binary in place"
}
got=$(docker run --rm "$OFFLINE_IMAGE" --version) || fail "the offline image does not run"
docker rmi "$OFFLINE_IMAGE" >/dev/null 2>&1 || true
ok "offline override with the binary: an image that runs it ($got)"

up() {
    compose up -d || fail "$COMPOSE up failed"
    wait_health 'j["mode"]' read-write 60
}
down() { compose down -v --remove-orphans -t 3 >/dev/null 2>&1 || true; }

# --- 1, 2: the seed's self-test flows, each on a fresh cluster with default settings -----
if phase_on 1; then
    banner "phase 1: self_test_delay.sh on a fresh cluster"
    up
    ./self_test_delay.sh || fail "self_test_delay.sh failed"
    down
    phase_ran 1
fi
if phase_on 2; then
    banner "phase 2: self_test_replication_and_quorum.sh on a fresh cluster"
    up
    ./self_test_replication_and_quorum.sh || fail "self_test_replication_and_quorum.sh failed"
    phase_ran 2
fi

# Phases 3-6 run on one cluster (phase 2's, or a fresh one).
if phase_on 3 || phase_on 4 || phase_on 5 || phase_on 6 || [ "${E2E_IP_CHANGE:-1}" = 1 ]; then
    up
    wait_health '[n["status"] for n in j["nodes"]]' '["healthy","healthy"]' 30
fi
S1=$(compose ps -q secondary1 2>/dev/null || true)
NET="${ID}_default"

# writer_start TAG: appends TAG-1, TAG-2, … with w=2 in the background until writer_stop.
writer_start() {
    WTAG=$1
    rm -f "$E2E_TMP/stop" "$E2E_TMP/$WTAG.codes"
    (
        i=0
        while [ ! -e "$E2E_TMP/stop" ]; do
            i=$((i + 1))
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
                -H 'Content-Type: application/json' \
                -d "{\"value\": \"$WTAG-$i\", \"write_concern\": 2}" "$MASTER_URL/message" || true)
            echo "$code" >>"$E2E_TMP/$WTAG.codes"
            sleep 0.1
        done
    ) &
    WPID=$!
}
# writer_stop: every append answered 201.
writer_stop() {
    touch "$E2E_TMP/stop"
    wait "$WPID" || true
    local n bad
    n=$(wc -l <"$E2E_TMP/$WTAG.codes")
    bad=$(grep -vc '^201$' "$E2E_TMP/$WTAG.codes" || true)
    [ "$n" -gt 0 ] || fail "the writer appended nothing"
    [ "$bad" = 0 ] || fail "$bad of $n appends during $WTAG did not answer 201: $(sort "$E2E_TMP/$WTAG.codes" | uniq -c | tr '\n' ' ')"
    ok "$n appends (w=2) during $WTAG all answered 201"
}
# converged DEADLINE: both secondaries show exactly what the master shows, and /health agrees.
converged() {
    local want last
    want=$(values "$MASTER_URL")
    last=$(health | pyjson 'j["last_key"]')
    wait_values "$SECONDARY1_URL" "$want" "$1"
    wait_values "$SECONDARY2_URL" "$want" "$1"
    wait_health '[(n["status"], n["acked_key"], n["lag"]) for n in j["nodes"]]' \
        "[[\"healthy\",$last,0],[\"healthy\",$last,0]]" 10
    ok "all nodes hold the same $last messages"
}

# --- 3: network partition ----------------------------------------------------------------
if phase_on 3; then
    banner "phase 3: network partition of secondary1 while appends go on"
    log_mark
    writer_start partition
    sleep 1
    step "docker network disconnect $NET secondary1"
    docker network disconnect "$NET" "$S1" || fail "docker network disconnect failed"
    wait_health 'node(j, "secondary1")["status"]' unhealthy 30
    wait_log "master: heartbeat status change: secondary1 healthy -> suspected" 5
    wait_log "master: heartbeat status change: secondary1 suspected -> unhealthy" 5
    health_is 'j["mode"]' read-write
    wait_health 'node(j, "secondary1")["lag"] > 0' true 10
    step "docker network connect --alias secondary1 $NET secondary1"
    # Compose gave the container its service name as a network alias; a plain reconnect
    # would drop it, so it is given again.
    docker network connect --alias secondary1 "$NET" "$S1" || fail "docker network connect failed"
    wait_health 'node(j, "secondary1")["status"]' healthy 30
    wait_log "master: heartbeat status change: secondary1 unhealthy -> healthy" 5
    sleep 1
    writer_stop
    converged 30
    phase_ran 3
fi

# --- 4: docker-compose restart -----------------------------------------------------------
if phase_on 4; then
    banner "phase 4: $COMPOSE restart secondary1 while appends go on"
    writer_start restart
    sleep 1
    step "$COMPOSE restart secondary1"
    compose restart -t 5 secondary1 || fail "$COMPOSE restart secondary1 failed"
    sleep 2
    writer_stop
    converged 30
    phase_ran 4
fi

# --- 5: kill -9 ----------------------------------------------------------------------------
if phase_on 5; then
    banner "phase 5: docker kill -s KILL secondary1, appends, then start it"
    step "docker kill -s KILL secondary1"
    docker kill -s KILL "$S1" >/dev/null || fail "docker kill failed"
    ok "killed"
    for i in 1 2 3 4 5; do
        append "killed-$i" 2 10
        expect_code 201 "POST killed-$i w=2 with secondary1 dead"
    done
    step "$COMPOSE start secondary1"
    compose start secondary1 || fail "$COMPOSE start secondary1 failed"
    converged 30
    phase_ran 5
fi

# --- 6: injected errors -----------------------------------------------------------------
if phase_on 6; then
    banner "phase 6: secondary1 stores and then answers 500 to 30% of replication requests"
    log_mark
    req POST "$SECONDARY1_URL/fault" '{"error_rate": 0.3}'
    expect_code 200 "POST /fault error_rate 0.3 on secondary1"
    pids=()
    for i in $(seq 1 20); do
        (
            r=$(curl -s -o "$E2E_TMP/fault-$i.body" -w '%{http_code}' --max-time 60 -X POST \
                -H 'Content-Type: application/json' \
                -d "{\"value\": \"fault-$i\", \"write_concern\": 3}" "$MASTER_URL/message" || true)
            echo "$r" >"$E2E_TMP/fault-$i.code"
        ) &
        pids+=($!)
        sleep 0.05
    done
    wait "${pids[@]}" || true
    for i in $(seq 1 20); do
        c=$(cat "$E2E_TMP/fault-$i.code")
        [ "$c" = 201 ] || fail "the w=3 append fault-$i answered $c: $(cat "$E2E_TMP/fault-$i.body")"
    done
    ok "20 concurrent w=3 appends all answered 201"
    keys=$(python3 -c 'import glob, json, sys; print(len({json.load(open(f))["key"] for f in glob.glob(sys.argv[1] + "/fault-*.body")}))' "$E2E_TMP")
    [ "$keys" = 20 ] || fail "the 20 appends got $keys distinct keys"
    ok "20 distinct keys"
    req POST "$SECONDARY1_URL/fault" '{"error_rate": 0.0}'
    expect_code 200 "POST /fault error_rate 0.0 on secondary1"
    converged 60
    got=$(values "$SECONDARY1_URL" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(sorted(x for x in v if x.startswith("fault-")) == sorted("fault-%d" % i for i in range(1, 21)))')
    [ "$got" = True ] || fail "secondary1 does not hold fault-1..fault-20 exactly once"
    ok "secondary1 holds fault-1..fault-20 exactly once"
    if log_since | grep -qF "secondary1: fault injection: stored the request, answering 500"; then
        wait_log "retry scheduled for secondary1" 1
    else
        info "(no injected error fired this time)"
    fi
    phase_ran 6
fi

# --- a secondary back on another IP address (E2E_IP_CHANGE=0 skips it) ------------------------------------
if [ "${E2E_IP_CHANGE:-1}" = 1 ]; then
    banner "phase ip: secondary1 comes back on another IP address"
    ip_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
    old=$(ip_of "$S1")
    docker stop -t 3 "$S1" >/dev/null
    # A placeholder takes the lowest free address (secondary1's, when it is the lowest), so
    # secondary1 comes back on another one.
    docker run -d --name "$ID-placeholder" --network "$NET" \
        --entrypoint /replog "$E2E_IMAGE" serve >/dev/null
    append "moved-1" 2 10
    expect_code 201 "POST moved-1 w=2"
    docker start "$S1" >/dev/null
    new=$(ip_of "$S1")
    info "secondary1: $old -> $new"
    [ "$old" != "$new" ] || info "(the address did not change; this check proves nothing this time)"
    converged 30
    docker rm -f "$ID-placeholder" >/dev/null
    phase_ran ip
fi

# --- 7: a larger cluster -----------------------------------------------------------------
if phase_on 7; then
    banner "phase 7: master + 4 secondaries (docker-compose.4-secondaries.yml)"
    down
    export COMPOSE_FILE=$BIG_FILES
    up
    wait_health '[n["status"] for n in j["nodes"]]' '["healthy","healthy","healthy","healthy"]' 30
    health_is '[j["quorum"], j["available"], len(j["nodes"])]' '[3,5,4]'
    append Big1 5 15
    expect_code 201 "POST Big1 w=5"
    for url in "$MASTER_URL" "$SECONDARY1_URL" "$SECONDARY2_URL" "$SECONDARY3_URL" "$SECONDARY4_URL"; do
        wait_values "$url" '["Big1"]' 5
    done
    req POST "$MASTER_URL/message" '{"value": "Big2", "write_concern": "majority"}'
    expect_code 201 "POST Big2 w=majority"
    [ "$(printf '%s' "$BODY" | pyjson 'j["write_concern"]')" = 3 ] || fail "majority of 5 resolved to $(printf '%s' "$BODY" | pyjson 'j["write_concern"]'), expected 3"
    ok "majority of 5 nodes is 3"
    for url in "$SECONDARY3_URL" "$SECONDARY4_URL"; do
        wait_values "$url" '["Big1","Big2"]' 10
    done
    phase_ran 7
fi

# --- 8: the nemesis ----------------------------------------------------------------------
if phase_on 8; then
    banner "phase 8: nemesis over compose clusters (tests/nemesis/docker.rs)"
    # Each schedule starts its own fresh cluster in this project, and removes it.
    down
    # The test writes what it planned and each schedule it ran to this file (a filter that
    # matches no test, or no seed to run, would otherwise pass as "0 passed").
    export NEMESIS_TALLY=$E2E_TMP/nemesis.tally
    rm -f "$NEMESIS_TALLY"
    case "${NEMESIS_FAILOVER:-}" in
        "") NEMESIS_TESTS="nemesis_docker nemesis_docker_failover" ;;
        0) NEMESIS_TESTS="nemesis_docker" ;;
        1) NEMESIS_TESTS="nemesis_docker_failover" ;;
        *) fail "NEMESIS_FAILOVER=$NEMESIS_FAILOVER: 1 (failover schedules only), 0 (none) or unset (both)" ;;
    esac
    # One test after the other (each starts its clusters in this project), each counted apart.
    SCHEDULES=0
    passed=
    for t in $NEMESIS_TESTS; do
        : >"$NEMESIS_TALLY"
        echo "cargo test --test nemesis $t -- --ignored --exact --nocapture"
        cargo test --test nemesis "$t" -- --ignored --exact --nocapture ||
            fail "phase 8: the nemesis test $t failed (see its panic above; a seed with violations prints its replay command)"
        [ -s "$NEMESIS_TALLY" ] || fail "phase 8 ran no nemesis schedule: the test $t did not run (no tally in $NEMESIS_TALLY)"
        planned=$(sed -n 's/^planned \([0-9]*\)$/\1/p' "$NEMESIS_TALLY" | tail -n 1)
        ran=$(grep -c '^schedule ' "$NEMESIS_TALLY" || true)
        [ "$ran" -gt 0 ] || fail "phase 8: $t ran no nemesis schedule (planned: ${planned:-none}; NEMESIS_SEED(S) asked for none?)"
        [ "$ran" = "${planned:-}" ] || fail "phase 8: $t ran $ran nemesis schedule(s) of the ${planned:-?} planned"
        ok "$t: $ran nemesis schedule(s) passed: $(grep '^schedule ' "$NEMESIS_TALLY" | cut -d' ' -f2- | tr '\n' ' ')"
        SCHEDULES=$((SCHEDULES + ran))
        passed="${passed:+$passed }$t"
    done
    [ "$passed" = "$NEMESIS_TESTS" ] || fail "phase 8 ran $passed of $NEMESIS_TESTS"
    phase_ran 8
fi

# --- What ran ------------------------------------------------------------------------------
for p in $WANT_PHASES; do
    [[ " $RAN_PHASES " == *" $p "* ]] || fail "phase $p was asked for (E2E_PHASES=\"$WANT_PHASES\") but did not run"
done
[ -n "$RAN_PHASES" ] || fail "no phase ran"
n_ran=$(wc -w <<<"$RAN_PHASES")
banner "e2e: $n_ran phase(s) passed ($RAN_PHASES)${SCHEDULES:+, $SCHEDULES nemesis schedule(s)}, in $(($(date +%s) - START)) s"
