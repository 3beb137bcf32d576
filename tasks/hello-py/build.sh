#!/usr/bin/env bash
# Builds the Python task component with componentize-py and prints its path:
# tasks/target/py/hello-py.wasm. componentize-py (pinned in scripts/setup.sh)
# is taken from target/seed-venv, else from PATH.
# Works from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/tasks/target/py"

componentize_py="$root/target/seed-venv/bin/componentize-py"
if [ ! -x "$componentize_py" ]; then
    componentize_py="$(command -v componentize-py || true)"
fi
if [ -z "$componentize_py" ]; then
    echo "hello-py/build.sh: componentize-py not found; run scripts/setup.sh" >&2
    exit 1
fi

mkdir -p "$out"
# Build to a temporary name, then rename: a reader never sees half a file.
"$componentize_py" -d "$here/wit" -w hello-py componentize -p "$here" app -o "$out/hello-py.wasm.tmp" >&2
mv "$out/hello-py.wasm.tmp" "$out/hello-py.wasm"

echo "$out/hello-py.wasm"
