#!/usr/bin/env bash
# taskloop beside the frameworks a user would take instead, on one real broker and one
# pre-filled topic (N messages, 8 partitions, 5,000 keys, from `taskloop produce`): the
# Confluent Parallel Consumer (bench/peers/parallel-consumer), Spring Kafka
# (bench/peers/spring-kafka) and asyncio with aiokafka (bench/peers/aiokafka_consumer.py).
# For each ordering (key, partition, unordered) and each handler cost (noop, a 1 ms
# sleep, 200 us of CPU) each consumer reads the topic from earliest in a new group, with
# 64 at a time (taskloop: 64 workers; Spring Kafka: one thread per partition, the only
# way it scales, so it runs in the partition rows only). Each is timed from the first
# message handled to the last. Prints a table of msgs/s and each peer's ratio to
# taskloop's, then what a plain librdkafka poll loop reads of the same topic and each
# consumer's no-op rows as a share of it (bench/kafka_throughput, when built), writes bench/results/peers.csv and, with gnuplot, bench/results/peers.png.
# A peer that cannot be built (no Maven or Java, Maven Central or PyPI unreachable) is
# skipped with a message.
# Usage: bench/peers.sh BUILD_DIR [BROKER_DIR]
#   BROKER_DIR: a running broker of scripts/kafka-broker.sh; without it one is started
#   on PEERS_KAFKA_PORT (29094) for the run.
# Environment: PEERS_N (100000 messages), PEERS_LIMIT (300 s per run), PEERS_COSTS
# ("noop sleep_ms=1 spin_us=200"), PEERS_ORDERINGS ("key partition unordered"),
# PEERS_ONLY (names of the peers to run: parallel-consumer spring-kafka aiokafka).
set -uo pipefail

build=${1:?usage: bench/peers.sh BUILD_DIR [BROKER_DIR]}
broker_dir=${2:-}
n=${PEERS_N:-100000}
limit=${PEERS_LIMIT:-300}
costs=${PEERS_COSTS:-noop sleep_ms=1 spin_us=200}
orderings=${PEERS_ORDERINGS:-key partition unordered}
only=${PEERS_ONLY:-parallel-consumer spring-kafka aiokafka}
parts=8
keys=5000
concurrency=64
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/timed_run.sh"
taskloop="$build/cmd/taskloop/taskloop"
peers="$here/peers"
venv="$build/peers-venv"
results="$here/results"
csv="$results/peers.csv"
work=$(mktemp -d /tmp/taskloop-peers.XXXXXX)
own_broker=""
cleanup() {
    if [ -n "$own_broker" ]; then
        "$root/scripts/kafka-broker.sh" stop "$own_broker" >/dev/null 2>&1
        rm -rf "$own_broker"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$results"
[ -x "$taskloop" ] || { echo "peers.sh: $taskloop not built" >&2; exit 1; }

# ---------------------------------------------------------------- the peers, built

# Builds one Maven project: offline when the local repository has everything, else online.
build_maven() { # DIR
    command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1 || {
        echo "no mvn or java on PATH (Debian: apt-get install maven default-jdk-headless)"
        return 1
    }
    local goals=(-B -q -ntp -Dstyle.color=never -f "$1/pom.xml" package dependency:copy-dependencies)
    timeout 600 mvn -o "${goals[@]}" >"$work/mvn.log" 2>&1 ||
        timeout 600 mvn "${goals[@]}" >"$work/mvn.log" 2>&1 || {
        grep -m3 ERROR "$work/mvn.log"
        return 1
    }
}

# The aiokafka venv, made once in the build directory.
build_aiokafka() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import aiokafka' 2>/dev/null && return 0
    python3 -m venv "$venv" >"$work/venv.log" 2>&1 &&
        timeout 600 "$venv/bin/pip" install -q aiokafka==0.14.0 >>"$work/venv.log" 2>&1 || {
        tail -n3 "$work/venv.log"
        return 1
    }
}

ready=()
for peer in $only; do
    case $peer in
    parallel-consumer | spring-kafka) out=$(build_maven "$peers/$peer") ;;
    aiokafka) out=$(build_aiokafka) ;;
    *) echo "peers.sh: unknown peer $peer (parallel-consumer, spring-kafka, aiokafka)" >&2; exit 2 ;;
    esac
    if [ $? -eq 0 ]; then ready+=("$peer"); else echo "== $peer: SKIPPED, it could not be built: $out"; fi
