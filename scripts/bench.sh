#!/usr/bin/env bash
# The benchmark behind BENCHMARKS.md. Sets up (scripts/setup.sh), builds the
# release runner, the bench and the raw std-only client it compares against
# (bench/peers/raw_drain.rs; the Python peer, bench/peers/seed_worker.py, runs
# in target/seed-venv), and the task components, then runs
# target/release/beanbox-bench with this script's arguments. It starts its
# own beanstalkd on a free loopback port and stops it.
#
#   scripts/bench.sh                          # everything (about 4 minutes on 2 cores, once built)
#   scripts/bench.sh --quick                  # a smoke run
#   scripts/bench.sh --only drain --pin same  # one section, another CPU placement
#   scripts/bench.sh --help
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"

echo "== building the release runner, bench and raw-drain (the first build takes several minutes)" >&2
cargo build --release -p beanbox -p beanbox-bench >&2
tasks="$(tasks/build.sh)"
# The same task in Python and JavaScript, for the sandbox section.
tasks/hello-py/build.sh >/dev/null
tasks/hello-js/build.sh >/dev/null

exec "$root/target/release/beanbox-bench" --root "$root" --tasks-dir "$tasks" "$@"
