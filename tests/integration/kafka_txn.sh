#!/usr/bin/env bash
# Runs test_kafka_txn (TEST_BINARY, the first argument) against a real Kafka broker it
# starts here with the topics the test reads and writes, then stops the broker.
set -euo pipefail

test_bin=${1:?usage: kafka_txn.sh TEST_BINARY [CMOCKA_FILTER]}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
broker="$root/scripts/kafka-broker.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/taskloop-kafka-txn.XXXXXX")"
cleanup() {
  local rc=$?
  "$broker" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --watch $$: the broker is stopped even if this script is killed before its trap runs.
bootstrap="$("$broker" start "$work/cluster" --nodes 1 --watch $$ | tail -n1)"
for t in t-in1 t-out1a t-out1b t-in2 t-out2 t-in3 t-out3 t-in4 t-out4a t-out4b; do
  "$broker" topic "$work/cluster" "$t" 4 >/dev/null
done
TL_TEST_BROKERS="$bootstrap" "$test_bin" "${@:2}"
