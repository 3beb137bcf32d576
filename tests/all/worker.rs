//! The worker end to end: a real beanstalkd, a real `runner` process and the
//! `hello` and `hostile` components. Each test starts its own server and
//! worker and watches the outcome through beanstalkd's job and tube stats,
//! the reply tube and the worker's JSON log.
//!
//! Why this file is over 600 lines: one scenario per test, each a few
//! dozen lines of set-up and checks; split further by topic (as settling,
//! budgets and hostile_jobs were) when it grows.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Envelope, JobState, Producer};
use serde_json::{Value, json};

use crate::support;
use crate::worker_support::{
    Replies, TempDir, Worker, abc, connect, err, eventually, job_stats, ok, put, put_raw, put_with,
    run_bounded, wait_deleted, wait_state,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_deletes_job_and_replies() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "ok-jobs", &[]);
    let mut replies = Replies::watch(&addr, "ok-jobs-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "ok-jobs",
        "task-one",
        abc(),
        Some("ok-jobs-replies"),
    )
    .await;

    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    assert_eq!(reply.task, "task-one");
    assert_eq!(ok(&reply), &json!("abc"));
    // The reply is put before the delete; give the delete its moment.
    let mut client = connect(&addr).await;
    wait_deleted(&mut client, id).await;
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines[0]["outcome"], "deleted");
    assert_eq!(lines[0]["attempt"], 1);
    assert_eq!(lines[0]["tube"], "ok-jobs");
    assert_eq!(lines[0]["task"], "task-one");
    assert!(lines[0]["fuel"].as_u64().unwrap() > 0, "{}", lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_error_is_retried_with_growing_delay_then_buried_on_third_attempt() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "failing", &["--backoff", "1", "--max-attempts", "3"]);
    let mut replies = Replies::watch(&addr, "failing-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "failing",
        "fail",
        json!({"message": "boom"}),
        Some("failing-replies"),
    )
    .await;
    let mut client = connect(&addr).await;

    let mut seen = Vec::new();
    for releases in 1..=2 {
        let what = format!("job {id} delayed after attempt {releases}");
        let stats = eventually(Duration::from_secs(20), &what, async || {
            job_stats(&mut client, id)
                .await
                .filter(|s| s.state == JobState::Delayed && s.releases == releases)
        })
        .await;
        seen.push(stats.delay);
        // No reply while the job may still succeed.
        assert!(replies.try_next().await.is_none(), "reply before burial");
    }
    assert_eq!(seen, [1, 2], "release delays after attempts 1 and 2");

    let stats = wait_state(&mut client, id, JobState::Buried).await;
    assert_eq!(
        (stats.reserves, stats.releases, stats.buries),
        (3, 2, 1),
        "{stats:?}"
    );

    let reply = replies.next(Duration::from_secs(5)).await;
    assert_eq!(reply.job, id);
    let error = err(&reply);
    assert_eq!(error.kind, "guest-error");
    assert!(error.message.contains("boom"), "{}", error.message);
    assert!(replies.try_next().await.is_none(), "more than one reply");

    let lines = worker.wait_outcomes(id, 3).await;
    let summary: Vec<(Value, Value)> = lines
        .iter()
        .map(|l| (l["attempt"].clone(), l["outcome"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!(1), json!("released")),
            (json!(2), json!("released")),
            (json!(3), json!("buried")),
        ]
    );
    assert_eq!(lines[0]["delay"], 1);
    assert_eq!(lines[1]["delay"], 2);
    for line in &lines {
        assert!(line["reason"].as_str().unwrap().contains("boom"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_buried_at_once_with_reason_logged() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::start(
        &addr,
        &[("bad-in", "hello"), ("bad-spin", "hostile")],
        &["--fuel", "1000000", "--backoff", "0"],
    );
    let mut producer = Producer::connect(&addr).await.unwrap();
    let cases: [(&str, &[u8], &str); 5] = [
        ("bad-in", b"not json", "not JSON"),
        ("bad-in", br#"{"kwargs":{}}"#, r#"no "task" field"#),
        (
            "bad-in",
            br#"{"task":"nope","kwargs":{}}"#,
            "unknown task `nope`",
        ),
        (
            "bad-in",
            br#"{"task":"task-one","kwargs":{"arg1":5,"arg2":"b","arg3":"c"}}"#,
            "argument `arg1`",
        ),
        ("bad-spin", br#"{"task":"spin"}"#, "fuel"),
    ];
    let mut ids = Vec::new();
    for (tube, body, _) in &cases {
        ids.push(put_raw(&mut producer, tube, body, 60).await);
    }

    let mut client = connect(&addr).await;
    for ((tube, body, reason), id) in cases.iter().zip(ids) {
        let body = String::from_utf8_lossy(body);
        let stats = wait_state(&mut client, id, JobState::Buried).await;
        assert_eq!(
            (stats.reserves, stats.releases, stats.buries),
            (1, 0, 1),
            "{body}: {stats:?}"
        );
        assert_eq!(&stats.tube, tube);
        let lines = worker.wait_outcomes(id, 1).await;
        assert_eq!(lines.len(), 1, "{body}: {lines:?}");
        assert_eq!(lines[0]["outcome"], "buried", "{body}");
        assert_eq!(lines[0]["attempt"], 1, "{body}");
        let logged = lines[0]["reason"].as_str().unwrap_or_default();
        assert!(
            logged.contains(reason),
            "{body}: reason {logged:?} should mention {reason:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_format_body_runs() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "seed-body", &[]);
    let mut producer = Producer::connect(&addr).await.unwrap();
    let body = json!({
        "func_name": "task_one",
        "tube": "seed-body",
        "kwargs": {"arg1": "a", "arg2": "b", "arg3": "c"},
    });
    let id = put_raw(&mut producer, "seed-body", body.to_string().as_bytes(), 120).await;

    let mut client = connect(&addr).await;
    wait_deleted(&mut client, id).await;
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines[0]["outcome"], "deleted");
    assert_eq!(lines[0]["task"], "task_one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_runs_four_sleeping_jobs_at_once() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut worker = Worker::hello(&addr, "naps", &["--concurrency", "4"]);
    worker.wait_ready(&addr, "naps", 4).await;
    let mut replies = Replies::watch(&addr, "naps-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut client = connect(&addr).await;

    // A slot holds its job until the nap ends, so four jobs reserved at
    // once are four naps running at once. Counted, not timed: that holds on
    // a machine of any speed (naps of 3 s leave the 25 ms poll ample time).
    let started = Instant::now();
    let mut ids = BTreeSet::new();
    for _ in 0..4 {
        let id = put(
            &mut producer,
            "naps",
            "nap",
            json!({"ms": 3000}),
            Some("naps-replies"),
        )
        .await;
        ids.insert(id);
    }
    let mut done = BTreeSet::new();
    let mut most_reserved = 0;
    while done.len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of 4 replies after 60 s",
            done.len()
        );
        let stats = client.stats_tube("naps").await.unwrap();
        most_reserved = most_reserved.max(stats.current_jobs_reserved);
        while let Some(reply) = replies.try_next().await {
            assert_eq!(ok(&reply), &json!(3000));
            done.insert(reply.job);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done, ids);
    assert_eq!(most_reserved, 4, "jobs reserved at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_long_job_finishes_it_within_grace() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut worker = Worker::hello(&addr, "drain", &["--grace", "30"]);
    let mut replies = Replies::watch(&addr, "drain-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "drain",
        "nap",
        json!({"ms": 3000}),
        Some("drain-replies"),
    )
    .await;
    let mut client = connect(&addr).await;
    wait_state(&mut client, id, JobState::Reserved).await;

    worker.sigterm();
    let signalled = Instant::now();
    let status = worker.exits_within(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    // It waited for the job, which had most of its 3 s left (the 25 ms
    // poll saw it reserved), and finished it: deleted and replied.
    assert!(signalled.elapsed() > Duration::from_millis(200));
    assert_eq!(job_stats(&mut client, id).await, None, "job not deleted");
    let reply = replies.next(Duration::from_secs(10)).await;
    assert_eq!(reply.job, id);
    assert_eq!(ok(&reply), &json!(3000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_grace_hands_job_back() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut worker = Worker::hello(&addr, "abort", &["--grace", "1", "--timeout", "60"]);
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put_with(
        &mut producer,
        "abort",
        "nap",
        json!({"ms": 20000}),
        Some("abort-replies"),
        60,
    )
    .await;
    let mut client = connect(&addr).await;
    wait_state(&mut client, id, JobState::Reserved).await;

    worker.sigterm();
    // The grace is 1 s and the nap 20 s: 10 s tells them apart on any
    // machine.
    let status = worker.exits_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    let stats = wait_state(&mut client, id, JobState::Ready).await;
    assert_eq!((stats.releases, stats.buries), (0, 0), "{stats:?}");
    // Nothing was reported: the job did not finish.
    assert!(client.stats_tube("abort-replies").await.is_err());
    let log = worker.log();
    assert!(log.contains("grace period over"), "{log}");
    // Handing the job back is not a lost connection.
    assert!(!log.contains("lost beanstalkd connection"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_worker_exits_promptly_on_sigterm() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut worker = Worker::hello(&addr, "idle", &["--concurrency", "2"]);
    worker.wait_ready(&addr, "idle", 2).await;
    worker.sigterm();
    let signalled = Instant::now();
    let status = worker.exits_within(Duration::from_secs(3)).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(1),
        "idle worker took {took:?} to stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reconnects_after_beanstalkd_restart() {
    let binlog = TempDir::new("binlog");
    let mut server = Beanstalkd::start_with_args(&["-b", binlog.as_str()]);
    let addr = server.addr();
    let mut worker = Worker::hello(&addr, "durable", &["--concurrency", "4"]);

    let mut ids = BTreeSet::new();
    let mut producer = Producer::connect(&addr).await.unwrap();
    for _ in 0..50 {
        ids.insert(
            put(
                &mut producer,
                "durable",
                "task-one",
                abc(),
                Some("durable-replies"),
            )
            .await,
        );
    }
    drop(producer);
    let mut replied = BTreeSet::new();
    let mut replies = Replies::watch(&addr, "durable-replies").await;
    while replied.len() < 10 {
        let reply = replies.next(Duration::from_secs(20)).await;
        assert_eq!(ok(&reply), &json!("abc"));
        replied.insert(reply.job);
    }
    drop(replies);

    server.restart();

    let mut producer = Producer::connect(&addr).await.unwrap();
    for _ in 0..50 {
        ids.insert(
            put(
                &mut producer,
                "durable",
                "task-one",
                abc(),
                Some("durable-replies"),
            )
            .await,
        );
    }
    assert_eq!(ids.len(), 100, "job ids are unique across the restart");
    let mut replies = Replies::watch(&addr, "durable-replies").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while replied.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} of {} jobs replied; missing {:?}",
            replied.len(),
            ids.len(),
            ids.difference(&replied).collect::<Vec<_>>()
        );
        let reply = replies.next(left).await;
        assert_eq!(ok(&reply), &json!("abc"));
        assert!(
            ids.contains(&reply.job),
            "reply for unknown job {}",
            reply.job
        );
        replied.insert(reply.job);
    }
    assert!(worker.is_running(), "the worker died with the server");
    let log = worker.log();
    assert!(log.contains("lost beanstalkd connection"), "{log}");
    assert!(log.contains("reconnected to beanstalkd"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_loses_nothing() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut a = Worker::hello(&addr, "crash", &["--concurrency", "4"]);
    let mut replies = Replies::watch(&addr, "crash-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut ids = BTreeSet::new();
    for _ in 0..40 {
        ids.insert(
            put(
                &mut producer,
                "crash",
                "nap",
                json!({"ms": 200}),
                Some("crash-replies"),
            )
            .await,
        );
    }
    let mut client = connect(&addr).await;
    let mut replied = BTreeSet::new();
    // Kill A once it finished a few jobs and holds more.
    eventually(Duration::from_secs(20), "worker A to be busy", async || {
        while let Some(reply) = replies.try_next().await {
            replied.insert(reply.job);
        }
        let reserved = client
            .stats_tube("crash")
            .await
            .unwrap()
            .current_jobs_reserved;
        (replied.len() >= 4 && reserved > 0).then_some(())
    })
    .await;
    a.kill();
    let after_a = replied.len();
    assert!(after_a < 40, "A finished everything before it was killed");

    let _b = Worker::hello(&addr, "crash", &["--concurrency", "4"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while replied.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "missing replies for {:?}",
            ids.difference(&replied).collect::<Vec<_>>()
        );
        let reply = replies.next(left).await;
        assert_eq!(ok(&reply), &json!(200), "job {}", reply.job);
        replied.insert(reply.job);
    }
    assert_eq!(replied, ids);
    // The last deletes follow the last replies closely.
    let stats = eventually(
        Duration::from_secs(5),
        "tube `crash` to be empty",
        async || {
            let s = client.stats_tube("crash").await.unwrap();
            (s.current_jobs_ready + s.current_jobs_reserved + s.current_jobs_delayed == 0)
                .then_some(s)
        },
    )
    .await;
    assert_eq!(stats.current_jobs_buried, 0, "{stats:?}");
    assert_eq!(stats.cmd_delete, 40, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_gets_error_for_buried_job() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::hello(&addr, "kwargs", &[]);
    let mut replies = Replies::watch(&addr, "kwargs-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let kwargs = json!({"arg1": 5, "arg2": "b", "arg3": "c"});
    let id = put(
        &mut producer,
        "kwargs",
        "task_one",
        kwargs,
        Some("kwargs-replies"),
    )
    .await;

    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    assert_eq!(reply.task, "task_one");
    let error = err(&reply);
    assert_eq!(error.kind, "bad-kwargs");
    assert!(
        error.message.contains("argument `arg1`"),
        "{}",
        error.message
    );
    let mut client = connect(&addr).await;
    let stats = wait_state(&mut client, id, JobState::Buried).await;
    assert_eq!(stats.releases, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_job_sees_id_tube_and_attempt() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::hello(&addr, "facts", &[]);
    let mut replies = Replies::watch(&addr, "facts-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    // Another job first, so the id is not 1 by luck.
    put(&mut producer, "facts", "task-one", abc(), None).await;
    let id = put(
        &mut producer,
        "facts",
        "describe-job",
        json!({}),
        Some("facts-replies"),
    )
    .await;

    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    assert_eq!(
        ok(&reply),
        &json!(format!("id={id} tube=facts task=describe-job attempt=1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_put_lands_on_allowed_tube_and_is_denied_elsewhere() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    // --backoff 0: the denied put fails its task, which is retried at once.
    let worker = Worker::hello(&addr, "chain", &["--backoff", "0"]);
    let mut replies = Replies::watch(&addr, "chain-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut client = connect(&addr).await;

    let id = put(
        &mut producer,
        "chain",
        "follow-up",
        json!({"tube": "chain", "word": "x"}),
        Some("chain-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    // `put` returns the staged put's number within the job.
    assert_eq!(ok(&reply), &json!(1), "{reply:?}");
    // The follow-up job ran: deleted, after task-one succeeded.
    let line = eventually(
        Duration::from_secs(20),
        "the follow-up's line",
        async || {
            worker
                .events()
                .into_iter()
                .find(|f| f["task"] == "task-one" && f.get("outcome").is_some())
        },
    )
    .await;
    assert_eq!(line["tube"], "chain");
    assert_eq!(line["outcome"], "deleted");
    assert_ne!(line["job"], json!(id));
    let parent = worker.wait_outcomes(id, 1).await;
    assert_eq!(parent[0]["puts"], 1, "{}", parent[0]);

    let id = put(
        &mut producer,
        "chain",
        "follow-up",
        json!({"tube": "elsewhere", "word": "x"}),
        Some("chain-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    let error = err(&reply);
    assert!(error.message.contains("denied"), "{}", error.message);
    assert!(
        client.stats_tube("elsewhere").await.is_err(),
        "a job reached `elsewhere`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_tube_star_allows_follow_up_on_any_tube() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::hello(&addr, "chain-any", &["--put-tube", "*"]);
    let mut replies = Replies::watch(&addr, "chain-any-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "chain-any",
        "follow_up",
        json!({"tube": "elsewhere", "word": "yo"}),
        Some("chain-any-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    assert_eq!(ok(&reply), &json!(1), "{reply:?}");
    // Nobody serves `elsewhere`: the job waits there as the task wrote it.
    let mut client = connect(&addr).await;
    client.use_tube("elsewhere").await.unwrap();
    let new_id = client.peek_ready().await.expect("follow-up job exists").id;
    let stats = job_stats(&mut client, new_id).await.unwrap();
    assert_eq!(
        (stats.tube.as_str(), stats.state),
        ("elsewhere", JobState::Ready)
    );
    let body = client.peek(new_id).await.unwrap().body;
    let envelope = Envelope::parse(&body).unwrap();
    assert_eq!(envelope.task, "task-one");
    assert_eq!(
        Value::Object(envelope.kwargs),
        json!({"arg1": "yo", "arg2": "yo", "arg3": "yo"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_tube_without_a_module_waits_for_it() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    // `--tube late` with no late.wasm yet: the worker starts and waits.
    let mut worker = Worker::start(&addr, &[], &["--tube", "late"]);
    let warning = eventually(
        Duration::from_secs(10),
        "a warning about the missing module",
        async || {
            worker.events().into_iter().find(|e| {
                e["level"] == "WARN"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("waiting for modules"))
            })
        },
    )
    .await;
    let expected = worker.modules_dir().join("late.wasm").display().to_string();
    assert_eq!(warning["expected"], expected.as_str(), "{warning}");
    assert!(worker.is_running(), "the worker gave up:\n{}", worker.log());

    let mut replies = Replies::watch(&addr, "late-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "late",
        "task-one",
        abc(),
        Some("late-replies"),
    )
    .await;
    let mut client = connect(&addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = job_stats(&mut client, id).await.expect("the job waits");
    assert_eq!((stats.state, stats.reserves), (JobState::Ready, 0));

    // Deploy as the help says: copy beside, rename into place.
    let dir = worker.modules_dir().to_owned();
    std::fs::copy(support::wasm("hello"), dir.join(".late.tmp")).unwrap();
    std::fs::rename(dir.join(".late.tmp"), dir.join("late.wasm")).unwrap();
    let reply = replies.next(Duration::from_secs(10)).await;
    assert_eq!(reply.job, id);
    assert_eq!(ok(&reply), &json!("abc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tube_name_fails_startup() {
    let modules = TempDir::new("bad-tube");
    let started = Instant::now();
    let output = run_bounded(
        support::runner().args([
            "--tube",
            "no spaces allowed",
            "--modules",
            modules.as_str(),
            "--beanstalkd",
            "127.0.0.1:1",
        ]),
        Duration::from_secs(10),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(output.status.code(), Some(1), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`no spaces allowed` cannot be a tube"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_never_runs_past_its_jobs_ttr() {
    // --timeout 30 s, but the job's TTR is 2 s: the task is stopped at the
    // TTR (a deadline failure, retried), long before its 20 s nap ends, and
    // beanstalkd never hands the running job to anyone else meanwhile.
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(
        &addr,
        "ttr-jobs",
        &["--timeout", "30", "--max-attempts", "1"],
    );
    let mut replies = Replies::watch(&addr, "ttr-jobs-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put_with(
        &mut producer,
        "ttr-jobs",
        "nap",
        json!({"ms": 20_000}),
        Some("ttr-jobs-replies"),
        2,
    )
    .await;

    // Not timed: a deadline failure before the 30 s --timeout can only be
    // the TTR's (2 s), since the nap would succeed at 20 s.
    let reply = replies.next(Duration::from_secs(28)).await;
    assert_eq!(reply.job, id);
    let error = reply.outcome.expect_err("a nap past the TTR must fail");
    assert_eq!(error.kind, "deadline", "{error}");
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines[0]["outcome"], "buried", "{}", lines[0]);
    let mut client = connect(&addr).await;
    let stats = wait_state(&mut client, id, JobState::Buried).await;
    assert_eq!(stats.timeouts, 0, "the TTR expired while the job ran");
}
