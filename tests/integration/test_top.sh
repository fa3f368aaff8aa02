#!/usr/bin/env bash
# `taskloop top` against a live service (configs/dashboard.yaml: ZeroMQ in, the `work`
# handler, an admin token): its plain-text report matches /stats, a stalled message
# shows among the oldest tasks, the token and bad arguments are handled, and on a
# terminal it redraws with rates. Usage: test_top.sh TASKLOOP CONFIG
set -euo pipefail

TASKLOOP=${1:?usage: test_top.sh TASKLOOP CONFIG}
CONFIG=${2:?usage: test_top.sh TASKLOOP CONFIG}
# shellcheck source=service_lib.sh
. "$(dirname "$0")/service_lib.sh"
LOGS=("$TMP/top" "$TMP/err")
export DASH_ADMIN_PORT DASH_ENDPOINT DASH_TOKEN=top-Tok.7 DASH_STALL_MS=6000
DASH_ADMIN_PORT=$(free_port)
DASH_ENDPOINT=tcp://127.0.0.1:$(free_port)
URL=http://127.0.0.1:$DASH_ADMIN_PORT
"$TASKLOOP" run "$CONFIG" --no-progress >/dev/null 2>"$TMP/err" &
PID=$!
wait_healthz "$URL"

# 200 messages, two of them (ids 99 and 199) marked stall: stalled at 1s, rerouted,
# their stuck attempts running on for 6s.
"$TASKLOOP" produce --to "zmq:$DASH_ENDPOINT" -n 200 --stall-ratio 0.01 --keys 4 >/dev/null
for _ in $(seq 100); do
    curl -s -H "Authorization: Bearer $DASH_TOKEN" "$URL/stats" >"$TMP/stats"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(not (d["counters"]["consumed_total"] == 200 and d["counters"]["rerouted_total"] == 2 and d["gauges"]["in_flight"] == 0))' "$TMP/stats" && break
    sleep 0.1
done

TL_ADMIN_TOKEN=$DASH_TOKEN "$TASKLOOP" top "$URL" >"$TMP/top" || fail "top exited $?"
curl -s -H "Authorization: Bearer $DASH_TOKEN" "$URL/stats" >"$TMP/stats"
python3 - "$TMP/top" "$TMP/stats" <<'EOF' || fail "top's report does not match /stats"
import json, re, sys
out, s = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
lines = out.splitlines()
assert lines[0].startswith("dashboard ") and lines[0].endswith(": ready"), lines[0]
assert "\033" not in out, "terminal codes in a report to a file"
c = s["counters"]
want = "counters: consumed %d completed %d failed %d retries %d stalled %d rerouted %d" % (
    c["consumed_total"], c["completed_total"], c["failed_total"], c["retries_total"],
    c["stalled_total"], c["rerouted_total"])
assert any(l.startswith(want) for l in lines), (want, out)
assert c["consumed_total"] == 200 and c["stalled_total"] == 2, c
assert "stuck workers %d" % s["health"]["stuck_workers"] in out, out
route = [l.split() for l in lines if re.match(r"^0\s+in\s+work\s", l)]
assert route == [["0", "in", "work", "0", "0", "2", "2", "0", "2", "2", "0"]], route
target = [l.split() for l in lines if l.startswith("memory:stalled")]
assert target == [["memory:stalled", "2", "0"]], target
part = [l.split() for l in lines if l.startswith("in ") and "tcp://" in l]
assert part and part[0][2:4] == ["-1", "200"], part
tasks = [l.split() for l in lines if re.match(r"^\s+\d+\.\d\s+running\s+work\s", l)]
assert sorted(int(t[4]) for t in tasks) == [99, 199], tasks
# attempt 1, stalled, no worker process (isolation: thread)
assert all(t[-3:] == ["1", "yes", "-"] and t[5] == "key-3" for t in tasks), tasks
EOF
pass "the report to a file matches /stats: counters, route, target, partition, the two stalled tasks"

set +e
"$TASKLOOP" top "$URL" >"$TMP/top" 2>"$TMP/top.err"
rc=$?
set -e
[[ $rc == 1 ]] || fail "without the token top exited $rc"
grep -q "401: the endpoint wants its admin token" "$TMP/top.err" || fail "no word of the token: $(cat "$TMP/top.err")"
"$TASKLOOP" top "$URL" --token "$DASH_TOKEN" --top 1 >"$TMP/top" || fail "--token refused"
grep -q "^partitions, most lag first: 1 of 1$" "$TMP/top" || fail "--top 1 not honoured"
[[ $(grep -c ' running ' "$TMP/top") == 1 ]] || fail "--top 1 lists more than one task"
pass "without the token it says what is missing (exit 1); --token and --top work"

expect_usage() {
    set +e
    "$TASKLOOP" top "$@" >/dev/null 2>"$TMP/top.err"
    local rc=$?
    set -e
    [[ $rc == 2 ]] || fail "top $* exited $rc, not 2"
    grep -q "^taskloop: top: " "$TMP/top.err" || fail "top $*: no error line"
}
expect_usage
expect_usage ftp://127.0.0.1:1
expect_usage http://127.0.0.1:x
expect_usage "$URL" --top 0
expect_usage "$URL" --interval 5ms
expect_usage "$URL" --bogus
set +e
"$TASKLOOP" top http://127.0.0.1:1 >/dev/null 2>"$TMP/top.err"
rc=$?
set -e
[[ $rc == 1 ]] && grep -q "refused" "$TMP/top.err" || fail "an endpoint not listening: exit $rc, $(cat "$TMP/top.err")"
"$TASKLOOP" top --help | grep -q "^usage: taskloop top URL" || fail "no --help"
pass "bad arguments exit 2 saying which; an endpoint that does not answer exits 1 saying why; --help"

# On a terminal (script(1) gives it one): it redraws, and from the second poll on
# shows rates.
if command -v script >/dev/null; then
    TL_ADMIN_TOKEN=$DASH_TOKEN timeout -s INT 3 script -qec "$TASKLOOP top $URL --interval 500ms" /dev/null >"$TMP/top" || true
    [[ $(grep -o $'\033\\[2J' "$TMP/top" | wc -l) -ge 3 ]] || fail "no redraws on a terminal"
    grep -q "^per second: consumed 0.0 completed 0.0" "$TMP/top" || fail "no rates on a terminal"
    pass "on a terminal it redraws every interval, with rates"
else
    echo "SKIP: script(1) is missing: the terminal mode is not checked" >&2
fi
