#!/usr/bin/env bash
# Scenario 4, the broker goes away mid-run; the service must keep going and lose nothing.
#   broker.sh restart   one node: stopped for E2E_DOWN_SECONDS (8), then started again
#   broker.sh loss      three nodes, replication factor 3: a node leading an input
#                       partition, not the group's coordinator, is killed (-9) and
#                       stays down until the end
# Duplicates are allowed up to e2e_dup_allowance 1 (work done again if commits were lost).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mode="${1:-restart}"
case "$mode" in
  restart) nodes=1 ;;
  loss) nodes=3 ;;
  *) echo "usage: $0 restart|loss" >&2; exit 2 ;;
esac
e2e_init "broker-$mode"

n="${E2E_N:-30000}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group="orders-broker-$mode"
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start --nodes "$nodes"
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2
e2e_produce "$topic" "$n" --partitions 8 --keys 1000 --stall-ratio 0.02 --fail-ratio "${E2E_FAIL_RATIO:-0.01}"

e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
t_run=$(date +%s)
e2e_service_start a TL_RETRIES="$retries"
e2e_wait_consuming $((n / 5)) 60
if [ "$mode" = restart ]; then
  e2e_log "stopping the broker after $(e2e_completed) completions"
  "$e2e_broker" stop "$e2e_cluster" 2>/dev/null
  down_at=$(e2e_completed)
  sleep "${E2E_DOWN_SECONDS:-8}"
  e2e_service_alive a || e2e_fail "the service exited while the broker was down"
  e2e_log "starting the broker again ($(($(e2e_completed) - down_at)) completions while it was down)"
  "$e2e_broker" start "$e2e_cluster" --watch $$ >/dev/null 2>&1 || e2e_fail "the broker did not come back"
else
  # A node leading a partition of the input topic: losing it forces a leader change.
  # Not the group's coordinator: no commit lands until the controller fences a dead
  # coordinator (broker.session.timeout.ms, 9 s), so everything settled meanwhile would
  # come again, more than the in-flight allowance checked here (README, guarantees).
  coord="$(e2e_kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$BOOTSTRAP" --describe --group "$group" --state 2>/dev/null |
    awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\([0-9]+\)$/) { gsub(/[()]/, "", $i); print $i; exit } }')"
  victim="$(kcat -b "$BOOTSTRAP" -L -t "$topic" -m 5 2>/dev/null |
    sed -n 's/^ *partition [0-9]*, leader \([0-9]*\),.*/\1/p' |
    awk -v c="${coord:-0}" '$1 != c { print; exit }')"
  [ -n "$victim" ] || e2e_fail "no partition leader other than the coordinator (${coord:-unknown})"
  e2e_log "group coordinator: node ${coord:-unknown}"
  e2e_log "killing node $victim (-9) after $(e2e_completed) completions"
  "$e2e_broker" kill "$e2e_cluster" "$victim" 2>/dev/null
  # Talk to the nodes still alive from now on.
  alive=()
  IFS=, read -ra all <<<"$("$e2e_broker" bootstrap "$e2e_cluster")"
  for i in "${!all[@]}"; do [ $((i + 1)) -eq "$victim" ] || alive+=("${all[$i]}"); done
  BOOTSTRAP="$(IFS=,; echo "${alive[*]}")"
fi

e2e_wait_settled "$n" "$stall" "$dlq" 300
e2e_service_alive a || e2e_fail "the service exited"
e2e_wait_committed "$group" "$topic" 90
e2e_service_stop a 60
e2e_log "consumed $n messages across the broker $mode in $(($(date +%s) - t_run)) s"
grep -E 'event=(source_error|reroute_failed|commit_failed)' "$e2e_work/svc-a.log" | cut -c1-200 | head -n 5 >&2 || true

e2e_verify "$topic" "$stall" "$dlq" "$retries" "$(e2e_dup_allowance 1)"
e2e_done
