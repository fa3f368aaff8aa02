#!/usr/bin/env bash
# Scenario: rebalance churn. A long-lived instance a; a second instance b joins, works
# a few seconds and leaves with SIGTERM, E2E_CYCLES times (10) during E2E_N (100,000)
# messages with stalls and failures in flight. No id may be lost; duplicates are
# counted and printed (E2E_MAX_DUP bounds them, default: the per-rebalance allowance).
#   churn.sh eager | cooperative
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mode="${1:-cooperative}"
case "$mode" in
  eager) strategy="range,roundrobin" ;;
  cooperative) strategy="cooperative-sticky" ;;
  *) echo "usage: $0 eager|cooperative" >&2; exit 2 ;;
esac
e2e_init "churn-$mode"

n="${E2E_N:-100000}"
cycles="${E2E_CYCLES:-10}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group="orders-churn-$mode"
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2
e2e_produce "$topic" "$n" --partitions 8 --keys 2000 --stall-ratio 0.01 --fail-ratio 0.005

e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
t_run=$(date +%s)
e2e_service_start a TL_RETRIES="$retries" TL_ASSIGNMENT="$strategy" TL_WORK_MS=1
e2e_wait_consuming $((n / 20)) 60
for ((c = 1; c <= cycles; c++)); do
  e2e_service_start b TL_RETRIES="$retries" TL_ASSIGNMENT="$strategy" TL_WORK_MS=1
  sleep "$((3 + c % 4))"
  e2e_log "cycle $c: b leaves (SIGTERM) after $(e2e_completed) completions in all"
  e2e_service_stop b 60
  grep -q '^check: .*: ok' "$e2e_work/svc-b.out" ||
    e2e_fail "b's summary does not add up: $(grep '^check' "$e2e_work/svc-b.out")"
  mv "$e2e_work/svc-b.out" "$e2e_work/svc-b.$c.out"
  sleep 1
done

e2e_wait_settled "$n" "$stall" "$dlq" 600
e2e_wait_committed "$group" "$topic" 60
e2e_service_stop a 60
e2e_log "consumed $n messages through $((2 * cycles)) rebalances in $(($(date +%s) - t_run)) s"

e2e_verify "$topic" "$stall" "$dlq" "$retries" "${E2E_MAX_DUP:-$(e2e_dup_allowance $((2 * cycles)))}"
e2e_done
