//! Jobs put by the seed task framework (the Python job queue beanbox
//! replaces) run unchanged: `{"func_name": …, "tube": …, "kwargs": …}` on the
//! task's tube, priority 2^31, TTR 120.
//!
//! The producer is our fixture `tests/fixtures/seed_producer.py` (greenstalk,
//! from `BEANBOX_SEED_PYTHON`); with `BEANBOX_SEED_DIR` pointing at a port of
//! the seed framework itself (`job_queue.py` and `tasks.py`), its own
//! `Putter` is tried as well.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use serde_json::{Value, json};

use crate::worker_support::{Worker, connect, job_stats, run_bounded, wait_deleted};

/// The python with greenstalk (`BEANBOX_SEED_PYTHON`, else `python3`).
async fn seed_python() -> String {
    let python = std::env::var("BEANBOX_SEED_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = run_bounded(
        Command::new(&python).args(["-c", "import greenstalk"]),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        probe.status.success(),
        "`{python}` cannot import greenstalk, which the seed's producer needs: run \
         scripts/setup.sh (or `pip install greenstalk==2.1.1`, or point BEANBOX_SEED_PYTHON \
         at a python that has it)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    python
}

/// The job id a producer printed.
fn job_id(output: &Output) -> u64 {
    assert!(
        output.status.success(),
        "the seed producer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the producer printed {stdout:?}, not a job id"))
}

/// Checks that job `id` is in the seed's format for `task_one` on `tube`,
/// then that a worker on `tube` runs it to success.
async fn seed_job_completes(addr: &str, tube: &str, id: u64) {
    let mut client = connect(addr).await;
    let body: Value = serde_json::from_slice(&client.peek(id).await.unwrap().body).unwrap();
    assert_eq!(
        body,
        json!({"func_name": "task_one", "tube": tube, "kwargs": {"arg1": "a", "arg2": "b", "arg3": "c"}})
    );
    let stats = job_stats(&mut client, id).await.expect("the job waits");
    assert_eq!(
        (stats.tube.as_str(), stats.pri, stats.ttr),
        (tube, 1 << 31, 120)
    );

    let worker = Worker::hello(addr, tube, &[]);
    wait_deleted(&mut client, id).await;
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines[0]["outcome"], "deleted", "{lines:?}");
    assert_eq!(lines[0]["task"], "task_one", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_put_in_the_seed_format_completes() {
    let python = seed_python().await;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/seed_producer.py");
    let server = Beanstalkd::start();
    let output = run_bounded(
        Command::new(&python)
            .arg(&fixture)
            .args([
                "--port",
                &server.port().to_string(),
                "--tube",
                "seed-fixture",
            ])
            .args(["task_one", r#"{"arg1": "a", "arg2": "b", "arg3": "c"}"#]),
        Duration::from_secs(20),
    )
    .await;
    seed_job_completes(&server.addr(), "seed-fixture", job_id(&output)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_put_by_the_seed_framework_itself_completes() {
    let Some(seed) = std::env::var_os("BEANBOX_SEED_DIR").map(PathBuf::from) else {
        eprintln!(
            "skipped: set BEANBOX_SEED_DIR to a Python port of the seed framework \
             (job_queue.py, tasks.py) to run its own producer"
        );
        return;
    };
    assert!(
        seed.join("tasks.py").is_file(),
        "BEANBOX_SEED_DIR={} has no tasks.py",
        seed.display()
    );
    let python = seed_python().await;
    let server = Beanstalkd::start();
    let output = run_bounded(
        Command::new(&python)
            .current_dir(&seed)
            // Leave the seed's directory as it was.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("BEANSTALKD_HOST", "127.0.0.1")
            .env("BEANSTALKD_PORT", server.port().to_string())
            .env("SEED_TUBE", "seed-itself")
            .args([
                "-c",
                r#"import tasks; print(tasks.task_one.put(arg1="a", arg2="b", arg3="c"))"#,
            ]),
        Duration::from_secs(20),
    )
    .await;
    seed_job_completes(&server.addr(), "seed-itself", job_id(&output)).await;
}
