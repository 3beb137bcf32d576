#!/usr/bin/env bash
# The benchmark behind BENCHMARKS.md. Sets up (scripts/setup.sh), builds the
# release runner and the bench, the task components, and the peers it
# compares against — the raw std-only client and the seed's Python worker,
# copied from $BEANBOX_PEERS (default ../shared/peers) into target/peers —
# then runs target/release/beanbox-bench with this script's arguments. It
# starts its own beanstalkd on a free loopback port and stops it.
#
#   scripts/bench.sh                          # everything (about 4 minutes on 2 cores, once built)
#   scripts/bench.sh --quick                  # a smoke run
#   scripts/bench.sh --only drain --pin same  # one section, another CPU placement
#   scripts/bench.sh --help
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"

echo "== building the release runner and bench (the first build takes several minutes)" >&2
cargo build --release -p beanbox -p beanbox-bench >&2
tasks="$(tasks/build.sh)"
# The same task in Python and JavaScript, for the sandbox section.
tasks/hello-py/build.sh >/dev/null
tasks/hello-js/build.sh >/dev/null

peers="${BEANBOX_PEERS:-$root/../shared/peers}"
if [ ! -d "$peers/bench/raw-drain" ] || [ ! -d "$peers/python-seed" ]; then
    echo "bench: no peers at $peers (set BEANBOX_PEERS to a copy of shared/peers)" >&2
    exit 1
fi
echo "== peers: raw-drain and the seed worker, copied from $peers" >&2
mkdir -p target/peers/bench target/peers/python-seed
# The source may be read-only: copy contents with default modes, keeping
# raw-drain's own target/ so it builds once.
cp -rT --no-preserve=mode "$peers/python-seed" target/peers/python-seed
mkdir -p target/peers/bench/raw-drain
cp -rT --no-preserve=mode "$peers/bench/raw-drain/src" target/peers/bench/raw-drain/src
cp --no-preserve=mode "$peers/bench/raw-drain/Cargo.toml" "$peers/bench/raw-drain/Cargo.lock" \
    target/peers/bench/raw-drain/
# Its own workspace root: else cargo takes it for a stray member of ours.
printf '\n[workspace]\n' >> target/peers/bench/raw-drain/Cargo.toml
cargo build --release --quiet --manifest-path target/peers/bench/raw-drain/Cargo.toml \
    --target-dir target/peers/bench/raw-drain/target >&2

exec "$root/target/release/beanbox-bench" --root "$root" --tasks-dir "$tasks" "$@"
