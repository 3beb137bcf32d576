#!/usr/bin/env bash
# The beanbox demo: sets up, builds, starts a private beanstalkd unless one
# listens on $BEANSTALKD_ADDR (default 127.0.0.1:11300), runs a worker on the
# hello task, puts jobs and shows what happens to each, deploys a new
# version of the task while the worker runs, deploys a task written in
# Python beside it, and stops the worker.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"

echo "== building the runner and the task components (first build takes a few minutes)"
cargo build -p beanbox --bin runner
tasks="$(tasks/build.sh)"
echo "== building the Python task (componentize-py bundles CPython: ~10 s)"
python_task="$(tasks/hello-py/build.sh)"
runner="${CARGO_TARGET_DIR:-$root/target}/debug/runner"

demo="$root/target/demo"
rm -rf "$demo" && mkdir -p "$demo/modules"
cp "$tasks/hello.wasm" "$demo/modules/hello.wasm"

addr="${BEANSTALKD_ADDR:-127.0.0.1:11300}"
host="${addr%:*}" port="${addr##*:}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    echo "== using the beanstalkd already listening on $addr"
else
    echo "== starting a private beanstalkd on $addr"
    beanstalkd -l "$host" -p "$port" & pids+=($!)
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && break; sleep 0.1; done
fi
export BEANSTALKD_ADDR="$addr"

echo "== inspecting the task module"
"$runner" inspect "$demo/modules/hello.wasm"

# The admin listener: the first free port from 9800.
admin=""
for p in $(seq 9800 9830); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then admin="127.0.0.1:$p"; break; fi
done
echo "== starting the worker: runner --tube hello --tube py --reuse 3 --modules $demo/modules --admin $admin"
echo "   (py.wasm is not there yet: the worker waits for it)"
echo "   dashboard while the demo runs: http://$admin/ (read-only: no --admin-token)"
"$runner" --tube hello --tube py --reuse 3 --modules "$demo/modules" --concurrency 1 --backoff 1 \
    --admin "$admin" &
worker=$!; pids+=("$worker")
sleep 1

show() { echo; echo "\$ runner $*"; "$runner" "$@" || echo "(exit code $?)"; }
show put --tube hello task_one --kwargs '{"arg1":"bean","arg2":"b","arg3":"ox"}' --wait
show put --tube hello describe_job --wait
echo; echo "== a job whose kwargs do not fit is buried at once (retrying cannot help)"
show put --tube hello task_one --kwargs '{"arg1":"a","arg2":2}' --wait
echo; echo "== a task that fails is retried with backoff (1 s, 2 s), then buried"
show put --tube hello fail --kwargs '{"message":"the printer is on fire"}' --wait --timeout 20

echo; echo "== hot deploy: a new hello.wasm is renamed into place; the next job runs it"
show put --tube hello version --wait
LC_ALL=C sed 's/beanbox-version:0000/beanbox-version:0001/' "$demo/modules/hello.wasm" > "$demo/modules/.hello.tmp"
mv "$demo/modules/.hello.tmp" "$demo/modules/hello.wasm"
sleep 1
show put --tube hello version --wait

if [ -x target/seed-venv/bin/python ]; then
    echo; echo "== a job in the seed framework's format ({\"func_name\", \"tube\", \"kwargs\"}, put by"
    echo "   tests/fixtures/seed_producer.py as the seed's Putter does); beanbox runs it unchanged"
    target/seed-venv/bin/python tests/fixtures/seed_producer.py --host "$host" --port "$port" \
        --tube hello task_one '{"arg1": "s", "arg2": "e", "arg3": "ed"}' | sed 's/^/seed put job /'
    sleep 1
fi

echo; echo "== a task written in Python (tasks/hello-py) is deployed as py.wasm; the worker"
echo "   compiles it (seconds; cached in ~/.cache/beanbox) and serves tube py. With --reuse 3,"
echo "   up to 3 consecutive jobs share an instance (a fresh Python instance costs ~0.7 ms,"
echo "   a reused one ~5 us): count_calls, a module-level counter, goes 1, 2, 3, then 1"
cp "$python_task" "$demo/modules/.py.tmp" && mv "$demo/modules/.py.tmp" "$demo/modules/py.wasm"
show put --tube py count_calls --wait --timeout 120
for _ in 2 3 4; do show put --tube py count_calls --wait; done
show put --tube py task_one --kwargs '{"arg1":"py","arg2":"th","arg3":"on"}' --wait

echo; echo "== tube stats: the two failed jobs are kept (buried), nothing was lost"
show stats --tube hello
echo; echo "== why they were buried (kept on beanstalkd; after a fix: deploy, then runner kick)"
show buried --tube hello
echo; echo "== the worker's Prometheus metrics (curl http://$admin/metrics), jobs per outcome"
exec 3<>"/dev/tcp/127.0.0.1/${admin##*:}"
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
grep -E '^beanbox_jobs_total' <&3 || true
exec 3<&-

echo; echo "== stopping the worker (SIGTERM: no new jobs, running ones finish)"
kill -TERM "$worker"; wait "$worker" || true
echo "demo done"
