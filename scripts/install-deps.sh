#!/usr/bin/env bash
# Installs the Debian 12 packages taskloop needs, only those missing. Idempotent and
# quiet when everything is there. Needs root (or sudo) when something is missing.
# --fuzz: also clang 14 and its libFuzzer runtime, which only `make fuzz` uses.
# --bench: also what `make bench` uses beyond the build: gnuplot for its plots, and a JDK,
# Maven and venv for the peer consumers of bench/peers.sh.
# Optional test packages (the dashboard's browser test: a headless Chromium driven by
# Selenium) are installed too when they can be; if not, the run goes on and that test
# says it is skipped. --no-test-extras: not those (an image that only builds).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libcmocka-dev librdkafka-dev libzmq3-dev libfyaml-dev libmicrohttpd-dev libjansson-dev
  libsodium-dev
  libsqlite3-dev sqlite3
  python3 python3-yaml curl clang-format kcat valgrind
)
[ "${1:-}" = --fuzz ] && packages+=(clang-14 libclang-rt-14-dev)
[ "${1:-}" = --bench ] && packages+=(gnuplot-nox openjdk-17-jdk-headless maven python3-venv)
optional=(chromium chromium-driver python3-selenium)
[ "${1:-}" = --no-test-extras ] && optional=()

# absent PACKAGE...: those of the packages not installed.
absent() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}
mapfile -t missing < <(absent "${packages[@]}")
mapfile -t missing_optional < <(absent "${optional[@]}")
[ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || [ ${#missing[@]} -eq 0 ]  # optional ones only: go on
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
  echo "install-deps: installing the optional test packages ${missing_optional[*]}"
  $sudo apt-get install -y -qq --no-install-recommends "${missing_optional[@]}" >/dev/null ||
    echo "install-deps: could not install ${missing_optional[*]}; the browser test will be skipped"
fi
