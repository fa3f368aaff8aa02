#!/usr/bin/env bash
# The service benchmarks: Kafka (real broker and mock cluster) and ZeroMQ throughput
# against plain library loops, backlog catch-up against its ideal, stall detection
# latency, memory per in-flight message and throughput over partitions and workers; on
# the real broker, bench/peers.sh sets taskloop beside the frameworks users would take
# instead; on a 3-node cluster, bench/scaleout.sh runs 1, 2 and 3 instances of one
# service in one group. Writes bench/results/results.csv, prints a summary table and, when gnuplot is
# installed, draws every table next to the CSV (bench/plot.sh).
# Usage: bench/run_services.sh BUILD_DIR [TASK_OVERHEAD_OUTPUT]
set -uo pipefail

build=${1:?usage: bench/run_services.sh BUILD_DIR [TASK_OVERHEAD_OUTPUT]}
overhead_out=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin="$build/bench"
results="$here/results"
csv="$results/results.csv"
mkdir -p "$results"

kafka_n=${BENCH_KAFKA_N:-1000000}
kafka_mock_n=${BENCH_KAFKA_MOCK_N:-$kafka_n}
zmq_n=${BENCH_ZMQ_N:-5000000}
scale_n=${BENCH_SCALE_N:-200000}
iso_n=${BENCH_ISOLATION_N:-200000}
stall_n=${BENCH_STALL_N:-1000}
mem_n=${BENCH_MEMORY_N:-100000}
kafka_port=${BENCH_KAFKA_PORT:-29092}
zmq_port=${BENCH_ZMQ_PORT:-29557}
rounds=${BENCH_ROUNDS:-5}
catchup_n=${BENCH_CATCHUP_N:-100000}
retry_n=${BENCH_RETRY_N:-20000}

log=$(mktemp)
broker_dir=""
cleanup() {
  if [ -n "$broker_dir" ]; then
    "$root/scripts/kafka-broker.sh" stop "$broker_dir" >/dev/null 2>&1
    rm -rf "$broker_dir"
  fi
  rm -f "$log"
}
trap cleanup EXIT

echo "bench,variant,metric,value" >"$csv"
if [ -n "$overhead_out" ] && [ -s "$overhead_out" ]; then
  awk '/^RESULT/ { print "task_overhead," $2 ",n" $3 "," $4 }' "$overhead_out" >>"$csv"
fi

# Runs one benchmark program with a time limit, shows its table, keeps its figures.
run() { # LIMIT_SECONDS PROGRAM ARGS...
  local limit=$1
  shift
  echo "== $(basename "$1") ${*:2}"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  grep -v '^RESULT' "$log"
  awk '/^RESULT/ { print $2 "," $3 "," $4 "," $5 }' "$log" >>"$csv"
  [ $rc -eq 0 ] || echo "(exit status $rc$([ $rc -eq 124 ] && echo ': time limit reached'))"
  echo
}

# --- Kafka on a real broker: needs the jars from Maven Central (or the cache).
if "$root/scripts/kafka-broker.sh" classpath >/dev/null 2>&1; then
  broker_dir=$(mktemp -d /tmp/taskloop-bench-kafka.XXXXXX)
  if brokers=$("$root/scripts/kafka-broker.sh" start "$broker_dir" --port "$kafka_port" \
      --watch $$ 2>"$log" | tail -n1) &&
    "$root/scripts/kafka-broker.sh" topic "$broker_dir" bench 8 >/dev/null 2>&1 &&
    "$build/cmd/taskloop/taskloop" produce --brokers "$brokers" --to kafka:bench \
      -n "$kafka_n" --size 100 --partitions 8 >/dev/null 2>&1; then
    run 900 "$bin/kafka_throughput" --brokers "$brokers" --topic bench -n "$kafka_n" --rounds "$rounds"
    run 900 "$here/catchup.sh" "$build" "$broker_dir" "$catchup_n"
    run 900 "$here/isolation_kafka.sh" "$build" "$broker_dir" "$iso_n"
    run 600 "$here/retry_kafka.sh" "$build" "$broker_dir" "$retry_n"
    run 900 "$here/eos_kafka.sh" "$build" "$broker_dir" "${BENCH_EOS_N:-200000}"
    # Its own table and CSV (bench/results/peers.csv): shown as it goes, not summarised.
    echo "== peers.sh (taskloop beside the Parallel Consumer, Spring Kafka and aiokafka)"
    timeout --kill-after=10 1800 "$here/peers.sh" "$build" "$broker_dir" ||
      echo "(peers.sh: exit status $?)"
    echo
  else
    echo "== kafka_throughput (real broker): SKIPPED, the broker did not start or fill:"
    tail -n 5 "$log"
    echo
  fi
  "$root/scripts/kafka-broker.sh" stop "$broker_dir" >/dev/null 2>&1
  rm -rf "$broker_dir"
  broker_dir=""
else
  echo "== kafka_throughput (real broker): SKIPPED, Maven Central is unreachable and the"
  echo "   Kafka jars are not cached (scripts/kafka-broker.sh classpath failed)"
  echo
fi

# Scale-out over a consumer group: a 3-node cluster of its own (bench/scaleout.sh).
if "$root/scripts/kafka-broker.sh" classpath >/dev/null 2>&1; then
  run 900 "$here/scaleout.sh" "$build" "${BENCH_SCALEOUT_N:-100000}"
fi

run 900 "$bin/kafka_throughput" --mock -n "$kafka_mock_n" --rounds "$rounds"
run 900 "$here/catchup.sh" "$build" mock "$catchup_n"
run 900 "$bin/zmq_throughput" -n "$zmq_n" --port "$zmq_port" --rounds "$rounds"
run 300 "$bin/stall_latency" -n "$stall_n"
run 300 "$bin/inflight_memory" -n "$mem_n"
run 900 "$bin/scale" -n "$scale_n"
run 600 "$bin/isolation" -n "$iso_n"
run 600 "$bin/shards" -n "${BENCH_SHARDS_N:-400000}"
run 300 "$bin/hostile_keys" -n "${BENCH_KEYS_N:-200000}"

echo "== summary (all figures: $csv)"
awk -F, 'NR > 1 && $1 != "task_overhead" {
    printf "%-14s %-22s %-34s %14.2f\n", $1, $2, $3, $4 }' "$csv"

"$here/plot.sh" "$csv"
