#!/usr/bin/env bash
# The beanbox demo: sets up, builds, starts a private beanstalkd unless one
# listens on $BEANSTALKD_ADDR (default 127.0.0.1:11300), runs a worker on the
# hello task, puts jobs and shows what happens to each, deploys a new
# version of the task while the worker runs, and stops the worker.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"

echo "== building the runner and the task components (first build takes a few minutes)"
cargo build -p beanbox --bin runner
tasks="$(tasks/build.sh)"
runner="$root/target/debug/runner"

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

echo "== starting the worker: runner --tube hello --modules $demo/modules"
"$runner" --tube hello --modules "$demo/modules" --concurrency 2 --backoff 1 &
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
    echo; echo "== the seed framework's own Python producer puts a job; beanbox runs it"
    seed="$demo/python-seed"; cp -r "$root/../shared/peers/python-seed" "$seed" 2>/dev/null || true
    if [ -f "$seed/tasks.py" ]; then
        (cd "$seed" && BEANSTALKD_HOST="$host" BEANSTALKD_PORT="$port" SEED_TUBE=hello \
            "$root/target/seed-venv/bin/python" -c 'import tasks; print("seed put job", tasks.task_one.put(arg1="s", arg2="e", arg3="ed"))')
        sleep 1
    fi
fi

echo; echo "== tube stats: the two failed jobs are kept (buried), nothing was lost"
exec 3<>"/dev/tcp/$host/$port"
printf 'stats-tube hello\r\n' >&3
timeout 1 cat <&3 | grep -E 'current-jobs-(ready|buried|delayed)|total-jobs' || true
exec 3<&-

echo; echo "== stopping the worker (SIGTERM: no new jobs, running ones finish)"
kill -TERM "$worker"; wait "$worker" || true
echo "demo done"
