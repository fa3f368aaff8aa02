#!/usr/bin/env bash
# Exactly-once against at-least-once on a real broker: `taskloop run` with the built-in
# forward handler copying a topic of 8 partitions already holding N messages (5,000
# keys, 100 bytes) into another, ordering key, 16 workers, once with
# `delivery: at_least_once` and once with `delivery: exactly_once` (transactions of
# TXN messages, 1000 by default). The clock runs from the first message consumed to
# the end of the run (--expect N: every message settled, the last commit made, the
# service stopped), so the last transaction's commit counts. Prints msgs/s for each,
# the transactions committed, and the ratio.
# Usage: bench/eos_kafka.sh BUILD_DIR BROKER_DIR [N] [TXN]
set -euo pipefail

build=${1:?usage: bench/eos_kafka.sh BUILD_DIR BROKER_DIR [N] [TXN]}
broker_dir=${2:?usage: bench/eos_kafka.sh BUILD_DIR BROKER_DIR [N] [TXN]}
n=${3:-200000}
txn=${4:-1000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/timed_run.sh"
taskloop="$build/cmd/taskloop/taskloop"
work=$(mktemp -d /tmp/taskloop-eos.XXXXXX)
trap 'rm -rf "$work"' EXIT
brokers=$("$root/scripts/kafka-broker.sh" bootstrap "$broker_dir")

echo "exactly-once against at-least-once on a real broker: $n messages, 8 partitions,"
echo "forward to another topic, ordering key, 16 workers, transactions of $txn messages"
printf "%-14s %10s %12s %14s\n" delivery seconds msgs/s transactions
declare -A rate
for mode in at_least_once exactly_once; do
    topic="eos-$mode-$$"
    "$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic" 8 >/dev/null
    "$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic.copy" 8 >/dev/null
    "$taskloop" produce --brokers "$brokers" --to "kafka:$topic" -n "$n" --size 100 \
        --keys 5000 >"$work/produce.out" 2>&1 || {
        echo "produce failed: $(tail -n2 "$work/produce.out")"
        exit 1
    }
    port=$((29800 + RANDOM % 90))
    cat >"$work/run.yaml" <<YAML
service: eos-bench
loop: { workers: 16 }
sources:
  in:
    type: kafka
    brokers: "$brokers"
    group: $topic
    topics: [$topic]
    transactional_id: "bench-$topic"
    kafka: { auto.offset.reset: earliest }
routes:
  - source: in
    handler: forward
    ordering: key
    delivery: $mode
$([ "$mode" = exactly_once ] && echo "    transaction: { messages: $txn, interval: 1s }")
    outputs: { copy: "kafka:$topic.copy" }
admin: { listen: "127.0.0.1:$port" }
log: { level: warn }
YAML
    "$taskloop" run "$work/run.yaml" --expect "$n" --timeout 600s --no-progress \
        >"$work/run.out" 2>"$work/run.err" &
    pid=$!
    start="" txns=0
    while kill -0 "$pid" 2>/dev/null; do
        m=$(curl -s "http://127.0.0.1:$port/metrics" || true)
        c=$(echo "$m" | awk '$1 == "taskloop_consumed_total" { print $2 }')
        t=$(echo "$m" | awk '$1 == "taskloop_transactions_total" { print $2 }')
        [ -n "$t" ] && txns=$t
        if [ -z "$start" ] && [ -n "$c" ] && [ "${c%.*}" -gt 0 ]; then start=$(date +%s.%N); fi
        sleep 0.02
    done
    end=$(date +%s.%N)
    rc=0
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ] || [ -z "$start" ]; then
        echo "$mode: failed (exit $rc): $(tail -n2 "$work/run.err")"
        continue
    fi
    # The summary counts every transaction, the last one (after /metrics was read) too.
    t=$(awk '$1 == "transactions" { print $2 }' "$work/run.out")
    [ -n "$t" ] && txns=$t
    rate[$mode]=$(awk -v n="$n" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
    awk -v mode="$mode" -v n="$n" -v a="$start" -v b="$end" -v t="$txns" 'BEGIN {
        printf "%-14s %10.2f %12.0f %14s\n", mode, b - a, n / (b - a), t
        printf "RESULT eos_broker %s msgs_per_s %.0f\n", mode, n / (b - a) }'
done
if [ -n "${rate[at_least_once]:-}" ] && [ -n "${rate[exactly_once]:-}" ]; then
    awk -v a="${rate[at_least_once]}" -v e="${rate[exactly_once]}" 'BEGIN {
        printf "exactly_once / at_least_once: %.0f%% (goal >= 70%% at 1,000-message transactions)\n", 100 * e / a
        printf "RESULT eos_broker ratio percent %.0f\n", 100 * e / a }'
fi
