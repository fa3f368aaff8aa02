#!/usr/bin/env bash
# Scenario 5, the reroute target is missing: the broker does not create topics on use
# (auto.create.topics.enable=false, through KAFKA_EXTRA_PROPERTIES) and the stall topic
# does not exist. Stalled messages cannot be settled, so no partition may be committed
# past its first stalled message, and the service log must report the failed reroutes.
# Once the topic is created everything must arrive, with nothing lost or doubled.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init reroute-unavailable

n="${E2E_N:-5000}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group=orders-unavailable

e2e_broker_start auto.create.topics.enable=false
e2e_topic "$topic" 4
e2e_topic "$dlq" 2
e2e_produce "$topic" "$n" --partitions 4 --keys 100 --stall-ratio 0.02 --fail-ratio "${E2E_FAIL_RATIO:-0.01}"
e2e_dump "$topic" "$e2e_work/input.txt" '%p\t%o\t%s\n'
# The first stall-marked offset of each partition: the commit may not pass it.
awk -F'\t' '$3 ~ / stall/ && !($1 in first) { first[$1] = $2 } END { for (p in first) print p, first[p] }' \
  "$e2e_work/input.txt" | sort -n >"$e2e_work/first-stall.txt"

e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
e2e_service_start a TL_RETRIES="$retries"
t_run=$(date +%s)
for ((i = 0; i < 900; i++)); do
  grep -q 'event=reroute_failed' "$e2e_work/svc-a.log" 2>/dev/null && break
  e2e_service_alive a || e2e_fail "the service exited"
  sleep 0.2
done
grep -q 'event=reroute_failed' "$e2e_work/svc-a.log" ||
  e2e_fail "no reroute_failed event in the service log after 180 s"
e2e_log "the service reports: $(grep -m1 'event=reroute_failed' "$e2e_work/svc-a.log" | cut -c1-220)"
# Give the consumer's commits time to go out.
sleep 2
e2e_group_lag "$group" "$topic" >/dev/null
over=0
while read -r p first; do
  committed="$(awk -v t="$topic" -v p="$p" '$2 == t && $3 == p { print $4 }' "$e2e_work/group-$group.txt")"
  e2e_log "partition $p: first stalled offset $first, committed ${committed:--}"
  if [[ "$committed" =~ ^[0-9]+$ ]] && [ "$committed" -gt "$first" ]; then over=$((over + 1)); fi
done <"$e2e_work/first-stall.txt"
[ "$over" -eq 0 ] || e2e_fail "$over partition(s) committed past an unsettled (unrerouted) message"
e2e_log "meanwhile $(e2e_completed) messages were completed (max_in_flight ${E2E_MAX_IN_FLIGHT:-1000})"
[ "$(e2e_topic_count "$stall")" -eq 0 ] || e2e_fail "the stall topic exists already"

e2e_log "creating $stall"
e2e_topic "$stall" 2
e2e_wait_settled "$n" "$stall" "$dlq" 180
e2e_wait_committed "$group" "$topic" 60
e2e_service_stop a 60
e2e_log "everything settled $(($(date +%s) - t_run)) s after the start"

e2e_verify "$topic" "$stall" "$dlq" "$retries" 0
e2e_done
