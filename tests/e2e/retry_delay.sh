#!/usr/bin/env bash
# Delayed retries through a topic on a real broker: a route with ordering partition
# and on_error { retries: 3, backoff: 1s, via: orders.retry } reads orders and
# orders.retry. Two waves of E2E_N / 2 messages, four seconds apart; every 100th
# message is `flaky:3` (fails three attempts, then completes) and every 100th `fail`
# (dead-lettered after its fourth). Checks:
#  - the partitions go on: when the first dead letter appears (seven seconds after its
#    first attempt), every plain message of the first wave has completed; retried in
#    place, those behind a failing one in its partition would still wait;
#  - no retry runs before its due time, and the lateness (histogram
#    taskloop_retry_lateness_seconds; log event message_retry, `late`) is printed. The second wave's first retries (due
#    in 1 s) sit in the retry topic behind the first wave's third ones (due in 4 s):
#    they must not wait for them (p99 under a second);
#  - every id is accounted for once (verify.py): flaky ones completed, fail ones on the
#    dead-letter topic with tl-attempt 4 and their first delivery's tl-origin-topic;
#  - /metrics counts each retry sent through the topic, and none waits at the end.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init retry-delay

n="${E2E_N:-4000}"
half=$((n / 2))
retries=3
topic=orders retry=orders.retry stall=orders.stalled dlq=orders.dlq group=orders-retry
export E2E_MAX_IN_FLIGHT=1000

e2e_broker_start
e2e_topic "$topic" 4
e2e_topic "$retry" 2
e2e_topic "$stall" 1
e2e_topic "$dlq" 1

wave() { # FIRST COUNT FILE
  awk -v first="$1" -v n="$2" 'BEGIN {
    for (i = first; i < first + n; i++) {
      m = ""
      if (i % 100 == 7) m = " flaky:3"
      else if (i % 100 == 53) m = " fail"
      printf "key-%d\tid=%06d%s\n", i % 64, i, m
    }
  }' >"$3"
}
produce_wave() { # FILE
  "$TASKLOOP" produce --brokers "$BOOTSTRAP" --to "kafka:$topic" --from "$1" --format key-value \
    >>"$e2e_work/produce.log" 2>&1 || e2e_fail "produce failed: $(tail -n3 "$e2e_work/produce.log")"
}
wave 0 1 "$e2e_work/warmup.txt"
wave 1 $((half - 1)) "$e2e_work/wave1.txt"
wave "$half" $((n - half)) "$e2e_work/wave2.txt"
flaky=$(cat "$e2e_work"/wave*.txt | grep -c 'flaky:3')
failing=$(cat "$e2e_work"/wave*.txt | grep -c ' fail$')

port=$(e2e_free_port)
e2e_service_defaults "$topic" "$group" "$stall" "$dlq"
E2E_CONFIG="$e2e_dir/configs/retry_delay.yaml" e2e_service_start run TL_RETRY_TOPIC="$retry" \
  TL_ADMIN="127.0.0.1:$port"
# One message first, so that the waves meet a consumer that has its partitions.
produce_wave "$e2e_work/warmup.txt"
e2e_wait_consuming 1 60
produce_wave "$e2e_work/wave1.txt"
e2e_log "wave 1 produced: $((half - 1)) messages"

# The first dead letter comes after 1 + 2 + 4 s of backoff; by then the first wave's
# plain messages must all be done.
t=$(e2e_within 60)
for ((i = 0; i < t * 20; i++)); do
  [ "$(e2e_topic_count "$dlq")" -gt 0 ] && break
  sleep 0.05
done
[ "$(e2e_topic_count "$dlq")" -gt 0 ] || e2e_fail "no dead letter after ${t}s"
cat "$e2e_work"/record-*.txt | sort -u >"$e2e_work/done-at-first-dlq.txt"
grep -v -e flaky -e ' fail$' "$e2e_work/wave1.txt" | cut -f2 | sort >"$e2e_work/plain1.txt"
missing=$(comm -23 "$e2e_work/plain1.txt" "$e2e_work/done-at-first-dlq.txt" | wc -l)
[ "$missing" -eq 0 ] ||
  e2e_fail "$missing plain messages of the first wave were not done when the first dead letter came"
e2e_log "first dead letter: every plain message of wave 1 ($(wc -l <"$e2e_work/plain1.txt")) done before it"

sleep 1 # the first wave's third retries are now in the retry topic, due in 4 s
produce_wave "$e2e_work/wave2.txt"
e2e_log "wave 2 produced: $((n - half)) messages"
e2e_wait_settled "$n" "$stall" "$dlq" 120
e2e_wait_committed "$group" "$topic" 60
e2e_wait_committed "$group" "$retry" 60

metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { s += $2 } END { print s + 0 }'; }
delayed=$(metric taskloop_retries_delayed_total)
waiting=$(metric taskloop_retries_waiting)
want=$(((flaky + failing) * retries))
[ "$delayed" -eq "$want" ] || e2e_fail "retries sent through $retry: $delayed, expected $want"
[ "$waiting" -eq 0 ] || e2e_fail "$waiting retries still waiting at the end"
curl -fsS "http://127.0.0.1:$port/metrics" >"$e2e_work/metrics.txt" || e2e_fail "cannot read /metrics"
e2e_service_stop run 60

# Lateness of every retry that ran (the histogram counts each; the log lines, rate
# limited per second, a sample with the exact figure): none early, p99 under a second.
python3 - "$e2e_work/metrics.txt" "$e2e_work/svc-run.log" "$want" <<'PY' || e2e_fail "retries ran early or late"
import re, sys
buckets = [(float(m.group(1)), int(m.group(2))) for line in open(sys.argv[1])
           for m in [re.match(r'taskloop_retry_lateness_seconds_bucket\{le="([^"]+)"\} (\d+)', line)] if m]
count = buckets[-1][1] if buckets else 0
want = int(sys.argv[3])
def q(p):
    rank = p * count
    return next(le for le, c in buckets if c >= rank)
late = sorted(int(m.group(1)) for line in open(sys.argv[2], encoding="utf-8", errors="replace")
              if "event=message_retry " in line for m in [re.search(r" late=(-?\d+)ms", line)] if m)
print("retry lateness over %d retries (histogram): p50 <= %g s, p99 <= %g s; logged sample of %d: "
      "min %d ms, max %d ms" % (count, q(0.5), q(0.99), len(late), late[0], late[-1]))
bad = count != want or not late or late[0] < 0 or q(0.99) > 1
if count != want:
    print("expected %d retries to run, the histogram counts %d" % (want, count))
sys.exit(1 if bad else 0)
PY
e2e_verify "$topic" "$stall" "$dlq" "$retries" 0
e2e_done
