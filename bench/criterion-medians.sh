#!/usr/bin/env bash
# Prints criterion's median estimate of every benchmark of the last `cargo bench` run (from
# target/criterion/*/new/estimates.json), with its 95 % confidence interval and, where the
# bench declares one, the throughput at the median.
#
#   nice -n 10 cargo bench && bench/criterion-medians.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
python3 - "${CARGO_TARGET_DIR:-$ROOT/target}/criterion" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3f} {unit}"
    return f"{ns:.1f} ns"
rows = []
def natural(p):
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.parent.parent.relative_to(root).parts]
for est in sorted(root.glob("**/new/estimates.json"), key=natural):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    m = json.loads(est.read_text())["median"]
    ns, lo, hi = m["point_estimate"], m["confidence_interval"]["lower_bound"], m["confidence_interval"]["upper_bound"]
    thr = ""
    t = bench.get("throughput") or {}
    if "Elements" in t:
        per_s = t["Elements"] / ns * 1e9
        thr = f"{per_s / 1e6:.2f} M elem/s" if per_s >= 1e6 else f"{per_s / 1e3:.1f} k elem/s"
    elif "Bytes" in t:
        thr = f"{t['Bytes'] / ns * 1e9 / 2**30:.2f} GiB/s"
    rows.append((bench["full_id"], fmt(ns), f"[{fmt(lo)} .. {fmt(hi)}]", thr))
w = max(len(r[0]) for r in rows) if rows else 10
print(f"{'bench':<{w}}  {'median':>11}  {'95% CI of the median':<26}  throughput")
for r in rows:
    print(f"{r[0]:<{w}}  {r[1]:>11}  {r[2]:<26}  {r[3]}")
PY
