# Common parts of the end-to-end scenarios (sourced, not run). Each scenario:
#   e2e_init NAME                     work dir, cleanup trap, the taskloop binary
#   e2e_broker_start [--nodes 3] [--sasl-ssl USER] [KEY=VALUE broker properties...]
#   e2e_topic NAME PARTITIONS [RF]
#   e2e_produce TOPIC N [produce options]
#   e2e_service_start ID [VAR=VALUE...]  config/compose.yaml as a local process
#   e2e_wait_settled N STALL_TOPIC DLQ_TOPIC [TIMEOUT_S]
#   e2e_service_stop ID | e2e_service_kill ID
#   e2e_verify ...                    tests/e2e/verify.py over every output
# Everything lives in one work dir under $TMPDIR, kept when the scenario fails.
#
# Environment: TASKLOOP (the program; else the usual build dirs are searched),
# E2E_KAFKA_PORT (broker base port; default: the first free of 24092, 24292, ...), E2E_KEEP=1
# (keep the work dir), E2E_MAX_DUP (override the duplicates a scenario allows), E2E_BUDGET
# (seconds the scenario's waits may take in all; ctest sets it 30 s below its timeout).

set -euo pipefail

e2e_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
e2e_dir="$e2e_root/tests/e2e"
e2e_broker="$e2e_root/scripts/kafka-broker.sh"
e2e_config="$e2e_root/config/compose.yaml"
declare -A e2e_pids=()
e2e_extra_pids=()
e2e_cluster=""
BOOTSTRAP=""
SASL_BOOTSTRAP=""
KAFKA_CA=""

e2e_log() { echo "[$e2e_name $(date +%T)] $*" >&2; }
e2e_fail() {
  echo "[$e2e_name] FAIL: $*" >&2
  exit 1
}

e2e_find_taskloop() {
  if [ -n "${TASKLOOP:-}" ]; then
    [ -x "$TASKLOOP" ] || e2e_fail "TASKLOOP=$TASKLOOP is not an executable"
    return
  fi
  local c
  for c in "$e2e_root"/build/cmd/taskloop/taskloop "$e2e_root"/build*/cmd/taskloop/taskloop; do
    if [ -x "$c" ]; then
      TASKLOOP="$c"
      return
    fi
  done
  e2e_fail "no taskloop program found: build it (make) or set TASKLOOP"
}

# On failure, what every live service says of itself: its counters from /metrics
# (histogram buckets left out) and the start of /tasks.
e2e_dump_services() {
  local id port
  for id in "${!e2e_pids[@]}"; do
    kill -0 "${e2e_pids[$id]}" 2>/dev/null || {
      echo "--- service $id is not running ---" >&2
      continue
    }
    port="$(sed -n 's/.*event=admin_listening .*port=\([0-9]*\).*/\1/p' "$e2e_work/svc-$id.log" | tail -n1)"
    [ -n "$port" ] || continue
    echo "--- service $id (pid ${e2e_pids[$id]}), /metrics ---" >&2
    curl -s -m 3 "http://127.0.0.1:$port/metrics" | grep -v -e '^#' -e '_bucket{' >&2 || true
    echo "--- service $id, /tasks (first 600 characters) ---" >&2
    curl -s -m 3 "http://127.0.0.1:$port/tasks" | head -c 600 >&2 || true
    echo >&2
  done
}

e2e_cleanup() {
  local rc=$? id pid
  trap - EXIT
  [ "$rc" -eq 0 ] || e2e_dump_services
  for id in "${!e2e_pids[@]}"; do
    pid="${e2e_pids[$id]}"
    kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "${e2e_extra_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$e2e_cluster" ]; then "$e2e_broker" stop "$e2e_cluster" >/dev/null 2>&1 || true; fi
  if [ "$rc" -ne 0 ]; then
    local f
    for f in "$e2e_work"/svc-*.log; do
      [ -f "$f" ] || continue
      echo "--- last lines of $f ---" >&2
      tail -n 25 "$f" >&2
    done
    echo "[$e2e_name] FAILED after $(($(date +%s) - e2e_t0)) s; work dir kept: $e2e_work" >&2
  elif [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "[$e2e_name] work dir kept: $e2e_work" >&2
  else
    rm -rf "$e2e_work"
  fi
  exit "$rc"
}

