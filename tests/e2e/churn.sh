#!/usr/bin/env bash
# Scenario: rebalance churn. A long-lived instance a; a second instance b joins, works
# a few seconds and leaves, E2E_CYCLES times (10) during E2E_N (100,000) messages with
# stalls and failures in flight. No id may be lost.
#   churn.sh eager|cooperative [term|kill]
# term (default): b leaves with SIGTERM each time, a clean handover: no duplicates at
#   all (E2E_MAX_DUP, default 0).
# kill: b is killed with SIGKILL every other cycle. What a crash repeats is printed per
#   crash (the ids b completed that another instance completed too) and must stay
#   under max_in_flight (E2E_MAX_IN_FLIGHT, times E2E_SHARDS, as each shard has its
#   own window): b had that many in flight at most, and
#   what it settled since its last acknowledged commit (one 50 ms auto-commit
#   interval and its round trip) is well under it. The clean cycles repeat nothing.
#   The run as a whole stays within e2e_dup_allowance per crash.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mode="${1:-cooperative}"
leave="${2:-term}"
case "$mode" in
  eager) strategy="range,roundrobin" ;;
  cooperative) strategy="cooperative-sticky" ;;
  *) echo "usage: $0 eager|cooperative [term|kill]" >&2; exit 2 ;;
esac
case "$leave" in
  term | kill) ;;
  *) echo "usage: $0 eager|cooperative [term|kill]" >&2; exit 2 ;;
esac
e2e_init "churn-$mode-$leave"

n="${E2E_N:-100000}"
cycles="${E2E_CYCLES:-10}"
# 4 ms a message: the backlog lasts through every cycle, so that each b takes work over.
work_ms="${E2E_WORK_MS:-4}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group="orders-churn-$mode-$leave"
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2
e2e_produce "$topic" "$n" --partitions 8 --keys 2000 --stall-ratio 0.01 --fail-ratio 0.005

e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
t_run=$(date +%s)
e2e_service_start a TL_RETRIES="$retries" TL_ASSIGNMENT="$strategy" TL_WORK_MS="$work_ms"
e2e_wait_consuming $((n / 20)) 60
crashes=0
for ((c = 1; c <= cycles; c++)); do
  e2e_service_start "b$c" TL_RETRIES="$retries" TL_ASSIGNMENT="$strategy" TL_WORK_MS="$work_ms"
  sleep "$((3 + c % 4))"
  if [ "$leave" = kill ] && ((c % 2 == 0)); then
    e2e_log "cycle $c: b crashes (SIGKILL) after $(e2e_completed) completions in all"
    e2e_service_kill "b$c"
    crashes=$((crashes + 1))
    echo "b$c" >>"$e2e_work/crashed.txt"
  else
    e2e_log "cycle $c: b leaves (SIGTERM) after $(e2e_completed) completions in all"
    e2e_service_stop "b$c" 60
    grep -q '^check: .*: ok' "$e2e_work/svc-b$c.out" ||
      e2e_fail "b$c's summary does not add up: $(grep '^check' "$e2e_work/svc-b$c.out")"
  fi
  sleep 1
done

e2e_wait_settled "$n" "$stall" "$dlq" 600
e2e_wait_committed "$group" "$topic" 60
e2e_service_stop a 60
e2e_log "consumed $n messages through $((2 * cycles)) rebalances in $(($(date +%s) - t_run)) s"

# Per cycle: the ids b completed that another instance completed too.
# Each shard has a window of its own (loop.shards): b had shards x max_in_flight at most.
per_crash=$((E2E_MAX_IN_FLIGHT * ${E2E_SHARDS:-1}))
python3 - "$e2e_work" "$cycles" "$per_crash" <<'PY' || e2e_fail "a handover repeated more than allowed"
import os, sys
work, cycles, bound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def ids(name):
    path = os.path.join(work, "record-%s.txt" % name)
    return set(open(path).read().split()) if os.path.exists(path) else set()
crashed = set(open(os.path.join(work, "crashed.txt")).read().split()) \
    if os.path.exists(os.path.join(work, "crashed.txt")) else set()
names = ["a"] + ["b%d" % c for c in range(1, cycles + 1)]
sets = {n: ids(n) for n in names}
bad = False
by_crash = set().union(*(sets[m] for m in crashed if m in sets))
for n in names[1:]:
    others = set().union(*(sets[m] for m in names if m != n))
    repeated = sets[n] & others
    # A clean leaver's work done again because another member crashed is that crash's.
    repeated = len(repeated if n in crashed else repeated - by_crash)
    how = "SIGKILL" if n in crashed else "SIGTERM"
    limit = bound if n in crashed else 0
    print("churn: %s left by %s: completed %d, repeated elsewhere %d (at most %d)"
          % (n, how, len(sets[n]), repeated, limit))
    bad |= repeated > limit
sys.exit(1 if bad else 0)
PY
e2e_verify "$topic" "$stall" "$dlq" "$retries" "${E2E_MAX_DUP:-$(e2e_dup_allowance "$crashes")}"
e2e_done
