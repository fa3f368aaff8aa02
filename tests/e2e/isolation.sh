#!/usr/bin/env bash
# Crash-proof handlers on a real broker: a route with `isolation: process` consumes
# E2E_N (10,000) messages of which 1% each kill the process handling them (poison:segv,
# poison:abort, poison:stack) and 1% stall. The service stays up through every crash;
# each poison message is dead-lettered once after its retries with the signal in
# tl-error; every other message completes or is rerouted once; the group's committed
# offsets reach the end of every partition (no crash loop), and /metrics counts a
# crash and a replaced worker process for each poisoned attempt.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init isolation

n="${E2E_N:-10000}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group=orders-isolation
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2

# Payloads as `taskloop produce` makes them (id=NNNNNN), every 100th of each kind
# marked; `fail` tells verify.py that the message must end on the dead-letter topic.
awk -v n="$n" 'BEGIN {
  for (i = 0; i < n; i++) {
    m = ""
    if (i % 100 == 11) m = " fail poison:segv"
    else if (i % 100 == 37) m = " fail poison:abort"
    else if (i % 100 == 63) m = " fail poison:stack"
    else if (i % 100 == 89) m = " stall"
    printf "key-%d\tid=%06d%s\n", i % 500, i, m
  }
}' >"$e2e_work/payloads.txt"
poisoned=$(grep -c poison "$e2e_work/payloads.txt")
"$TASKLOOP" produce --brokers "$BOOTSTRAP" --to "kafka:$topic" --from "$e2e_work/payloads.txt" \
  --format key-value >>"$e2e_work/produce.log" 2>&1 || e2e_fail "produce failed: $(tail -n3 "$e2e_work/produce.log")"
e2e_log "produced $n messages, $poisoned of them poison"

port=$(e2e_free_port)
e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
E2E_CONFIG="$e2e_dir/configs/isolation.yaml" e2e_service_start run TL_RETRIES="$retries" \
  TL_ADMIN="127.0.0.1:$port"
e2e_wait_settled "$n" "$stall" "$dlq" 180
e2e_wait_committed "$group" "$topic" 60
e2e_service_alive run || e2e_fail "the service died: $(tail -n 5 "$e2e_work/svc-run.log")"

metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { s += $2 } END { print s + 0 }'; }
crashes=$(metric taskloop_handler_crashes_total)
replaced=$(metric taskloop_workers_replaced_total)
e2e_log "crashes $crashes, worker processes replaced $replaced"
# Every attempt of a poison message crashes its process: retries + 1 each.
want=$((poisoned * (retries + 1)))
[ "$crashes" -eq "$want" ] || e2e_fail "crashes counted $crashes, expected $want"
[ "$replaced" -ge "$crashes" ] || e2e_fail "worker processes replaced $replaced < crashes $crashes"
e2e_service_stop run 60

e2e_verify "$topic" "$stall" "$dlq" "$retries" 0
# Each poison message's dead letter names the signal that killed its last attempt.
python3 - "$e2e_work/dlq.txt" <<'PY' || e2e_fail "dead letters without the signal in tl-error"
import re, sys
want = {"poison:segv": "SIGSEGV", "poison:abort": "SIGABRT", "poison:stack": "SIGSEGV"}
bad = seen = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    headers, _, payload = line.rstrip("\n").partition("\t")
    kind = next((k for k in want if k in payload), None)
    if kind is None:
        continue
    seen += 1
    m = re.search(r"tl-error=([^,]*)", headers)
    if not m or m.group(1) != "handler crashed: " + want[kind]:
        bad += 1
        if bad <= 5:
            print("wrong tl-error for %s: %s" % (payload, m.group(1) if m else None))
print("dead letters with the signal in tl-error: %d of %d poison" % (seen - bad, seen))
sys.exit(1 if bad or seen == 0 else 0)
PY
e2e_done