e2e_init() { # NAME
  e2e_name="$1"
  e2e_t0=$(date +%s)
  e2e_find_taskloop
  command -v kcat >/dev/null || e2e_fail "kcat is needed (scripts/install-deps.sh)"
  command -v python3 >/dev/null || e2e_fail "python3 is needed"
  e2e_work="$(mktemp -d "${TMPDIR:-/tmp}/taskloop-e2e-$e2e_name.XXXXXX")"
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
  e2e_log "taskloop: $TASKLOOP; work dir: $e2e_work"
}

# ---- the broker ----------------------------------------------------------------------

e2e_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free TCP port on 127.0.0.1 (for an admin endpoint or a ZeroMQ socket), below
# Linux's ephemeral range, where another test's client connections may sit unseen.
e2e_free_port() {
  local p
  for ((p = 20000 + RANDOM % 12000; ; p++)); do
    e2e_port_open "$p" || { echo "$p"; return; }
  done
}

# A base port whose client (BASE..BASE+2), controller (BASE+100..) and SASL_SSL
# (BASE+200..) ports are all free: E2E_KAFKA_PORT when set, else the first free one of a few candidates, so that a
# broker someone else runs on the machine does not get in the way.
e2e_free_base() {
  local b p busy
  for b in ${E2E_KAFKA_PORT:-24092 24292 24492 24692 24892 25092}; do
    busy=0
    for p in $b $((b + 1)) $((b + 2)) $((b + 100)) $((b + 101)) $((b + 102)) $((b + 200)) $((b + 201)) $((b + 202)); do
      if e2e_port_open "$p"; then busy=1; break; fi
    done
    if [ "$busy" -eq 0 ]; then
      echo "$b"
      return
    fi
  done
  e2e_fail "no free port range for the broker (set E2E_KAFKA_PORT)"
}

