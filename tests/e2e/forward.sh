#!/usr/bin/env bash
# Handler outputs on a real broker: a route with the built-in forward handler copies
# orders into orders.copy (outputs: { copy: kafka:orders.copy }).
#  1. E2E_N (10,000) messages with 500 keys (a key on one partition), no crash: every id is in
#     orders.copy exactly once, each key's ids in the order produced, and the group
#     committed every offset of orders.
#  2. E2E_N more, produced at 2,000 a second, the service killed with SIGKILL once a
#     quarter of them was copied, and started again: every id at
#     least once; what was copied twice (at least once allows it: offsets not yet
#     committed are read again) is printed and must stay within max_in_flight plus the
#     work of the commit acknowledgement's grace at the rate measured before the kill.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init forward

n="${E2E_N:-10000}"
topic=orders out=orders.copy group=orders-forward
export E2E_MAX_IN_FLIGHT="${E2E_MAX_IN_FLIGHT:-1000}"

e2e_broker_start
e2e_topic "$topic" 8
e2e_topic "$out" 8

copies() { # FILE: the output read back, 'key<TAB>payload' per line
  e2e_dump "$out" "$1" '%k\t%s\n'
}
wait_copied() { # N
  local t i
  t=$(e2e_within 120)
  for ((i = 0; i < t; i++)); do
    [ "$(e2e_topic_count "$out")" -ge "$1" ] && return 0
    sleep 1
  done
  e2e_fail "only $(e2e_topic_count "$out") of $1 copies after ${t}s"
}

port=$(e2e_free_port)
e2e_service_env=(KAFKA="$BOOTSTRAP" TL_TOPIC="$topic" TL_GROUP="$group" TL_OUT_TOPIC="$out"
  TL_ADMIN="127.0.0.1:$port" TL_MAX_IN_FLIGHT="$E2E_MAX_IN_FLIGHT" TL_SHARDS="${E2E_SHARDS:-1}")
E2E_CONFIG="$e2e_dir/configs/forward.yaml" e2e_service_start one
e2e_produce "$topic" "$n" --keys 500
wait_copied "$n"
e2e_wait_committed "$group" "$topic" 60
emitted=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '$1 == "taskloop_emitted_total" { print $2 }')
[ "$emitted" = "$n" ] || e2e_fail "taskloop_emitted_total is '$emitted', expected $n"
e2e_service_stop one 60
copies "$e2e_work/copies1.txt"
python3 - "$e2e_work/copies1.txt" "$n" <<'PY' || e2e_fail "phase 1: copies wrong"
import collections, re, sys
n = int(sys.argv[2])
seen = collections.Counter()
last = {}
disorder = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    key, _, payload = line.rstrip("\n").partition("\t")
    m = re.search(r"id=(\d+)", payload)
    if not m:
        continue
    i = int(m.group(1))
    seen[i] += 1
    disorder += last.get(key, -1) > i
    last[key] = i
missing = n - sum(1 for i in range(n) if seen[i])
dups = sum(c - 1 for c in seen.values() if c > 1)
print("forward phase 1: %d ids copied, missing %d, duplicates %d, out of key order %d"
      % (len(seen), missing, dups, disorder))
sys.exit(1 if missing or dups or disorder or len(seen) != n else 0)
PY
e2e_log "phase 1: $n messages copied once each, in key order"

E2E_CONFIG="$e2e_dir/configs/forward.yaml" e2e_service_start two
# Produced at 2,000 a second, so that the kill lands while messages flow.
e2e_produce "$topic" "$n" --keys 500 --first-id "$n" --rate 2000 &
producer=$!
t=$(e2e_within 60)
for ((i = 0; i < t * 10; i++)); do
  [ "$(e2e_topic_count "$out")" -ge $((n + n / 4)) ] && break
  sleep 0.1
done
# The rate just before the kill, for the bound below.
emitted_at() { curl -fsS "http://127.0.0.1:$port/metrics" | awk '$1 == "taskloop_emitted_total" { print $2 }'; }
e1=$(emitted_at)
t1=$(date +%s%N)
sleep 0.2
e2=$(emitted_at)
t2=$(date +%s%N)
e2e_service_kill two
wait "$producer" || e2e_fail "the second produce failed"
rate=$(((e2 - e1) * 1000000000 / (t2 - t1 + 1)))
e2e_log "killed at $(e2e_topic_count "$out") copies, copying $rate a second"
E2E_CONFIG="$e2e_dir/configs/forward.yaml" e2e_service_start three
wait_copied $((2 * n))
e2e_wait_committed "$group" "$topic" 60
e2e_service_stop three 60
copies "$e2e_work/copies2.txt"
# What a crash may repeat (README, delivery guarantees): max_in_flight, plus what
# settled since the last acknowledged commit, which the acknowledgement guard keeps to
# some 250 ms of work past a 50 ms commit interval (half a second of it allowed here).
# Each shard (E2E_SHARDS) has a max_in_flight window of its own.
allow=$((E2E_MAX_IN_FLIGHT * ${E2E_SHARDS:-1} + rate / 2 + 500))
python3 - "$e2e_work/copies2.txt" "$n" "$allow" <<'PY' || e2e_fail "phase 2: copies lost or too many twice"
import collections, re, sys
n, allow = int(sys.argv[2]), int(sys.argv[3])
seen = collections.Counter(int(m.group(1)) for line in open(sys.argv[1], encoding="utf-8", errors="replace")
                           for m in [re.search(r"id=(\d+)", line)] if m)
missing = sum(1 for i in range(2 * n) if not seen[i])
dups = sum(c - 1 for c in seen.values() if c > 1)
print("forward phase 2 (one SIGKILL): %d ids, missing %d, copied twice %d (allowed %d)"
      % (len(seen), missing, dups, allow))
sys.exit(1 if missing or dups > allow else 0)
PY
e2e_done
