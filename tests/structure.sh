#!/usr/bin/env bash
# The shape the code keeps (docs/ARCHITECTURE.md): nothing outside framework/ reaches
# into a src/ folder of the framework (build files and includes alike).
# Usage: structure.sh SOURCE_DIR
set -euo pipefail
root=${1:?usage: structure.sh SOURCE_DIR}
cd "$root"
hits=$(grep -rnE 'framework/(loop/|service/)?src|"(internal|runtime|config_int|schema_int|admin_int|waiter)\.h"' \
    --include='*.c' --include='*.h' --include='CMakeLists.txt' --include='*.cmake' \
    cmd bench tests examples adapters || true)
if [[ -n $hits ]]; then
    echo "FAIL: outside framework/, these reach into its private sources:" >&2
    echo "$hits" >&2
    exit 1
fi
echo "ok - cmd, bench, tests, examples and adapters use the framework's public headers only"
