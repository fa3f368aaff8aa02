#!/usr/bin/env bash
# Installs the Debian 12 packages taskloop needs, only those missing. Idempotent and
# quiet when everything is there. Needs root (or sudo) when something is missing.
# --fuzz: also clang 14 and its libFuzzer runtime, which only `make fuzz` uses.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libcmocka-dev librdkafka-dev libzmq3-dev libfyaml-dev libmicrohttpd-dev libjansson-dev
  libsqlite3-dev sqlite3
  python3 python3-yaml curl clang-format kcat valgrind
)
[ "${1:-}" = --fuzz ] && packages+=(clang-14 libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
