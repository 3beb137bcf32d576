#!/usr/bin/env bash
# Builds every task component (release, wasm32-wasip2) and prints the
# directory that holds them: hello.wasm, showcase.wasm, hostile.wasm,
# compute.wasm.
# Works from any directory; extra arguments go to cargo (e.g. --locked).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# --target-dir: a CARGO_TARGET_DIR in the environment must not send the
# components somewhere other than the directory this script prints.
cargo build --manifest-path "$here/Cargo.toml" --target-dir "$here/target" --target wasm32-wasip2 --release "$@" >&2

echo "$here/target/wasm32-wasip2/release"
