# Sourced by bench/catchup.sh, bench/peers.sh and bench/isolation_kafka.sh: times one
# `taskloop run` on a topic that already holds its messages. The clock is the service's
# own: its summary's span from the first message consumed to the last one settled, so
# the start-up and the group join are not counted and nothing polls the service while
# it runs (a poll a few times a second took a few percent of two busy cores).

# Reads one counter from the Prometheus text of /metrics.
metric() { # PORT NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; exit }'
}

# Runs TASKLOOP run CONFIG --expect N for at most LIMIT seconds, stderr to ERR_FILE. On
# success prints the span in seconds; otherwise prints nothing and returns taskloop's
# exit status (1 when the summary has no span: nothing settled).
timed_run() { # TASKLOOP CONFIG N LIMIT ERR_FILE
    local taskloop=$1 config=$2 n=$3 limit=$4 err=$5 rc=0
    "$taskloop" run "$config" --expect "$n" --timeout "${limit}s" --no-progress \
        >"$err.summary" 2>"$err" || rc=$?
    [ "$rc" -ne 0 ] && return "$rc"
    awk '$1 == "span_us" { printf "%.6f\n", $2 / 1e6; found = 1 } END { exit !found }' \
        "$err.summary" || return 1
}
