#!/usr/bin/env bash
# examples/orders-sqlite end to end on a real broker: E2E_N JSON orders (20,000 by
# default; every 97th is not a valid order) go to the topic `orders` (8 partitions) with
# `taskloop produce --from FILE --format key-value`. The example runs its own config,
# examples/orders-sqlite/orders.yaml, and is stopped with SIGTERM once every order is
# handled. Then: each good order is in the database exactly once, each bad one on
# orders.dlq exactly once, the exit status is 0. A replay (a second run from the
# earliest offset with a new group) inserts nothing new.
# ORDERS_SQLITE is the example's binary.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init orders-sqlite

: "${ORDERS_SQLITE:?set ORDERS_SQLITE to the orders-sqlite example binary}"
command -v sqlite3 >/dev/null || e2e_fail "sqlite3 is needed (scripts/install-deps.sh)"
n="${E2E_N:-20000}"
config="$e2e_root/examples/orders-sqlite/orders.yaml"
db="$e2e_work/orders.db"

e2e_broker_start
e2e_topic orders 8
e2e_topic orders.stalled 2
e2e_topic orders.dlq 2

# KEY<TAB>PAYLOAD lines; bad ones are cut JSON, not JSON, or lack a string id.
awk -v n="$n" 'BEGIN {
  for (i = 1; i <= n; i++) {
    id = sprintf("o-%06d", i)
    if (i % 97 == 0) {
      k = (i / 97) % 3
      if (k == 0) body = "{\"id\":\"" id "\",\"customer\":"
      else if (k == 1) body = "order " id
      else body = "{\"id\":" i ",\"customer\":\"c-1\"}"
      print id > "/dev/stderr"
    } else {
      body = sprintf("{\"id\":\"%s\",\"customer\":\"c-%d\",\"amount\":%d.25}", id, i % 500, i % 1000)
    }
    printf "%s\t%s\n", id, body
  }
}' >"$e2e_work/orders.txt" 2>"$e2e_work/bad-ids.txt"
bad=$(wc -l <"$e2e_work/bad-ids.txt")
good=$((n - bad))
cut -f1 "$e2e_work/orders.txt" | grep -vxF -f "$e2e_work/bad-ids.txt" >"$e2e_work/good-ids.txt"

"$TASKLOOP" produce --to kafka:orders --brokers "$BOOTSTRAP" --from "$e2e_work/orders.txt" \
  --format key-value >"$e2e_work/produce.log" 2>&1 || e2e_fail "produce: $(tail -3 "$e2e_work/produce.log")"
grep -q "sent $n, delivered $n, failed 0" "$e2e_work/produce.log" ||
  e2e_fail "produce did not deliver all $n: $(cat "$e2e_work/produce.log")"
e2e_log "produced $n orders ($bad bad) from a file"

# run_example ID GROUP [options]: the example in the background as service ID.
run_example() {
  local id="$1" group="$2"
  shift 2
  KAFKA="$BOOTSTRAP" ORDERS_DB="$db" ORDERS_GROUP="$group" ORDERS_ADMIN=127.0.0.1:0 \
    "$ORDERS_SQLITE" run "$config" --no-progress "$@" \
    >"$e2e_work/svc-$id.out" 2>"$e2e_work/svc-$id.log" &
  e2e_pids[$id]=$!
}

db_count() { sqlite3 "$db" 'SELECT count(*) FROM orders' 2>/dev/null || echo 0; }

run_example a orders-sqlite-1
t=$(e2e_within 180)
for ((i = 0; i < t * 5; i++)); do
  [ "$(db_count)" -ge "$good" ] && [ "$(e2e_topic_count orders.dlq)" -ge "$bad" ] && break
  e2e_service_alive a || e2e_fail "the example exited early: $(tail -5 "$e2e_work/svc-a.log")"
  sleep 0.2
done
[ "$(db_count)" -ge "$good" ] || e2e_fail "only $(db_count) of $good orders inserted after ${t}s"
e2e_log "all handled: $(db_count) orders inserted, $(e2e_topic_count orders.dlq) dead-lettered"
e2e_service_stop a 60
cat "$e2e_work/svc-a.out" >&2

read -r rows distinct < <(sqlite3 -separator ' ' "$db" 'SELECT count(*), count(DISTINCT id) FROM orders')
[ "$rows" -eq "$good" ] && [ "$distinct" -eq "$good" ] ||
  e2e_fail "the database holds $rows rows, $distinct distinct ids; want $good of each"
sqlite3 "$db" 'SELECT id FROM orders ORDER BY id' | diff -q "$e2e_work/good-ids.txt" - >/dev/null ||
  e2e_fail "the ids in the database are not the good orders' ids"
grep -q "^orders inserted $good, already there 0, failed attempts $((2 * bad))$" "$e2e_work/svc-a.out" ||
  e2e_fail "the example's counts: $(tail -1 "$e2e_work/svc-a.out")"
e2e_dump orders.dlq "$e2e_work/dlq.txt" '%k\t%h\n'
cut -f1 "$e2e_work/dlq.txt" | sort | diff -q "$e2e_work/bad-ids.txt" - >/dev/null ||
  e2e_fail "orders.dlq does not hold each bad order exactly once"
grep -v 'tl-reason=failed,' "$e2e_work/dlq.txt" | head -1 | grep -q . &&
  e2e_fail "a dead-lettered order is not tl-reason=failed"
grep -q 'tl-attempt=2,tl-error=not an order' "$e2e_work/dlq.txt" ||
  e2e_fail "dead letters say the attempt (retried once) and the error"
stalled=$(e2e_topic_count orders.stalled)
e2e_log "run 1: $rows orders once each, $bad on orders.dlq once each, $stalled stalled, exit 0"

# The replay: a new group reads everything again; INSERT OR IGNORE adds nothing.
run_example b orders-sqlite-2 --expect "$n" --timeout "$(e2e_within 180)s"
rc=0
wait "${e2e_pids[b]}" || rc=$?
unset "e2e_pids[b]"
[ "$rc" -eq 0 ] || e2e_fail "the replay exited $rc: $(tail -5 "$e2e_work/svc-b.log")"
grep -q "^orders inserted 0, already there $good, failed attempts $((2 * bad))$" "$e2e_work/svc-b.out" ||
  e2e_fail "the replay's counts: $(tail -1 "$e2e_work/svc-b.out")"
[ "$(db_count)" -eq "$good" ] || e2e_fail "the replay changed the row count to $(db_count)"
e2e_log "replay: nothing new inserted ($good already there)"
e2e_done
