#!/usr/bin/env bash
# Scenario 6, ZeroMQ end to end: `taskloop produce --to zmq:...` pushes E2E_N messages
# (default 20000; 2% stall, 1% fail) into the service's PULL source; stalled messages
# are pushed to one receiver, dead letters to another (tests/e2e/zmq_receiver.c). Every
# id must arrive exactly once: completed, on the stall receiver or on the DLQ receiver.
# No broker is needed. ZMQ_RECEIVER names the receiver program (CMake passes it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init zmq

n="${E2E_N:-20000}"
fail_ratio="${E2E_FAIL_RATIO:-0.01}"
receiver="${ZMQ_RECEIVER:-}"
if [ -z "$receiver" ]; then
  receiver="$e2e_work/zmq_receiver"
  cc -O1 -o "$receiver" "$e2e_dir/zmq_receiver.c" -lzmq || e2e_fail "cannot build the receiver"
fi

# Three free ports for the input and the two receivers, below Linux's ephemeral range
# (32768-60999): a port there may be a client connection's of another test, which the
# listening check cannot see, and binding it fails.
ports=()
for ((p = 20000 + RANDOM % 12000; ${#ports[@]} < 3; p++)); do
  e2e_port_open "$p" || ports+=("$p")
done
input="tcp://127.0.0.1:${ports[0]}"
stalled_ep="tcp://127.0.0.1:${ports[1]}"
dlq_ep="tcp://127.0.0.1:${ports[2]}"

"$receiver" "$stalled_ep" "$e2e_work/stalled.txt" 2>>"$e2e_work/receiver.log" &
e2e_extra_pids+=($!)
"$receiver" "$dlq_ep" "$e2e_work/dlq.txt" 2>>"$e2e_work/receiver.log" &
e2e_extra_pids+=($!)

E2E_CONFIG="$e2e_dir/configs/zmq.yaml"
e2e_service_env=(TL_ZMQ_INPUT="$input" TL_ZMQ_STALLED="$stalled_ep" TL_ZMQ_DLQ="$dlq_ep")
e2e_service_start a
sleep 1
e2e_service_alive a || e2e_fail "the service did not start"

t_run=$(date +%s)
"$TASKLOOP" produce --to "zmq:$input" -n "$n" --stall-ratio 0.02 --fail-ratio "$fail_ratio" \
  >>"$e2e_work/produce.log" 2>&1 || { cat "$e2e_work/produce.log" >&2; e2e_fail "produce failed"; }
e2e_log "produced: $(tail -n1 "$e2e_work/produce.log")"

count() { { cat "$@" 2>/dev/null || true; } | wc -l; }
for ((i = 0; i < 1200; i++)); do
  got=$(($(count "$e2e_work/record-a.txt") + $(count "$e2e_work/stalled.txt") + $(count "$e2e_work/dlq.txt")))
  [ "$got" -ge "$n" ] && break
  sleep 0.25
done
e2e_log "$got of $n arrived after $(($(date +%s) - t_run)) s"
e2e_service_stop a 60
# Let the receivers write what the drain sent last, then stop them.
sleep 1
for pid in "${e2e_extra_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
wait "${e2e_extra_pids[@]}" 2>/dev/null || true
e2e_extra_pids=()

python3 "$e2e_dir/verify.py" --label zmq --generate "$n:0.02:$fail_ratio" \
  --record "$e2e_work/record-a.txt" --stalled "$e2e_work/stalled.txt" --dlq "$e2e_work/dlq.txt" \
  --retries 2 --origin "$input" --max-dup 0
e2e_done
