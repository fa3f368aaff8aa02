#!/usr/bin/env bash
# A service with `isolation: process` killed with SIGKILL takes its worker processes
# along, even one wedged in a handler that ignores its cancellation (`work`'s
# poison:hang): nothing of it runs on to repeat side effects beside its restart. The
# wedged worker is found through /tasks ("process": {"pid"}).
# Usage: test_worker_death.sh TASKLOOP
set -euo pipefail

TASKLOOP=${1:?usage: test_worker_death.sh TASKLOOP}
# shellcheck source=service_lib.sh
. "$(dirname "$0")/service_lib.sh"
STOP_SIGNAL=KILL
LOGS=("$TMP/err")
ADMIN_PORT=$(free_port)
ENDPOINT=tcp://127.0.0.1:$(free_port)
URL=http://127.0.0.1:$ADMIN_PORT
cat >"$TMP/svc.yaml" <<EOF
service: worker-death
loop: { workers: 2 }
sources:
  in: { type: zmq, endpoint: "$ENDPOINT", socket: pull }
routes:
  - source: in
    handler: work
    ordering: none
    timeout: 60s
    isolation: process
    params: { ms: "0" }
admin: { listen: "127.0.0.1:$ADMIN_PORT" }
log: { level: warn }
EOF
"$TASKLOOP" run "$TMP/svc.yaml" --no-progress >/dev/null 2>"$TMP/err" &
PID=$!
wait_healthz "$URL"

echo "id=1 poison:hang" | "$TASKLOOP" produce --to "zmq:$ENDPOINT" --from - >/dev/null
worker=
for _ in $(seq 100); do
    worker=$(curl -s "$URL/tasks" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tasks"]:
    p = (t.get("message") or {}).get("process")
    if p and p["running"]:
        print(p["pid"])
        break')
    [[ -n $worker ]] && break
    sleep 0.1
done
[[ -n $worker ]] || fail "/tasks named no worker process running the message"
[[ $worker != "$PID" ]] && kill -0 "$worker" 2>/dev/null || fail "worker $worker is not a live process of its own"
pass "/tasks names the worker process running the message (pid $worker)"

kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
PID=
# Gone, or a zombie waiting for init to reap it: either way it runs no more.
alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
for _ in $(seq 50); do
    alive "$worker" || break
    sleep 0.1
done
alive "$worker" && fail "worker $worker still runs 5 s after its service was killed"
pass "the wedged worker process died with its service"
