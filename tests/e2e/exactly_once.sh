#!/usr/bin/env bash
# Exactly-once delivery on a real broker (configs/exactly_once.yaml): E2E_N (100,000)
# messages with 5,000 keys on 8 partitions, 2% stalling and 1% failing, through a route
# that copies each completed message to an output topic, reroutes stalled ones to a
# stall topic and failed ones (after a retry) to a dead-letter topic. Two instances in
# one group: the first is killed with SIGKILL and restarted twice, the second joins
# midway (a rebalance) and is killed and restarted once; three kills in all, each at a
# moment picked at random within its stretch of the run.
#  1. delivery: exactly_once: read with isolation.level=read_committed, every id is in
#     exactly one of the three topics, exactly once; the group committed every offset.
#  2. The same run with delivery: at_least_once: every id at least once; the
#     duplicates it is allowed are printed.
# E2E_SHARDS runs each instance on that many loops (loop.shards); E2E_MODES picks the
# runs (both by default).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init exactly_once

n="${E2E_N:-100000}"
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start

# Messages settled so far in the three topics (end offsets: aborted writes and
# transaction markers count too, which is close enough to time the kills).
settled_count() { # MODE
  echo $(($(e2e_topic_count "eo-$1.copy") + $(e2e_topic_count "eo-$1.stalled") +
    $(e2e_topic_count "eo-$1.dlq")))
}
wait_settled_share() { # MODE PERCENT
  local t i want=$((n * $2 / 100))
  t=$(e2e_within 240)
  for ((i = 0; i < t * 5; i++)); do
    [ "$(settled_count "$1")" -ge "$want" ] && return 0
    sleep 0.2
  done
  e2e_fail "$1: fewer than $want settled after ${t}s ($(settled_count "$1"))"
}
# A random point between LOW and HIGH percent of the run.
between() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }

run_mode() { # MODE
  local mode="$1" topic="eo-$1" group="eo-$1-group" pa pb
  e2e_topic "$topic" 8
  e2e_topic "$topic.copy" 8
  e2e_topic "$topic.stalled" 8
  e2e_topic "$topic.dlq" 8
  e2e_produce "$topic" "$n" --keys 5000 --stall-ratio 0.02 --fail-ratio 0.01
  pa=$(e2e_free_port)
  pb=$(e2e_free_port)
  e2e_service_env=(KAFKA="$BOOTSTRAP" TL_TOPIC="$topic" TL_GROUP="$group"
    TL_OUT_TOPIC="$topic.copy" TL_STALL_TOPIC="$topic.stalled" TL_DLQ_TOPIC="$topic.dlq"
    TL_DELIVERY="$mode" TL_MAX_IN_FLIGHT="$E2E_MAX_IN_FLIGHT" TL_SHARDS="${E2E_SHARDS:-1}")
  local t0=$(date +%s)
  E2E_CONFIG="$e2e_dir/configs/exactly_once.yaml"
  export E2E_CONFIG
  e2e_service_start "$mode-a" TL_TX_ID="$mode-a" TL_ADMIN="127.0.0.1:$pa"
  wait_settled_share "$mode" "$(between 5 20)"
  e2e_service_kill "$mode-a"
  e2e_service_start "$mode-a" TL_TX_ID="$mode-a" TL_ADMIN="127.0.0.1:$pa"
  wait_settled_share "$mode" 30
  e2e_service_start "$mode-b" TL_TX_ID="$mode-b" TL_ADMIN="127.0.0.1:$pb"
  e2e_log "$mode: a second instance joins the group (rebalance)"
  wait_settled_share "$mode" "$(between 40 60)"
  e2e_service_kill "$mode-a"
  e2e_service_start "$mode-a" TL_TX_ID="$mode-a" TL_ADMIN="127.0.0.1:$pa"
  wait_settled_share "$mode" "$(between 65 85)"
  e2e_service_kill "$mode-b"
  e2e_service_start "$mode-b" TL_TX_ID="$mode-b" TL_ADMIN="127.0.0.1:$pb"
  e2e_wait_committed "$group" "$topic" 240
  e2e_service_stop "$mode-a" 60
  e2e_service_stop "$mode-b" 60
  e2e_log "$mode: $n messages in $(($(date +%s) - t0)) s with three kills and a rebalance"
  local s
  for s in copy stalled dlq; do
    kcat -b "$BOOTSTRAP" -X isolation.level=read_committed -C -t "$topic.$s" -o beginning -e -q \
      -f '%s\n' >"$e2e_work/$mode.$s.txt" 2>"$e2e_work/$mode.$s.err" ||
      e2e_fail "cannot read $topic.$s back: $(head -n 3 "$e2e_work/$mode.$s.err")"
  done
}

# The ids across the three topics: missing ones, and how many times others came.
count_ids() { # MODE EXACT(1|0)
  python3 - "$e2e_work/$1" "$n" "$2" "$1" <<'PY'
import collections, re, sys
base, n, exact, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
seen = collections.Counter()
where = collections.Counter()
for s in ("copy", "stalled", "dlq"):
    for line in open(base + "." + s + ".txt", encoding="utf-8", errors="replace"):
        m = re.search(r"id=(\d+)", line)
        if m:
            seen[int(m.group(1))] += 1
            where[s] += 1
missing = sum(1 for i in range(n) if not seen[i])
dups = sum(c - 1 for c in seen.values() if c > 1)
print("%s: %d ids; copied %d, stalled %d, dead-lettered %d; missing %d, more than once %d"
      % (mode, len(seen), where["copy"], where["stalled"], where["dlq"], missing, dups))
sys.exit(1 if missing or (exact and dups) else 0)
PY
}

modes="${E2E_MODES:-exactly_once at_least_once}"
if [[ " $modes " == *" exactly_once "* ]]; then
  run_mode exactly_once
  count_ids exactly_once 1 || e2e_fail "exactly_once: an id missing or more than once"
  e2e_log "exactly_once: every id exactly once across the copy, stall and dead-letter topics"
fi
if [[ " $modes " == *" at_least_once "* ]]; then
  run_mode at_least_once
  count_ids at_least_once 0 || e2e_fail "at_least_once: an id missing"
  e2e_log "at_least_once: every id at least once (the duplicates above are what it allows)"
fi
e2e_done
