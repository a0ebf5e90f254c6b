#!/usr/bin/env bash
# One measured point of replog under anchor-bench: starts a fresh `replog cluster` (release
# build) on ports 18000-18002 with its data in a temp dir, runs anchor-bench against the master,
# stops the cluster. Prints anchor-bench's result line.
#   bench/replog-point.sh W CLIENTS [DURATION] [extra cluster config file]
set -euo pipefail
W=${1:-3}; C=${2:-64}; D=${3:-10}; EXTRA=${4:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${REPLOG_BIN:-$ROOT/target/release/replog}
AB=${ANCHOR_BENCH:-/work/anchor-bench/target/release/anchor-bench}
TMP=$(mktemp -d)
args=(cluster --base-port 18000 --data-dir "$TMP/data" --log-file "$TMP/app.log")
[ -n "$EXTRA" ] && args+=(--config "$EXTRA")
(cd "$TMP" && exec "$BIN" "${args[@]}" >"$TMP/cluster.out" 2>&1) &
CPID=$!
trap 'kill -INT $CPID 2>/dev/null; wait $CPID 2>/dev/null; [ -n "${KEEP:-}" ] && cp "$TMP/app.log" "$KEEP"; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:18000/health >/dev/null 2>&1 && break; sleep 0.1
done
sleep 0.5
PIDS=$(pgrep -P $CPID | paste -sd,)
"$AB" replog --base-url http://127.0.0.1:18000 -c "$C" --write-concern "$W" -d "$D" -w 2 --pids "$PIDS" ${OUT:+--out "$OUT"} --label "${LABEL:-}"
