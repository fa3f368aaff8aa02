#!/usr/bin/env bash
# Isolation on a real broker: `taskloop run` with the built-in `work` handler, 4 workers,
# ordering none, `isolation: thread` against `isolation: process`, for a no-op handler
# and a 1 ms one, each on a topic of 4 partitions already holding its messages (N
# no-op, ten times as many for thread mode, which would finish too fast to time; a
# twentieth of N at 1 ms, as bench/isolation.c on the memory source). The
# clock runs from the first message consumed to the last one settled (timed_run.sh).
# Usage: bench/isolation_kafka.sh BUILD_DIR BROKER_DIR [N]
set -euo pipefail

build=${1:?usage: bench/isolation_kafka.sh BUILD_DIR BROKER_DIR [N]}
broker_dir=${2:?usage: bench/isolation_kafka.sh BUILD_DIR BROKER_DIR [N]}
n=${3:-50000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/timed_run.sh"
taskloop="$build/cmd/taskloop/taskloop"
work=$(mktemp -d /tmp/taskloop-isolation.XXXXXX)
trap 'rm -rf "$work"' EXIT
brokers=$("$root/scripts/kafka-broker.sh" bootstrap "$broker_dir")

echo "isolation on a real broker: work handler, 4 workers, 4 partitions, ordering none; msgs/s"
printf "%-10s %14s %14s %14s %8s\n" handler "messages t/p" thread process ratio
for ms in 0 1; do
    declare -A rate=() counts=()
    for isolation in thread process; do
        # A no-op thread-mode run of N is over in a fraction of a second: ten times as
        # many for it, so that start-up effects weigh as little as in the process run.
        count=$n
        [ "$ms" -gt 0 ] && count=$((n / 20))
        [ "$ms" -eq 0 ] && [ "$isolation" = thread ] && count=$((n * 10))
        counts[$isolation]=$count
        topic="iso-$isolation-$ms-$$"
        "$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic" 4 >/dev/null
        "$taskloop" produce --brokers "$brokers" --to "kafka:$topic" -n "$count" \
            --partitions 4 >"$work/produce.out" 2>&1 || {
            echo "produce failed: $(tail -n2 "$work/produce.out")"
            exit 1
        }
        cat >"$work/run.yaml" <<YAML
service: isolation
loop: { workers: 4 }
sources:
  in:
    type: kafka
    brokers: "$brokers"
    group: $topic
    topics: [$topic]
    kafka: { auto.offset.reset: earliest }
routes:
  - { source: in, handler: work, ordering: none, timeout: 30s, isolation: $isolation,
      params: { ms: "$ms" } }
log: { level: warn }
YAML
        span=$(timed_run "$taskloop" "$work/run.yaml" "$count" 300 "$work/run.err") || true
        if [ -z "$span" ]; then
            echo "$isolation ${ms} ms: did not finish: $(tail -n2 "$work/run.err")"
            rate[$isolation]=0
            continue
        fi
        rate[$isolation]=$(awk -v n="$count" -v s="$span" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
        echo "RESULT isolation_broker ${isolation}_${ms}ms msgs_per_s ${rate[$isolation]}"
    done
    label=$([ "$ms" -eq 0 ] && echo no-op || echo "$ms ms")
    awk -v l="$label" -v c="${counts[thread]}/${counts[process]}" -v t="${rate[thread]}" -v p="${rate[process]}" 'BEGIN {
        printf "%-10s %14s %14.0f %14.0f %7.0f%%\n", l, c, t, p, (t > 0 ? 100 * p / t : 0) }'
done
