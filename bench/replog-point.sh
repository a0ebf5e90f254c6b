#!/usr/bin/env bash
# One measured point of replog under anchor-bench: starts a fresh `replog cluster` (release
# build) on ports 18000-18002 with its data in a temp dir, runs anchor-bench against the master,
# stops the cluster. Prints anchor-bench's result line.
#   bench/replog-point.sh W CLIENTS [DURATION] [extra cluster config file]
#   (REPLOG_BIN: another replog binary; FAILOVER=1: failover on; LABEL: the result's label)
set -euo pipefail
W=${1:-3}; C=${2:-64}; D=${3:-10}; EXTRA=${4:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${REPLOG_BIN:-$ROOT/target/release/replog}
AB=${ANCHOR_BENCH:-/work/anchor-bench/target/release/anchor-bench}
TMP=$(mktemp -d)
args=(cluster --base-port 18000 --data-dir "$TMP/data" --log-file "$TMP/app.log")
[ -n "$EXTRA" ] && args+=(--config "$EXTRA")
# FAILOVER=1: the same cluster with failover on (every node a member; SPEC §11).
[ -n "${FAILOVER:-}" ] && args+=(--failover)
# REPLOG_BIN is this script's, not a node setting (nodes refuse unknown REPLOG_* keys).
(cd "$TMP" && exec env -u REPLOG_BIN "$BIN" "${args[@]}" >"$TMP/cluster.out" 2>&1) &
CPID=$!
trap 'kill -INT $CPID 2>/dev/null; wait $CPID 2>/dev/null; [ -n "${KEEP:-}" ] && cp "$TMP/app.log" "$KEEP"; rm -rf "$TMP"' EXIT
# Up, and the master taking appends (with failover: in office; the node on 18000 stands
# first at a first start, so it is the master).
for _ in $(seq 1 150); do
  h=$(curl -sf http://127.0.0.1:18000/health 2>/dev/null || true)
  [[ $h == *'"mode":"read-write"'* && $h == '{"role":"master"'* ]] && break
  sleep 0.1
done
sleep 0.5
PIDS=$(pgrep -P $CPID | paste -sd,)
"$AB" replog --base-url http://127.0.0.1:18000 -c "$C" --write-concern "$W" -d "$D" -w 2 --pids "$PIDS" ${OUT:+--out "$OUT"} --label "${LABEL:-}"