done

# ---------------------------------------------------------------- the broker and topic

if [ -z "$broker_dir" ]; then
    own_broker=$(mktemp -d /tmp/taskloop-peers-kafka.XXXXXX)
    broker_dir=$own_broker
    "$root/scripts/kafka-broker.sh" start "$broker_dir" --port "${PEERS_KAFKA_PORT:-29094}" \
        --watch $$ >"$work/broker.log" 2>&1 || {
        echo "peers.sh: the broker did not start: $(tail -n3 "$work/broker.log")" >&2
        exit 1
    }
fi
brokers=$("$root/scripts/kafka-broker.sh" bootstrap "$broker_dir")
topic="peers-$$"
"$root/scripts/kafka-broker.sh" topic "$broker_dir" "$topic" "$parts" >/dev/null 2>&1 &&
    "$taskloop" produce --brokers "$brokers" --to "kafka:$topic" -n "$n" --keys "$keys" \
        --partitions "$parts" >"$work/produce.out" 2>&1 || {
    echo "peers.sh: cannot fill $topic: $(tail -n3 "$work/produce.out")" >&2
    exit 1
}

# ---------------------------------------------------------------- the ceiling

# A plain rd_kafka_consumer_poll loop on the same topic (no framework, no handler;
# kafka_throughput's reference): the most any consumer built on librdkafka reads here,
# so a peer's share of it bounds how far ahead of that peer taskloop can get.
ceiling=""
if [ -x "$build/bench/kafka_throughput" ]; then
    ceiling=$(timeout "$limit" "$build/bench/kafka_throughput" --brokers "$brokers" --topic "$topic" \
        -n "$n" --only plain --rounds 1 2>"$work/plain.err" |
        awk '$1 == "RESULT" && $3 == "plain" && $4 == "msgs_per_s" { printf "%.0f\n", $5 }')
    [ -n "$ceiling" ] || echo "peers.sh: the plain loop did not finish: $(tail -n2 "$work/plain.err")" >&2
else
    echo "== the plain librdkafka loop: SKIPPED, $build/bench/kafka_throughput is not built"
fi

# ---------------------------------------------------------------- one run each

# taskloop run with the work handler; prints msgs/s, or nothing when it did not finish.
run_taskloop() { # ORDERING COST GROUP
    local ordering=$1 params
    [ "$ordering" = unordered ] && ordering=none
    case $2 in
    noop) params='ms: "0"' ;;
    sleep_ms=*) params="ms: \"${2#sleep_ms=}\"" ;;
    spin_us=*) params="ms: \"0\", spin_us: \"${2#spin_us=}\"" ;;
    esac
    cat >"$work/run.yaml" <<YAML
service: peers
loop: { workers: $concurrency }
sources:
  in:
    type: kafka
    brokers: "$brokers"
    group: $3
    topics: [$topic]
    kafka: { auto.offset.reset: earliest }
routes:
  - source: in
    handler: work
    ordering: $ordering
    timeout: 30s
    params: { $params }
log: { level: warn }
YAML
    local span rc=0
    span=$(timed_run "$taskloop" "$work/run.yaml" "$n" "$limit" "$work/run.err") || rc=$?
    if [ -z "$span" ]; then
        echo "taskloop $1 $2: did not finish (exit status $rc): $(tail -n2 "$work/run.err")" >&2
        return
    fi
    awk -v n="$n" -v s="$span" 'BEGIN { printf "%.0f\n", n / s }'
}

# One peer program; prints msgs/s from its RESULT line, or nothing when it failed.
run_peer() { # PEER ORDERING COST GROUP
    local cmd
    case $1 in
    parallel-consumer)
        cmd=(java -cp "$peers/$1/target/classes:$peers/$1/target/dependency/*"
            taskloop.bench.ParallelConsumerPeer "$brokers" "$topic" "$4" "$n" "$3" "$concurrency" "$2") ;;
    spring-kafka)
        cmd=(java -cp "$peers/$1/target/classes:$peers/$1/target/dependency/*"
            taskloop.bench.SpringKafkaPeer "$brokers" "$topic" "$4" "$n" "$3" "$parts") ;;
    aiokafka)
        cmd=("$venv/bin/python" "$peers/aiokafka_consumer.py" "$brokers" "$topic" "$4" "$n" "$3"
            "$concurrency" "$2") ;;
    esac
    local rc=0
    timeout --kill-after=10 "$limit" "${cmd[@]}" >"$work/peer.out" 2>"$work/peer.err" || rc=$?
    local rate
    rate=$(awk '/^RESULT peer/ { print $7 }' "$work/peer.out")
    if [ -z "$rate" ]; then
        echo "$1 $2 $3: did not finish (exit status $rc$([ $rc -eq 124 ] && echo ': time limit reached')): $(tail -n2 "$work/peer.err")" >&2
        return
    fi
    echo "$rate"
}

