//! The Python task (tasks/hello-py) on the worker, against a real
//! beanstalkd: it serves Python and JavaScript jobs side by side with Rust
//! ones, a Python task's follow-up put lands on its own tube and runs, and
//! the sandbox's limits stop a spinning and a hoarding Python task without
//! hurting the worker.
//!
//! The worker compiles the ~18 MB component once at start (seconds in a
//! debug build), so each test waits until the worker reserves on the Python
//! tube before it puts or times anything. The compiled code is cached
//! under the target dir across runs, one directory per set of tubes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{JobState, Producer};
use serde_json::{Value, json};

use crate::support;
use crate::worker_support::{
    Replies, Worker, abc, connect, err, eventually, ok, put, wait_deleted, wait_state,
};

/// How long the worker may take to compile and load the Python component.
const LOAD: Duration = Duration::from_secs(600);

/// How long a job may take to come back once the worker is ready.
const REPLY: Duration = Duration::from_secs(30);

/// A compiled-code cache kept across runs for the workers serving `tubes`:
/// one per set, as a worker prunes the entries of modules it does not serve.
fn cache_dir(tubes: &[(&str, &Path)]) -> PathBuf {
    let names: Vec<&str> = tubes.iter().map(|(tube, _)| *tube).collect();
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("python-worker-cache-{}", names.join("-")))
}

/// Starts a worker serving `tubes` (tube, component file) with `args`, and
/// waits until it reserves on every tube: all modules are loaded.
async fn start(addr: &str, tubes: &[(&str, &Path)], args: &[&str]) -> Worker {
    let cache = cache_dir(tubes);
    let mut all = vec!["--cache-dir", cache.to_str().expect("cache dir is UTF-8")];
    all.extend_from_slice(args);
    let mut worker = Worker::start_files(addr, tubes, &all);
    let mut client = connect(addr).await;
    for (tube, _) in tubes {
        let what = format!("the worker to reserve on `{tube}`");
        eventually(LOAD, &what, async || {
            assert!(worker.is_running(), "the worker exited before it was ready");
            let stats = client.stats_tube(tube).await.ok()?;
            (stats.current_waiting >= 1).then_some(())
        })
        .await;
    }
    worker
}

/// The one outcome log line of job `id`.
async fn outcome(worker: &Worker, id: u64) -> Value {
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_javascript_and_rust_jobs_run_side_by_side_on_one_worker() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let rust = support::wasm("hello");
    let worker = start(
        &addr,
        &[
            ("rust", &rust),
            ("py", support::python_wasm()),
            ("js", support::javascript_wasm()),
        ],
        &[],
    )
    .await;
    let mut replies = Replies::watch(&addr, "mixed-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let rust_id = put(
        &mut producer,
        "rust",
        "task-one",
        abc(),
        Some("mixed-replies"),
    )
    .await;
    let py_id = put(
        &mut producer,
        "py",
        "task-one",
        abc(),
        Some("mixed-replies"),
    )
    .await;

    let js_id = put(
        &mut producer,
        "js",
        "task-one",
        abc(),
        Some("mixed-replies"),
    )
    .await;

    let mut got = Vec::new();
    for _ in 0..3 {
        let reply = replies.next(REPLY).await;
        assert_eq!(ok(&reply), &json!("abc"), "job {}", reply.job);
        assert_eq!(reply.task, "task-one");
        got.push(reply.job);
    }
    got.sort_unstable();
    let mut want = vec![rust_id, py_id, js_id];
    want.sort_unstable();
    assert_eq!(got, want);

    let mut client = connect(&addr).await;
    for (id, tube) in [(rust_id, "rust"), (py_id, "py"), (js_id, "js")] {
        wait_deleted(&mut client, id).await;
        let line = outcome(&worker, id).await;
        assert_eq!(line["outcome"], "deleted", "{line}");
        assert_eq!(line["tube"], tube, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_follow_up_put_on_its_own_tube_runs() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = start(&addr, &[("py-chain", support::python_wasm())], &[]).await;
    let mut replies = Replies::watch(&addr, "py-chain-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "py-chain",
        "follow_up",
        json!({"tube": "py-chain", "word": "x"}),
        Some("py-chain-replies"),
    )
    .await;

    let reply = replies.next(REPLY).await;
    assert_eq!(reply.job, id);
    // `put` returns the staged put's number within the job.
    assert_eq!(ok(&reply), &json!(1));

    // The follow-up (no reply_to) runs on the same worker and is deleted.
    let follow_up = eventually(REPLY, "the follow-up's log line", async || {
        worker
            .events()
            .into_iter()
            .find(|f| f.get("outcome").is_some() && f["job"] != json!(id))
            .and_then(|f| f["job"].as_u64())
    })
    .await;
    let line = outcome(&worker, follow_up).await;
    assert_eq!(line["outcome"], "deleted", "{line}");
    assert_eq!(line["tube"], "py-chain", "{line}");
    assert_eq!(line["task"], "task-one", "{line}");
    assert_eq!(outcome(&worker, id).await["outcome"], "deleted");
    // task_one logged while joining "x" three times.
    assert!(
        worker.log().contains("task_one joining 3 strings"),
        "{}",
        worker.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_spin_and_hoard_hit_limits_and_the_worker_keeps_serving() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = start(
        &addr,
        &[("py-limits", support::python_wasm())],
        &[
            "--fuel",
            "2000000000",
            "--timeout",
            "60",
            "--max-attempts",
            "1",
        ],
    )
    .await;
    let mut replies = Replies::watch(&addr, "py-limits-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut client = connect(&addr).await;

    // `while True: pass` under 2e9 fuel and a 60 s timeout: the limits are
    // far enough apart that fuel runs out first on any machine (a slow one
    // burns 4e9 a second: 0.5 s, 120x short of the deadline), so the job
    // fails with `fuel`, not `deadline`.
    let spin = put(
        &mut producer,
        "py-limits",
        "spin",
        json!({}),
        Some("py-limits-replies"),
    )
    .await;
    let reply = replies.next(REPLY).await;
    assert_eq!(reply.job, spin);
    let error = err(&reply);
    assert_eq!(error.kind, "fuel", "{error}");
    let line = outcome(&worker, spin).await;
    assert_eq!(line["outcome"], "buried", "{line}");
    wait_state(&mut client, spin, JobState::Buried).await;

    // Appending 1 MiB bytearrays forever: the memory limiter refuses growth
    // past the default 64 MiB (64 allocations cost far less than 2e9 fuel).
    let hoard = put(
        &mut producer,
        "py-limits",
        "allocate_forever",
        json!({}),
        Some("py-limits-replies"),
    )
    .await;
    let reply = replies.next(REPLY).await;
    assert_eq!(reply.job, hoard);
    let error = err(&reply);
    assert_eq!(error.kind, "memory", "{error}");
    assert_eq!(outcome(&worker, hoard).await["outcome"], "buried");
    wait_state(&mut client, hoard, JobState::Buried).await;

    // The worker still serves Python jobs.
    let id = put(
        &mut producer,
        "py-limits",
        "task_one",
        abc(),
        Some("py-limits-replies"),
    )
    .await;
    let reply = replies.next(REPLY).await;
    assert_eq!(reply.job, id);
    assert_eq!(ok(&reply), &json!("abc"));
    wait_deleted(&mut client, id).await;
}
