#!/usr/bin/env bash
# The `taskloop` program, end to end: test_cli.sh CASE, with TASKLOOP set to the binary
# (and SERVICE to examples/service's binary for the example case). Each case is its own
# ctest test; a case prints what it checked and exits non-zero on the first failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${TASKLOOP:?set TASKLOOP to the taskloop binary}"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# The number on the summary line that starts with name ("  consumed   20000").
summary_value() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }

# ids FIRST COUNT: the ids a produce of COUNT messages from FIRST sends, one a line.
ids() { seq -f 'id=%06g' "$1" $(($1 + $2 - 1)); }

# Every id of the load is in the list exactly once, and nothing else is.
check_ids_once() {
    local list=$1 count=$2
    sort "$list" > "$work/got"
    ids 0 "$count" | sort > "$work/want"
    local dups
    dups=$(uniq -d "$work/got" | head -3)
    [ -z "$dups" ] || fail "ids accounted for twice: $dups"
    diff -q "$work/want" "$work/got" >/dev/null ||
        fail "ids missing or unexpected: $(comm -3 "$work/want" "$work/got" | head -5 | tr '\n' ' ')"
}

# The summary's arithmetic: consumed == completed + rerouted + dropped, per-target
# reroutes add up to rerouted, the check line says ok, and the pace is settled / span.
check_summary_adds_up() {
    local s=$1 consumed completed rerouted dropped targets
    consumed=$(summary_value consumed "$s")
    completed=$(summary_value completed "$s")
    rerouted=$(summary_value rerouted "$s")
    dropped=$(summary_value dropped "$s")
    [ -n "$consumed" ] && [ -n "$completed" ] && [ -n "$rerouted" ] && [ -n "$dropped" ] ||
        fail "summary lacks a counter: $(cat "$s")"
    [ "$consumed" -eq $((completed + rerouted + dropped)) ] ||
        fail "consumed $consumed != completed $completed + rerouted $rerouted + dropped $dropped"
    targets=$(awk '/^    [a-z]+:/ { n += $2 } END { print n + 0 }' "$s")
    [ "$targets" -eq "$rerouted" ] || fail "per-target reroutes $targets != rerouted $rerouted"
    grep -q '^check: .*: ok$' "$s" || fail "the check line is not ok"
    # The pace: settled over the span from the first consumed to the last settled.
    local span rate settled=$((completed + rerouted + dropped))
    [ "$settled" -gt 0 ] || return 0
    span=$(summary_value span_us "$s")
    rate=$(summary_value settled_per_s "$s")
    [ -n "$span" ] && [ "$span" -gt 0 ] && [ -n "$rate" ] || fail "summary lacks its span and pace"
    local want=$((settled * 1000000 / span))
    [ "$rate" -ge "$want" ] && [ "$rate" -le $((want + 1)) ] ||
        fail "settled_per_s $rate is not $settled settled over $span us"
}

# ---------------------------------------------------------------- cases

case_help_version() {
    "$TASKLOOP" --help | grep -q '^usage: taskloop COMMAND' || fail "--help"
    "$TASKLOOP" --version | grep -qE '^taskloop [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
    for cmd in run check produce mock; do
        "$TASKLOOP" "$cmd" --help | grep -q "^usage: taskloop $cmd" || fail "$cmd --help"
    done
    local rc=0
    "$TASKLOOP" frobnicate 2>"$work/err" || rc=$?
    [ "$rc" -eq 2 ] && grep -q "unknown command 'frobnicate'" "$work/err" ||
        fail "an unknown command exits 2 with a message (rc $rc)"
    rc=0
    "$TASKLOOP" produce --to kafka:t 2>"$work/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "produce without -n exits 2 (rc $rc)"
    ok "help, version and usage errors"
}

# Every error line of a bad config is FILE:LINE:COL: error: ..., and the status is 1.
check_bad() {
    local dir=$1 f=$2 rc=0
    (cd "$dir" && "$TASKLOOP" check "$f") >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] || fail "check $f exits 1 (rc $rc)"
    [ ! -s "$work/out" ] || fail "check $f prints nothing on stdout"
    local lines errors
    lines=$(grep -c -E "^$f:[0-9]+:[0-9]+: error: " "$work/err" || true)
    errors=$(grep -c ': error: ' "$work/err" || true)
    [ "$lines" -ge 1 ] && [ "$lines" -eq "$errors" ] ||
        fail "check $f: every error is $f:LINE:COL: error: ...; got: $(cat "$work/err")"
    echo "  $f: $lines error(s)"
}

