#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then out-of-tree programs built against it
# and run, one library at a time:
#  - loop/main_loop.c, the task loop alone (only <taskloop/taskloop.h>): with
#    find_package(taskloop) and taskloop::taskloop, with pkg-config taskloop, and with a
#    plain `cc ... -ltaskloop -lpthread`; none of them may need a library of the service
#    (libfyaml, libmicrohttpd, jansson, librdkafka, libzmq) nor libtaskloop-service.
#  - consumer/main.c, the service runtime (and the memory adapter when installed): with
#    find_package(taskloop COMPONENTS service [memory]) and with pkg-config taskloop-service.
#    A Kafka-only service's pkg-config link line names no libzmq (one .pc per adapter).
#  - find_package(taskloop COMPONENTS nosuch) must not find the package.
#  - plugin/plugin.c, a plugin: built with pkg-config taskloop-plugin (plain cc) and with
#    find_package(taskloop COMPONENTS plugin), linking no taskloop library; the installed
#    `taskloop` exports the public tl_* functions and nothing else of them, loads the
#    plugin from a config and runs its handler and lifecycle hooks; a plugin needing a
#    function the program lacks is refused with a message naming it.
# Usage: test_install.sh BUILD_DIR CONSUMER_DIR LOOP_DIR PLUGIN_DIR
# Environment: CC (the compiler), TL_SANITIZE_FLAGS (when the libraries were built with
# sanitizers, the programs must link their runtimes too).
set -euo pipefail

