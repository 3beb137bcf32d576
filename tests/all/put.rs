//! `runner put`: the job it puts, and with `--wait` the result it prints and
//! the exit code of its outcome.

use std::process::Output;
use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Envelope, JobState};
use serde_json::{Value, json};

use crate::support;
use crate::worker_support::{Worker, connect, job_stats, run_bounded};

/// Runs `runner put --beanstalkd addr ARGS` (bounded).
async fn runner_put(addr: &str, args: &[&str]) -> Output {
    run_bounded(
        support::runner()
            .arg("put")
            .args(["--beanstalkd", addr])
            .args(args),
        Duration::from_secs(30),
    )
    .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const ABC: &str = r#"{"arg1":"a","arg2":"b","arg3":"c"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_prints_the_job_id_and_the_job_is_in_the_tube() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let output = runner_put(
        &addr,
        &[
            "--tube",
            "put-plain",
            "task_one",
            "--kwargs",
            ABC,
            "--ttr",
            "30",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let id: u64 = stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("stdout {stdout:?} is not a job id"));

    let mut client = connect(&addr).await;
    let stats = job_stats(&mut client, id).await.expect("the job exists");
    assert_eq!(stats.tube, "put-plain");
    assert_eq!(stats.state, JobState::Ready);
    assert_eq!(stats.ttr, 30);
    let body = client.peek(id).await.unwrap().body;
    let envelope = Envelope::parse(&body).unwrap();
    assert_eq!(envelope.task, "task_one");
    assert_eq!(
        Value::Object(envelope.kwargs),
        json!({"arg1": "a", "arg2": "b", "arg3": "c"})
    );
    assert_eq!(envelope.reply_to, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_wait_prints_the_result() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::hello(&addr, "put-wait", &[]);
    let output = runner_put(
        &addr,
        &[
            "--tube",
            "put-wait",
            "task_one",
            "--kwargs",
            ABC,
            "--wait",
            "--timeout",
            "20",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "\"abc\"\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_wait_on_a_failing_task_exits_3_with_the_message() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::hello(&addr, "put-fail", &["--backoff", "0"]);
    let output = runner_put(
        &addr,
        &[
            "--tube",
            "put-fail",
            "fail",
            "--kwargs",
            r#"{"message":"it broke"}"#,
            "--wait",
            "--timeout",
            "20",
        ],
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("it broke"), "{stderr}");
    assert_eq!(text(&output.stdout), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_wait_with_bad_kwargs_exits_2() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::hello(&addr, "put-bad", &[]);
    let output = runner_put(
        &addr,
        &[
            "--tube",
            "put-bad",
            "task_one",
            "--kwargs",
            r#"{"arg1":5,"arg2":"b","arg3":"c"}"#,
            "--wait",
            "--timeout",
            "20",
        ],
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("arg1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_wait_without_a_worker_times_out_with_exit_1() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let output = runner_put(
        &addr,
        &[
            "--tube",
            "put-nobody",
            "task_one",
            "--kwargs",
            ABC,
            "--wait",
            "--timeout",
            "1",
        ],
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no result"), "{stderr}");
    // The job stays queued for a worker to come.
    let mut client = connect(&addr).await;
    let stats = client.stats_tube("put-nobody").await.unwrap();
    assert_eq!(stats.current_jobs_ready, 1);
}
