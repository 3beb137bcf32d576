#!/usr/bin/env bash
# Sets up and runs every beanbox test: formatting and lints, the queue crate
# (codec, client against real beanstalkd), the sandbox and worker end-to-end
# tests (real beanstalkd, real components), the guest SDK's doc tests, and a
# check that producer-only users compile no wasmtime.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh" --tests

echo "== format and lints" >&2
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== the producer (beanbox-queue) depends on no wasm runtime" >&2
if cargo tree -p beanbox-queue -e normal --prefix none | grep -E '^(wasmtime|cranelift)'; then
    echo "beanbox-queue pulls in a wasm runtime: producer-only users would compile it" >&2
    exit 1
fi

echo "== task components (built once for the whole run)" >&2
BEANBOX_TASKS_DIR="$(tasks/build.sh --locked)"
export BEANBOX_TASKS_DIR
py_wasm="$(tasks/hello-py/build.sh)"
BEANBOX_PY_TASKS_DIR="$(dirname "$py_wasm")"
export BEANBOX_PY_TASKS_DIR
js_wasm="$(tasks/hello-js/build.sh)"
BEANBOX_JS_TASKS_DIR="$(dirname "$js_wasm")"
export BEANBOX_JS_TASKS_DIR
export BEANBOX_SEED_PYTHON="$root/target/seed-venv/bin/python"
# setup.sh installed Chromium: the browser test fails rather than skips.
export BEANBOX_REQUIRE_BROWSER=1

echo "== guest SDK doc tests" >&2
cargo test --manifest-path tasks/Cargo.toml -p beanbox-sdk --doc --locked

echo "== workspace tests" >&2
cargo test --workspace --locked
