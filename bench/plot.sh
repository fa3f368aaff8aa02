#!/usr/bin/env bash
# Draws one PNG per table of a `make bench` run from its CSV (bench,variant,metric,value),
# next to the CSV: overhead.png, memory.png, throughput.png, ratios.png, scaleout.png,
# catchup.png, stall.png, scale.png, isolation.png, retry.png. A table with no figures in the CSV (a part that was
# skipped) gets no plot. Needs gnuplot (install-deps.sh --bench installs it).
# Usage: bench/plot.sh RESULTS_CSV
set -euo pipefail

csv=${1:?usage: bench/plot.sh RESULTS_CSV}
[ -s "$csv" ] || { echo "plot.sh: $csv is missing or empty" >&2; exit 1; }
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "plots: skipped (gnuplot is not installed; apt-get install gnuplot-nox for PNGs)"
    exit 0
fi
out=$(cd "$(dirname "$csv")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Selects rows of the CSV into a gnuplot data file: one line per variant (quoted label),
# one column per metric named, "-" where the run has no figure. Empty when nothing matched.
# The metric is the CSV's third field unless METRIC_FIELD says another (e.g. '$2').
# Usage: table OUT_DAT BENCH_REGEX LABEL_AWK_EXPR [--metric-field EXPR] METRIC...
table() {
    local dat=$1 bench=$2 label=$3 field='$3'
    shift 3
    if [ "$1" = --metric-field ]; then
        field=$2
        shift 2
    fi
    awk -F, -v bench="$bench" -v metrics="$*" '
        BEGIN { m = split(metrics, want, " ") }
        NR > 1 && $1 ~ ("^(" bench ")$") {
            key = '"$label"'
            if (!(key in seen)) { seen[key] = 1; order[++k] = key }
            v[key, '"$field"'] = $4
        }
        END {
            for (i = 1; i <= k; i++) {
                line = "\"" order[i] "\""
                for (j = 1; j <= m; j++) {
                    x = v[order[i], want[j]]
                    line = line " " (x == "" ? "-" : x)
                }
                print line
            }
        }' "$csv" >"$dat"
    [ -s "$dat" ]
}

# Draws a clustered bar chart of DAT's columns 2.. with the titles given.
# Usage: bars PNG TITLE YLABEL EXTRA_GNUPLOT DAT TITLE...
bars() {
    local png=$1 title=$2 ylabel=$3 extra=$4 dat=$5
    shift 5
    local plot="\"$dat\" using 2:xtic(1) title \"$1\"" col=3 t
    for t in "${@:2}"; do
        plot+=", \"$dat\" using $col title \"$t\""
        col=$((col + 1))
    done
    if gnuplot 2>"$work/gnuplot.err" <<GP; then
set terminal pngcairo size 1100,560 noenhanced
set output "$out/$png"
set title "$title"
set ylabel "$ylabel"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.7 border -1
set yrange [0:*]
set grid ytics
set key outside top center horizontal
set format y "%.1s%c"
set xtics rotate by -30 font ",9"
$extra
plot $plot
GP
        echo "plot: $out/$png"
    else
        echo "plot: $png failed: $(head -n2 "$work/gnuplot.err")"
    fi
}

# Task overhead: ns per task by batch size, each mode beside asyncio's.
if table "$work/overhead.dat" task_overhead '$3' --metric-field '$2' pool_wait inline_wait asyncio_wait pool_gather \
    inline_gather asyncio_gather; then
    sed 's/^"n/"/' "$work/overhead.dat" | sort -t'"' -k2,2n >"$work/overhead2.dat"
    bars overhead.png "create -> collected, ns per task (lower is better)" "ns per task" \
        "set xlabel 'tasks in one batch'" "$work/overhead2.dat" \
        "pool wait" "inline wait" "asyncio wait" "pool gather" "inline gather" "asyncio gather"
fi

# Memory: bytes per pending task (taskloop and asyncio) and per in-flight message.
if awk -F, 'NR > 1 && (($1 == "task_overhead" && $2 ~ /pending_bytes$/) || $1 == "memory") {
        label = $1 == "memory" ? "in-flight message (" $3 ")" : \
            ($2 == "pending_bytes" ? "pending task: taskloop" : "pending future: asyncio")
        printf "\"%s\" %s\n", label, $4 }' "$csv" >"$work/memory.dat" && [ -s "$work/memory.dat" ]; then
    bars memory.png "memory (lower is better)" "bytes" "" "$work/memory.dat" "bytes"
fi

# Throughput against the plain library loops: msgs/s, and the ratios with the 0.9 goal.
throughput='kafka_broker|kafka_mock|zmq_tcp|zmq_ipc'
if table "$work/throughput.dat" "$throughput" '$1 " " $2' msgs_per_s median_msgs_per_s; then
    bars throughput.png "throughput, msgs/s (higher is better)" "msgs/s" "" \
        "$work/throughput.dat" "best round" "median round"
