#!/usr/bin/env bash
# Scenario 3, rebalance: a second instance joins the group mid-run and later leaves
# with SIGTERM; it must drain, commit and exit 0, and no id may be lost.
#   rebalance.sh eager          partition.assignment.strategy range,roundrobin
#   rebalance.sh cooperative    cooperative-sticky (incremental rebalances)
# A clean handover repeats nothing: no duplicates are allowed (E2E_MAX_DUP, default 0).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mode="${1:-eager}"
case "$mode" in
  eager) strategy="range,roundrobin" ;;
  cooperative) strategy="cooperative-sticky" ;;
  *) echo "usage: $0 eager|cooperative" >&2; exit 2 ;;
esac
e2e_init "rebalance-$mode"

n="${E2E_N:-30000}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group="orders-rebalance-$mode"
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2
e2e_produce "$topic" "$n" --partitions 8 --keys 1000 --stall-ratio 0.02 --fail-ratio "${E2E_FAIL_RATIO:-0.01}"

e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
t_run=$(date +%s)
e2e_service_start a TL_RETRIES="$retries" TL_ASSIGNMENT="$strategy"
e2e_wait_consuming $((n / 10)) 60
e2e_log "b joins after $(e2e_completed) completions"
e2e_service_start b TL_RETRIES="$retries" TL_ASSIGNMENT="$strategy"
# Let b take partitions and work on them for a while.
for ((i = 0; i < 300; i++)); do
  [ -s "$e2e_work/record-b.txt" ] && break
  sleep 0.1
done
[ -s "$e2e_work/record-b.txt" ] || e2e_fail "b completed nothing within 30 s of joining"
sleep "${E2E_B_SECONDS:-6}"
completed_b=$(wc -l <"$e2e_work/record-b.txt")
e2e_log "b leaves (SIGTERM) after $completed_b completions"
e2e_service_stop b 60
grep -q '^check: .*: ok' "$e2e_work/svc-b.out" ||
  e2e_fail "b's summary does not add up: $(grep '^check' "$e2e_work/svc-b.out")"
grep -qE '^  in_flight +0$' "$e2e_work/svc-b.out" || e2e_fail "b left with messages in flight"
grep -A 20 'committed offsets' "$e2e_work/svc-b.out" | grep -E 'orders\[' >&2 || true

e2e_wait_settled "$n" "$stall" "$dlq" 300
e2e_wait_committed "$group" "$topic" 60
e2e_service_stop a 60
e2e_log "consumed $n messages through 2 rebalances in $(($(date +%s) - t_run)) s"

e2e_verify "$topic" "$stall" "$dlq" "$retries" 0
e2e_done
