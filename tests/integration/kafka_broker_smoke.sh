#!/usr/bin/env bash
# Smoke test of scripts/kafka-broker.sh: one real Kafka broker, a 3-partition topic,
# 1000 keyed messages produced and consumed back with kcat, broker stopped at the end.
# KAFKA_VERSION=4 runs it against Kafka 4.x instead of 3.9.1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
broker="$root/scripts/kafka-broker.sh"
count=1000
topic="smoke-$$"

work="$(mktemp -d "${TMPDIR:-/tmp}/taskloop-kafka-smoke.XXXXXX")"
cleanup() {
  local rc=$?
  "$broker" stop "$work/cluster" || rc=1
  if [ "$rc" -ne 0 ] && [ -f "$work/cluster/node1/server.log" ]; then
    echo "--- last lines of the broker log ---" >&2
    tail -n 40 "$work/cluster/node1/server.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "kafka_broker_smoke: FAIL: $*" >&2; exit 1; }

t0=$(date +%s)
# --watch $$: the cluster is stopped even if this script is killed before its trap runs.
bootstrap="$("$broker" start "$work/cluster" --nodes 1 --watch $$ | tail -n1)"
[[ "$bootstrap" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "start printed '$bootstrap', not a bootstrap string"
echo "broker up at $bootstrap after $(($(date +%s) - t0))s"

"$broker" status "$work/cluster" || fail "status does not report the broker up"
"$broker" topic "$work/cluster" "$topic" 3
# Creating it again is a no-op.
"$broker" topic "$work/cluster" "$topic" 3

for i in $(seq 1 "$count"); do echo "k$i:v$i"; done >"$work/in.txt"
kcat -P -b "$bootstrap" -t "$topic" -K: -X acks=all -l "$work/in.txt" ||
  fail "kcat could not produce"

kcat -C -b "$bootstrap" -t "$topic" -o beginning -e -q -f '%p %k %s\n' >"$work/out.txt" ||
  fail "kcat could not consume"

got=$(wc -l <"$work/out.txt")
[ "$got" -eq "$count" ] || fail "consumed $got messages, expected $count"
distinct=$(awk '{print $3}' "$work/out.txt" | sort -u | wc -l)
[ "$distinct" -eq "$count" ] || fail "$distinct distinct values among $got messages"
parts=$(awk '{print $1}' "$work/out.txt" | sort -u | tr '\n' ' ')
[ "$parts" = "0 1 2 " ] || fail "messages landed on partitions '$parts', expected 0 1 2"
awk '$2 != "k" substr($3, 2) { bad = 1 } END { exit bad }' "$work/out.txt" ||
  fail "a key does not match its value"

# A consumer group reads them all too (needs the group coordinator).
timeout 60 kcat -C -b "$bootstrap" -G "smoke-group-$$" -X auto.offset.reset=earliest -c "$count" -q \
  -f '%s\n' "$topic" >"$work/group.txt" 2>"$work/group.err" ||
  { cat "$work/group.err" >&2; fail "the consumer group could not read the topic"; }
got=$(wc -l <"$work/group.txt")
[ "$got" -eq "$count" ] || fail "the consumer group read $got messages, expected $count"

echo "kafka_broker_smoke: ok, $count messages through topic $topic (3 partitions) on Kafka at $bootstrap"
