#!/usr/bin/env bash
# Builds the JavaScript task component with componentize-js and prints its
# path: tasks/target/js/hello-js.wasm. componentize-js (pinned in
# package.json and package-lock.json) is taken from tasks/hello-js/node_modules,
# which scripts/setup.sh installs with `npm ci`; this script installs nothing.
# Works from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/tasks/target/js"

componentize_js="$here/node_modules/.bin/componentize-js"
if [ ! -x "$componentize_js" ]; then
    echo "hello-js/build.sh: $componentize_js not found; run scripts/setup.sh" >&2
    exit 1
fi

mkdir -p "$out"
# `-d http fetch-event`: the sandbox grants no wasi:http, so leave it out of
# the component's imports (it would not load otherwise).
# Build to a temporary name, then rename: a reader never sees half a file.
(cd "$here" && "$componentize_js" app.js --wit wit --world-name hello-js \
    --disable http fetch-event --out "$out/hello-js.wasm.tmp") >&2
mv "$out/hello-js.wasm.tmp" "$out/hello-js.wasm"

echo "$out/hello-js.wasm"