# Handlers a program of one's own registers: taskloop check refuses a route naming one
# it does not know, pointing at --handlers, and takes it once named there (a list, or
# the option repeated); a name nothing registers or names is still an error.
case_check_handlers() {
    local cfg="$root/config/example-service.yaml" rc=0
    "$TASKLOOP" check "$cfg" >/dev/null 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "example-service.yaml:17:[0-9]*: error: routes\[0\].handler: no handler named 'enrich'" "$work/err" ||
        fail "an unknown handler is an error at its line (rc $rc): $(cat "$work/err")"
    grep -q -- "--handlers NAME" "$work/err" || fail "the error points at --handlers: $(cat "$work/err")"
    "$TASKLOOP" check --handlers enrich "$cfg" >"$work/out" 2>"$work/err" ||
        fail "a named handler passes: $(cat "$work/err")"
    grep -q 'handler: "enrich"' "$work/out" || fail "the dump names it: $(cat "$work/out")"
    cat >"$work/two.yaml" <<'EOF'
service: two
sources:
  a: { type: zmq, endpoint: "tcp://127.0.0.1:5999" }
  b: { type: zmq, endpoint: "tcp://127.0.0.1:5998" }
routes:
  - { source: a, handler: orders_db }
  - { source: b, handler: audit }
EOF
    "$TASKLOOP" check -q --handlers orders_db --handlers=audit,log "$work/two.yaml" ||
        fail "--handlers repeated, with a built-in name among them"
    "$TASKLOOP" check -q --handlers orders_db,audit "$work/two.yaml" || fail "a list of two"
    rc=0
    "$TASKLOOP" check -q --handlers orders_db "$work/two.yaml" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "two.yaml:7:.*no handler named 'audit'" "$work/err" &&
        ! grep -q "'orders_db'" "$work/err" ||
        fail "only the unnamed handler is an error (rc $rc): $(cat "$work/err")"
    for bad in "orders_db,,audit" "" ",audit"; do
        rc=0
        "$TASKLOOP" check -q --handlers "$bad" "$work/two.yaml" 2>"$work/err" || rc=$?
        [ "$rc" -eq 2 ] && grep -q "a name is empty" "$work/err" ||
            fail "--handlers '$bad' is a usage error (rc $rc): $(cat "$work/err")"
    done
    rc=0
    "$TASKLOOP" check "$work/two.yaml" --handlers 2>"$work/err" || rc=$?
    [ "$rc" -eq 2 ] && grep -q -- "--handlers needs NAME" "$work/err" ||
        fail "--handlers without a value is a usage error (rc $rc): $(cat "$work/err")"
    "$TASKLOOP" check --help | grep -q -- '--handlers NAME,...' || fail "check --help names --handlers"
    ok "check --handlers: named handlers pass, unknown ones are errors pointing at it"
}

