#!/usr/bin/env bash
# Scenario 1, steady run: the compose topology (config/compose.yaml) as a local process
# against a real broker. E2E_N messages (default 100000) over 8 partitions, 2% marked
# stall and 1% fail, 1000 keys. Every id must be completed, on the stall topic (tl-reason
# stalled) or on the DLQ after its retries (tl-attempt = retries + 1); the group must
# commit every offset, and a SIGTERM must drain and exit 0.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init steady

n="${E2E_N:-100000}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group=orders-e2e

e2e_broker_start
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2

e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
e2e_service_start a TL_RETRIES="$retries"
t_run=$(date +%s)
e2e_produce "$topic" "$n" --partitions 8 --keys 1000 --stall-ratio 0.02 --fail-ratio "${E2E_FAIL_RATIO:-0.01}"
e2e_wait_settled "$n" "$stall" "$dlq" "${E2E_SETTLE_TIMEOUT:-600}"
e2e_wait_committed "$group" "$topic" 60
e2e_log "consumed and committed $n messages in $(($(date +%s) - t_run)) s"
e2e_service_stop a 60
grep -E '^  (consumed|completed|rerouted|stalled|failed|retries|late) ' "$e2e_work/svc-a.out" >&2 || true
lag="$(e2e_group_lag "$group" "$topic")"
[ "$lag" = 0 ] || e2e_fail "lag $lag after the drain"

e2e_verify "$topic" "$stall" "$dlq" "$retries" 0
e2e_done