# ---------------------------------------------------------------- the table

all=(parallel-consumer spring-kafka aiokafka)
echo "peers: $n messages, $parts partitions, $keys keys, concurrency $concurrency, broker $brokers"
echo "each peer: msgs/s and (its msgs/s / taskloop's); '-' not run or did not finish"
header="ordering,cost,taskloop"
for p in "${all[@]}"; do header+=",$p,$p/taskloop"; done
echo "$header" >"$csv"
printf "%-10s %-13s %10s" ordering cost taskloop
for p in "${all[@]}"; do printf " %18s %6s" "$p" ratio; done
echo
cell=0
noop_rows=()
for ordering in $orderings; do
    for cost in $costs; do
        cell=$((cell + 1))
        tl=$(run_taskloop "$ordering" "$cost" "peers-tl-$cell-$$")
        row="$ordering,$cost,${tl:-}"
        printf "%-10s %-13s %10s" "$ordering" "$cost" "${tl:--}"
        for p in "${all[@]}"; do
            rate=""
            if [[ " ${ready[*]} " == *" $p "* ]] && { [ "$p" != spring-kafka ] || [ "$ordering" = partition ]; }; then
                rate=$(run_peer "$p" "$ordering" "$cost" "peers-$p-$cell-$$")
            fi
            ratio=""
            [ -n "$rate" ] && [ -n "$tl" ] && ratio=$(awk -v a="$rate" -v b="$tl" 'BEGIN { printf "%.2f", a / b }')
            printf " %18s %6s" "${rate:--}" "${ratio:--}"
            row+=",$rate,$ratio"
        done
        echo
        echo "$row" >>"$csv"
        [ "$cost" = noop ] && noop_rows+=("$row")
    done
done
if [ -n "$ceiling" ]; then
    echo "the plain librdkafka poll loop on this topic: $ceiling msgs/s; no-op rows as a share of it:"
    for row in "${noop_rows[@]}"; do
        IFS=, read -r -a f <<<"$row"
        line=$(printf "  %-10s taskloop %s" "${f[0]}" \
            "$(awk -v a="${f[2]:-}" -v c="$ceiling" 'BEGIN { print a == "" ? "-" : sprintf("%.0f%%", 100 * a / c) }')")
        for k in "${!all[@]}"; do
            rate=${f[$((3 + 2 * k))]:-}
            [ -n "$rate" ] && line+=$(awk -v p="${all[$k]}" -v a="$rate" -v c="$ceiling" \
                'BEGIN { printf ", %s %.0f%%", p, 100 * a / c }')
        done
        echo "$line"
    done
    echo "RESULT peers plain_librdkafka msgs_per_s $ceiling"
fi
echo "figures: $csv"

if command -v gnuplot >/dev/null 2>&1; then
    awk -F, 'NR > 1 { printf "\"%s %s\" %s %s %s %s\n", $1, $2, ($3 == "" ? "-" : $3),
        ($4 == "" ? "-" : $4), ($6 == "" ? "-" : $6), ($8 == "" ? "-" : $8) }' "$csv" >"$work/peers.dat"
    gnuplot <<GP 2>"$work/gnuplot.err" && echo "plot: $results/peers.png" || echo "plot: gnuplot failed: $(head -n2 "$work/gnuplot.err")"
set terminal pngcairo size 1200,600 noenhanced
set output "$results/peers.png"
set title "msgs/s, $n messages, $parts partitions, concurrency $concurrency (higher is better)"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.7
set logscale y
set yrange [100:*]
set xtics rotate by -30 font ",8"
set key top right
plot "$work/peers.dat" using 2:xtic(1) title "taskloop", '' using 3 title "parallel-consumer", \
     '' using 4 title "spring-kafka", '' using 5 title "aiokafka"
GP
else
    echo "plot: skipped (gnuplot is not installed; apt-get install gnuplot-nox for a PNG)"
fi
