#!/usr/bin/env bash
# Backlog catch-up: a topic already holding N messages (a service restarting after an
# outage) consumed by `taskloop run` with the built-in `work` handler taking 1 ms,
# ordering partition and ordering key. Prints msgs/s and the ratio to the ideal:
# partitions / handler time for ordering partition (one message at a time each),
# workers / handler time for ordering key. The clock runs from the first message
# consumed to the last one settled (the service's own span, timed_run.sh), so the
# group join is not counted.
# Usage: bench/catchup.sh BUILD_DIR BROKER_DIR|mock [N]
#   BROKER_DIR: a running broker of scripts/kafka-broker.sh (the topics are created
#   there); mock: a `taskloop mock` cluster started for the run.
# Environment: CATCHUP_PARTITIONS (8), CATCHUP_WORKERS (64), CATCHUP_MS (1),
# CATCHUP_IN_FLIGHT (1000), CATCHUP_KEYS (2000), CATCHUP_KAFKA (more librdkafka
# properties for the source, as YAML map entries: "fetch.wait.max.ms: 10"),
# CATCHUP_KEPT_BACK_MB (loop.kept_back_mb; unset: the default).
set -euo pipefail

build=${1:?usage: bench/catchup.sh BUILD_DIR BROKER_DIR|mock [N]}
target=${2:?usage: bench/catchup.sh BUILD_DIR BROKER_DIR|mock [N]}
n=${3:-100000}
parts=${CATCHUP_PARTITIONS:-8}
workers=${CATCHUP_WORKERS:-64}
ms=${CATCHUP_MS:-1}
in_flight=${CATCHUP_IN_FLIGHT:-1000}
keys=${CATCHUP_KEYS:-2000}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/timed_run.sh"
root=$(cd "$here/.." && pwd)
taskloop="$build/cmd/taskloop/taskloop"
work=$(mktemp -d /tmp/taskloop-catchup.XXXXXX)
mock_pid=""
cleanup() {
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

topics=()
for ordering in partition key; do
    topics+=("catchup-$ordering-$$")
done
if [ "$target" = mock ]; then
    args=()
    for t in "${topics[@]}"; do args+=(--topic "$t:$parts"); done
    "$taskloop" mock "${args[@]}" >"$work/mock.out" 2>"$work/mock.err" &
    mock_pid=$!
    for _ in $(seq 100); do [ -s "$work/mock.out" ] && break; sleep 0.1; done
    brokers=$(head -n1 "$work/mock.out")
    kind="mock cluster"
else
    brokers=$("$root/scripts/kafka-broker.sh" bootstrap "$target")
    for t in "${topics[@]}"; do
        "$root/scripts/kafka-broker.sh" topic "$target" "$t" "$parts" >/dev/null
    done
    kind="real broker"
fi

# What the handler's sleep really takes here (timer slack and wake-up latency make a
# 1 ms sleep last longer), taken by as many threads at once as the run keeps busy
# (partitions, or workers), measured apart from taskloop by bench/sleep_time.c: it
# bounds what any consumer can reach. Prints microseconds, or 0 when not built.
sleep_us() { # THREADS
    "$build/bench/sleep_time" "$ms" "$1" 2>/dev/null || echo 0
}

echo "catchup: $n messages on $parts partitions ($kind), work handler ${ms} ms, $workers workers, max_in_flight $in_flight, kept_back_mb ${CATCHUP_KEPT_BACK_MB:-default}"
echo "the last column: the ratio to the ideal at what a ${ms} ms sleep takes here (${parts} or ${workers} threads sleeping at once)"
printf "%-10s %12s %12s %8s %14s\n" ordering msgs/s ideal ratio "at sleep time"
for ordering in partition key; do
    topic="catchup-$ordering-$$"
    "$taskloop" produce --brokers "$brokers" --to "kafka:$topic" -n "$n" --keys "$keys" \
        --partitions "$parts" >"$work/produce.out" 2>&1 || {
        echo "$ordering: produce failed: $(tail -n2 "$work/produce.out")"
        continue
    }

    cat >"$work/$ordering.yaml" <<YAML
service: catchup
loop: { workers: $workers, max_in_flight: $in_flight${CATCHUP_KEPT_BACK_MB:+, kept_back_mb: $CATCHUP_KEPT_BACK_MB} }
sources:
  in:
    type: kafka
    brokers: "$brokers"
    group: catchup-$ordering-$$
    topics: [$topic]
    kafka: { auto.offset.reset: earliest${CATCHUP_KAFKA:+, $CATCHUP_KAFKA} }
routes:
  - source: in
    handler: work
    ordering: $ordering
    timeout: 30s
    params: { ms: "$ms" }
log: { level: warn }
YAML
    rc=0
    span=$(timed_run "$taskloop" "$work/$ordering.yaml" "$n" 300 "$work/run.err") || rc=$?
    if [ -z "$span" ]; then
        echo "$ordering: did not finish (exit status $rc): $(tail -n3 "$work/run.err")"
        continue
    fi
    if [ "$ordering" = partition ]; then busy=$parts; else busy=$workers; fi
    ideal=$((busy * 1000 / ms))
    us=$(sleep_us "$busy")
    [ "$us" -gt 0 ] && echo "($busy threads: a ${ms} ms sleep takes $us us)"
    awk -v bench="catchup_$([ "$target" = mock ] && echo mock || echo broker)" \
        -v o="$ordering" -v n="$n" -v span="$span" -v i="$ideal" -v us="$us" -v ms="$ms" 'BEGIN {
        r = n / span; real = us > 0 ? 100 * r / (i * ms * 1000 / us) : 0
        printf "%-10s %12.0f %12d %7.0f%% %13.0f%%\n", o, r, i, 100 * r / i, real
        printf "RESULT %s %s msgs_per_s %.0f\nRESULT %s %s ideal_ratio %.3f\n", bench, o, r, bench, o, r / i
        if (real > 0) printf "RESULT %s %s sleep_time_ratio %.3f\n", bench, o, real / 100
    }'
done