# Starts a cluster in the work dir; extra KEY=VALUE arguments become broker properties.
# --sasl-ssl USER adds the SASL_SSL listener (its servers in SASL_BOOTSTRAP, the CA in
# KAFKA_CA) with the SCRAM-SHA-512 user USER, whose password is $KAFKA_SASL_PASSWORD.
e2e_broker_start() { # [--nodes N] [--sasl-ssl USER] [KEY=VALUE...]
  local nodes=1 props=() sasl=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="$2"; shift 2 ;;
      --sasl-ssl) sasl=(--sasl-ssl "$2"); shift 2 ;;
      *=*) props+=("$1"); shift ;;
      *) e2e_fail "e2e_broker_start: bad argument $1" ;;
    esac
  done
  e2e_cluster="$e2e_work/cluster"
  local t=$(date +%s) extra="" base
  # A command substitution's e2e_fail only ends that subshell: stop here as well.
  base="$(e2e_free_base)" || exit 1
  [ ${#props[@]} -eq 0 ] || extra="$(printf '%s\n' "${props[@]}")"
  BOOTSTRAP="$(KAFKA_EXTRA_PROPERTIES="$extra" "$e2e_broker" start "$e2e_cluster" --nodes "$nodes" \
    --port "$base" --watch $$ "${sasl[@]}" | tail -n1)"
  [[ "$BOOTSTRAP" == 127.0.0.1:* ]] || e2e_fail "the broker did not start"
  if [ ${#sasl[@]} -gt 0 ]; then
    SASL_BOOTSTRAP="$("$e2e_broker" sasl-bootstrap "$e2e_cluster")"
    KAFKA_CA="$e2e_cluster/tls/ca.pem"
    e2e_log "SASL_SSL listener at $SASL_BOOTSTRAP (CA $KAFKA_CA)"
  fi
  e2e_log "Kafka ($nodes node(s)) up at $BOOTSTRAP after $(($(date +%s) - t)) s"
}

e2e_topic() { # NAME PARTITIONS [RF]
  "$e2e_broker" topic "$e2e_cluster" "$@" 2>/dev/null || e2e_fail "cannot create topic $1"
}

# Runs a Kafka tool class from the broker's classpath (quiet logging).
e2e_kafka_tool() { # CLASS ARGS...
  local cp
  cp="$("$e2e_broker" classpath 2>/dev/null | tail -n1)"
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j.configuration="file:$e2e_root/scripts/kafka/log4j.properties" -Dtaskloop.log.level=WARN \
    -cp "$(cat "$cp")" "$@"
}

# Prints the total lag of a group (end offsets minus committed, summed over the topic's
# partitions; a partition without a committed offset counts its whole length).
e2e_group_lag() { # GROUP TOPIC
  local out
  out="$(e2e_kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$BOOTSTRAP" --describe --group "$1" 2>&1)" || true
  echo "$out" >"$e2e_work/group-$1.txt"
  echo "$out" | awk -v t="$2" '
    $2 == t && $3 ~ /^[0-9]+$/ { parts++; lag += ($4 ~ /^[0-9]+$/ ? $6 : $5) }
    END { if (parts == 0) print "unknown"; else print lag }'
}

# The sum of a topic's end offsets (how many messages it holds), 0 when it does not exist.
e2e_topic_count() { # TOPIC
  local parts args=() p
  parts="$(kcat -b "$BOOTSTRAP" -L -t "$1" -m 5 2>/dev/null |
    sed -n 's/^ *partition \([0-9]*\),.*/\1/p' || true)"
  for p in $parts; do args+=(-t "$1:$p:-1"); done
  if [ ${#args[@]} -eq 0 ]; then
    echo 0
    return
  fi
  { kcat -b "$BOOTSTRAP" -Q -m 5 "${args[@]}" 2>/dev/null || true; } |
    awk '$3 == "offset" && $4 ~ /^[0-9]+$/ { s += $4 } END { print s + 0 }'
}

# Reads a whole topic into FILE, one 'headers<TAB>payload' line per message.
e2e_dump() { # TOPIC FILE [FORMAT]
  local fmt="${3:-%h\t%s\n}"
  : >"$2"
  [ "$(e2e_topic_count "$1")" -gt 0 ] || return 0
  kcat -b "$BOOTSTRAP" -C -t "$1" -o beginning -e -q -f "$fmt" >"$2" 2>"$2.err" ||
    e2e_fail "cannot read topic $1 back: $(head -n 3 "$2.err")"
}

# ---- load and service ------------------------------------------------------------------

e2e_produce() { # TOPIC N [options...]
  local topic="$1" n="$2"
  shift 2
  local t=$(date +%s)
  "$TASKLOOP" produce --to "kafka:$topic" --brokers "$BOOTSTRAP" -n "$n" "$@" \
    >>"$e2e_work/produce.log" 2>&1 || {
    tail -n 5 "$e2e_work/produce.log" >&2
    e2e_fail "taskloop produce failed"
  }
  e2e_log "produced: $(tail -n1 "$e2e_work/produce.log") [$(($(date +%s) - t)) s]"
}

# Environment of the service: config/compose.yaml pointed at the local broker.
e2e_service_env=()
e2e_service_defaults() { # TOPIC GROUP STALL DLQ
  e2e_service_env=(KAFKA="$BOOTSTRAP" TL_TOPIC="$1" TL_GROUP="$2" TL_STALL_TOPIC="$3"
    TL_DLQ_TOPIC="$4" TL_ADMIN=127.0.0.1:0 TL_WORKERS="${E2E_WORKERS:-8}" TL_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"
    TL_SHARDS="${E2E_SHARDS:-1}")
}

# Starts `taskloop run` of the compose config as instance ID, recording into
# $e2e_work/record-ID.txt; extra VAR=VALUE arguments override the environment.
e2e_service_start() { # ID [VAR=VALUE...]
  local id="$1"
  shift
  env "${e2e_service_env[@]}" TL_RECORD="$e2e_work/record-$id.txt" "$@" \
    "$TASKLOOP" run "${E2E_CONFIG:-$e2e_config}" --no-progress \
    >>"$e2e_work/svc-$id.out" 2>>"$e2e_work/svc-$id.log" &
  e2e_pids[$id]=$!
  e2e_log "service $id started (pid ${e2e_pids[$id]})"
}

e2e_service_alive() { kill -0 "${e2e_pids[$1]}" 2>/dev/null; }

# SIGTERM: drain and commit; fails when it takes longer than TIMEOUT_S or exits non-zero.
e2e_service_stop() { # ID [TIMEOUT_S]
  local id="$1" t="${2:-60}" pid="${e2e_pids[$1]}" i rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && e2e_fail "service $id did not stop within ${t}s of SIGTERM"
  wait "$pid" || rc=$?
  unset "e2e_pids[$id]"
  [ "$rc" -eq 0 ] || e2e_fail "service $id exited with status $rc after SIGTERM"
  e2e_log "service $id drained and stopped"
}

e2e_service_kill() { # ID
  local pid="${e2e_pids[$1]}"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "e2e_pids[$1]"
  e2e_log "service $1 killed (-9)"
}

# TIMEOUT_S, or less when E2E_BUDGET (seconds for the whole scenario, set below the
# test runner's own timeout) would run out first: a scenario that hangs then fails by
# itself, with its diagnostics, instead of being killed without a word.
e2e_within() { # TIMEOUT_S
  local left=$((${E2E_BUDGET:-100000} - ($(date +%s) - e2e_t0)))
  [ "$left" -gt 1 ] || left=1
  echo $(($1 < left ? $1 : left))
}

# Unique ids completed so far, over every record file of the work dir.
e2e_completed() {
  { cat "$e2e_work"/record-*.txt 2>/dev/null || true; } | sort -u | wc -l
}

# Waits until completed + rerouted reaches N (every id settled once at least).
e2e_wait_settled() { # N STALL DLQ [TIMEOUT_S]
  local n="$1" stall="$2" dlq="$3" t start=$(date +%s) c s d last=""
  t=$(e2e_within "${4:-300}")
  while :; do
    c=$(e2e_completed)
    s=$(e2e_topic_count "$stall")
    d=$(e2e_topic_count "$dlq")
    if [ $((c + s + d)) -ge "$n" ]; then
      e2e_log "settled: completed $c + stalled $s + dlq $d >= $n after $(($(date +%s) - start)) s"
      return 0
    fi
    if [ "$(($(date +%s) - start))" -ge "$t" ]; then
      e2e_fail "only completed $c + stalled $s + dlq $d of $n after ${t}s"
    fi
    local now="completed $c stalled $s dlq $d"
    if [ "$now" != "$last" ] && [ $(($(date +%s) % 10)) -lt 2 ]; then e2e_log "progress: $now"; fi
    last="$now"
    sleep 1
  done
}

# Waits until the service's own counters show it consumed something (its first batch).
e2e_wait_consuming() { # MIN_COMPLETED [TIMEOUT_S]
  local want="$1" t i
  t=$(e2e_within "${2:-60}")
  for ((i = 0; i < t * 10; i++)); do
    [ "$({ cat "$e2e_work"/record-*.txt 2>/dev/null || true; } | wc -l)" -ge "$want" ] && return 0
    sleep 0.1
  done
  e2e_fail "fewer than $want messages completed after ${t}s"
}

# Waits until the group has no lag on TOPIC (everything committed).
e2e_wait_committed() { # GROUP TOPIC [TIMEOUT_S]
  local t start=$(date +%s) lag
  t=$(e2e_within "${3:-60}")
  while :; do
    lag="$(e2e_group_lag "$1" "$2")"
    if [ "$lag" = 0 ]; then
      e2e_log "group $1 committed every offset of $2 (lag 0)"
      return 0
    fi
    [ "$(($(date +%s) - start))" -lt "$t" ] ||
      e2e_fail "group $1 still has lag '$lag' on $2 after ${t}s: $(cat "$e2e_work/group-$1.txt")"
    sleep 2
  done
}

# Reads the input and both reroute topics back and runs verify.py over everything.
# Duplicates a scenario may see after EVENTS crashes or outages: each redoes at most
# what was not yet committed: max_in_flight, plus what settled since the last
# acknowledged commit (50 ms commits, 250 ms before overdue acknowledgements stop
# intake; E2E_COMMIT_WINDOW allows 500 messages for it). Both are a shard's: each
# shard keeps its own window and follows its own partitions' acknowledgements.
e2e_dup_allowance() { # EVENTS
    echo $(($1 * ${E2E_SHARDS:-1} * (E2E_MAX_IN_FLIGHT + ${E2E_COMMIT_WINDOW:-500})))
}

e2e_verify() { # TOPIC STALL DLQ RETRIES MAX_DUP
  e2e_dump "$1" "$e2e_work/input.txt" '%p\t%o\t%s\n'
  e2e_dump "$2" "$e2e_work/stalled.txt"
  e2e_dump "$3" "$e2e_work/dlq.txt"
  local records=() f
  for f in "$e2e_work"/record-*.txt; do [ -f "$f" ] && records+=(--record "$f"); done
  python3 "$e2e_dir/verify.py" --label "$e2e_name" --input "$e2e_work/input.txt" \
    "${records[@]}" --stalled "$e2e_work/stalled.txt" --dlq "$e2e_work/dlq.txt" \
    --retries "$4" --origin "$1" --max-dup "${E2E_MAX_DUP:-$5}"
}

e2e_done() {
  e2e_log "PASS in $(($(date +%s) - e2e_t0)) s"
}