USAGE="usage: test_install.sh BUILD_DIR CONSUMER_DIR LOOP_DIR PLUGIN_DIR"
BUILD=${1:?$USAGE}
CONSUMER=${2:?$USAGE}
LOOP=${3:?$USAGE}
PLUGIN=${4:?$USAGE}
CC=${CC:-cc}
SAN=${TL_SANITIZE_FLAGS:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix
# What the task loop must not pull in: the service's libraries and the service itself.
NOT_LOOP='fyaml|microhttpd|jansson|rdkafka|zmq|taskloop-service|taskloop_(kafka|zmq|memory)'

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
pass() { echo "ok - $*"; }

# Runs a built program with the installed shared libraries in reach (CMake builds set
# an rpath; cc and pkg-config builds do not) and checks that it printed "ok ...".
run_ok() {
    local what=$1 prog=$2 out
    out=$(LD_LIBRARY_PATH=$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$prog") ||
        fail "the $what failed"
    [[ $out == ok* ]] || fail "the $what printed '$out'"
    pass "$what: built and ran, printed '$out'"
}

# Configures and builds a CMake project against the prefix; extra arguments go to the
# configure step. The verbose build log is kept, for checking the link line.
cmake_build() {
    local src=$1 bin=$2
    shift 2
    cmake -S "$src" -B "$bin" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_C_COMPILER="$CC" \
        -DCMAKE_C_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" "$@" >"$bin.configure.log" 2>&1 ||
        fail "configure of $src failed: $(cat "$bin.configure.log")"
    cmake --build "$bin" --verbose >"$bin.build.log" 2>&1 ||
        fail "build of $src failed: $(cat "$bin.build.log")"
}

# ---------------------------------------------------------------- installed files

cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" ||
    fail "cmake --install failed: $(cat "$TMP/install.log")"
for h in taskloop loop_ext recycler list service adapter config; do
    [[ -f $PREFIX/include/taskloop/$h.h ]] || fail "not installed: include/taskloop/$h.h"
done
for f in lib/pkgconfig/taskloop.pc lib/pkgconfig/taskloop-service.pc lib/pkgconfig/taskloop-plugin.pc \
    lib/cmake/taskloop/taskloopConfig.cmake lib/cmake/taskloop/taskloopConfigVersion.cmake \
    lib/cmake/taskloop/taskloopTargets.cmake; do
    [[ -f $PREFIX/$f ]] || fail "not installed: $f"
done
ls "$PREFIX"/lib/libtaskloop.* >/dev/null 2>&1 || fail "libtaskloop not installed"
ls "$PREFIX"/lib/libtaskloop-service.* >/dev/null 2>&1 || fail "libtaskloop-service not installed"
for a in kafka zmq memory; do
    if ls "$BUILD"/adapters/$a/libtaskloop_$a.* >/dev/null 2>&1; then
        ls "$PREFIX"/lib/libtaskloop_$a.* >/dev/null 2>&1 || fail "libtaskloop_$a not installed"
        [[ -f $PREFIX/include/taskloop/$a.h ]] || fail "taskloop/$a.h not installed"
        [[ -f $PREFIX/lib/pkgconfig/taskloop-$a.pc ]] || fail "taskloop-$a.pc not installed"
    fi
done
if [[ -x $BUILD/cmd/taskloop/taskloop ]]; then
    [[ -x $PREFIX/bin/taskloop ]] || fail "the taskloop program is not installed"
    "$PREFIX/bin/taskloop" --version >/dev/null 2>&1 || "$PREFIX/bin/taskloop" help >/dev/null 2>&1 ||
        fail "the installed taskloop program does not run"
fi
if grep -rqs "$(cd "$BUILD" && pwd)" "$PREFIX/lib/pkgconfig" "$PREFIX/lib/cmake"; then
    fail "installed package files point into the build tree"
fi
pass "installed both libraries, their headers, taskloop.pc, taskloop-service.pc, one .pc per adapter, taskloop-plugin.pc and the CMake package"

# ---------------------------------------------------------------- the loop alone

# The library itself: every symbol it leaves undefined is the C library's (or the
# sanitizers'), never one of the service's libraries or of libtaskloop-service.
if [[ -f $PREFIX/lib/libtaskloop.so ]]; then
    needed=$(readelf -d "$PREFIX/lib/libtaskloop.so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    if grep -Eq "$NOT_LOOP" <<<"$needed"; then
        fail "libtaskloop.so needs more than the C library: $needed"
    fi
    undef=$(nm -D --undefined-only "$PREFIX/lib/libtaskloop.so" | awk '{print $NF}')
else
    # In an archive, a symbol one member leaves undefined another may define.
    undef=$(comm -23 <(nm --undefined-only "$PREFIX/lib/libtaskloop.a" | awk 'NF {print $NF}' |
        sort -u) <(nm --defined-only "$PREFIX/lib/libtaskloop.a" | awk 'NF == 3 {print $3}' |
        sort -u))
fi
bad=$(grep -E '^(fy_|MHD_|json_|rd_kafka|zmq_|tl_)' <<<"$undef" || true)
[[ -z $bad ]] || fail "libtaskloop refers to symbols of other libraries: $(tr '\n' ' ' <<<"$bad")"
pass "libtaskloop refers to no symbol of the service or its libraries"

# With CMake, while no pkg-config module is to be found: the loop's consumers must not
# need the service's -dev packages just to configure.
mkdir -p "$TMP/no-pc"
PKG_CONFIG_LIBDIR=$TMP/no-pc PKG_CONFIG_PATH='' cmake_build "$LOOP" "$TMP/loop-cmake"
if grep -Eq -- "$NOT_LOOP" "$TMP/loop-cmake.build.log"; then
    fail "the loop consumer's link line names the service or its libraries: \
$(grep -E -- "$NOT_LOOP" "$TMP/loop-cmake.build.log")"
fi
run_ok "find_package(taskloop) loop consumer" "$TMP/loop-cmake/loop_consumer"

# With pkg-config: taskloop.pc has no Requires of any kind, so a plain --static is safe.
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
pkg-config --exists taskloop || fail "pkg-config does not find taskloop"
[[ $(pkg-config --modversion taskloop) == "$(sed -n 's/^Version: //p' "$PREFIX/lib/pkgconfig/taskloop.pc")" ]] ||
    fail "pkg-config reports another version"
[[ -z $(pkg-config --print-requires --print-requires-private taskloop) ]] ||
    fail "taskloop.pc requires other modules: $(pkg-config --print-requires --print-requires-private taskloop)"
cflags=$(pkg-config --cflags taskloop)
libs=$(pkg-config --static --libs taskloop)
if grep -Eq -- "$NOT_LOOP" <<<"$libs"; then
    fail "pkg-config taskloop names more than the loop: $libs"
fi
# shellcheck disable=SC2086
"$CC" -std=c11 $SAN $cflags "$LOOP/main_loop.c" -o "$TMP/loop-pc" $libs 2>"$TMP/cc.log" ||
    fail "loop consumer build (pkg-config) failed: $(cat "$TMP/cc.log")"
run_ok "pkg-config taskloop loop consumer ($libs)" "$TMP/loop-pc"

# By hand: -ltaskloop and the threads library, nothing else.
# shellcheck disable=SC2086
"$CC" -std=c11 $SAN "$LOOP/main_loop.c" -I"$PREFIX/include" -L"$PREFIX/lib" -ltaskloop -lpthread \
    -o "$TMP/loop-cc" 2>"$TMP/cc.log" ||
    fail "loop consumer build (cc -ltaskloop -lpthread) failed: $(cat "$TMP/cc.log")"
if ldd "$TMP/loop-cc" | grep -Eq -- "$NOT_LOOP"; then
    fail "the loop consumer loads the service's libraries: $(ldd "$TMP/loop-cc")"
fi
run_ok "cc -ltaskloop -lpthread loop consumer" "$TMP/loop-cc"

# ---------------------------------------------------------------- the service

with_memory=OFF
ls "$PREFIX"/lib/libtaskloop_memory.* >/dev/null 2>&1 && with_memory=ON
cmake_build "$CONSUMER" "$TMP/with-cmake" -DWITH_MEMORY=$with_memory
run_ok "find_package(taskloop COMPONENTS service$([[ $with_memory == ON ]] && echo ' memory')) consumer" \
    "$TMP/with-cmake/consumer"

# --static, since the libraries may be static archives that need Requires.private and
# Libs.private. pkgconf's --pure stops the expansion there: plain --static would also
# ask for the static dependencies of librdkafka and GnuTLS, whose archives Debian's
# -dev packages do not ship (the system libraries are shared).
pkg-config --exists taskloop-service || fail "pkg-config does not find taskloop-service"
static=--static
pkg-config --static --pure --libs taskloop-service >/dev/null 2>&1 && static="--static --pure"
# The runtime alone names no broker library; each adapter names its own and no other's.
# shellcheck disable=SC2086
libs=$(pkg-config $static --libs taskloop-service)
if grep -Eq -- '-l(rdkafka|zmq|taskloop_)' <<<"$libs"; then
    fail "pkg-config taskloop-service names an adapter or a broker library: $libs"
fi
if [[ -f $PREFIX/lib/pkgconfig/taskloop-kafka.pc ]]; then
    # shellcheck disable=SC2086
    libs=$(pkg-config $static --libs taskloop-kafka)
    [[ " $libs " == *" -lrdkafka "* ]] || fail "pkg-config taskloop-kafka does not give -lrdkafka: $libs"
    if grep -Eq -- '-l(zmq|taskloop_zmq|taskloop_memory)( |$)' <<<"$libs"; then
        fail "a Kafka-only service would link another adapter's libraries: $libs"
    fi
    pass "pkg-config taskloop-kafka: a Kafka-only link line without libzmq"
fi
modules=taskloop-service
defs=
if [[ -f $PREFIX/lib/pkgconfig/taskloop-memory.pc ]]; then
    modules="taskloop-service taskloop-memory"
    defs=-DHAVE_TASKLOOP_MEMORY
fi
# shellcheck disable=SC2086
cflags=$(pkg-config --cflags $modules)
# shellcheck disable=SC2086
libs=$(pkg-config $static --libs $modules)
[[ " $libs " == *" -ltaskloop-service "*"-ltaskloop "* ]] ||
    fail "pkg-config $modules does not give -ltaskloop-service, then -ltaskloop: $libs"
# shellcheck disable=SC2086
"$CC" -std=c11 $SAN $defs $cflags "$CONSUMER/main.c" -o "$TMP/consumer-pc" $libs \
    2>"$TMP/cc.log" || fail "consumer build (pkg-config) failed: $(cat "$TMP/cc.log")"
run_ok "pkg-config $modules consumer" "$TMP/consumer-pc"

# ---------------------------------------------------------------- a component not built

mkdir -p "$TMP/nosuch"
cat >"$TMP/nosuch/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(taskloop_nosuch LANGUAGES C)
find_package(taskloop COMPONENTS nosuch)
message(STATUS "taskloop_FOUND=${taskloop_FOUND}")
EOF
cmake -S "$TMP/nosuch" -B "$TMP/nosuch/build" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_C_COMPILER="$CC" >"$TMP/nosuch.log" 2>&1 ||
    fail "configure with COMPONENTS nosuch failed: $(cat "$TMP/nosuch.log")"
grep -Eq 'taskloop_FOUND=(0|FALSE|OFF|NO|)$' "$TMP/nosuch.log" ||
    fail "find_package(taskloop COMPONENTS nosuch) found the package: $(cat "$TMP/nosuch.log")"
pass "find_package(taskloop COMPONENTS nosuch): not found"

# ---------------------------------------------------------------- a plugin

if [[ ! -x $PREFIX/bin/taskloop ]]; then
    pass "plugin: skipped, the taskloop program was not built"
    exit 0
fi
# The program exports the API: what a plugin calls is there, and every tl_* symbol it
# exports is declared in an installed header (none of the libraries' insides).
exported=$(nm -D --defined-only "$PREFIX/bin/taskloop" | awk '$3 ~ /^tl_/ {print $3}')
for sym in tl_register_handler tl_register_handler_hooks tl_handler_param tl_handler_state \
    tl_registry_add_source tl_task_create tl_strerror; do
    grep -qx "$sym" <<<"$exported" || fail "the taskloop program does not export $sym"
done
for sym in $exported; do
    grep -rqw -- "$sym" "$PREFIX/include/taskloop" ||
        fail "the taskloop program exports $sym, which no installed header declares"
done
pass "the taskloop program exports $(wc -l <<<"$exported") public tl_* functions and nothing else of taskloop"

if [[ ! -f $PREFIX/include/taskloop/memory.h ]]; then
    pass "plugin run: skipped, the memory adapter was not built"
    exit 0
fi
# pkg-config taskloop-plugin: headers only, no library, nothing required.
[[ -z $(pkg-config --libs taskloop-plugin) ]] ||
    fail "pkg-config taskloop-plugin names libraries: $(pkg-config --libs taskloop-plugin)"
mkdir -m 700 "$TMP/plugins"
# shellcheck disable=SC2046
"$CC" -std=c11 -shared -fPIC $(pkg-config --cflags taskloop-plugin) "$PLUGIN/plugin.c" \
    -o "$TMP/plugins/counted.so" 2>"$TMP/cc.log" ||
    fail "plugin build (cc, pkg-config taskloop-plugin) failed: $(cat "$TMP/cc.log")"
PKG_CONFIG_LIBDIR=$TMP/no-pc PKG_CONFIG_PATH='' cmake_build "$PLUGIN" "$TMP/plugin-cmake"
for so in "$TMP/plugins/counted.so" "$TMP/plugin-cmake/counted.so"; do
    [[ -f $so ]] || fail "the plugin build made no $so"
    if readelf -d "$so" | grep -q 'NEEDED.*taskloop'; then
        fail "the plugin $so links a taskloop library: $(readelf -d "$so" | grep NEEDED)"
    fi
done
pass "plugin built with pkg-config taskloop-plugin and find_package(taskloop COMPONENTS plugin), linking no taskloop library"

# run_plugin NAME.so OUT: runs the installed program on a config naming the plugin, for
# five messages of a memory source, with two workers.
run_plugin() {
    local so=$1 out=$2
    cat >"$TMP/plugins/service.yaml" <<EOF
service: plugged
plugins: [ $so ]
loop: { workers: 2 }
sources:
  in: { type: memory, name: plugin_in }
routes:
  - source: in
    handler: counted
    params: { out: "$out", topic: plugin_in, count: "5" }
EOF
    LD_LIBRARY_PATH=$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} timeout 60 \
        "$PREFIX/bin/taskloop" run "$TMP/plugins/service.yaml" --expect 5 --timeout 20s \
        --no-progress >"$TMP/plugin.out" 2>"$TMP/plugin.err"
}
for so in counted.so cmake-counted.so; do
    [[ $so == counted.so ]] || cp "$TMP/plugin-cmake/counted.so" "$TMP/plugins/$so"
    rm -f "$TMP/plugins/$so.out"
    run_plugin "$so" "$TMP/plugins/$so.out" ||
        fail "taskloop run with plugin $so failed: $(cat "$TMP/plugin.err")"
    [[ $(grep -c '^handled m[0-4]$' "$TMP/plugins/$so.out") == 5 ]] ||
        fail "the plugin's handler did not handle the 5 messages: $(cat "$TMP/plugins/$so.out")"
    [[ $(grep -c '^fini ' "$TMP/plugins/$so.out") == 1 ]] &&
        grep -qx 'fini thread_init=2 thread_fini=2' "$TMP/plugins/$so.out" ||
        fail "the plugin's hooks did not run once per worker and fini once: $(cat "$TMP/plugins/$so.out")"
done
pass "taskloop run loaded both plugins: 5 messages handled, thread_init/thread_fini on 2 workers, fini once"

# A plugin needing what the program lacks: refused, naming the symbol and what to check.
# shellcheck disable=SC2046
"$CC" -std=c11 -shared -fPIC -DTL_PLUGIN_NEWER $(pkg-config --cflags taskloop-plugin) \
    "$PLUGIN/plugin.c" -o "$TMP/plugins/newer.so" 2>"$TMP/cc.log" ||
    fail "plugin build (newer) failed: $(cat "$TMP/cc.log")"
if run_plugin newer.so "$TMP/plugins/newer.out"; then
    fail "taskloop run loaded a plugin needing a function it lacks"
fi
grep -q 'cannot load plugin "newer.so": it needs the symbol tl_from_a_newer_taskloop, .*newer taskloop.*exporting' \
    "$TMP/plugin.err" || fail "the missing symbol is not explained: $(cat "$TMP/plugin.err")"
pass "a plugin needing a function the program lacks: $(grep -o 'it needs the symbol [a-z_]*' "$TMP/plugin.err")"
