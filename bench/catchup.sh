#!/usr/bin/env bash
# Catch-up: how fast a secondary N messages behind becomes level, and what live appends keep
# meanwhile. A fresh `replog cluster` (ports 18000-18002); secondary2 is paused (SIGSTOP)
# while N messages are appended with w=2; then live appends (w=2, 64 clients) run for DUR s,
# first alone (the baseline), then again while secondary2 is resumed and catches up (its pace
# is `replication.max_catchup_messages_per_s`), then once more with both secondaries level.
# With DUR no longer than the catch-up, the second run measures live appends during it only.
#   bench/catchup.sh [N=1000000] [DUR=15]
set -euo pipefail
N=${1:-1000000}; DUR=${2:-15}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${REPLOG_BIN:-$ROOT/target/release/replog}
AB=${ANCHOR_BENCH:-/work/anchor-bench/target/release/anchor-bench}
TMP=$(mktemp -d)
(cd "$TMP" && exec "$BIN" cluster --base-port 18000 --data-dir "$TMP/data" --log-file "$TMP/app.log" >"$TMP/cluster.out" 2>&1) &
CPID=$!
S2=""
trap '[ -n "$S2" ] && kill -CONT "$S2" 2>/dev/null; kill -INT $CPID 2>/dev/null; wait $CPID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18000/health >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
S2=$(pgrep -P $CPID | sed -n 3p)
health() { curl -s http://127.0.0.1:18000/health; }
acked() { health | python3 -c 'import json,sys; h=json.load(sys.stdin); print(h["nodes"][1]["acked_key"], h["last_key"])'; }

kill -STOP "$S2"
echo "filling $N messages with secondary2 paused …"
"$BIN" bench --master http://127.0.0.1:18000 --clients 64 -w 2 --duration 600 --warmup 0 --max-ops "$N" | tail -2
read -r behind last < <(acked)
echo "secondary2 acked $behind of $last"

echo "baseline: live w=2 appends, no catch-up"
"$AB" replog --base-url http://127.0.0.1:18000 -c 64 --write-concern 2 -d "$DUR" -w 1 | tail -1

echo "catch-up: resume secondary2 while live appends run"
"$AB" replog --base-url http://127.0.0.1:18000 -c 64 --write-concern 2 -d "$DUR" -w 1 >"$TMP/live.txt" &
LIVE=$!
sleep 1
target=$last
# One poller for the whole catch-up: a curl and a python3 started every 50 ms would take a
# good part of a core from the machine being measured.
python3 - "$target" "$behind" <<'PY' &
import json, sys, time, urllib.request
target, behind = int(sys.argv[1]), int(sys.argv[2])
start = time.monotonic()
while True:
    with urllib.request.urlopen("http://127.0.0.1:18000/health") as r:
        if json.load(r)["nodes"][1]["acked_key"] >= target:
            break
    time.sleep(0.05)
t = time.monotonic() - start
n = target - behind
print(f"caught up {n} messages in {t:.2f} s: {n/t:,.0f} messages/s", flush=True)
PY
POLL=$!
kill -CONT "$S2"
wait $POLL
wait $LIVE
tail -1 "$TMP/live.txt"

# The paused baseline replicates live appends to one secondary; once level, the master
# replicates to both, as during the catch-up. Both baselines are printed.
echo "after: live w=2 appends, both secondaries level"
"$AB" replog --base-url http://127.0.0.1:18000 -c 64 --write-concern 2 -d "$DUR" -w 1 | tail -1