case_check_bad() {
    local n=0
    for f in "$root"/tests/unit/configs/bad/*.yaml; do
        check_bad "$root/tests/unit/configs/bad" "$(basename "$f")"
        n=$((n + 1))
    done
    check_bad "$here/configs" bad_adapter_keys.yaml
    local rc=0
    "$TASKLOOP" check "$work/no-such.yaml" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q 'no-such.yaml' "$work/err" || fail "a missing file is named"
    ok "check rejects $((n + 1)) bad configs with FILE:LINE:COL errors"
}

# A config nobody should trust: check refuses what is not a regular file at once, never
# loads a plugin (unless --load-plugins), and refuses plugins others could have written.
case_check_hostile() {
    : "${MARKER_PLUGIN:?set MARKER_PLUGIN to the marker plugin module}"
    local rc
    mkfifo "$work/fifo.yaml"
    for f in "$work/fifo.yaml" /dev/zero "$work"; do
        rc=0
        timeout 10 "$TASKLOOP" check "$f" >"$work/out" 2>"$work/err" || rc=$?
        [ "$rc" -eq 1 ] || fail "check $f exits 1 at once (rc $rc)"
        grep -qE "^$f:1:1: error: cannot read the file: it is a (FIFO|character device|directory), not a regular file$" \
            "$work/err" || fail "check $f says what it is: $(cat "$work/err")"
    done
    head -c 1048577 /dev/zero | tr '\0' '#' >"$work/big.yaml"
    rc=0
    timeout 10 "$TASKLOOP" check "$work/big.yaml" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q 'a config may have at most 1048576' "$work/err" ||
        fail "a file over 1 MiB is refused (rc $rc): $(cat "$work/err")"
    echo "  FIFO, /dev/zero, a directory and a 1 MiB + 1 file: refused at once"

    # The plugin sits beside the config and is named relative to it.
    mkdir "$work/svc"
    cp "$MARKER_PLUGIN" "$work/svc/marker.so"
    chmod 755 "$work/svc" "$work/svc/marker.so"
    printf '%s\n' 'service: plugged' 'plugins: [ marker.so ]' 'sources:' \
        "  in: { type: zmq, endpoint: \"ipc://$work/plugged.sock\" }" 'routes:' \
        '  - { source: in, handler: from_marker }' >"$work/svc/service.yaml"
    export TL_PLUGIN_MARKER="$work/marker"
    rc=0
    (cd / && timeout 10 "$TASKLOOP" check "$work/svc/service.yaml") >"$work/out" 2>"$work/err" ||
        rc=$?
    [ "$rc" -eq 0 ] || fail "check of a config with a plugin exits 0 (rc $rc): $(cat "$work/err")"
    [ ! -e "$work/marker" ] || fail "check loaded the plugin (its constructor ran)"
    grep -qF "note: routes[0].handler: handler 'from_marker' is not registered; taken to be provided by plugin \"marker.so\" (not loaded by check)" \
        "$work/err" || fail "the plugin's handler is noted: $(cat "$work/err")"
    grep -q '^service: "plugged"' "$work/out" || fail "the config is printed"
    rc=0
    timeout 10 "$TASKLOOP" check --load-plugins "$work/svc/service.yaml" >/dev/null \
        2>"$work/err" || rc=$?
    [ -e "$work/marker" ] || fail "check --load-plugins loads the plugin"
    [ "$rc" -eq 1 ] && grep -q "no handler named 'from_marker' is registered" "$work/err" ||
        fail "with the plugin loaded, what it did not register is an error (rc $rc)"
    echo "  check ran no plugin code; --load-plugins did"

    chmod o+w "$work/svc/marker.so"
    rc=0
    timeout 10 "$TASKLOOP" check "$work/svc/service.yaml" >/dev/null 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q 'cannot load plugin "marker.so": it is writable by others' \
        "$work/err" || fail "a plugin writable by others is refused (rc $rc): $(cat "$work/err")"
    chmod o-w "$work/svc/marker.so"
    chmod g+w "$work/svc"
    rm -f "$work/marker"
    rc=0
    timeout 10 "$TASKLOOP" run "$work/svc/service.yaml" --timeout 5s >/dev/null 2>"$work/err" ||
        rc=$?
    [ "$rc" -eq 1 ] && grep -q 'its folder is writable by its group' "$work/err" ||
        fail "run refuses a plugin in a group-writable folder (rc $rc): $(cat "$work/err")"
    [ ! -e "$work/marker" ] || fail "run loaded a refused plugin"
    "$TASKLOOP" check --help | grep -q -- '--load-plugins' || fail "check --help names --load-plugins"

    # Neither an error nor the dump shows a secret or what a variable held. The route's
    # handler is the plugin's, whose params check cannot know (the built-in ones
    # declare theirs, and would refuse these keys).
    chmod g-w "$work/svc"
    printf '%s\n' 'service: quiet' 'plugins: [ marker.so ]' 'sources:' \
        '  in: { type: zmq, endpoint: "ipc:///tmp/x.sock", hwm: "${TL_TEST_HWM}" }' 'routes:' \
        '  - { source: in, handler: from_marker, params: { api_key: k-hunter3, dsn: "pg://me:hunter4@db/x" } }' \
        >"$work/svc/secret.yaml"
    rc=0
    TL_TEST_HWM=hunter2 "$TASKLOOP" check "$work/svc/secret.yaml" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -qF 'sources.in.hwm: expected an integer, got "${TL_TEST_HWM}"' \
        "$work/err" || fail "the error names the variable (rc $rc): $(cat "$work/err")"
    sed -i 's/, hwm: "${TL_TEST_HWM}"//' "$work/svc/secret.yaml"
    "$TASKLOOP" check "$work/svc/secret.yaml" >>"$work/out" 2>>"$work/err" ||
        fail "check secret.yaml: $(cat "$work/err")"
    [ ! -e "$work/marker" ] || fail "check loaded the plugin"
    ! grep -q 'hunter' "$work/out" "$work/err" || fail "a secret leaked: $(grep hunter "$work/out")"
    grep -q 'dsn: "pg://me:\*\*\*\*\*@db/x"' "$work/out" || fail "the URL password is masked"
    ok "check refuses what is not a regular file, runs no plugin code and shows no secret"
}

case_check_shipped() {
    # example-service.yaml names a handler only examples/service registers.
    for f in "$root"/config/{demo,example-kafka,example-zmq}.yaml; do
        "$TASKLOOP" check "$f" >"$work/out" || fail "check $f"
        grep -q '^service: ' "$work/out" || fail "check $f prints the resolved config"
        echo "  $(basename "$f"): valid"
    done
    "$TASKLOOP" check --demo | grep -q '^service: "demo"' || fail "check --demo"
    KAFKA_PASSWORD='pa55-do-not-print' "$TASKLOOP" check "$root/config/example-kafka.yaml" \
        >"$work/out"
    grep -q 'sasl.password: "\*\*\*\*\*"' "$work/out" || fail "sasl.password is masked"
    ! grep -q 'pa55-do-not-print' "$work/out" || fail "the password leaked"
    ok "shipped configs pass check; sasl.password is masked"
}

case_demo() {
    local rc=0 start=$SECONDS
    timeout 60 "$TASKLOOP" run --demo --no-progress >"$work/summary" 2>"$work/err" || rc=$?
    cat "$work/summary"
    [ "$rc" -eq 0 ] || fail "run --demo exits 0 within 60 s (rc $rc): $(tail -5 "$work/err")"
    check_summary_adds_up "$work/summary"
    [ "$(summary_value consumed "$work/summary")" -eq 20000 ] || fail "consumed all 20000"
    [ "$(summary_value stalled "$work/summary")" -gt 0 ] || fail "some messages stalled"
    grep -qE '^ +kafka:demo.stalled +[1-9]' "$work/summary" || fail "reroutes to demo.stalled"
    grep -qE '^ +kafka:demo.dlq +[1-9]' "$work/summary" || fail "failures reach demo.dlq"
    local committed
    committed=$(awk '$2 ~ /^demo\.input\[[0-9]+\]$/ { n += $3 } END { print n + 0 }' "$work/summary")
    [ "$committed" -eq 20000 ] || fail "committed offsets cover all 20000 (got $committed)"
    ok "demo ended by itself in $((SECONDS - start)) s and its summary adds up"
}

case_zmq_e2e() {
    local n=5000 rc=0
    export E2E_ENDPOINT="ipc://$work/in.sock" E2E_RECORD="$work/record"
    "$TASKLOOP" run "$here/configs/e2e-zmq.yaml" --expect $n --timeout 60s --no-progress \
        >"$work/summary" 2>"$work/err" &
    local run=$!
    pids+=("$run")
    "$TASKLOOP" produce --to "zmq:$E2E_ENDPOINT" -n $n --size 200 --keys 7 ||
        fail "produce to zmq"
    wait "$run" || rc=$?
    [ "$rc" -eq 0 ] || fail "run --expect $n exits 0 (rc $rc): $(tail -5 "$work/err")"
    check_summary_adds_up "$work/summary"
    check_ids_once "$work/record" $n
    ok "zmq: all $n ids recorded exactly once"
}

# produce --from: a message per line of a file or of stdin, with keys and headers as
# --format key-value and --headers say, to Kafka (read back with kcat) and ZeroMQ
# (taken in by a running service); a bad line stops it naming FILE:LINE; on a terminal a
# progress line with the rate and the time left, and the summary line always.
case_produce_from() {
    command -v kcat >/dev/null || { echo "kcat is not installed (make test installs it)"; exit 1; }
    local brokers rc
    start_mock --topic p.kv:1 --topic p.h:1 --topic p.big:4
    printf 'k1\tid=1 a\tb\n\tid=2 no key\r\nk3\tid=3\n' >"$work/kv.txt"
    "$TASKLOOP" produce --to kafka:p.kv --brokers "$brokers" --from "$work/kv.txt" \
        --format key-value >"$work/out" 2>"$work/err" || fail "produce --from a file: $(cat "$work/err")"
    grep -q '^produced to kafka:p.kv: sent 3, delivered 3, failed 0 in ' "$work/out" ||
        fail "the summary line: $(cat "$work/out")"
    [ ! -s "$work/err" ] || fail "no progress line off a terminal: $(cat "$work/err")"
    kcat -C -b "$brokers" -t p.kv -e -q -f '%k|%s|\n' >"$work/got"
    printf 'k1|id=1 a\tb|\n|id=2 no key|\nk3|id=3|\n' | diff - "$work/got" ||
        fail "keys and payloads as the lines said"
    printf 'a=1;b=x y\tk9\tid=4\n\tk8\tid=5\n' |
        "$TASKLOOP" produce --to kafka:p.h --brokers "$brokers" --from - --format key-value \
            --headers >"$work/out" || fail "produce --from stdin with headers"
    kcat -C -b "$brokers" -t p.h -e -q -f '%k|%h|%s\n' >"$work/got"
    printf 'k9|a=1,b=x y|id=4\nk8||id=5\n' | diff - "$work/got" || fail "headers as the lines said"
    for bad in 'nokey' 'k\tid' 'noeq\tk\tid' '=1\tk\tid'; do
        rc=0
        printf "a=1\tk\tid=1\n$bad\n" | "$TASKLOOP" produce --to kafka:p.h --brokers "$brokers" \
            --from - --format key-value --headers >"$work/out" 2>"$work/err" || rc=$?
        [ "$rc" -eq 1 ] && grep -q '^taskloop: produce: stdin:2: ' "$work/err" ||
            fail "line '$bad' stops it at stdin:2 (rc $rc): $(cat "$work/err")"
        grep -q 'sent 1, delivered 1, failed 1' "$work/out" || fail "what went before is sent"
    done
    rc=0
    "$TASKLOOP" produce --to kafka:p.h --brokers "$brokers" --from "$work/none.txt" \
        2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "none.txt: No such file" "$work/err" || fail "a missing file is named"
    rc=0
    "$TASKLOOP" produce --to kafka:p.h --from "$work/kv.txt" --stall-ratio 0.1 2>"$work/err" || rc=$?
    [ "$rc" -eq 2 ] && grep -q -- '--stall-ratio does not go with --from' "$work/err" ||
        fail "generated-load options are refused with --from (rc $rc)"
    # On a terminal (script gives it one): a progress line, then the summary.
    seq -f 'id=%06g' 0 49999 >"$work/big.txt"
    command -v script >/dev/null || fail "script (util-linux) is needed for a terminal"
    script -qec "'$TASKLOOP' produce --to kafka:p.big --brokers '$brokers' --from '$work/big.txt' --rate 40000" \
        /dev/null | tr '\r' '\n' >"$work/tty"
    grep -qE '^(.\[K)?produce: [0-9]+ sent, [0-9]+ msgs/s, [0-9]+%, about [0-9]+ s left' "$work/tty" ||
        fail "a progress line with the rate and the time left: $(head -c 400 "$work/tty")"
    grep -q 'produced to kafka:p.big: sent 50000, delivered 50000, failed 0' "$work/tty" ||
        fail "the summary on a terminal: $(tail -c 300 "$work/tty")"
    [ "$(kcat -C -b "$brokers" -t p.big -e -q -f '%s\n' | sort -u | wc -l)" -eq 50000 ] ||
        fail "50000 distinct messages in p.big"
    # ZeroMQ: a running service takes every line in (the wire format its check accepts).
    local n=2000
    export E2E_ENDPOINT="ipc://$work/in.sock" E2E_RECORD="$work/record"
    "$TASKLOOP" run "$here/configs/e2e-zmq.yaml" --expect $n --timeout 60s --no-progress \
        >"$work/summary" 2>"$work/err" &
    local run=$!
    pids+=("$run")
    ids 0 $n | awk '{ printf "h=%d\tkey-%d\t%s\n", NR, NR % 7, $0 }' >"$work/zmq.txt"
    for _ in $(seq 100); do
        [ -S "$work/in.sock" ] && break
        sleep 0.1
    done
    # Paced: an unpaced burst of multipart messages over ipc sometimes loses its tail
    # between the two sockets (generated load with --keys too), which this case is not
    # about.
    "$TASKLOOP" produce --to "zmq:$E2E_ENDPOINT" --from "$work/zmq.txt" --format key-value \
        --headers --rate 5000 >"$work/out" || fail "produce --from to zmq"
    rc=0
    wait "$run" || rc=$?
    [ "$rc" -eq 0 ] || fail "the service took all $n (rc $rc): $(cat "$work/out") $(grep -v level=info "$work/err" | tail -5) $(cat "$work/summary")"
    check_ids_once "$work/record" $n
    "$TASKLOOP" produce --help | grep -q -- '--from FILE|-' || fail "produce --help names --from"
    "$TASKLOOP" --help | grep -q "a file's lines" || fail "taskloop --help says produce sends files"
    ok "produce --from: lines, keys, headers to Kafka and ZeroMQ; bad lines named; progress"
}

# Starts `taskloop mock` with the topics given (--topic NAME[:PARTITIONS]...); sets brokers.
start_mock() {
    "$TASKLOOP" mock "$@" >"$work/mock" &
    pids+=("$!")
    for _ in $(seq 100); do
        [ -s "$work/mock" ] && break
        sleep 0.1
    done
    brokers=$(head -1 "$work/mock")
    [ -n "$brokers" ] || fail "taskloop mock printed no bootstrap servers"
}

# Every payload id of a topic, one a line (kcat stops at the end of the topic).
topic_ids() {
    kcat -C -b "$brokers" -t "$1" -e -q -f '%s\n' | grep -o '^id=[0-9]*' || true
}

case_kafka_e2e() {
    command -v kcat >/dev/null || { echo "kcat is not installed (make test installs it)"; exit 1; }
    local n=3000 rc=0 brokers
    start_mock --topic e2e.in:4 --topic e2e.stalled --topic e2e.dlq
    "$TASKLOOP" produce --to kafka:e2e.in --brokers "$brokers" -n $n --keys 32 \
        --stall-ratio 0.02 --fail-ratio 0.01 >"$work/produced" || fail "produce to kafka"
    grep -q "delivered $n, failed 0 (marked stall 60, fail 30)" "$work/produced" ||
        fail "produce reports its deliveries: $(cat "$work/produced")"
    E2E_BROKERS=$brokers E2E_RECORD="$work/record" timeout 90 "$TASKLOOP" run \
        "$here/configs/e2e-kafka.yaml" --expect $n --timeout 60s --no-progress \
        >"$work/summary" 2>"$work/err" &
    local svc=$!
    # While it runs, /metrics reports the consumer lag of the Kafka partitions.
    local port="" lagged=0
    for _ in $(seq 100); do
        port=$(sed -n 's/.*"event":"admin_listening".*"port":"\([0-9]*\)".*/\1/p' "$work/err")
        [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/metrics" >"$work/metrics" 2>/dev/null &&
            grep -q '^taskloop_consumer_lag{source="in",topic="e2e.in",partition="' \
                "$work/metrics" && { lagged=1; break; }
        sleep 0.1
    done
    wait "$svc" || rc=$?
    [ "$lagged" -eq 1 ] || fail "/metrics shows taskloop_consumer_lag for e2e.in (port '$port')"
    cat "$work/summary"
    [ "$rc" -eq 0 ] || fail "run --expect $n exits 0 (rc $rc): $(tail -5 "$work/err")"
    check_summary_adds_up "$work/summary"
    topic_ids e2e.stalled >"$work/stalled"
    topic_ids e2e.dlq >"$work/dlq"
    [ "$(wc -l <"$work/stalled")" -eq 60 ] || fail "60 stalled ids in e2e.stalled"
    [ "$(wc -l <"$work/dlq")" -eq 30 ] || fail "30 failed ids in e2e.dlq"
    cat "$work/record" "$work/stalled" "$work/dlq" >"$work/all"
    check_ids_once "$work/all" $n
    grep -q '"event":"started"' "$work/err" || fail "json log lines"
    ok "kafka: all $n ids accounted for once (record, e2e.stalled, e2e.dlq)"
}

case_example_service() {
    : "${SERVICE:?set SERVICE to the example service binary}"
    local n=1000 rc=0
    export ENRICH_ENDPOINT="ipc://$work/enrich.sock" ENRICH_OUT="$work/enriched"
    # check, through tl_service_main: the resolved config, or FILE:LINE:COL errors.
    "$SERVICE" check "$root/config/example-service.yaml" >"$work/out" ||
        fail "service check exits 0"
    grep -q '^service: "enrich"' "$work/out" || fail "check prints the resolved config"
    printf 'service: x\nroutes: 3\n' >"$work/bad.yaml"
    rc=0
    "$SERVICE" check "$work/bad.yaml" >/dev/null 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -qE "^$work/bad.yaml:[0-9]+:[0-9]+: error: " "$work/err" ||
        fail "check of a bad config exits 1 with FILE:LINE:COL errors (rc $rc): $(cat "$work/err")"
    # Its own handler is known to its check; one it does not register is an error that
    # does not send the user to taskloop's --handlers, which it does not take.
    sed 's/handler: enrich/handler: enrich_v2/' "$root/config/example-service.yaml" >"$work/other.yaml"
    rc=0
    "$SERVICE" check -q "$work/other.yaml" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "other.yaml:17:[0-9]*: error: .*no handler named 'enrich_v2' is registered$" "$work/err" ||
        fail "service check refuses a handler it does not register (rc $rc): $(cat "$work/err")"
    rc=0
    "$SERVICE" check --handlers enrich_v2 "$work/other.yaml" 2>/dev/null || rc=$?
    [ "$rc" -eq 2 ] || fail "service check takes no --handlers (rc $rc)"
    "$SERVICE" --help | grep -q '^usage: service run FILE' || fail "service --help"
    rc=0
    "$SERVICE" frobnicate 2>/dev/null || rc=$?
    [ "$rc" -eq 2 ] || fail "an unknown command exits 2 (rc $rc)"
    rc=0
    "$SERVICE" run "$root/config/example-service.yaml" --no-progress >"$work/out" 2>"$work/err" &
    local svc=$!
    pids+=("$svc")
    "$TASKLOOP" produce --to "zmq:$ENRICH_ENDPOINT" -n $n >/dev/null || fail "produce"
    for _ in $(seq 100); do
        [ "$(wc -l <"$ENRICH_OUT" 2>/dev/null || echo 0)" -ge $n ] && break
        sleep 0.1
    done
    kill -TERM "$svc"
    wait "$svc" || rc=$?
    [ "$rc" -eq 0 ] || fail "the service exits 0 on SIGTERM (rc $rc): $(tail -5 "$work/err")"
    cut -d' ' -f1 "$ENRICH_OUT" >"$work/ids"
    check_ids_once "$work/ids" $n
    grep -q "^gold 100$" "$work/out" || fail "tier counts: $(cat "$work/out")"
    grep -q '^summary of enrich after ' "$work/out" || fail "a summary: $(cat "$work/out")"
    [ "$(summary_value completed "$work/out")" -eq $n ] || fail "the summary counts $n completed"
    check_summary_adds_up "$work/out"
    grep -q 'service: terminated: draining' "$work/err" || fail "SIGTERM is reported"
    grep -q 'level=info event=started service=enrich' "$work/err" ||
        fail "logfmt log lines as the config says: $(head -3 "$work/err")"
    ok "example service: check, then enriched all $n messages, drained on SIGTERM, summary"
}

# examples/orders-sqlite without a broker: its check knows its handler, taskloop's does
# with --handlers, and a database path that cannot be opened fails the start, naming it.
case_orders_sqlite() {
    : "${ORDERS_SQLITE:?set ORDERS_SQLITE to the orders-sqlite example binary}"
    local cfg="$root/examples/orders-sqlite/orders.yaml" rc=0
    "$ORDERS_SQLITE" check -q "$cfg" || fail "orders-sqlite check of its own config"
    "$TASKLOOP" check -q --handlers orders.insert "$cfg" || fail "taskloop check --handlers orders.insert"
    KAFKA=127.0.0.1:1 ORDERS_DB="$work/no/such/dir/orders.db" "$ORDERS_SQLITE" run "$cfg" \
        --no-progress >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "handler 'orders.insert': init failed: cannot open database '$work/no/such/dir/orders.db'" "$work/err" ||
        fail "a bad database path fails the start (rc $rc): $(cat "$work/err")"
    KAFKA=127.0.0.1:1 ORDERS_DB="$work/orders.db" timeout 30 "$ORDERS_SQLITE" run "$cfg" \
        --no-progress --timeout 1s >"$work/out" 2>"$work/err" || fail "a run that reads nothing exits 0: $(tail -3 "$work/err")"
    [ "$(sqlite3 "$work/orders.db" 'SELECT count(*) FROM orders')" = 0 ] ||
        fail "init creates the database and its table"
    grep -q '^orders inserted 0, already there 0, failed attempts 0$' "$work/out" ||
        fail "the example's counts after the summary: $(tail -2 "$work/out")"
    ok "orders-sqlite: check, a bad database path refused at start, the table created"
}

# log writes a line per message to its file, discard completes, work's failures
# without a target are dropped; the summary still adds up.
case_builtin_handlers() {
    local n=200 rc=0
    cat >"$work/handlers.yaml" <<EOF
service: handlers
sources:
  a: { type: zmq, endpoint: "ipc://$work/a.sock" }
  b: { type: zmq, endpoint: "ipc://$work/b.sock" }
  c: { type: zmq, endpoint: "ipc://$work/c.sock" }
routes:
  - { source: a, handler: log, params: { file: "$work/log.txt" } }
  - { source: b, handler: discard }
  - { source: c, handler: work, on_error: { retries: 1, backoff: 1ms }, params: { ms: "0" } }
log: { format: json, level: warn }
EOF
    "$TASKLOOP" run "$work/handlers.yaml" --expect $((3 * n)) --timeout 30s --no-progress \
        >"$work/summary" 2>"$work/err" &
    local run=$!
    pids+=("$run")
    for s in a b; do
        "$TASKLOOP" produce --to "zmq:ipc://$work/$s.sock" -n $n >/dev/null || fail "produce $s"
    done
    "$TASKLOOP" produce --to "zmq:ipc://$work/c.sock" -n $n --fail-ratio 0.1 >/dev/null ||
        fail "produce c"
    wait "$run" || rc=$?
    [ "$rc" -eq 0 ] || fail "run exits 0 (rc $rc): $(tail -5 "$work/err")"
    [ "$(grep -c "^origin=ipc://$work/a.sock partition=-1 offset=[0-9]* size=9 attempt=1$" \
        "$work/log.txt")" -eq $n ] || fail "log wrote $n lines: $(head -2 "$work/log.txt")"
    check_summary_adds_up "$work/summary"
    [ "$(summary_value dropped "$work/summary")" -eq $((n / 10)) ] || fail "dropped $((n / 10))"
    [ "$(summary_value retries "$work/summary")" -eq $((n / 10)) ] || fail "retried once each"
    grep -q '"event":"message_dropped_no_target"' "$work/err" || fail "drops are logged"
    ok "log, discard and work's failures behave; the summary adds up"
}

# SIGINT drains and exits 0; a second SIGINT forces exit 130.
case_signals() {
    local rc=0
    export E2E_ENDPOINT="ipc://$work/sig.sock" E2E_RECORD="$work/record"
    "$TASKLOOP" run "$here/configs/e2e-zmq.yaml" --no-progress >"$work/summary" 2>"$work/err" &
    local run=$!
    pids+=("$run")
    sleep 1
    kill -INT "$run"
    wait "$run" || rc=$?
    [ "$rc" -eq 0 ] || fail "one SIGINT drains and exits 0 (rc $rc)"
    grep -q '^check: ' "$work/summary" || fail "a summary after SIGINT"
    rc=0
    cat >"$work/stuck.yaml" <<EOF
service: stuck
sources:
  in: { type: zmq, endpoint: "ipc://$work/stuck.sock" }
loop: { drain_timeout: 1m }
routes:
  - { source: in, handler: work, timeout: 1h }
EOF
    "$TASKLOOP" run "$work/stuck.yaml" --no-progress >/dev/null 2>"$work/err" &
    run=$!
    pids+=("$run")
    "$TASKLOOP" produce --to "zmq:ipc://$work/stuck.sock" -n 5 --stall-ratio 1 >/dev/null
    sleep 1
    kill -INT "$run"
    sleep 0.5
    kill -INT "$run"
    wait "$run" || rc=$?
    [ "$rc" -eq 130 ] || fail "a second SIGINT exits 130 at once (rc $rc)"
    ok "SIGINT drains; a second one forces exit 130"
}

# `taskloop redrive` without a broker of its own: bad options (-X ones too) are usage
# errors naming the option; brokers that do not answer end it with status 1; a dry run
# on the mock cluster lists what would move or park and sends nothing; a missing topic
# is status 1. (Moving, resuming after a kill and parking need transactions, which the
# mock does not keep: e2e_redrive does those on a real broker, e2e_sasl_ssl -X.)
case_redrive() {
    command -v kcat >/dev/null || { echo "kcat is not installed (make test installs it)"; exit 1; }
    local rc t0 args want
    "$TASKLOOP" redrive --help | grep -q '^usage: taskloop redrive --from TOPIC' || fail "redrive --help"
    "$TASKLOOP" redrive --help | grep -q '^  -X NAME=VALUE' || fail "redrive --help lists -X"
    while IFS='|' read -r args want; do
        rc=0
        # shellcheck disable=SC2086
        "$TASKLOOP" redrive $args >"$work/out" 2>"$work/err" || rc=$?
        [ "$rc" -eq 2 ] && grep -qF "taskloop: redrive: $want" "$work/err" ||
            fail "redrive $args: want status 2 and '$want', got $rc: $(cat "$work/err")"
        [ ! -s "$work/out" ] || fail "redrive $args printed on stdout"
    done <<'CASES'
--to x|--from TOPIC is required
--from d --since yesterday|--since: "yesterday" is not a UTC time
--from d --max x1|--max: "x1" is not a whole number
--from d --origin-partition p1|--origin-partition: "p1" is not a whole number
--from d --header novalue|--header: "novalue" is not NAME=VALUE
--from d --reason|--reason needs a value
--from d -X no.such.property=1|-X no.such.property: No such configuration property
--from d -X socket.timeout.ms=soon|-X socket.timeout.ms: Invalid value
--from d -X group.id=g|-X group.id: set by redrive itself (use --group)
--from d -X isolation.level=read_uncommitted|-X isolation.level: set by redrive itself
--from d -X novalue|-X: "novalue" is not NAME=VALUE
--from d --frobnicate|unknown option --frobnicate
CASES
    ok "bad options: status 2, the option named, nothing on stdout"
    rc=0
    t0=$(date +%s)
    "$TASKLOOP" redrive --from d --brokers 127.0.0.1:1 >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "cannot reach the brokers 127.0.0.1:1" "$work/err" ||
        fail "unreachable brokers: want status 1 and a message, got $rc: $(cat "$work/err")"
    [ $(($(date +%s) - t0)) -le 20 ] || fail "unreachable brokers: more than 20 s"
    ok "unreachable brokers: status 1, said"
    start_mock --topic d.dlq:2 --topic d.orig:2
    printf '%b\n' \
        'tl-origin-topic=d.orig;tl-origin-partition=1;tl-origin-offset=7;tl-reason=failed;tl-error=boom\tk1\tid=1' \
        'tl-origin-topic=d.orig;tl-origin-partition=0;tl-reason=stalled;tl-redrive-count=3\tk2\tid=2' \
        '\tk3\tid=3' |
        "$TASKLOOP" produce --to kafka:d.dlq --brokers "$brokers" --from - --format key-value \
            --headers --partitions 1 >/dev/null || fail "produce the dead letters"
    "$TASKLOOP" redrive --from d.dlq --brokers "$brokers" --dry-run -X client.id=cli-test \
        >"$work/out" 2>"$work/err" || fail "dry run: $(cat "$work/err")"
    grep -q '^d.dlq\[0\]@0 origin=d.orig\[1\] reason=failed error="boom" age=[0-9]*s -> d.orig$' "$work/out" ||
        fail "dry run line of a failed message: $(cat "$work/out")"
    grep -q '^d.dlq\[0\]@1 origin=d.orig\[0\] reason=stalled .* -> d.dlq.parked (parked)$' "$work/out" ||
        fail "dry run line of a message past --max-redrives: $(cat "$work/out")"
    grep -q '^redrive d.dlq (dry run): read 3, would move 1, parked 1, skipped 1 (filtered 0, no tl-origin-topic 1), failed 0' \
        "$work/out" || fail "dry run summary: $(tail -1 "$work/out")"
    "$TASKLOOP" redrive --from d.dlq --brokers "$brokers" --dry-run --reason stalled --max-redrives 5 \
        >"$work/out" || fail "dry run with a filter"
    grep -q 'read 3, would move 1, parked 0, skipped 2 (filtered 2, no tl-origin-topic 0)' "$work/out" ||
        fail "--reason stalled: $(tail -1 "$work/out")"
    [ -z "$(kcat -C -b "$brokers" -t d.orig -e -q -f '%s\n' 2>/dev/null)" ] || fail "a dry run sent something"
    ok "dry run: a line per message to move or park, a summary, nothing sent"
    rc=0
    "$TASKLOOP" redrive --from nosuch --brokers "$brokers" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "topic nosuch does not exist" "$work/err" ||
        fail "missing topic: want status 1 and a message, got $rc: $(cat "$work/err")"
    ok "a missing topic: status 1, said"
}

[ $# -eq 1 ] || { echo "usage: $0 CASE" >&2; exit 2; }
"case_$1"
