#!/usr/bin/env bash
# API fuzzing: schemathesis (pip install schemathesis) against a running master and secondary.
#
# Starts a master with one secondary, and a second, standalone secondary, on free loopback
# ports (cluster token from a 0600 file, fault injection on so the test endpoints exist); runs
# every schemathesis check against the master's and the standalone secondary's own
# /openapi.json, for the operations each role serves; and tears the nodes down. The internal
# endpoints are fuzzed on the standalone secondary: messages stored there under random keys
# would otherwise collide with the master's (409, by design) and stall its appends. Fails on any failure schemathesis reports: a 5xx, an answer that does not match
# the document, a request the document allows that is refused (or the reverse), a hang (a
# request over --request-timeout), a node that died.
#
#   tests/schemathesis.sh                 # 100 examples per operation (about 1 minute)
#   EXAMPLES=20 tests/schemathesis.sh     # quicker
#   REPLOG_BIN=target/release/replog tests/schemathesis.sh
#
# Exit code: 0 clean, 1 failures found, 2 setup problem. Reports (JUnit) go to $REPORT_DIR;
# without it, to a temporary directory that is kept, and printed, only when something failed.
set -euo pipefail

cd "$(dirname "$0")/.."
EXAMPLES=${EXAMPLES:-100}
SEED=${SEED:-$RANDOM}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/replog-fuzz.XXXXXX")
KEEP_WORK=${REPORT_DIR:+yes}
REPORT_DIR=${REPORT_DIR:-$WORK/report}
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

command -v schemathesis >/dev/null || { echo "schemathesis not found: pip install schemathesis" >&2; exit 2; }
if [[ -z "${REPLOG_BIN:-}" ]]; then
  cargo build --quiet
  REPLOG_BIN=target/debug/replog
fi

# Two free ports (bound and released: a race with another process is possible but unlikely).
read -r MPORT SPORT FPORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
( umask 077; printf '%s\n' "$TOKEN" > "$WORK/token" )

write_config() { # name role port
  cat > "$WORK/$1.toml" <<EOF
[node]
name = "$1"
role = "$2"
listen = "127.0.0.1:$3"
data_dir = "$WORK/data/$1"
cluster_token_file = "$WORK/token"

[master]
secondaries = [{ name = "secondary1", url = "http://127.0.0.1:$SPORT" }]

[storage]
engine = "memory"

[fault]
enabled = true

[log]
file = "$WORK/app.log"
level = "info"
EOF
}
write_config secondary1 secondary "$SPORT"
write_config secondary2 secondary "$FPORT"
write_config master master "$MPORT"

start() { # name
  "$REPLOG_BIN" serve --config "$WORK/$1.toml" > "$WORK/$1.out" 2>&1 &
  PIDS+=($!)
}
wait_up() { # port
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$1/heartbeat" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node on port $1 did not come up; its output:" >&2
  cat "$WORK"/*.out >&2
  exit 2
}
start secondary1
start secondary2
wait_up "$SPORT"
wait_up "$FPORT"
start master
wait_up "$MPORT"

export SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$PWD/tests/schemathesis${PYTHONPATH:+:$PYTHONPATH}"
CONFIG="$PWD/tests/schemathesis/schemathesis.toml"
export REPLOG_FUZZ_ALL=2

# Per role, the operations that role serves (not GET /events: an endless stream, which a
# fuzzer reading whole answers would count as a hang; tests/it/t86_events.rs covers it). The document describes both roles; what the
# other role answers (a secondary's 421 to appends, a master's 405 to PUT /message and
# POST /replicate, 404 for the test endpoints) is checked by tests/it, not fuzzed.
fuzz() { # name port operation-id...
  local name=$1 port=$2
  shift 2
  local include=()
  for op in "$@"; do include+=(--include-operation-id "$op"); done
  echo "== $name (127.0.0.1:$port): $*"
  # From the work directory: schemathesis keeps a cache in the current one.
  (cd "$WORK" && nice -n 10 schemathesis --config-file "$CONFIG" \
    run "http://127.0.0.1:$port/openapi.json" \
    "${include[@]}" \
    -H "Authorization: Bearer $TOKEN" \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --request-timeout 10 \
    --workers 2 \
    --report junit --report-dir "$REPORT_DIR/$name")
}

started=$(date +%s)
status=0
fuzz secondary2 "$FPORT" get_messages health heartbeat metrics openapi_document cluster_page \
  put_message post_replicate get_replicate post_delay get_fault post_fault || status=1
fuzz master "$MPORT" get_messages health heartbeat metrics openapi_document cluster_page post_message || status=1

# Both nodes must have survived every request.
for pid in "${PIDS[@]}"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "a node exited during fuzzing; its output:" >&2
    cat "$WORK"/*.out >&2
    status=1
  fi
done
if grep -a -E 'panicked|ERROR' "$WORK"/*.out >/dev/null; then
  echo "panics or errors in the node output:" >&2
  grep -a -E 'panicked|ERROR' "$WORK"/*.out | head -20 >&2
  status=1
fi
if grep -a -F -e "$TOKEN" "$WORK"/*.out "$WORK/app.log" >/dev/null; then
  echo "the cluster token appears in a node's output or log" >&2
  status=1
fi
echo "seed $SEED, $EXAMPLES examples per operation, $(( $(date +%s) - started )) s"
if [[ $status -ne 0 || -n "$KEEP_WORK" ]]; then
  echo "reports in $REPORT_DIR, node output in $WORK"
else
  rm -rf "$WORK"
fi
exit $status