fi
if table "$work/ratios.dat" "$throughput" '$1 " " $2' ratio median_ratio &&
    grep -qv -- ' - -$' "$work/ratios.dat"; then
    grep -v -- ' - -$' "$work/ratios.dat" >"$work/ratios2.dat"
    bars ratios.png "taskloop / plain library loop, same run (goal: 0.9)" "ratio" \
        "set arrow from graph 0, first 0.9 to graph 1, first 0.9 nohead dt 2 lw 2; set format y '%.1f'" \
        "$work/ratios2.dat" "best round" "median round"
fi

# Scale-out: msgs/s of 1, 2, 3 instances in one group, beside the ideal.
if awk -F, 'NR > 1 && $1 == "scaleout" && $3 == "msgs_per_s" { r[$2] = $4; o[++k] = $2 }
    NR > 1 && $1 == "scaleout" && $3 == "ideal_ratio" { q[$2] = $4 }
    END { for (i = 1; i <= k; i++) { v = o[i]; printf "\"%s instance%s\" %s %s\n", substr(v, 2),
        (substr(v, 2) == "1" ? "" : "s"), r[v], (q[v] > 0 ? r[v] / q[v] : "-") } }' "$csv" \
    >"$work/scaleout.dat" && [ -s "$work/scaleout.dat" ]; then
    bars scaleout.png "scale-out over one consumer group, msgs/s (higher is better)" "msgs/s" "" \
        "$work/scaleout.dat" "measured" "ideal (instances x workers / handler time)"
fi

# Backlog catch-up against its ideal (workers or partitions / handler time).
if table "$work/catchup.dat" 'catchup_broker|catchup_mock' '$1 " " $2' ideal_ratio \
    sleep_time_ratio; then
    sed -i 's/"catchup_/"/' "$work/catchup.dat"
    bars catchup.png "catch-up: share of the ideal (1.0 = every worker busy all the time)" \
        "share of ideal" \
        "set arrow from graph 0, first 0.9 to graph 1, first 0.9 nohead dt 2 lw 2; set format y '%.1f'" \
        "$work/catchup.dat" "at the nominal 1 ms" "at the sleep's measured time"
fi

# Stall detection: how long after its timeout a stalled message is rerouted and seen cancelled.
if table "$work/stall.dat" stall '"memory sink"' reroute_acked_p50_ms reroute_acked_p99_ms \
    cancel_seen_p50_ms cancel_seen_p99_ms; then
    bars stall.png "after the timeout, ms (lower is better)" "ms" "set yrange [*:*]; set format y '%.2f'" \
        "$work/stall.dat" "reroute acknowledged p50" "reroute acknowledged p99" \
        "cancel seen p50" "cancel seen p99"
fi

# Scale: msgs/s over partitions (clusters) and workers (bars).
if awk -F, 'NR > 1 && $1 == "scale" && $3 == "msgs_per_s" {
        split($2, pw, "_"); p = substr(pw[1], 2); w = substr(pw[2], 2)
        if (!(p in seen)) { seen[p] = 1; order[++k] = p }
        if (!(w in wseen)) { wseen[w] = 1; worder[++m] = w }
        v[p, w] = $4 }
    END {
        for (i = 1; i <= k; i++) {
            line = "\"" order[i] " partitions\""
            for (j = 1; j <= m; j++) line = line " " (v[order[i], worder[j]] == "" ? "-" : v[order[i], worder[j]])
            print line
        }
        printf "#"; for (j = 1; j <= m; j++) printf " %s", worder[j]; print ""
    }' "$csv" >"$work/scale.dat" && [ "$(wc -l <"$work/scale.dat")" -gt 1 ]; then
    read -r -a workers <<<"$(tail -n1 "$work/scale.dat" | cut -c3-)"
    titles=()
    for w in "${workers[@]}"; do titles+=("$w workers"); done
    bars scale.png "scale, msgs/s (higher is better)" "msgs/s" "" "$work/scale.dat" "${titles[@]}"
fi

# Delayed retries: retried in place against through a retry topic (on_error.via).
if table "$work/retry.dat" retry_broker '$2' msgs_per_s; then
    bars retry.png "retries of 1% failing twice, msgs/s (higher is better)" "msgs/s" "" \
        "$work/retry.dat" "msgs/s"
fi

# Isolation: thread against process mode, per source and handler cost.
if awk -F, 'NR > 1 && $3 == "msgs_per_s" && ($1 == "isolation" || $1 == "isolation_broker") {
        split($2, mh, "_"); src = $1 == "isolation" ? "memory" : "broker"; c = src " " mh[2]
        v[c, mh[1]] = $4; if (!(c in seen)) { seen[c] = 1; o[++k] = c } }
    END { for (i = 1; i <= k; i++) { c = o[i]; sub(/ 0ms$/, " no-op", c); sub(/ 1ms$/, " 1 ms", c)
        printf "\"%s\" %s %s\n", c, (v[o[i], "thread"] == "" ? "-" : v[o[i], "thread"]),
            (v[o[i], "process"] == "" ? "-" : v[o[i], "process"]) } }' \
    "$csv" >"$work/isolation.dat" && [ -s "$work/isolation.dat" ]; then
    bars isolation.png "isolation, msgs/s (higher is better; log scale)" "msgs/s" \
        "set logscale y; set yrange [100:*]" "$work/isolation.dat" "isolation: thread" \
        "isolation: process"
fi
