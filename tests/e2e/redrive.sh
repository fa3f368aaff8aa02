#!/usr/bin/env bash
# `taskloop redrive` on a real broker: a service dead-letters E2E_N (10,000) messages,
# half stalled and half failed, on one topic; a dry run moves nothing; a redrive of the
# stalled ones (filter --reason) and then of the failed ones, killed with SIGKILL midway
# and run again, send every id back exactly once (read committed); --max-redrives parks;
# bad options and a missing topic are refused.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init redrive

n="${E2E_N:-10000}"
topic=orders dead=dead back=orders.back group=orders-redrive

e2e_broker_start
e2e_topic "$topic" 4
e2e_topic "$dead" 2
e2e_topic "$back" 2
e2e_produce "$topic" "$n" --partitions 4 --keys 100 --stall-ratio 0.5 --fail-ratio 0.5

# Everything ends on the one dead topic: stalls (20 ms timeout) and failures.
e2e_service_defaults "$topic" "$group" "$dead" "$dead"
e2e_service_start run TL_RETRIES=0 TL_TIMEOUT=20ms TL_WORKERS=32
e2e_wait_settled "$n" "$dead" no-such-topic 180
e2e_service_stop run 60
[ "$(e2e_completed)" -eq 0 ] || e2e_fail "some messages completed: the load is all stall or fail"

redrive() { "$TASKLOOP" redrive --brokers "$BOOTSTRAP" --from "$dead" --no-progress "$@"; }

# A dry run lists and moves nothing; each message names its origin topic as the target.
redrive --dry-run --max 5 >"$e2e_work/dry.txt" 2>"$e2e_work/dry.err" ||
  e2e_fail "dry run failed: $(cat "$e2e_work/dry.err")"
[ "$(grep -c " -> $topic\$" "$e2e_work/dry.txt")" -eq 5 ] ||
  e2e_fail "dry run did not list 5 messages for $topic: $(head -n 7 "$e2e_work/dry.txt")"
[ "$(e2e_topic_count "$back")" -eq 0 ] || e2e_fail "the dry run moved something"
e2e_log "dry run: $(tail -n1 "$e2e_work/dry.txt")"

# The stalled half, by filter.
redrive --reason stalled --to "$back" >"$e2e_work/stalled.out" 2>&1 ||
  e2e_fail "redrive of the stalled ones failed: $(cat "$e2e_work/stalled.out")"
e2e_dump "$back" "$e2e_work/back1.txt" '%s\n'
stalled=$(grep -c '^id=' "$e2e_work/back1.txt" || true)
e2e_log "$(tail -n1 "$e2e_work/stalled.out")"
[ "$stalled" -gt 0 ] && [ "$stalled" -lt "$n" ] || e2e_fail "moved $stalled stalled ones of $n"

# The failed half, killed midway, then again with the same (default) group.
# (The program itself in the background, not a subshell around it: kill -9 reaches it.)
"$TASKLOOP" redrive --brokers "$BOOTSTRAP" --from "$dead" --no-progress --reason failed \
  --to "$back" >"$e2e_work/failed1.out" 2>&1 &
pid=$!
before=$(e2e_topic_count "$back")
for ((i = 0; i < 300; i++)); do
  # Killed as soon as its first transaction shows (five or so make the whole half).
  [ "$(e2e_topic_count "$back")" -gt "$before" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -KILL "$pid" 2>/dev/null || e2e_fail "the redrive ended before it could be killed"
wait "$pid" 2>/dev/null || true
e2e_log "killed a redrive midway ($(e2e_topic_count "$back") offsets in $back)"
redrive --reason failed --to "$back" >"$e2e_work/failed2.out" 2>&1 ||
  e2e_fail "the second redrive of the failed ones failed: $(cat "$e2e_work/failed2.out")"
e2e_log "$(tail -n1 "$e2e_work/failed2.out")"
# It went on from the killed one's last commit: it read less than the whole topic.
read_again=$(sed -n 's/.*: read \([0-9]*\),.*/\1/p' "$e2e_work/failed2.out" | tail -n1)
[ -n "$read_again" ] && [ "$read_again" -lt "$n" ] ||
  e2e_fail "the second redrive read ${read_again:-?} of $n: it did not resume"

# Read committed (kcat's default, as librdkafka's): each id exactly once.
e2e_dump "$back" "$e2e_work/back.txt" '%s\n'
python3 - "$e2e_work/back.txt" "$n" <<'PY' || e2e_fail "the redriven messages are not each id once"
import collections, re, sys
ids = collections.Counter(m.group(1) for line in open(sys.argv[1]) for m in [re.match(r"(id=\d+)", line)] if m)
n = int(sys.argv[2])
dup = sum(c - 1 for c in ids.values() if c > 1)
print("redriven: %d distinct ids of %d, %d duplicates" % (len(ids), n, dup))
sys.exit(0 if len(ids) == n and dup == 0 else 1)
PY

# Past --max-redrives a message is parked instead.
redrive --group park-test --max-redrives 0 --max 100 >"$e2e_work/park.out" 2>&1 ||
  e2e_fail "parking redrive failed: $(cat "$e2e_work/park.out")"
# (Read back: a topic written in transactions holds their commit markers too.)
e2e_dump "$dead.parked" "$e2e_work/parked.txt" '%s\n'
parked=$(grep -c '^id=' "$e2e_work/parked.txt" || true)
[ "$parked" -eq 100 ] || e2e_fail "parked $parked, not 100"
e2e_log "$(tail -n1 "$e2e_work/park.out")"

# Bad input.
rc=0; redrive --reason >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || e2e_fail "an option without its value exited $rc, not 2"
rc=0; "$TASKLOOP" redrive --brokers "$BOOTSTRAP" --from never-created >/dev/null 2>"$e2e_work/missing.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "does not exist" "$e2e_work/missing.err" ||
  e2e_fail "a missing topic: exit $rc, $(cat "$e2e_work/missing.err")"
e2e_done
