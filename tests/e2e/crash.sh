#!/usr/bin/env bash
# Scenario 2, crashes: the service is killed with SIGKILL at E2E_CRASHES (default 3)
# random moments of a run and started again each time. No id may be lost; duplicates
# (work done again after a crash) must stay within e2e_dup_allowance per crash.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init crash

n="${E2E_N:-30000}"
crashes="${E2E_CRASHES:-3}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group=orders-crash
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2
e2e_produce "$topic" "$n" --partitions 8 --keys 1000 --stall-ratio 0.02 --fail-ratio "${E2E_FAIL_RATIO:-0.01}"

e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
t_run=$(date +%s)
for k in $(seq 1 "$crashes"); do
  e2e_service_start "run$k" TL_RETRIES="$retries"
  # Wait for the first completions of this run, then a random 1.0-4.9 s more.
  before=$({ cat "$e2e_work"/record-*.txt 2>/dev/null || true; } | wc -l)
  e2e_wait_consuming $((before + 1)) 60
  sleep "$((1 + RANDOM % 4)).$((RANDOM % 10))"
  e2e_service_alive "run$k" || e2e_fail "service run$k exited before it was killed"
  e2e_log "crash $k of $crashes: completed so far $(e2e_completed) unique ids"
  e2e_service_kill "run$k"
done
e2e_service_start final TL_RETRIES="$retries"
e2e_wait_settled "$n" "$stall" "$dlq" 300
e2e_wait_committed "$group" "$topic" 60
e2e_service_stop final 60
e2e_log "consumed $n messages through $crashes crashes in $(($(date +%s) - t_run)) s"

e2e_verify "$topic" "$stall" "$dlq" "$retries" "$(e2e_dup_allowance "$crashes")"
e2e_done
