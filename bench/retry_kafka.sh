#!/usr/bin/env bash
# Delayed retries on a real broker: `taskloop run` with the built-in `work` handler
# (no-op), ordering partition, 8 workers, on a topic of 4 partitions already holding N
# messages of which 1% are `flaky:2` (they fail twice, then complete), with
# on_error { retries: 2, backoff: 200ms } retried in place against the same with
# `via:` a retry topic the source reads too. Prints, for each: how long until every
# message completed, the messages/s that makes, and for via the retries' lateness past
# their due time (p50 and p99 from the taskloop_retry_lateness_seconds histogram's
# buckets, the mean from its sum). In place, a failing message holds its partition for
# its backoffs; through the retry topic it holds nothing.
# Usage: bench/retry_kafka.sh BUILD_DIR BROKER_DIR [N]
set -euo pipefail

build=${1:?usage: bench/retry_kafka.sh BUILD_DIR BROKER_DIR [N]}
broker_dir=${2:?usage: bench/retry_kafka.sh BUILD_DIR BROKER_DIR [N]}
n=${3:-20000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/timed_run.sh"
taskloop="$build/cmd/taskloop/taskloop"
work=$(mktemp -d /tmp/taskloop-retry.XXXXXX)
trap 'rm -rf "$work"' EXIT
brokers=$("$root/scripts/kafka-broker.sh" bootstrap "$broker_dir")

awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
    printf "key-%d\tid=%06d%s\n", i % 256, i, (i % 100 == 7 ? " flaky:2" : "") }' >"$work/in.txt"
flaky=$(grep -c 'flaky:2' "$work/in.txt")

echo "delayed retries on a real broker: $n messages, $flaky of them failing twice (backoff 200ms),"
echo "no-op handler, ordering partition, 8 workers, 4 partitions"
printf "%-9s %10s %12s %14s %14s %14s\n" retries seconds msgs/s "late p50 <=" "late p99 <=" "late mean"
for mode in in_place via; do
    topic="retry-$mode-$$"
    "$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic" 4 >/dev/null
    "$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic.retry" 4 >/dev/null
    "$taskloop" produce --brokers "$brokers" --to "kafka:$topic" --from "$work/in.txt" \
        --format key-value >"$work/produce.out" 2>&1 || {
        echo "produce failed: $(tail -n2 "$work/produce.out")"
        exit 1
    }
    port=$((29900 + RANDOM % 90))
    topics="[$topic]" via="" expect=$n
    if [ "$mode" = via ]; then
        topics="[$topic, $topic.retry]"
        via=", via: \"kafka:$topic.retry\""
        expect=$((n + 2 * flaky)) # each retry is consumed again from the retry topic
    fi
    cat >"$work/run.yaml" <<YAML
service: retries
loop: { workers: 8 }
sources:
  in:
    type: kafka
    brokers: "$brokers"
    group: $topic
    topics: $topics
    kafka: { auto.offset.reset: earliest }
routes:
  - source: in
    handler: work
    ordering: partition
    timeout: 30s
    on_error: { retries: 2, backoff: 200ms$via }
    params: { ms: "0" }
admin: { listen: "127.0.0.1:$port" }
log: { level: warn }
YAML
    "$taskloop" run "$work/run.yaml" --expect "$expect" --timeout 300s --no-progress \
        >/dev/null 2>"$work/run.err" &
    pid=$!
    start="" end=""
    while kill -0 "$pid" 2>/dev/null; do
        c=$(metric "$port" taskloop_consumed_total || true)
        s=$(metric "$port" taskloop_completed_total || true)
        now=$(date +%s.%N)
        if [ -z "$start" ] && [ -n "$c" ] && [ "${c%.*}" -gt 0 ]; then start=$now; fi
        if [ -n "$s" ] && [ "${s%.*}" -ge "$n" ]; then
            end=$now
            curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics.txt" || true
            break
        fi
        sleep 0.02
    done
    wait "$pid" || true
    if [ -z "$start" ] || [ -z "$end" ]; then
        echo "$mode: did not finish: $(tail -n2 "$work/run.err")"
        continue
    fi
    awk -v mode="$mode" -v n="$n" -v a="$start" -v b="$end" '
        /^taskloop_retry_lateness_seconds_bucket/ {
            match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5)
            les[++k] = le; cum[k] = $2 }
        /^taskloop_retry_lateness_seconds_sum/ { sum = $2 }
        /^taskloop_retry_lateness_seconds_count/ { count = $2 }
        function q(p,   i) { for (i = 1; i <= k; i++) if (cum[i] >= p * count) return les[i]; return "-" }
        END {
            secs = b - a
            rate = secs > 0 ? n / secs : 0
            p50 = count ? q(0.5) "s" : "-"; p99 = count ? q(0.99) "s" : "-"
            mean = count ? sprintf("%.1fms", 1000 * sum / count) : "-"
            printf "%-9s %10.2f %12.0f %14s %14s %14s\n", mode, secs, rate, p50, p99, mean
            printf "RESULT retry_broker %s msgs_per_s %.0f\n", mode, rate
            if (count) printf "RESULT retry_broker via lateness_mean_ms %.1f\n", 1000 * sum / count
        }' "$work/metrics.txt"
done
