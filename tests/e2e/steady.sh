#!/usr/bin/env bash
# Scenario 1, steady run: the compose topology (config/compose.yaml) as a local process
# against a real broker. E2E_N messages (default 100000) over 8 partitions, 2% marked
# stall and 1% fail, 1000 keys. Every id must be completed, on the stall topic (tl-reason
# stalled) or on the DLQ after its retries (tl-attempt = retries + 1); the group must
# commit every offset, and a SIGTERM must drain and exit 0. The compose deployment's
# checker (check_deployment.sh) runs against the live service first.
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
admin_port=$(e2e_free_port)
e2e_service_start a TL_RETRIES="$retries" TL_ADMIN="127.0.0.1:$admin_port"
t_run=$(date +%s)
e2e_produce "$topic" "$n" --partitions 8 --keys 1000 --stall-ratio 0.02 --fail-ratio "${E2E_FAIL_RATIO:-0.01}"
# The compose deployment's checker, run against this local service.
KAFKA="$BOOTSTRAP" E2E_N="$n" TL_TOPIC="$topic" TL_STALL_TOPIC="$stall" TL_DLQ_TOPIC="$dlq" \
  TL_RETRIES="$retries" RECORD="$e2e_work/record-a.txt" ADMIN_URL="http://127.0.0.1:$admin_port" \
  CHECK_TIMEOUT="${E2E_SETTLE_TIMEOUT:-600}" TASKLOOP="$TASKLOOP" "$e2e_dir/check_deployment.sh" ||
  e2e_fail "the deployment checker failed"
e2e_wait_committed "$group" "$topic" 60
e2e_log "consumed and committed $n messages in $(($(date +%s) - t_run)) s"
e2e_service_stop a 60
grep -E '^  (consumed|completed|rerouted|stalled|failed|retries|late) ' "$e2e_work/svc-a.out" >&2 || true
lag="$(e2e_group_lag "$group" "$topic")"
[ "$lag" = 0 ] || e2e_fail "lag $lag after the drain"

e2e_verify "$topic" "$stall" "$dlq" "$retries" 0
e2e_done
