//! Every job settles as the failure table says, whatever happens to its
//! reply: a real beanstalkd, a real `runner`, the `hello` and `hostile`
//! components. Replies never decide a job's fate, a refused reply never slows
//! the worker, a bad envelope is answered, and a hot deploy buries no job
//! meant for the new version.

use std::time::{Duration, Instant};

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{JobState, Producer, reply_ok};
use serde_json::json;

use crate::deploy_support::Modules;
use crate::worker_support::Runner;
use crate::worker_support::{
    Replies, Worker, abc, connect, err, eventually, ok, put, put_raw, put_with, wait_deleted,
    wait_state,
};

/// beanstalkd's default maximum job size, in bytes.
const MAX_JOB: u32 = 65_535;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_too_big_to_reply_is_deleted_once_with_a_reply_too_big_reply() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::start(&addr, &[("big", "hostile")], &[]);
    let mut replies = Replies::watch(&addr, "big-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "big",
        "big-result",
        json!({"bytes": MAX_JOB + 10}),
        Some("big-replies"),
    )
    .await;

    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    let error = err(&reply);
    assert_eq!(error.kind, "reply-too-big");
    let size = reply_ok(id, "big-result", &json!("r".repeat(MAX_JOB as usize + 10))).len();
    assert!(
        error.message.contains(&format!("{size} bytes")),
        "the message names the reply's size ({size}): {}",
        error.message
    );
    let mut client = connect(&addr).await;
    wait_deleted(&mut client, id).await;
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines.len(), 1, "one log line: {lines:?}");
    assert_eq!(lines[0]["outcome"], "deleted");
    assert!(
        lines[0]["reply"].as_str().unwrap().contains("too big"),
        "{}",
        lines[0]
    );
    assert!(replies.try_next().await.is_none(), "more than one reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_refused_by_a_draining_beanstalkd_is_lost_and_the_job_still_deleted() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "drain", &[]);
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "drain",
        "nap",
        json!({"ms": 1500}),
        Some("drain-replies"),
    )
    .await;
    let mut client = connect(&addr).await;
    wait_state(&mut client, id, JobState::Reserved).await;
    // From now on beanstalkd refuses every put with DRAINING.
    server.drain();

    wait_deleted(&mut client, id).await;
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines.len(), 1, "one log line: {lines:?}");
    assert_eq!(lines[0]["outcome"], "deleted");
    let reply = lines[0]["reply"].as_str().unwrap();
    assert!(
        reply.contains("lost") && reply.contains("draining"),
        "{}",
        lines[0]
    );
    let stats = client.stats_tube("drain").await.unwrap();
    assert_eq!(
        stats.total_jobs, 1,
        "the job ran once and was not put again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_replies_too_big_bury_with_a_line_each_and_do_not_slow_the_worker() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::start(
        &addr,
        &[("oversized", "hostile"), ("after", "hello")],
        &["--max-attempts", "1", "--concurrency", "1"],
    );
    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut buried = Vec::new();
    for _ in 0..40 {
        let kwargs = json!({"bytes": MAX_JOB});
        buried.push(put(&mut producer, "oversized", "big-error", kwargs, Some("r")).await);
    }
    let mut client = connect(&addr).await;
    for &id in &buried {
        wait_state(&mut client, id, JobState::Buried).await;
    }

    let started = Instant::now();
    let mut good = Vec::new();
    for _ in 0..200 {
        good.push(put(&mut producer, "after", "task-one", abc(), None).await);
    }
    let last = *good.last().unwrap();
    wait_deleted(&mut client, last).await;
    // Before, each refused reply put the slot to sleep (0.1 s doubling to
    // 5 s): these 200 took 26 s. They take about 0.2 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "200 jobs took {took:?}");

    for &id in &buried {
        let lines = worker.wait_outcomes(id, 1).await;
        assert_eq!(lines.len(), 1, "job {id}: {lines:?}");
        assert_eq!(lines[0]["outcome"], "buried");
        assert!(
            lines[0]["reply"].as_str().unwrap().contains("too big"),
            "{}",
            lines[0]
        );
    }
    let mut replies = Replies::watch(&addr, "r").await;
    for _ in 0..40 {
        let reply = replies.next(Duration::from_secs(5)).await;
        assert_eq!(err(&reply).kind, "reply-too-big");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_envelope_with_a_readable_reply_to_is_answered_and_buried() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "envelopes", &[]);
    let mut replies = Replies::watch(&addr, "envelope-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let body = br#"{"task": 5, "reply_to": "envelope-replies"}"#;
    let id = put_raw(&mut producer, "envelopes", body, 60).await;
    let no_reply_to = put_raw(&mut producer, "envelopes", b"[1, 2]", 60).await;

    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    let error = err(&reply);
    assert_eq!(error.kind, "bad-envelope");
    assert!(error.message.contains("\"task\""), "{}", error.message);
    let mut client = connect(&addr).await;
    wait_state(&mut client, id, JobState::Buried).await;
    wait_state(&mut client, no_reply_to, JobState::Buried).await;
    for job in [id, no_reply_to] {
        let lines = worker.wait_outcomes(job, 1).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["outcome"], "buried");
        assert!(
            lines[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("bad envelope")
        );
    }
    assert!(
        replies.try_next().await.is_none(),
        "a reply without reply_to"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_the_version_being_deployed_waits_for_it_instead_of_being_buried() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    // Version 1 is the Rust `hello`; version 2 is the Python one, with an
    // export (`count-calls`) version 1 lacks, compiled for seconds (no
    // cache: every start compiles).
    let modules = Modules::with(&[]);
    modules.copy("hello", "app");
    let mut runner = Runner::start(
        &addr,
        &["--modules", modules.as_str(), "--tube", "app", "--no-cache"],
        &[],
    );
    runner.wait_loaded("app").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let before = put(&mut producer, "app", "task-one", abc(), Some("app-replies")).await;
    let mut replies = Replies::watch(&addr, "app-replies").await;
    assert_eq!(replies.next(Duration::from_secs(20)).await.job, before);

    // Deployed as the README says, and a job for the new export at once.
    let python = std::fs::read(crate::support::python_wasm()).unwrap();
    modules.deploy("app", &python);
    // A TTR shorter than the compile: the job is touched while it waits,
    // and its call gets a full TTR of its own afterwards.
    let id = put_with(
        &mut producer,
        "app",
        "count_calls",
        json!({}),
        Some("app-replies"),
        5,
    )
    .await;

    // A debug build compiles the Python module in 15 s to minutes.
    let reply = replies.next(Duration::from_secs(300)).await;
    assert_eq!(reply.job, id);
    assert_eq!(ok(&reply), &json!(1), "judged by version 2");
    let mut client = connect(&addr).await;
    wait_deleted(&mut client, id).await;
    let outcomes = eventually(Duration::from_secs(5), "the job's log line", async || {
        let lines: Vec<_> = runner
            .events()
            .into_iter()
            .filter(|e| e["job"] == json!(id) && e["outcome"].is_string())
            .collect();
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0]["outcome"], "deleted");
    assert_eq!(outcomes[0]["attempt"], 1, "the wait cost no attempt");
    assert!(outcomes[0]["refused"].is_null(), "{}", outcomes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_whose_follow_ups_cannot_be_put_is_not_deleted() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "chain", &["--max-attempts", "1"]);
    let mut producer = Producer::connect(&addr).await.unwrap();
    // Ready in 2 s, when beanstalkd is draining: it still hands out jobs but
    // refuses every put.
    let opts = beanbox_queue::PutOptions {
        delay: 2,
        ..beanbox_queue::PutOptions::default()
    };
    let kwargs = crate::support::object(json!({"tube": "chain", "word": "x"}));
    let id = producer
        .put("chain", "follow-up", &kwargs, &opts)
        .await
        .unwrap();
    server.drain();

    let mut client = connect(&addr).await;
    let stats = wait_state(&mut client, id, JobState::Buried).await;
    assert_eq!(stats.reserves, 1, "{stats:?}");
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "buried");
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("follow-up jobs could not be put") && reason.contains("draining"),
        "{reason}"
    );
    let tube = client.stats_tube("chain").await.unwrap();
    assert_eq!(tube.total_jobs, 1, "no follow-up was put: {tube:?}");
}
