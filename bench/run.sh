#!/usr/bin/env bash
# Runs the benchmarks built in BUILD_DIR and prints their figures side by side:
# task overhead against asyncio, then (bench/run_services.sh) Kafka and ZeroMQ
# throughput against plain library loops, stall detection, in-flight memory and scale.
# Usage: bench/run.sh BUILD_DIR      (environment knobs: see bench/README.md)
set -euo pipefail

build=${1:?usage: bench/run.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
overhead="$build/bench/task_overhead"
[ -x "$overhead" ] || { echo "run.sh: $overhead not built" >&2; exit 1; }

tl_out=$(mktemp)
py_out=$(mktemp)
trap 'rm -f "$tl_out" "$py_out"' EXIT

echo "== taskloop: task overhead ($overhead)"
"$overhead" "${BENCH_OVERHEAD_N:-1000000}" | tee "$tl_out" | grep -v '^RESULT'
echo
echo "== asyncio: task overhead ($(python3 --version 2>&1))"
python3 "$here/asyncio_overhead.py" | tee "$py_out" | grep -v '^RESULT'
echo

# Joins the RESULT lines: asyncio ns/task divided by taskloop ns/task, per n.
awk '
    FNR == NR && /^RESULT/ { tl[$2 " " $3] = $4; if ($2 != "pending_bytes") ns[$3] = 1; next }
    /^RESULT/ { py[$2 " " $3] = $4 }
    function cell(v) { return v == "" ? "-" : sprintf("%.0f", v) }
    function ratio(a, b) { return (a == "" || b == "" || b <= 0) ? "-" : sprintf("%.1fx", a / b) }
    END {
        print "== ratio: asyncio ns/task / taskloop ns/task (higher = taskloop cheaper)"
        printf "%-9s %11s %11s %11s %8s | %11s %11s %11s %8s\n", "n", "pool_wait",
               "inline_wait", "asyncio", "ratio", "pool_gather", "inline_gath", "asyncio",
               "ratio"
        m = 0
        for (n in ns) order[++m] = n + 0
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
            if (order[j] < order[i]) { t = order[i]; order[i] = order[j]; order[j] = t }
        for (i = 1; i <= m; i++) {
            n = order[i]
            pw = tl["pool_wait " n]; iw = tl["inline_wait " n]; aw = py["asyncio_wait " n]
            pg = tl["pool_gather " n]; ig = tl["inline_gather " n]; ag = py["asyncio_gather " n]
            printf "%-9s %11s %11s %11s %8s | %11s %11s %11s %8s\n", n, cell(pw), cell(iw),
                   cell(aw), ratio(aw, pw), cell(pg), cell(ig), cell(ag), ratio(ag, pg)
        }
        for (k in tl) if (k ~ /^pending_bytes/) tlmem = tl[k]
        for (k in py) if (k ~ /^pending_bytes/) pymem = py[k]
        printf "memory per pending task: taskloop %s bytes, asyncio %s bytes\n", cell(tlmem),
               cell(pymem)
        print "goal: <= 200 ns per task create -> collected, < 1 KB per pending task"
    }
' "$tl_out" "$py_out"

echo
# Both task-overhead runs go to the CSV; asyncio's memory figure under its own name.
sed 's/^RESULT pending_bytes/RESULT asyncio_pending_bytes/' "$py_out" >>"$tl_out"
"$here/run_services.sh" "$build" "$tl_out"
