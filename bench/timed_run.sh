# Sourced by bench/catchup.sh and bench/peers.sh: times one `taskloop run` on a topic that
# already holds its messages. The clock runs from the first message consumed to the last
# one settled, both read from the service's /metrics, so the group join is not counted.

# Reads one counter from the Prometheus text of /metrics.
metric() { # PORT NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; exit }'
}

# Runs TASKLOOP run CONFIG --expect N (its admin listening on 127.0.0.1:PORT) for at most
# LIMIT seconds, stderr to ERR_FILE. On success prints "START END" (seconds since the
# epoch); otherwise prints nothing and returns taskloop's exit status (1 when it exited 0
# without consuming).
timed_run() { # TASKLOOP CONFIG PORT N LIMIT ERR_FILE
    local taskloop=$1 config=$2 port=$3 n=$4 limit=$5 err=$6
    "$taskloop" run "$config" --expect "$n" --timeout "${limit}s" --no-progress \
        >/dev/null 2>"$err" &
    local pid=$! start="" end="" c s now rc=0
    while kill -0 "$pid" 2>/dev/null; do
        c=$(metric "$port" taskloop_consumed_total || true)
        s=$(metric "$port" taskloop_completed_total || true)
        now=$(date +%s.%N)
        if [ -z "$start" ] && [ -n "$c" ] && [ "${c%.*}" -gt 0 ]; then start=$now; fi
        if [ -n "$s" ] && [ "${s%.*}" -ge "$n" ]; then end=$now; break; fi
        sleep 0.02
    done
    # --expect ends the run as soon as all settled: between two reads, maybe.
    [ -z "$end" ] && end=$(date +%s.%N)
    wait "$pid" || rc=$?
    [ "$rc" -ne 0 ] && return "$rc"
    [ -z "$start" ] && return 1
    echo "$start $end"
}
