#!/usr/bin/env bash
# What the load generator itself costs: CPU time (user + system) of `replog bench` per
# completed append, beside wrk sending the same requests (POST /message, the same JSON body,
# Content-Type application/json) to the same cluster, for w=1 and w=3. Medians of REPS runs,
# the two generators alternating so that the machine's other load hits both alike.
#
#   bench/bench-vs-wrk.sh                  # w=1 and w=3, 64 connections, 10 s, 3 runs each
#   WS=3 REPS=5 DUR=5 bench/bench-vs-wrk.sh
#
# Needs target/release/replog (cargo build --release), wrk (apt-get install wrk), curl,
# /usr/bin/time and python3. Starts its own `replog cluster` (master + 2 secondaries) on
# BASE_PORT.. (default 8000; the next free block of 100 is used when 8000-8002 are taken),
# with its data in a temporary directory, and stops it by PID at the end. Every run is bounded
# by DUR seconds (and `replog bench` by its op budget as well).
#
# Only 2xx answers count as completed: wrk's requests minus its non-2xx/3xx answers, and
# `replog bench`'s `ops` (201 answers within the run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${REPLOG_BIN:-$ROOT/target/release/replog}
WRK=${WRK:-wrk}
REPS=${REPS:-3}
DUR=${DUR:-10}
CLIENTS=${CLIENTS:-64}
SIZE=${SIZE:-100}
WS=${WS:-"1 3"}
# wrk's threads; `replog bench` runs one runtime worker per core (2 here).
WRK_THREADS=${WRK_THREADS:-2}

for tool in "$BIN" "$WRK" curl /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

port_free() { ! ss -ltn "sport = :$1" | grep -q LISTEN; }
BASE_PORT=${BASE_PORT:-8000}
for _ in 1 2 3 4 5; do
  if port_free "$BASE_PORT" && port_free $((BASE_PORT + 1)) && port_free $((BASE_PORT + 2)); then
    break
  fi
  echo "ports $BASE_PORT-$((BASE_PORT + 2)) are taken; trying $((BASE_PORT + 100))" >&2
  BASE_PORT=$((BASE_PORT + 100))
done
MASTER=http://127.0.0.1:$BASE_PORT

TMP=$(mktemp -d /tmp/bench-vs-wrk-XXXX)
(cd "$TMP" && exec "$BIN" cluster --base-port "$BASE_PORT" --data-dir "$TMP/data" \
  --log-file "$TMP/app.log" >"$TMP/cluster.out" 2>&1) &
CPID=$!
cleanup() {
  kill -INT "$CPID" 2>/dev/null || true
  wait "$CPID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "$MASTER/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$MASTER/health" >/dev/null || { cat "$TMP/cluster.out" >&2; exit 1; }

VALUE=$(head -c "$SIZE" /dev/zero | tr '\0' x)
lua() { # W -> path of a wrk script posting the JSON body with write concern W
  local f=$TMP/post-w$1.lua
  cat >"$f" <<EOF
wrk.method = "POST"
wrk.path = "/message"
wrk.body = '{"value":"$VALUE","write_concern":$1}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("WRKRESULT %d %d %d\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF
  echo "$f"
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
cpu_of() { awk '{printf "%s\t%s", $1, $2}' "$1"; } # user and system s, from /usr/bin/time

run_wrk() { # W
  local out=$TMP/wrk.out
  /usr/bin/time -f "%U %S" -o "$TMP/time" \
    "$WRK" -t "$WRK_THREADS" -c "$CLIENTS" -d "${DUR}s" -s "$(lua "$1")" "$MASTER" >"$out" 2>&1
  local req non2xx sockerr
  read -r _ req non2xx sockerr < <(grep WRKRESULT "$out")
  printf 'wrk\t%s\t%s\t%s\t%s\n' "$1" "$((req - non2xx))" "$((non2xx + sockerr))" \
    "$(cpu_of "$TMP/time")" >>"$RESULTS"
}

run_replog() { # W
  local out=$TMP/replog.out
  # No warm-up: like wrk, every answer of the run counts, and so does all of its CPU time.
  /usr/bin/time -f "%U %S" -o "$TMP/time" \
    "$BIN" bench --master "$MASTER" -c "$CLIENTS" -d "$DUR" --warmup 0 -w "$1" \
    --size "$SIZE" --json >"$out" 2>&1
  python3 - "$out" "$1" "$(cpu_of "$TMP/time")" >>"$RESULTS" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"replog-bench\t{sys.argv[2]}\t{r['ops']}\t{r['errors']}\t{sys.argv[3]}")
EOF
}

# A short unmeasured run first: the cluster's first seconds (allocations, page cache) would
# otherwise fall on whichever generator goes first.
"$WRK" -t 1 -c "$CLIENTS" -d 2s -s "$(lua 1)" "$MASTER" >/dev/null 2>&1

for w in $WS; do
  for i in $(seq "$REPS"); do
    echo "w=$w run $i/$REPS" >&2
    run_wrk "$w"
    run_replog "$w"
  done
done

python3 - "$RESULTS" "$DUR" "$CLIENTS" "$SIZE" <<'EOF'
import statistics, sys
# generator, w, completed, errors, user s, system s
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
dur, clients, size = float(sys.argv[2]), sys.argv[3], sys.argv[4]
med = statistics.median
print(f"{clients} connections, {size}-byte values, {dur:g} s per run; medians of the runs; "
      "CPU = the generator's user + system time")
print(f"{'generator':<13} {'w':>2} {'runs':>4} {'ok req/s':>9} {'errors':>6} {'CPU s':>6} "
      f"{'user us/req':>11} {'sys us/req':>10} {'CPU us/req':>10}  CPU us/req per run")
for w in sorted({r[1] for r in rows}):
    for gen in ("wrk", "replog-bench"):
        rs = [r for r in rows if r[0] == gen and r[1] == w]
        if not rs:
            continue
        ok = [max(int(r[2]), 1) for r in rs]
        user = [float(r[4]) * 1e6 / o for r, o in zip(rs, ok)]
        system = [float(r[5]) * 1e6 / o for r, o in zip(rs, ok)]
        per = [u + s for u, s in zip(user, system)]
        print(f"{gen:<13} {w:>2} {len(rs):>4} {med(ok) / dur:>9.0f} "
              f"{med(int(r[3]) for r in rs):>6.0f} "
              f"{med(float(r[4]) + float(r[5]) for r in rs):>6.2f} "
              f"{med(user):>11.2f} {med(system):>10.2f} {med(per):>10.2f}  "
              f"{' '.join(f'{p:.2f}' for p in per)}")
EOF
