#!/usr/bin/env bash
# The performance comparison of the README, in one sitting: replog (a fresh `replog cluster`
# per point) beside Redis SET+WAIT, NATS JetStream R3, etcd and the axum stub ceiling, all
# measured by anchor-bench on this machine. Medians of REPS runs.
#
#   bench/compare.sh                 # everything (about 10 minutes with REPS=3, DUR=5)
#   POINTS="w3c64 redis" bench/compare.sh
#
# Needs: target/release/replog (cargo build --release), anchor-bench built in $ANCHOR
# (default /work/anchor-bench: copy ../shared/tools/anchor-bench there and
# `cargo build --release`), and for the anchors redis-server, nats-server and etcd
# (Debian: apt-get install redis-server nats-server etcd-server etcd-client).
# Every load is bounded by time (DUR seconds + 2 s warm-up) and by anchor-bench's op budget.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHOR=${ANCHOR:-/work/anchor-bench}
AB=$ANCHOR/target/release/anchor-bench
REPS=${REPS:-3}; DUR=${DUR:-5}
POINTS=${POINTS:-"w3c64 w1c64 w3c1 w3c256 always-w3c64 failover-w3c64 redis nats etcd stub"}
OUT=${OUT:-$(mktemp /tmp/replog-compare-XXXX.jsonl)}
export OUT

replog() { # W C [fsync]
  local cfg=""
  if [ -n "${3:-}" ]; then
    cfg=$(mktemp /tmp/replog-cfg-XXXX.toml)
    printf '[storage]\nfsync = "%s"\n' "$3" > "$cfg"
  fi
  for _ in $(seq "$REPS"); do
    LABEL="replog-${3:-default}" "$ROOT/bench/replog-point.sh" "$1" "$2" "$DUR" "$cfg" | tail -1
  done
  [ -n "$cfg" ] && rm -f "$cfg"
  return 0
}

anchor() { # NAME ARGS...
  local name=$1; shift
  (cd "$ANCHOR" && clusters/"$name".sh start >/dev/null 2>&1)
  for _ in $(seq "$REPS"); do
    (cd "$ANCHOR" && "$AB" "$@" -d "$DUR" -w 2 --pids "$(clusters/"$name".sh pids)" --out "$OUT" | tail -1)
  done
  (cd "$ANCHOR" && clusters/"$name".sh stop >/dev/null 2>&1)
}

for p in $POINTS; do
  case $p in
    w3c64) replog 3 64 ;;
    w1c64) replog 1 64 ;;
    w3c1) replog 3 1 ;;
    w3c256) replog 3 256 ;;
    always-w3c64) replog 3 64 always ;;
    failover-w3c64)
      for _ in $(seq "$REPS"); do
        FAILOVER=1 LABEL=replog-failover "$ROOT/bench/replog-point.sh" 3 64 "$DUR" | tail -1
      done ;;
    redis) anchor redis redis -c 64 --replicas 2 ;;
    nats) anchor nats nats -c 64 --replicas 3 ;;
    etcd) anchor etcd etcd -c 64 ;;
    stub)
      "$AB" hello-server --addr 127.0.0.1:8099 --max-seconds 300 >/dev/null 2>&1 &
      hp=$!
      sleep 1
      for _ in $(seq "$REPS"); do
        "$AB" replog --base-url http://127.0.0.1:8099 -c 64 -d "$DUR" -w 2 --write-concern 1 \
          --label stub --out "$OUT" --pids "$hp" | tail -1
      done
      kill "$hp" 2>/dev/null || true
      ;;
    *) echo "unknown point $p" >&2; exit 2 ;;
  esac
done

# Medians per backend/label, write concern and clients.
python3 - "$OUT" <<'EOF'
import json, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r.get("backend"), r.get("label") or "", r.get("ack") or r.get("write_concern") or "", r.get("concurrency"))
    rows.setdefault(key, []).append(r)
print(f"{'backend':8} {'label':16} {'ack':5} {'c':>4} {'ops/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8}  runs")
for (b, l, a, c), rs in sorted(rows.items(), key=lambda kv: str(kv[0])):
    med = lambda f: statistics.median(x[f] for x in rs)
    print(f"{b:8} {l:16} {str(a):5} {c:>4} {med('ops_per_s'):>15.0f} {med('p50_ms'):>8.3f} {med('p99_ms'):>8.3f}  {len(rs)}")
EOF
echo "raw results: $OUT"
