# Common parts of the integration scripts that run `taskloop run` in the background
# (sourced, not run):
#   TMP                  a work dir, removed on exit
#   PID                  the service's pid once started: stopped on exit
#   STOP_SIGNAL          how it is stopped on exit: INT (default; twice, as a second
#                        ^C ends a drain) or KILL
#   LOGS                 files that fail shows (e.g. the service's stderr)
#   fail MSG             says FAIL: MSG and what LOGS hold, exits 1
#   pass MSG             says ok - MSG
#   free_port            a free TCP port on 127.0.0.1
#   wait_healthz URL     waits up to 10 s for URL/healthz to answer, fails if not

TMP=$(mktemp -d)
PID=
STOP_SIGNAL=INT
LOGS=()

service_lib_cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill "-$STOP_SIGNAL" "$PID" 2>/dev/null || true
        [[ $STOP_SIGNAL == INT ]] && kill -INT "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap service_lib_cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    local f
    for f in "${LOGS[@]}"; do
        echo "--- $f" >&2
        cat "$f" >&2 2>/dev/null || true
    done
    exit 1
}

pass() { echo "ok - $*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_healthz() {
    for _ in $(seq 100); do
        curl -sf "$1/healthz" >/dev/null && return 0
        sleep 0.1
    done
    fail "the service's admin endpoint at $1 did not come up"
}
