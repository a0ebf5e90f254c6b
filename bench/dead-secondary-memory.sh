#!/usr/bin/env bash
# The master's memory while a secondary is dead and every append times out waiting for it
# (issue 15, finding 3: timed-out waiters and per-key ack counts used to stay forever).
# Starts `replog cluster` (release build) on ports 18100-18102 with its data in a temp dir,
# kills secondary2, runs `replog bench -w 3 --timeout-ms 5` for DURATION seconds and prints,
# every STEP seconds: seconds, the master's last key, its resident memory (MiB), the appends
# waiting for their write concern and the ack tracker's ranges (from /metrics).
#   bench/dead-secondary-memory.sh [DURATION=600] [CLIENTS=64] [STEP=60]
set -euo pipefail
D=${1:-600}; C=${2:-64}; STEP=${3:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${REPLOG_BIN:-$ROOT/target/release/replog}
TMP=$(mktemp -d)
(cd "$TMP" && exec "$BIN" cluster --base-port 18100 --data-dir "$TMP/data" --log-file "$TMP/app.log" \
  >"$TMP/cluster.out" 2>&1) &
CPID=$!
BPID=
trap '[ -n "$BPID" ] && kill $BPID 2>/dev/null; kill -INT $CPID 2>/dev/null; wait $CPID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:18100/health >/dev/null 2>&1 && break; sleep 0.1
done
pid_of() { # the child of the cluster whose REPLOG_NODE_NAME is $1
  for p in $(pgrep -P $CPID); do
    tr '\0' '\n' </proc/$p/environ | grep -qx "REPLOG_NODE_NAME=$1" && { echo $p; return; }
  done
}
MASTER=$(pid_of master)
kill -9 "$(pid_of secondary2)"
metric() { curl -sf http://127.0.0.1:18100/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
sample() {
  local t=$1 last rss
  last=$(curl -sf http://127.0.0.1:18100/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_key"])' 2>/dev/null || echo '?')
  rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' /proc/$MASTER/status)
  echo "$t $last $rss $(metric replog_appends_waiting) $(metric replog_ack_tracker_ranges)"
}
echo "# seconds last_key master_rss_mib appends_waiting ack_tracker_ranges"
sleep 2
sample 0
"$BIN" bench --master http://127.0.0.1:18100 -w 3 --timeout-ms 5 --clients "$C" \
  --duration "$D" --warmup 0 --json >"$TMP/bench.json" 2>&1 &
BPID=$!
for ((t = STEP; t <= D; t += STEP)); do
  sleep "$STEP"
  sample "$t"
done
wait $BPID || true
BPID=
sleep 1
sample end
