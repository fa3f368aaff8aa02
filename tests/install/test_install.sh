#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then out-of-tree programs built against it
# and run, one library at a time:
#  - loop/main_loop.c, the task loop alone (only <taskloop/taskloop.h>): with
#    find_package(taskloop) and taskloop::taskloop, with pkg-config taskloop, and with a
#    plain `cc ... -ltaskloop -lpthread`; none of them may need a library of the service
#    (libfyaml, libmicrohttpd, jansson, librdkafka, libzmq) nor libtaskloop-service.
#  - consumer/main.c, the service runtime (and the memory adapter when installed): with
#    find_package(taskloop COMPONENTS service [memory]) and with pkg-config taskloop-service.
#  - find_package(taskloop COMPONENTS nosuch) must not find the package.
# Usage: test_install.sh BUILD_DIR CONSUMER_DIR LOOP_DIR
# Environment: CC (the compiler), TL_SANITIZE_FLAGS (when the libraries were built with
# sanitizers, the programs must link their runtimes too).
set -euo pipefail

USAGE="usage: test_install.sh BUILD_DIR CONSUMER_DIR LOOP_DIR"
BUILD=${1:?$USAGE}
CONSUMER=${2:?$USAGE}
LOOP=${3:?$USAGE}
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
for f in lib/pkgconfig/taskloop.pc lib/pkgconfig/taskloop-service.pc \
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
pass "installed both libraries, their headers, taskloop.pc, taskloop-service.pc and the CMake package"

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
cflags=$(pkg-config --cflags taskloop-service)
static=--static
pkg-config --static --pure --libs taskloop-service >/dev/null 2>&1 && static="--static --pure"
# shellcheck disable=SC2086
libs=$(pkg-config $static --libs taskloop-service)
[[ " $libs " == *" -ltaskloop-service "*"-ltaskloop "* ]] ||
    fail "pkg-config taskloop-service does not give -ltaskloop-service, then -ltaskloop: $libs"
defs=
[[ " $libs " == *" -ltaskloop_memory "* ]] && defs=-DHAVE_TASKLOOP_MEMORY
# shellcheck disable=SC2086
"$CC" -std=c11 $SAN $defs $cflags "$CONSUMER/main.c" -o "$TMP/consumer-pc" $libs \
    2>"$TMP/cc.log" || fail "consumer build (pkg-config) failed: $(cat "$TMP/cc.log")"
run_ok "pkg-config taskloop-service consumer" "$TMP/consumer-pc"

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
