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
pub(crate) async fn runner_put(addr: &str, args: &[&str]) -> Output {
    run_bounded(
        support::runner()
            .arg("put")
            .args(["--beanstalkd", addr])
            .args(args),
        Duration::from_secs(30),
    )
    .await
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) const ABC: &str = r#"{"arg1":"a","arg2":"b","arg3":"c"}"#;

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
    // The err value, as JSON, is the one thing on stdout.
    assert_eq!(text(&output.stdout), "\"it broke\"\n");
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

/// The `beanbox-reply-*` tubes that exist on `addr`.
async fn reply_tubes(addr: &str) -> Vec<String> {
    let mut client = connect(addr).await;
    let mut tubes = client.list_tubes().await.unwrap();
    tubes.retain(|t| t.starts_with("beanbox-reply-"));
    tubes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_wait_leaves_no_reply_tube_behind() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "put-tidy", &["--backoff", "0"]);
    for (task, kwargs, code) in [
        ("task_one", ABC, 0),
        ("fail", r#"{"message":"no"}"#, 3),
        ("task_one", ABC, 0),
        ("task_one", "{}", 2),
    ] {
        let output = runner_put(
            &addr,
            &[
                "--tube",
                "put-tidy",
                task,
                "--kwargs",
                kwargs,
                "--wait",
                "--timeout",
                "20",
            ],
        )
        .await;
        assert_eq!(output.status.code(), Some(code), "{}", text(&output.stderr));
    }
    // Checked with the worker still running: neither `put --wait` nor the
    // worker's slots (which reply with `Client::put_in`) keep a reply tube
    // in use or watched, so beanstalkd has dropped every one.
    assert_eq!(reply_tubes(&addr).await, Vec::<String>::new());
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_after_put_wait_gave_up_sits_on_an_unwatched_tube() {
    // What the README tells operators to look for: the producer is gone, the
    // job runs later, its reply stays on a tube nobody watches.
    let server = Beanstalkd::start();
    let addr = server.addr();
    let output = runner_put(
        &addr,
        &[
            "--tube",
            "put-late",
            "task_one",
            "--kwargs",
            ABC,
            "--wait",
            "--timeout",
            "1",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(reply_tubes(&addr).await, Vec::<String>::new());
    let _worker = Worker::hello(&addr, "put-late", &[]);
    let mut client = connect(&addr).await;
    let orphan =
        crate::worker_support::eventually(Duration::from_secs(20), "the late reply", async || {
            reply_tubes(&addr).await.pop()
        })
        .await;
    let stats = client.stats_tube(&orphan).await.unwrap();
    assert_eq!(
        (stats.current_jobs_ready, stats.current_watching),
        (1, 0),
        "{stats:?}"
    );
}
