#!/usr/bin/env bash
# The checker of the compose deployment (docker-compose.yml's `checker` service, in the
# taskloop image): the same accounting as the local scenarios, against a running
# service. Waits until every produced id is completed or rerouted, until the service's
# committed offsets (its /metrics) reach the end of every input partition, then reads
# the topics back and runs verify.py.
#
# Environment: KAFKA (bootstrap), E2E_N (messages the producer sent), TL_TOPIC,
# TL_STALL_TOPIC, TL_DLQ_TOPIC, TL_RETRIES, RECORD (the service's record file, shared
# through a volume), ADMIN_URL (the service's admin endpoint), CHECK_TIMEOUT (s).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TASKLOOP="${TASKLOOP:-$(command -v taskloop || true)}"
e2e_init deployment

BOOTSTRAP="${KAFKA:?KAFKA must name the brokers}"
n="${E2E_N:-100000}"
topic="${TL_TOPIC:-orders}" stall="${TL_STALL_TOPIC:-orders.stalled}" dlq="${TL_DLQ_TOPIC:-orders.dlq}"
record="${RECORD:-/var/lib/taskloop/completed.txt}"
admin="${ADMIN_URL:-http://taskloop:9464}"
timeout_s="${CHECK_TIMEOUT:-900}"

# e2e_wait_settled counts the record files of the work dir.
ln -s "$record" "$e2e_work/record-service.txt"
e2e_wait_settled "$n" "$stall" "$dlq" "$timeout_s"

# Committed offsets, as the service reports them, against the end of each partition.
end_offsets() {
  local parts args=() p
  parts="$(kcat -b "$BOOTSTRAP" -L -t "$topic" -m 5 2>/dev/null | sed -n 's/^ *partition \([0-9]*\),.*/\1/p' || true)"
  for p in $parts; do args+=(-t "$topic:$p:-1"); done
  { kcat -b "$BOOTSTRAP" -Q -m 5 "${args[@]}" 2>/dev/null || true; } |
    awk '$3 == "offset" { print $2, $4 }' | tr -d '[]' | sort
}
committed() {
  { curl -fsS "$admin/metrics" 2>/dev/null || true; } |
    sed -n 's/^taskloop_committed_offset{.*topic="\([^"]*\)",partition="\([0-9]*\)"} \([0-9]*\)$/\1 \2 \3/p' |
    awk -v t="$topic" '$1 == t { print $2, $3 }' | sort
}
start=$(date +%s)
while :; do
  want="$(end_offsets)"
  have="$(committed)"
  if [ -n "$want" ] && [ "$want" = "$have" ]; then
    e2e_log "committed offsets reached the end of every partition: $(echo "$have" | tr '\n' ' ')"
    break
  fi
  [ "$(($(date +%s) - start))" -lt 120 ] ||
    e2e_fail "committed offsets [$(echo "$have" | tr '\n' ' ')] never reached the ends [$(echo "$want" | tr '\n' ' ')]"
  sleep 2
done

e2e_verify "$topic" "$stall" "$dlq" "${TL_RETRIES:-2}" 0
e2e_done
