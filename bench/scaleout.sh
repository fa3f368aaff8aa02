#!/usr/bin/env bash
# Scale-out over the consumer group: 1, 2, ... INSTANCES copies of the same service in
# one group on a 3-node Kafka cluster, a handler-bound load (the `work` handler sleeping
# 1 ms, 16 workers each, 24 partitions, ordering key). Each count gets a topic of its own
# holding N messages before the instances start together in a new group; the brokers
# wait 3 s for a new group's members (group.initial.rebalance.delay.ms) so that they all
# get their partitions in one assignment, as a deployment's replicas starting together
# do. The clock runs from the first message consumed by any instance to the moment all
# N are settled (summed from each instance's /metrics). Prints msgs/s, the speed-up
# over one instance, the ratio to the ideal (instances x workers / the handler's
# measured time) and the partitions revoked while the clock ran (0: one assignment).
# Usage: bench/scaleout.sh BUILD_DIR [N]
# Environment: SCALEOUT_INSTANCES (3), SCALEOUT_PARTITIONS (24), SCALEOUT_WORKERS (16),
# SCALEOUT_MS (1), SCALEOUT_KEYS (5000), SCALEOUT_NODES (3), SCALEOUT_PORT (29300: the
# cluster's base port).
set -euo pipefail

build=${1:?usage: bench/scaleout.sh BUILD_DIR [N]}
n=${2:-150000}
instances=${SCALEOUT_INSTANCES:-3}
parts=${SCALEOUT_PARTITIONS:-24}
workers=${SCALEOUT_WORKERS:-16}
ms=${SCALEOUT_MS:-1}
keys=${SCALEOUT_KEYS:-5000}
nodes=${SCALEOUT_NODES:-3}
base_port=${SCALEOUT_PORT:-29300}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/timed_run.sh"
taskloop="$build/cmd/taskloop/taskloop"
[ -x "$taskloop" ] || { echo "scaleout.sh: $taskloop not built" >&2; exit 1; }

work=$(mktemp -d /tmp/taskloop-scaleout.XXXXXX)
pids=()
stop_instances() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_instances
    "$root/scripts/kafka-broker.sh" stop "$work/kafka" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

if ! brokers=$(KAFKA_EXTRA_PROPERTIES=group.initial.rebalance.delay.ms=3000 \
    "$root/scripts/kafka-broker.sh" start "$work/kafka" --nodes "$nodes" \
    --port "$base_port" --watch $$ 2>"$work/broker.err" | tail -n1); then
    echo "scaleout: SKIPPED, the $nodes-node cluster did not start: $(tail -n3 "$work/broker.err")"
    exit 0
fi

# Sums one counter over the running instances' /metrics.
sum_metric() { # NAME
    local total=0 i v
    for ((i = 0; i < ${#pids[@]}; i++)); do
        v=$(metric "$((admin_base + i))" "$1" || true)
        v=${v:-0}
        total=$((total + ${v%.*}))
    done
    echo "$total"
}

# Revocations logged so far by every instance of this count.
revocations() { cat "$work"/run-"$k"-*.err 2>/dev/null | grep -c 'event=revoking' || true; }

sleep_us=$("$build/bench/sleep_time" "$ms" "$workers" 2>/dev/null || echo 0)
echo "scaleout: $n messages, $parts partitions, $nodes-node cluster, work handler ${ms} ms," \
    "$workers workers per instance, ordering key ($keys keys)"
[ "$sleep_us" -gt 0 ] && echo "($workers threads: a ${ms} ms sleep takes $sleep_us us)"
printf "%-10s %12s %10s %12s %8s %10s  %s\n" instances msgs/s speed-up ideal ratio revoked \
    "each one's share, %"
one=""
for ((k = 1; k <= instances; k++)); do
    topic="scaleout-$k-$$"
    "$root/scripts/kafka-broker.sh" topic "$work/kafka" "$topic" "$parts" >/dev/null
    if ! "$taskloop" produce --brokers "$brokers" --to "kafka:$topic" -n "$n" --keys "$keys" \
        --partitions "$parts" >"$work/produce.out" 2>&1; then
        echo "$k: produce failed: $(tail -n2 "$work/produce.out")"
        continue
    fi
    admin_base=$((29700 + RANDOM % 200))
    for ((i = 0; i < k; i++)); do
        cat >"$work/run-$k-$i.yaml" <<YAML
service: scaleout
loop: { workers: $workers, max_in_flight: 1000 }
sources:
  in:
    type: kafka
    brokers: "$brokers"
    group: scaleout-$k-$$
    topics: [$topic]
    kafka: { auto.offset.reset: earliest }
routes:
  - source: in
    handler: work
    ordering: key
    timeout: 30s
    params: { ms: "$ms" }
admin: { listen: "127.0.0.1:$((admin_base + i))" }
log: { level: info, format: logfmt }
YAML
        "$taskloop" run "$work/run-$k-$i.yaml" --no-progress >/dev/null \
            2>"$work/run-$k-$i.err" &
        pids+=($!)
    done
    before=$(revocations)
    start="" end=""
    limit=$(($(date +%s) + 300))
    while [ "$(date +%s)" -lt "$limit" ]; do
        c=$(sum_metric taskloop_consumed_total)
        s=$(sum_metric taskloop_completed_total)
        t=$(date +%s.%N)
        [ -z "$start" ] && [ "$c" -gt 0 ] && start=$t
        [ "$s" -ge "$n" ] && { end=$t; break; }
        sleep 0.02
    done
    revoked=$(($(revocations) - before))
    # What each instance handled, in percent of N: an even split shows every instance
    # got its partitions.
    shares=$(for ((i = 0; i < k; i++)); do
        v=$(metric "$((admin_base + i))" taskloop_completed_total || true)
        echo $((${v:-0} * 100 / n))
    done | paste -sd/)
    stop_instances
    if [ -z "$end" ] || [ -z "$start" ]; then
        echo "$k: did not finish within 300 s"
        continue
    fi
    awk -v k="$k" -v n="$n" -v a="$start" -v b="$end" -v w="$workers" -v ms="$ms" \
        -v us="$sleep_us" -v one="$one" -v rev="$revoked" -v shares="$shares" 'BEGIN {
        r = n / (b - a); ideal = k * w * 1000 / (us > 0 ? us / 1000 : ms)
        su = one > 0 ? r / one : 1
        printf "%-10d %12.0f %9.2fx %12.0f %7.0f%% %10d  %s\n", k, r, su, ideal, 100 * r / ideal, rev,
            shares
        printf "RESULT scaleout i%d msgs_per_s %.0f\nRESULT scaleout i%d speedup %.3f\n", k, r, k, su
        printf "RESULT scaleout i%d ideal_ratio %.3f\n", k, r / ideal
    }' | tee "$work/row"
    [ "$k" -eq 1 ] && one=$(awk '/^RESULT scaleout i1 msgs_per_s/ { print $5 }' "$work/row")
done
echo "(ideal: instances x workers / the sleep's measured time; revoked: partitions revoked while the clock ran)"
