#!/usr/bin/env bash
# The admin endpoint over real HTTP: runs admin_driver (a memory-adapter service with
# messages that complete, fail and hold their worker) on port 0 and checks each path
# with curl. Usage: test_admin.sh PATH/TO/admin_driver
set -euo pipefail

DRIVER=${1:?usage: test_admin.sh ADMIN_DRIVER}
TMP=$(mktemp -d)
PID=
PID2=
cleanup() {
    exec 3>&- 2>/dev/null || true
    exec 4>&- 2>/dev/null || true
    for p in $PID $PID2; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    echo "--- driver stderr" >&2
    cat "$TMP/err" >&2 || true
    exit 1
}
pass() { echo "ok - $*"; }

# The driver runs until its standard input closes: hold a fifo open on fd 3.
mkfifo "$TMP/in"
"$DRIVER" <"$TMP/in" >"$TMP/out" 2>"$TMP/err" &
PID=$!
exec 3>"$TMP/in"

for _ in $(seq 100); do
    grep -q '^port ' "$TMP/out" 2>/dev/null && break
    sleep 0.1
done
PORT=$(awk '/^port /{print $2}' "$TMP/out")
[[ -n $PORT && $PORT -gt 0 ]] || fail "the driver printed no admin port"
URL="http://127.0.0.1:$PORT"
# The driver prints the port right after tl_service_new, before running the service;
# once it runs the endpoint answers there and says so in its log.
for _ in $(seq 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz") == 200 ]] && break
    sleep 0.1
done
[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz") == 200 ]] ||
    fail "the port known at build does not answer /healthz once running"
grep -q "event=admin_listening listen=\"127.0.0.1:0\" port=\"$PORT\"" "$TMP/err" ||
    fail "admin_listening does not name port $PORT"
pass "port $PORT known once built (asked for port 0), answering once running"

# status PATH [curl args]: prints the HTTP status, the body goes to $TMP/body.
status() {
    local path=$1
    shift
    curl -s -o "$TMP/body" -w '%{http_code}' "$@" "$URL$path"
}

# Every message is consumed, all but the three held ones settled and committed (the
# runtime commits on its 50ms housekeeping round); the stuck one stalled after 200 ms,
# was rerouted, and its worker was replaced 100 ms later.
P0='taskloop_committed_offset{source="in",topic="admin_in",partition="0"} 12'
for _ in $(seq 100); do
    curl -s "$URL/metrics" >"$TMP/metrics" || true
    grep -q '^taskloop_consumed_total 26$' "$TMP/metrics" &&
        grep -q '^taskloop_in_flight 3$' "$TMP/metrics" &&
        grep -q '^taskloop_replaced_workers_total 1$' "$TMP/metrics" &&
        grep -qF "$P0" "$TMP/metrics" && break
    sleep 0.1
done
grep -q '^taskloop_consumed_total 26$' "$TMP/metrics" || fail "consumed_total never reached 26"
grep -q '^taskloop_in_flight 3$' "$TMP/metrics" || fail "in_flight is not 3"
grep -q '^taskloop_replaced_workers_total 1$' "$TMP/metrics" || fail "the stuck worker was not replaced"
pass "/metrics counts the 26 messages, 3 still in flight, 1 stuck worker replaced"

[[ $(status /metrics) == 200 ]] || fail "/metrics is not 200"
curl -s -D "$TMP/headers" -o /dev/null "$URL/metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$TMP/headers" ||
    fail "/metrics has the wrong content type"

# Prometheus text format: every sample belongs to a family with HELP and TYPE declared
# before it, names and labels are well formed, values parse, histogram buckets add up.
python3 - "$TMP/metrics" <<'EOF' || fail "/metrics does not parse as Prometheus text"
import math, re, sys

text = open(sys.argv[1]).read()
name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label_re = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
sample_re = re.compile(
    r"^(%s)(?:\{((?:%s)(?:,%s)*)?\})? (\S+)(?: -?\d+)?$" % (name_re, label_re, label_re))
helps, types, samples = {}, {}, []
assert text.endswith("\n"), "no final newline"
for line in text.splitlines():
    if line.startswith("#"):
        m = re.match(r"^# (HELP|TYPE) (%s) (.+)$" % name_re, line)
        assert m, "bad comment: " + line
        kind, name, rest = m.groups()
        table = helps if kind == "HELP" else types
        assert name not in table, "second %s for %s" % (kind, name)
        if kind == "TYPE":
            assert rest in ("counter", "gauge", "histogram", "summary", "untyped"), line
        table[name] = rest
        continue
    m = sample_re.match(line)
    assert m, "bad sample: " + line
    name, labels, value = m.groups()
    v = float(value)
    family = name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            family = name[: -len(suffix)]
    assert family in types and family in helps, "no HELP/TYPE before " + line
    if types[family] == "counter":
        assert name.endswith("_total") and v >= 0, "bad counter: " + line
    samples.append((name, labels or "", v))

required = {
    "consumed_total": "counter", "completed_total": "counter", "failed_total": "counter",
    "retries_total": "counter", "stalled_total": "counter", "rerouted_total": "counter",
    "reroute_errors_total": "counter", "dropped_total": "counter",
    "late_completions_total": "counter", "in_flight": "gauge",
    "replaced_workers_total": "counter", "workers": "gauge", "healthy": "gauge",
    "committed_offset": "gauge", "handler_duration_seconds": "histogram",
    "uncommitted": "gauge", "paused_total": "counter", "source_pauses_total": "counter",
}
for short, kind in required.items():
    assert types.get("taskloop_" + short) == kind, "missing %s %s" % (kind, short)

def value(name, labels=""):
    got = [v for n, l, v in samples if n == name and l == labels]
    assert len(got) == 1, "want one sample of %s{%s}" % (name, labels)
    return got[0]

assert value("taskloop_completed_total") == 20
assert value("taskloop_failed_total") == 4  # two messages, two attempts each
assert value("taskloop_retries_total") == 2
assert value("taskloop_rerouted_total", 'target="memory:admin_dlq"') == 2
assert value("taskloop_rerouted_total", 'target="memory:admin_stalled"') == 1
assert value("taskloop_stalled_total") == 1
assert value("taskloop_replaced_workers_total") == 1
assert value("taskloop_healthy") == 1
assert value("taskloop_source_pauses_total") == 0  # the memory source sets no hold limit
assert value("taskloop_workers") == 9  # 8 and the stuck one's replacement
assert value("taskloop_committed_offset", 'source="in",topic="admin_in",partition="0"') == 12
assert value("taskloop_committed_offset", 'source="slow",topic="admin_slow",partition="0"') == 1

buckets = [(l, v) for n, l, v in samples if n == "taskloop_handler_duration_seconds_bucket"]
assert buckets and buckets[-1][0] == 'le="+Inf"', "histogram lacks +Inf"
les = [float(l[4:-1]) for l, _ in buckets]
assert les == sorted(les) and math.isinf(les[-1]), "bucket bounds out of order"
counts = [v for _, v in buckets]
assert counts == sorted(counts), "buckets not cumulative"
assert counts[-1] == value("taskloop_handler_duration_seconds_count") == 24
assert value("taskloop_handler_duration_seconds_sum") > 0
EOF
pass "/metrics parses as Prometheus text with every family, HELP and TYPE"

[[ $(status /healthz) == 200 ]] || fail "/healthz is not 200"
[[ $(cat "$TMP/body") == ok ]] || fail "/healthz body is not ok"
pass "/healthz 200 ok"

[[ $(status /readyz) == 200 ]] || fail "/readyz is not 200: $(cat "$TMP/body")"
pass "/readyz 200 while running"

[[ $(status /tasks) == 200 ]] || fail "/tasks is not 200"
python3 -m json.tool "$TMP/body" >/dev/null || fail "/tasks is not valid JSON"
python3 - "$TMP/body" <<'EOF' || fail "/tasks does not list the four running handlers"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["total"] == 4 and doc["truncated"] is False, doc
assert len(doc["tasks"]) == 4, doc
for t in doc["tasks"]:
    assert set(t) == {"id", "state", "age_ms", "name", "message"}, t
    assert t["state"] == "running" and t["age_ms"] >= 0 and t["id"] > 0, t
msgs = sorted((m["origin"], m["offset"]) for m in (t["message"] for t in doc["tasks"]))
assert msgs == [("admin_in", 10), ("admin_in", 11), ("admin_in", 12), ("admin_slow", 0)], msgs
for t in doc["tasks"]:
    m = t["message"]
    if m["origin"] == "admin_in":
        # The holds are partition 1's last three messages, after its ten "ok" ones,
        # keyed h0, h1, h2: /tasks shows which key each waits on.
        assert m == {"handler": "driver", "origin": "admin_in", "partition": 1,
                     "offset": m["offset"], "key": "h%d" % (m["offset"] - 10),
                     "trace_id": None, "attempt": 1, "stalled": False}, m
    else:
        # Rerouted already, the stuck attempt still holds its worker; its message
        # came with a W3C traceparent header.
        assert m == {"handler": "driver", "origin": "admin_slow", "partition": 0,
                     "offset": 0, "key": None, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                     "attempt": 1, "stalled": True}, m
EOF
pass "/tasks is JSON listing the 4 running handlers, the message each works on, one stalled"

# /stats: the figures of /metrics as JSON (the service is quiet now: both hold still).
curl -s "$URL/metrics" >"$TMP/metrics"
[[ $(status /stats) == 200 ]] || fail "/stats is not 200"
python3 - "$TMP/body" "$TMP/metrics" <<'EOF' || fail "/stats does not match /metrics"
import json, re, sys
doc = json.load(open(sys.argv[1]))
metrics = {}
for line in open(sys.argv[2]):
    m = re.match(r"^(taskloop_\w+)(\{[^}]*\})? (\S+)$", line)
    if m:
        metrics[m.group(1) + (m.group(2) or "")] = float(m.group(3))
for name, v in doc["counters"].items():
    if name in ("rerouted_total", "reroute_errors_total"):  # per target in /metrics
        got = sum(x for k, x in metrics.items() if k.startswith("taskloop_%s{" % name))
    else:
        got = metrics["taskloop_" + name]
    assert got == v, (name, v, got)
for name, v in doc["gauges"].items():
    assert metrics["taskloop_" + name] == v, (name, v)
for t in doc["targets"]:
    assert metrics['taskloop_rerouted_total{target="%s"}' % t["target"]] == t["rerouted_total"], t
h = doc["handler_duration_seconds"]
assert h["count"] == metrics["taskloop_handler_duration_seconds_count"] == 24, h
assert h["buckets"][-1] == {"le": "+Inf", "count": 24}, h["buckets"]
assert 0 < h["p50"] <= h["p90"] <= h["p99"], h
# The percentiles interpolate within their bucket, as Prometheus's histogram_quantile.
def quantile(q):
    rank, below, lo = q * h["count"], 0, 0.0
    for b in h["buckets"]:
        if b["count"] >= rank and b["count"] > below:
            if b["le"] == "+Inf":
                return lo
            return lo + (b["le"] - lo) * (rank - below) / (b["count"] - below)
        below, lo = b["count"], (b["le"] if b["le"] != "+Inf" else lo)
for q in (50, 90, 99):
    assert abs(h["p%d" % q] - quantile(q / 100)) < 1e-9, (q, h)
assert doc["health"]["healthy"] and doc["health"]["live"] and doc["health"]["ready"], doc["health"]
assert doc["health"]["stuck_workers"] == 1, doc["health"]
routes = {r["source"]: r for r in doc["routes"]}
# The three holds run on "in"; the stuck one of "slow" was rerouted and still runs.
assert routes["in"]["live"] == {"in_flight": 3, "running": 3, "stalled": 0, "stuck": 0,
                                "rerouting": 0, "emitting": 0, "waiting_due": 0,
                                "gated": 0}, routes["in"]
assert routes["slow"]["live"]["stalled"] == 1 and routes["slow"]["live"]["stuck"] == 1, routes
assert routes["slow"]["stalled_total"] == 1 and routes["slow"]["rerouted_total"] == 1, routes
assert routes["slow"]["on_stall"] == "memory:admin_stalled", routes["slow"]
for r in doc["routes"]:
    key = 'taskloop_route_stalled_total{route="%d",source="%s",handler="%s"}' % (
        r["route"], r["source"], r["handler"])
    assert metrics[key] == r["stalled_total"], (key, r)
parts = doc["partitions"]
assert parts["total"] == 3 and parts["from"] == 0 and parts["top"] == 20, parts
for p in parts["items"]:
    key = 'taskloop_committed_offset{source="%s",topic="%s",partition="%d"}' % (
        p["source"], p["topic"], p["partition"])
    assert p["committed_offset"] is None or metrics[key] == p["committed_offset"], p
    assert p["consumer_lag"] is None, p  # the memory source reports no lag
EOF
pass "/stats carries the figures of /metrics, and each route's live counts"

[[ $(status '/stats?top=1&from=1') == 200 ]] || fail "/stats?top=1&from=1 is not 200"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["partitions"]; assert (p["total"], p["from"], p["top"], len(p["items"])) == (3, 1, 1, 1), p' "$TMP/body" ||
    fail "/stats?top=1&from=1 does not page the partitions"
for q in 'top=0' 'top=1001' 'top=x' 'top=' 'from=-1' 'from=1e3'; do
    [[ $(status "/stats?$q") == 400 ]] || fail "/stats?$q is not 400"
    grep -q "^bad query: ${q%%=*} must be" "$TMP/body" || fail "/stats?$q: $(cat "$TMP/body")"
done
pass "/stats pages the partitions (?top=N&from=K) and answers 400 naming a bad argument"

[[ $(status /) == 200 ]] || fail "/ is not 200"
curl -s -D "$TMP/headers" -o /dev/null "$URL/"
grep -qi '^content-type: text/html' "$TMP/headers" || fail "/ is not HTML"
grep -q '<canvas id="rates"' "$TMP/body" && grep -q 'fetch(path' "$TMP/body" ||
    fail "/ is not the dashboard"
if grep -Eq '(src|href)="?(https?:)?//' "$TMP/body"; then
    fail "the dashboard loads something from elsewhere"
fi
pass "/ serves the dashboard, self-contained"

[[ $(status /nope) == 404 ]] || fail "an unknown path is not 404"
[[ $(status /metrics/x) == 404 ]] || fail "/metrics/x is not 404"
pass "unknown paths 404"

[[ $(status /metrics -X POST -d x=1) == 405 ]] || fail "POST /metrics is not 405"
[[ $(status /tasks -X DELETE) == 405 ]] || fail "DELETE /tasks is not 405"
pass "other methods 405"

# A second service on the same port fails to build, saying why, before reading anything.
set +e
"$DRIVER" "127.0.0.1:$PORT" </dev/null >"$TMP/out2" 2>"$TMP/err2"
rc=$?
set -e
[[ $rc == 3 ]] || fail "a taken port did not fail the build (exit $rc)"
grep -q 'event=admin_failed' "$TMP/err2" || fail "no admin_failed event"
grep -qi 'in use' "$TMP/err2" || fail "the reason does not say the port is in use"
grep -q "cannot build the service: admin endpoint 127.0.0.1:$PORT: .*in use" "$TMP/err2" ||
    fail "tl_service_new's error does not name the endpoint and the reason"
[[ ! -s $TMP/out2 ]] || fail "a service whose port is taken printed a port"
pass "a taken port fails the build: $(grep admin_failed "$TMP/err2")"

# Closing the driver's input drains the service; the endpoint goes away with the run.
exec 3>&-
for _ in $(seq 100); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
set +e
wait "$PID"
rc=$?
set -e
PID=
[[ $rc == 0 ]] || fail "the driver exited $rc"
if curl -s -o /dev/null "$URL/healthz"; then
    fail "the endpoint still answers after the run"
fi
pass "the endpoint stops with the run"

# ---------------------------------------------------------------- the token

# start2 TAG ARGS...: another driver (listening as ARGS say) until stop2; its port in
# PORT2, its log in $TMP/TAG.err.
start2() {
    local tag=$1
    shift
    mkfifo "$TMP/$tag.in"
    "$DRIVER" "$@" <"$TMP/$tag.in" >"$TMP/$tag.out" 2>"$TMP/$tag.err" &
    PID2=$!
    exec 4>"$TMP/$tag.in"
    for _ in $(seq 100); do
        grep -q '^port ' "$TMP/$tag.out" 2>/dev/null && break
        sleep 0.1
    done
    PORT2=$(awk '/^port /{print $2}' "$TMP/$tag.out")
    [[ -n $PORT2 ]] || { cat "$TMP/$tag.err" >&2; fail "driver $tag printed no port"; }
}
stop2() {
    exec 4>&-
    wait "$PID2" || fail "a driver exited $?"
    PID2=
}
# code PATH [curl args]: the status of a request to the second driver.
code() {
    local path=$1
    shift
    curl -s -o "$TMP/body2" -D "$TMP/headers2" -w '%{http_code}' "$@" "http://127.0.0.1:$PORT2$path"
}

TOKEN='k9-Zq7.tl_admin~token'
TL_ADMIN_TOKEN=$TOKEN start2 tok 127.0.0.1:0 'token: "${TL_ADMIN_TOKEN}"'
[[ $(code /metrics) == 401 ]] || fail "/metrics without a token is not 401"
grep -qi '^www-authenticate: Bearer' "$TMP/headers2" || fail "401 without WWW-Authenticate: Bearer"
[[ $(code /tasks) == 401 ]] || fail "/tasks without a token is not 401"
[[ $(code /nope) == 401 ]] || fail "an unknown path without a token is not 401"
[[ $(code /metrics -X POST) == 401 ]] || fail "POST /metrics without a token is not 401"
for bad in "Bearer wrong" "Bearer ${TOKEN%?}" "Bearer ${TOKEN}x" "Bearer " "Basic $TOKEN" "$TOKEN"; do
    [[ $(code /metrics -H "Authorization: $bad") == 401 ]] || fail "Authorization: $bad is let in"
done
pass "with a token, /metrics, /tasks and unknown paths answer 401 without it or with a wrong one"
[[ $(code /metrics -H "Authorization: Bearer $TOKEN") == 200 ]] || fail "the token is refused"
grep -q '^taskloop_consumed_total' "$TMP/body2" || fail "/metrics with the token has no metrics"
[[ $(code /tasks -H "authorization: bearer $TOKEN") == 200 ]] || fail "bearer in lower case refused"
[[ $(code /nope -H "Authorization: Bearer $TOKEN") == 404 ]] || fail "with the token, /nope is not 404"
pass "with the token every path answers as without one"
[[ $(code /healthz) == 200 && $(code /readyz) == 200 ]] || fail "the probes need the token"
pass "/healthz and /readyz answer without the token"
[[ $(code /stats) == 401 ]] || fail "/stats without a token is not 401"
[[ $(code /stats -H "Authorization: Bearer $TOKEN") == 200 ]] || fail "/stats refuses the token"
[[ $(code /) == 200 ]] || fail "the dashboard page needs the token"
pass "/stats needs the token; the page, which holds no figure, does not"
stop2
if grep -qF "$TOKEN" "$TMP/tok.err" "$TMP/tok.out"; then
    fail "the token appears in the service's output"
fi
grep -q 'event=admin_exposed' "$TMP/tok.err" && fail "a loopback endpoint was logged as exposed"
pass "the token is not logged; loopback is not reported as exposed"

printf '%s\n' "$TOKEN" >"$TMP/token"
chmod 600 "$TMP/token"
start2 file 127.0.0.1:0 "token_file: \"$TMP/token\""
[[ $(code /metrics) == 401 ]] || fail "token_file: /metrics without the token is not 401"
[[ $(code /metrics -H "Authorization: Bearer $TOKEN") == 200 ]] ||
    fail "token_file: the token (its line break dropped) is refused"
stop2
pass "token_file: the file's token, without its line break, is the one required"

# ---------------------------------------------------------------- where it listens

start2 empty ':0'
ss -ltnH "sport = :$PORT2" | awk '{print $4}' >"$TMP/bound"
grep -qx "127.0.0.1:$PORT2" "$TMP/bound" || fail "an empty host bound $(cat "$TMP/bound"), not loopback"
stop2
pass "an empty host listens on loopback only"

start2 every '*:0'
grep -q 'level=warn event=admin_exposed listen="\*:0" token="none"' "$TMP/every.err" ||
    fail "every address was not logged at warn: $(cat "$TMP/every.err")"
[[ $(code /metrics) == 200 ]] || fail "an explicit '*' endpoint does not answer"
stop2
pass "an explicit non-loopback address is allowed, and logged at warn"

