#!/usr/bin/env bash
# Kafka over SASL_SSL with SCRAM-SHA-512. The broker gets a SASL_SSL listener (a CA and
# a broker certificate made with openssl in the work dir, the user created when the
# storage is formatted); the service (configs/sasl_ssl.yaml) consumes and reroutes only
# through it, its password taken from the environment.
#   1. A wrong password: `taskloop run` exits non-zero within E2E_AUTH_SECONDS (30),
#      saying the authentication failed, and prints neither password.
#   2. A steady run of E2E_N messages (default 5000; 2% stall, 1% fail) over SASL_SSL:
#      lost 0, duplicates 0, every offset committed, SIGTERM drains and exits 0.
#   3. The password appears nowhere in the service's stderr or stdout, /metrics,
#      /tasks or `taskloop check`'s output.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init sasl-ssl

n="${E2E_N:-5000}"
retries=2
topic=orders stall=orders.stalled dlq=orders.dlq group=orders-sasl
user=taskloop
config="$e2e_dir/configs/sasl_ssl.yaml"
command -v openssl >/dev/null || e2e_fail "openssl is needed"
command -v curl >/dev/null || e2e_fail "curl is needed"
password="$(openssl rand -hex 16)"
wrong="$(openssl rand -hex 16)"

KAFKA_SASL_PASSWORD="$password" e2e_broker_start --sasl-ssl "$user"
e2e_topic "$topic" 8
e2e_topic "$stall" 2
e2e_topic "$dlq" 2
if grep -qF -- "$password" "$config"; then e2e_fail "$config holds the password"; fi

e2e_service_env=(KAFKA_SASL_BOOTSTRAP="$SASL_BOOTSTRAP" KAFKA_SASL_USER="$user"
  KAFKA_CA="$KAFKA_CA" TL_TOPIC="$topic" TL_GROUP="$group" TL_STALL_TOPIC="$stall"
  TL_DLQ_TOPIC="$dlq" TL_ADMIN=127.0.0.1:0)

# 1. A wrong password is refused at start: an error naming the authentication, no hang.
limit="${E2E_AUTH_SECONDS:-30}"
t=$(date +%s)
rc=0
env "${e2e_service_env[@]}" TL_RECORD="$e2e_work/record-wrong.txt" KAFKA_SASL_PASSWORD="$wrong" \
  timeout -s KILL $((limit + 5)) "$TASKLOOP" run "$config" --no-progress \
  >"$e2e_work/wrong.out" 2>"$e2e_work/wrong.log" || rc=$?
took=$(($(date +%s) - t))
[ "$rc" -ne 0 ] || e2e_fail "taskloop run with a wrong password exited 0"
[ "$rc" -ne 137 ] && [ "$took" -le "$limit" ] ||
  e2e_fail "taskloop run with a wrong password did not exit within ${limit}s (status $rc)"
grep -q 'event=source_fatal .*authentication failed' "$e2e_work/wrong.log" ||
  e2e_fail "no error naming the authentication: $(tail -n 5 "$e2e_work/wrong.log")"
if grep -qF -e "$wrong" -e "$password" "$e2e_work/wrong.out" "$e2e_work/wrong.log"; then
  e2e_fail "a password appears in the output of the refused run"
fi
[ ! -s "$e2e_work/record-wrong.txt" ] || e2e_fail "the refused run completed messages"
rm -f "$e2e_work/record-wrong.txt"
e2e_log "a wrong password: exit status $rc after ${took}s: $(grep -o 'error="kafka authentication failed[^"]*' "$e2e_work/wrong.log" | head -n1 | cut -c1-120)"

# 2. A steady run over SASL_SSL.
export KAFKA_SASL_PASSWORD="$password"
admin_port=$(e2e_free_port)
E2E_CONFIG="$config" e2e_service_start a TL_ADMIN="127.0.0.1:$admin_port"
t_run=$(date +%s)
e2e_produce "$topic" "$n" --partitions 8 --keys 1000 --stall-ratio 0.02 --fail-ratio 0.01
e2e_wait_settled "$n" "$stall" "$dlq" 180
e2e_wait_committed "$group" "$topic" 60
e2e_log "consumed and committed $n messages over SASL_SSL in $(($(date +%s) - t_run)) s"
curl -s -m 5 "http://127.0.0.1:$admin_port/metrics" >"$e2e_work/metrics.txt" ||
  e2e_fail "cannot read /metrics"
curl -s -m 5 "http://127.0.0.1:$admin_port/tasks" >"$e2e_work/tasks.txt" ||
  e2e_fail "cannot read /tasks"
grep -q '^taskloop_consumed_total' "$e2e_work/metrics.txt" || e2e_fail "/metrics has no counters"
e2e_service_stop a 60
env "${e2e_service_env[@]}" TL_RECORD="$e2e_work/record-a.txt" "$TASKLOOP" check "$config" >"$e2e_work/check.out" 2>&1 || e2e_fail "taskloop check refused $config"
grep -q 'sasl.password: "\*\*\*\*\*"' "$e2e_work/check.out" || e2e_fail "check did not mask sasl.password"

# 3. The password was given to librdkafka and to nothing else. (The search finds it
# where it is written: the broker script's client settings.)
grep -qF -- "$password" "$e2e_cluster/tls/client.properties" || e2e_fail "the password search is broken"
for f in svc-a.log svc-a.out metrics.txt tasks.txt check.out produce.log; do
  if grep -qF -- "$password" "$e2e_work/$f"; then e2e_fail "the password appears in $f"; fi
done
e2e_log "the password appears in none of stderr, stdout, /metrics, /tasks, check's output"
grep -E 'event=(source_error|source_fatal|reroute_failed)' "$e2e_work/svc-a.log" | cut -c1-200 | head -n 5 >&2 || true

e2e_verify "$topic" "$stall" "$dlq" "$retries" 0

# 4. taskloop redrive reaches the same listener with -X properties (a dry run: it
# reads every dead letter and sends nothing); without them it fails, saying so.
sasl_x=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X "sasl.username=$user"
  -X "sasl.password=$password" -X "ssl.ca.location=$KAFKA_CA")
dead=$(e2e_topic_count "$dlq")
"$TASKLOOP" redrive --from "$dlq" --brokers "$SASL_BOOTSTRAP" "${sasl_x[@]}" --dry-run \
  >"$e2e_work/redrive.out" 2>"$e2e_work/redrive.err" ||
  e2e_fail "redrive over SASL_SSL failed: $(tail -n 3 "$e2e_work/redrive.err")"
grep -q "^redrive $dlq (dry run): read $dead, would move $dead," "$e2e_work/redrive.out" ||
  e2e_fail "redrive over SASL_SSL did not read the $dead dead letters: $(tail -n 1 "$e2e_work/redrive.out")"
rc=0
"$TASKLOOP" redrive --from "$dlq" --brokers "$SASL_BOOTSTRAP" --dry-run >/dev/null \
  2>"$e2e_work/redrive-plain.err" || rc=$?
[ "$rc" -eq 1 ] || e2e_fail "redrive without the SASL properties: status $rc, not 1"
if grep -qF -- "$password" "$e2e_work/redrive.out" "$e2e_work/redrive.err"; then
  e2e_fail "the password appears in redrive's output"
fi
e2e_log "redrive over SASL_SSL with -X: $(tail -n 1 "$e2e_work/redrive.out" | cut -c1-100); without: status 1"
e2e_done
