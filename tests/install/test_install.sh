#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then the out-of-tree program in consumer/
# built against it twice, with find_package(taskloop) and with pkg-config, and run.
# Usage: test_install.sh BUILD_DIR CONSUMER_DIR
# Environment: CC (the compiler), TL_SANITIZE_FLAGS (when the libraries were built with
# sanitizers, the consumer must link their runtimes too).
set -euo pipefail

BUILD=${1:?usage: test_install.sh BUILD_DIR CONSUMER_DIR}
CONSUMER=${2:?usage: test_install.sh BUILD_DIR CONSUMER_DIR}
CC=${CC:-cc}
SAN=${TL_SANITIZE_FLAGS:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
pass() { echo "ok - $*"; }

cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" ||
    fail "cmake --install failed: $(cat "$TMP/install.log")"
for f in include/taskloop/taskloop.h include/taskloop/service.h include/taskloop/adapter.h \
    lib/pkgconfig/taskloop.pc lib/cmake/taskloop/taskloopConfig.cmake \
    lib/cmake/taskloop/taskloopConfigVersion.cmake lib/cmake/taskloop/taskloopTargets.cmake; do
    [[ -f $PREFIX/$f ]] || fail "not installed: $f"
done
ls "$PREFIX"/lib/libtaskloop.* >/dev/null 2>&1 || fail "libtaskloop not installed"
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
pass "installed libraries, headers, taskloop.pc and the CMake package under a temp prefix"

# With CMake: find_package(taskloop) from CMAKE_PREFIX_PATH.
cmake -S "$CONSUMER" -B "$TMP/with-cmake" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" \
    >"$TMP/cmake.log" 2>&1 || fail "consumer configure failed: $(cat "$TMP/cmake.log")"
cmake --build "$TMP/with-cmake" >"$TMP/build.log" 2>&1 ||
    fail "consumer build (CMake) failed: $(cat "$TMP/build.log")"
out=$("$TMP/with-cmake/consumer") || fail "the CMake-built consumer failed"
[[ $out == ok* ]] || fail "the CMake-built consumer printed '$out'"
pass "find_package(taskloop): built and ran, printed '$out'"

# With pkg-config: --static, since the libraries may be static archives that need
# Requires.private and Libs.private. pkgconf's --pure stops the expansion there: plain
# --static would also ask for the static dependencies of librdkafka and GnuTLS, whose
# archives Debian's -dev packages do not ship (the system libraries are shared).
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
pkg-config --exists taskloop || fail "pkg-config does not find taskloop"
[[ $(pkg-config --modversion taskloop) == "$(sed -n 's/^Version: //p' "$PREFIX/lib/pkgconfig/taskloop.pc")" ]] ||
    fail "pkg-config reports another version"
cflags=$(pkg-config --cflags taskloop)
static=--static
pkg-config --static --pure --libs taskloop >/dev/null 2>&1 && static="--static --pure"
# shellcheck disable=SC2086
libs=$(pkg-config $static --libs taskloop)
defs=
[[ " $libs " == *" -ltaskloop_memory "* ]] && defs=-DHAVE_TASKLOOP_MEMORY
# shellcheck disable=SC2086
"$CC" -std=c11 $SAN $defs $cflags "$CONSUMER/main.c" -o "$TMP/consumer-pc" $libs \
    2>"$TMP/cc.log" || fail "consumer build (pkg-config) failed: $(cat "$TMP/cc.log")"
out=$("$TMP/consumer-pc") || fail "the pkg-config-built consumer failed"
[[ $out == ok* ]] || fail "the pkg-config-built consumer printed '$out'"
pass "pkg-config taskloop: built and ran, printed '$out'"
