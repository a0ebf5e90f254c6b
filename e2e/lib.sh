# Helpers shared by self_test_delay.sh, self_test_replication_and_quorum.sh and e2e/run.sh.
# Sourced, not run. Needs bash, curl and python3 (for JSON); nothing else.
#
# Settings (environment), with the seed's defaults:
#   MASTER_URL, SECONDARY1_URL, SECONDARY2_URL   http://0.0.0.0:8000 / 8001 / 8002
#       (or the ports in HOST_PORT_MASTER / HOST_PORT_SECONDARY1 / HOST_PORT_SECONDARY2,
#       the same variables docker-compose.yml publishes them with)
#   APP_LOG      the shared log file (default: $HOST_LOG_DIR/app.log, else ./log/app.log)
#   COMPOSE      the compose command (default: docker-compose, else "docker compose");
#                COMPOSE_PROJECT_NAME / COMPOSE_FILE are honoured by both.

REPLOG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

MASTER_URL=${MASTER_URL:-http://0.0.0.0:${HOST_PORT_MASTER:-8000}}
SECONDARY1_URL=${SECONDARY1_URL:-http://0.0.0.0:${HOST_PORT_SECONDARY1:-8001}}
SECONDARY2_URL=${SECONDARY2_URL:-http://0.0.0.0:${HOST_PORT_SECONDARY2:-8002}}
if [ -z "${APP_LOG:-}" ]; then
    if [ -n "${HOST_LOG_DIR:-}" ]; then
        case "$HOST_LOG_DIR" in
            /*) APP_LOG=$HOST_LOG_DIR/app.log ;;
            *) APP_LOG=$REPLOG_ROOT/$HOST_LOG_DIR/app.log ;;
        esac
    else
        APP_LOG=$REPLOG_ROOT/log/app.log
    fi
fi
# An answer "at once": well under the delays the flows inject.
FAST_S=${FAST_S:-2}

if [ -z "${COMPOSE:-}" ]; then
    if command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=docker-compose
    else
        COMPOSE="docker compose"
    fi
fi

_TMP=$(mktemp -d "${TMPDIR:-/tmp}/replog-selftest.XXXXXX")
_CLEANUPS=()
_cleanup() {
    local c
    for c in "${_CLEANUPS[@]}"; do eval "$c" || true; done
    rm -rf "$_TMP"
}
trap _cleanup EXIT
# on_exit CMD: run CMD when the script exits (even on failure), before the temp files go.
on_exit() { _CLEANUPS+=("$1"); }

_t0=$(date +%s)
ts() { echo "[+$(($(date +%s) - _t0))s]"; }
step() { echo; echo "$(ts) ==> $*"; }
ok() { echo "      ok: $*"; }
info() { echo "      $*"; }
fail() {
    echo "$(ts) FAIL: $*" >&2
    exit 1
}

need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || fail "this script needs '$c' on PATH"
    done
}
need curl python3

# Python with `j` = the JSON document on stdin; prints the expression's value (strings as
# is, anything else as compact JSON).
pyjson() {
    python3 -c '
import json, sys
def node(h, name):
    for n in h.get("nodes", []):
        if n.get("name") == name:
            return n
    return {}
try:
    j = json.load(sys.stdin)
except Exception:
    print("<not JSON>"); sys.exit(0)
try:
    v = eval(sys.argv[1])
except Exception as e:
    print("<%s: %s>" % (type(e).__name__, e)); sys.exit(0)
print(v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
' "$1"
}

# req METHOD URL [JSON_BODY] [MAX_TIME]: sets CODE (000 when no answer), BODY, SECS and HDRS.
req() {
    local method=$1 url=$2 data=${3:-} max=${4:-30}
    local out="$_TMP/body" hdr="$_TMP/hdr" res
    : >"$out"
    : >"$hdr"
    local args=(-s -o "$out" -D "$hdr" -w '%{http_code} %{time_total}' -X "$method" --max-time "$max")
    if [ -n "$data" ]; then
        args+=(-H 'Content-Type: application/json' -d "$data")
    fi
    res=$(curl "${args[@]}" "$url" 2>/dev/null) || true
    CODE=${res%% *}
    SECS=${res##* }
    [ -n "$CODE" ] || CODE=000
    BODY=$(cat "$out")
    HDRS=$(cat "$hdr")
}

# lt A B: true when the decimal A < B.
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

expect_code() {
    local want=$1 what=$2
    [ "$CODE" = "$want" ] || fail "$what: expected HTTP $want, got $CODE (body: ${BODY:-<none>})"
    ok "$what: HTTP $CODE in ${SECS}s: $BODY"
}

expect_fast() {
    local what=$1
    lt "$SECS" "$FAST_S" || fail "$what took ${SECS}s; expected an answer at once (< ${FAST_S}s)"
}

# append VALUE W [MAX_TIME_S]: POST /message to the master.
append() {
    req POST "$MASTER_URL/message" "{\"value\": \"$1\", \"write_concern\": $2}" "${3:-30}"
}

# append_bg NAME VALUE W: POST /message in the background; its result goes to $_TMP/NAME.
append_bg() {
    local name=$1
    rm -f "$_TMP/$name" "$_TMP/$name.done"
    (
        curl -s -o "$_TMP/$name.body" -w '%{http_code} %{time_total}' -X POST --max-time 120 \
            -H 'Content-Type: application/json' \
            -d "{\"value\": \"$2\", \"write_concern\": $3}" "$MASTER_URL/message" \
            >"$_TMP/$name" 2>/dev/null || true
        touch "$_TMP/$name.done"
    ) &
}

bg_done() { [ -e "$_TMP/$1.done" ]; }

# bg_wait NAME DEADLINE_S: waits for a background append; sets CODE, SECS, BODY.
bg_wait() {
    local name=$1 deadline=$(($(date +%s) + $2)) res
    while ! bg_done "$name"; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "the background append $name did not answer within $2 s"
        sleep 0.1
    done
    res=$(cat "$_TMP/$name")
    CODE=${res%% *}
    SECS=${res##* }
    [ -n "$CODE" ] || CODE=000
    BODY=$(cat "$_TMP/$name.body" 2>/dev/null)
}

# values URL: the node's /messages as a JSON list of values, after checking that the keys
# are 1, 2, 3, … with no gaps; "UNREACHABLE" when the node does not answer within 2 s.
values() {
    local body
    body=$(curl -s -f --max-time 2 "$1/messages" 2>/dev/null) || {
        echo UNREACHABLE
        return
    }
    printf '%s' "$body" | pyjson '[m["value"] for m in j] if [m["key"] for m in j] == list(range(1, len(j) + 1)) else "KEYS NOT 1..n: %s" % [m["key"] for m in j]'
}

# short LIST: a JSON list of values, shortened for printing when long.
short() {
    printf '%s' "$1" | pyjson '(("[%d messages: " % len(j)) + ", ".join(j[:3]) + ", …, " + ", ".join(j[-3:]) + "]") if isinstance(j, list) and len(j) > 8 else j'
}

node_name() {
    case "$1" in
        "$MASTER_URL") echo master ;;
        "$SECONDARY1_URL") echo secondary1 ;;
        "$SECONDARY2_URL") echo secondary2 ;;
        *) echo "$1" ;;
    esac
}

# expect_values URL '["Msg1","Msg2"]': the node shows exactly these messages now.
expect_values() {
    local got
    got=$(values "$1")
    [ "$got" = "$2" ] || fail "$(node_name "$1") shows $got; expected $2"
    ok "$(node_name "$1") shows $(short "$got")"
}

# wait_values URL '["Msg1"]' DEADLINE_S: the node shows exactly these messages within the deadline.
wait_values() {
    local deadline=$(($(date +%s) + $3)) got
    while :; do
        got=$(values "$1")
        [ "$got" = "$2" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || fail "$(node_name "$1") shows $got after $3 s; expected $2"
        sleep 0.2
    done
    ok "$(node_name "$1") shows $(short "$got")"
}

# expect_unreachable URL: the node does not answer within a second (it is paused).
expect_unreachable() {
    req GET "$1/messages" "" 1
    [ "$CODE" = 000 ] || fail "$(node_name "$1") answered $CODE ($BODY); expected no answer (paused)"
    ok "$(node_name "$1") does not answer (paused)"
}

health() { curl -s --max-time 5 "$MASTER_URL/health" 2>/dev/null; }

# health_is EXPR WANT: the master's /health, evaluated by EXPR (python, j = the document,
# node(j, name) = one secondary), equals WANT now.
health_is() {
    local got
    got=$(health | pyjson "$1")
    [ "$got" = "$2" ] || fail "master /health: $1 is $got; expected $2 (health: $(health))"
    ok "master /health: $1 = $got"
}

# wait_health EXPR WANT DEADLINE_S
wait_health() {
    local deadline=$(($(date +%s) + $3)) got
    while :; do
        got=$(health | pyjson "$1")
        [ "$got" = "$2" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || fail "master /health: $1 is still $got after $3 s; expected $2 (health: $(health))"
        sleep 0.2
    done
    ok "master /health: $1 = $got"
}

# The log file: only lines written after log_mark count, so old runs do not answer for this one.
log_mark() {
    [ -f "$APP_LOG" ] || fail "the log file $APP_LOG does not exist (set APP_LOG or HOST_LOG_DIR)"
    _LOG_START=$(wc -c <"$APP_LOG")
}
log_since() { tail -c +$((_LOG_START + 1)) "$APP_LOG"; }

# wait_log TEXT DEADLINE_S: a line containing TEXT appears in the log within the deadline.
wait_log() {
    local deadline=$(($(date +%s) + $2)) line
    while :; do
        line=$(log_since | grep -F -m 1 -- "$1" || true)
        [ -n "$line" ] && break
        [ "$(date +%s)" -lt "$deadline" ] || fail "no line containing '$1' in $APP_LOG within $2 s"
        sleep 0.2
    done
    ok "log: ${line}"
}

# expect_no_log TEXT: no line written since log_mark contains TEXT.
expect_no_log() {
    local line
    line=$(log_since | grep -F -m 1 -- "$1" || true)
    [ -z "$line" ] || fail "unexpected log line: $line"
    ok "log has no line containing '$1'"
}

# wait_until DESCRIPTION DEADLINE_S COMMAND...: polls COMMAND until it succeeds.
wait_until() {
    local what=$1 deadline=$(($(date +%s) + $2))
    shift 2
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within the deadline"
        sleep 0.2
    done
    ok "$what"
}

# fresh_cluster: every node answers, holds nothing, and the master is read-write with all
# secondaries healthy. The flows assume a fresh system, as the seed says.
fresh_cluster() {
    local url
    step "Check that the cluster is up and fresh (no messages anywhere)"
    wait_health 'j["mode"]' read-write 30
    wait_health '[n["status"] for n in j["nodes"]]' '["healthy","healthy"]' 30
    for url in "$MASTER_URL" "$SECONDARY1_URL" "$SECONDARY2_URL"; do
        local got
        got=$(values "$url")
        [ "$got" = "[]" ] || fail "$(node_name "$url") shows $got; these flows need a fresh system:
      $COMPOSE down -v && $COMPOSE up --build -d   (and clear $APP_LOG if you like)"
        ok "$(node_name "$url") shows []"
    done
}

# all_show '["Msg1"]' DEADLINE_S: master and both secondaries show exactly these messages.
all_show() {
    local url
    for url in "$MASTER_URL" "$SECONDARY1_URL" "$SECONDARY2_URL"; do
        wait_values "$url" "$1" "$2"
    done
}

compose() { (cd "$REPLOG_ROOT" && $COMPOSE "$@"); }
