#!/usr/bin/env bash
# Exactly-once against at-least-once on a real broker: `taskloop run` copying a topic of
# 8 partitions already holding its messages (5,000 keys, 100 bytes) into another,
# ordering key, 16 workers, with `delivery: at_least_once` and with `delivery:
# exactly_once` at transactions of TXN (1000 by default) and 10,000 messages. Two
# handlers: the built-in forward (no-op, N messages) and work with 1 ms of work before
# the copy (N/10). The clock runs from the first message consumed to the end of the run
# (--expect: every message settled, the last commit made, the service stopped), so the
# last transaction's commit counts. Prints msgs/s, the transactions committed, the
# ratio to at-least-once on the same load and the CPU seconds the service and the
# broker spent while the clock ran. EOS_SHARDS (1) runs the service on that many
# loops (loop.shards: each shard its own transactions); EOS_HANDLERS ("noop 1ms") picks
# the handlers.
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

echo "exactly-once against at-least-once on a real broker: 8 partitions, 5,000 keys,"
echo "ordering key, 16 workers, ${EOS_SHARDS:-1} shard(s); each handler copies its message to another topic"
echo "cpu_s: CPU seconds (user + system) the service and the broker spent while the clock ran"
printf "%-8s %-14s %8s %9s %10s %12s %13s %8s %9s %9s\n" handler delivery txn_max messages seconds msgs/s \
    transactions ratio cpu_s_tl cpu_s_kafka
hz=$(getconf CLK_TCK)

# CPU time (user + system, clock ticks) process PID has used so far; 0 once it is gone.
ticks() { # PID
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# The same for the broker's nodes together (scripts/kafka-broker.sh keeps their pids).
broker_ticks() {
    local t=0 f p
    for f in "$broker_dir"/node*.pid; do
        [ -f "$f" ] && p=$(cat "$f") && t=$((t + $(ticks "$p")))
    done
    echo "$t"
}

# Runs one case: HANDLER (noop: forward; 1ms: work, 1 ms, then the copy) DELIVERY TXN N.
# Prints its row and sets last_rate.
run_case() {
    local handler=$1 mode=$2 txn=$3 n=$4
    local topic="eos-$handler-$mode-$txn-$$" port
    "$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic" 8 >/dev/null 2>&1
    "$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic.copy" 8 >/dev/null 2>&1
    "$taskloop" produce --brokers "$brokers" --to "kafka:$topic" -n "$n" --size 100 \
        --keys 5000 >"$work/produce.out" 2>&1 || {
        echo "produce failed: $(tail -n2 "$work/produce.out")"
        exit 1
    }
    port=$((29800 + RANDOM % 90))
    local route_handler="handler: forward" params=""
    if [ "$handler" = 1ms ]; then
        route_handler="handler: work"
        params='    params: { ms: "1", emit: copy }'
    fi
    cat >"$work/run.yaml" <<YAML
service: eos-bench
loop: { workers: 16, shards: ${EOS_SHARDS:-1} }
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
    $route_handler
    ordering: key
    delivery: $mode
$([ "$mode" = exactly_once ] && echo "    transaction: { messages: $txn, interval: 1s }")
    outputs: { copy: "kafka:$topic.copy" }
$params
admin: { listen: "127.0.0.1:$port" }
log: { level: warn }
YAML
    "$taskloop" run "$work/run.yaml" --expect "$n" --timeout 600s --no-progress \
        >"$work/run.out" 2>"$work/run.err" &
    local pid=$! start="" c end rc=0 t tl0=0 tl1=0 b0=0 b1=0 now
    while kill -0 "$pid" 2>/dev/null; do
        c=$(metric "$port" taskloop_consumed_total || true)
        if [ -z "$start" ] && [ -n "$c" ] && [ "${c%.*}" -gt 0 ]; then
            start=$(date +%s.%N)
            tl0=$(ticks "$pid")
            b0=$(broker_ticks)
        fi
        # The last reading before the exit: the final 20 ms go uncounted.
        if [ -n "$start" ]; then now=$(ticks "$pid") && [ "$now" -gt 0 ] && tl1=$now; fi
        sleep 0.02
    done
    end=$(date +%s.%N)
    b1=$(broker_ticks)
    wait "$pid" || rc=$?
    last_rate=""
    if [ "$rc" -ne 0 ] || [ -z "$start" ]; then
        echo "$handler $mode: failed (exit $rc): $(tail -n2 "$work/run.err")"
        return
    fi
    # The run's summary counts every transaction, the last one included.
    t=$(awk '$1 == "transactions" { print $2 }' "$work/run.out")
    last_rate=$(awk -v n="$n" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
    awk -v h="$handler" -v mode="$mode" -v txn="$([ "$mode" = exactly_once ] && echo "$txn" || echo -)" \
        -v n="$n" -v a="$start" -v b="$end" -v t="${t:-0}" -v base="${alo_rate:-0}" \
        -v tl=$((tl1 - tl0)) -v bk=$((b1 - b0)) -v hz="$hz" 'BEGIN {
        r = n / (b - a)
        ratio = (mode == "exactly_once" && base > 0) ? sprintf("%.0f%%", 100 * r / base) : "-"
        printf "%-8s %-14s %8s %9d %10.2f %12.0f %13s %8s %9.2f %9.2f\n", h, mode, txn, n, b - a, r, t,
            ratio, tl / hz, bk / hz
        name = h "_" mode (mode == "exactly_once" ? "_" txn : "")
        printf "RESULT eos_broker %s msgs_per_s %.0f\n", name, r
        printf "RESULT eos_broker %s cpu_s_taskloop %.2f\n", name, tl / hz
        printf "RESULT eos_broker %s cpu_s_broker %.2f\n", name, bk / hz
        if (ratio != "-") printf "RESULT eos_broker %s_ratio_%s percent %.0f\n", h, txn, 100 * r / base }'
}

for handler in ${EOS_HANDLERS:-noop 1ms}; do
    hn=$n
    [ "$handler" = 1ms ] && hn=$((n / 10))
    alo_rate=""
    run_case "$handler" at_least_once - "$hn"
    alo_rate=$last_rate
    for t in $txn 10000; do
        run_case "$handler" exactly_once "$t" "$hn"
    done
done
echo "goal: exactly_once >= 70% of at_least_once at 1,000-message transactions"
