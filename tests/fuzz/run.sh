#!/usr/bin/env bash
# Runs each fuzz target of a TL_FUZZ=ON build for SECONDS, one after the other, one
# process each. New inputs go to BUILD/fuzz/corpus/TARGET (the seeds in the repo are
# only read); a finding is saved as BUILD/fuzz/artifacts/TARGET-crash-... and fails
# the run. Usage: run.sh BUILD SECONDS [TARGET...]  (default: every target)
set -euo pipefail
build=${1:?usage: run.sh BUILD SECONDS [TARGET...]}
secs=${2:?usage: run.sh BUILD SECONDS [TARGET...]}
shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
seeds=$root/tests/fuzz/corpus
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config interpolate zmq_wire tl_headers)

bin_of() {
    case $1 in
    config) echo "$build/tests/fuzz/fuzz_config" ;;
    interpolate) echo "$build/framework/service/fuzz/fuzz_interpolate" ;;
    zmq_wire) echo "$build/adapters/zmq/fuzz/fuzz_zmq_wire" ;;
    tl_headers) echo "$build/framework/service/fuzz/fuzz_tl_headers" ;;
    *) echo "run.sh: no fuzz target '$1'" >&2; return 1 ;;
    esac
}

# Seed folders besides the target's own: the config target starts from every YAML
# config the project keeps (libFuzzer reads folders recursively).
extra_seeds() {
    [ "$1" = config ] || return 0
    echo "$root/config $root/tests/unit/configs $root/tests/integration/configs $root/tests/e2e/configs"
}

# libfyaml's one known leak (tests/lsan.supp) is suppressed by its function's name,
# which only a full stack shows: the config target unwinds slowly on each malloc
# (about 8 times fewer executions), the others keep the fast unwinder.
sanitizer_env() {
    [ "$1" = config ] || return 0
    echo "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
    echo "LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$root/tests/lsan.supp"
}

failed=0
for t in "${targets[@]}"; do
    bin=$(bin_of "$t")
    mkdir -p "$build/fuzz/corpus/$t" "$build/fuzz/artifacts"
    log=$build/fuzz/$t.log
    echo "fuzz: $t for ${secs}s (log: $log)"
    # shellcheck disable=SC2046
    if env $(sanitizer_env "$t") "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$build/fuzz/artifacts/$t-" \
        "$build/fuzz/corpus/$t" "$seeds/$t" $(extra_seeds "$t") >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done ' "$log" | sed 's/^/  /'
    else
        echo "fuzz: $t FAILED: a finding, see $log and $build/fuzz/artifacts/" >&2
        grep -E '^==[0-9]+==ERROR|runtime error|^SUMMARY|Test unit written' "$log" | head -5 >&2 || true
        failed=1
    fi
done
exit $failed
