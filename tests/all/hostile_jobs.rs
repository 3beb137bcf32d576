//! Hostile tasks as jobs: a guest burning CPU inside host imports, a log
//! flood and a put flood, each run by a real `runner` against a real
//! beanstalkd next to ordinary jobs; and the follow-up puts of jobs that fail
//! or succeed.

use std::time::{Duration, Instant};

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{JobState, Producer};
use serde_json::json;

use crate::worker_support::{
    Replies, Worker, abc, connect, eventually, job_stats, ok, put, put_with, wait_state,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_burning_cpu_in_log_is_stopped_at_its_ttr_while_other_tubes_keep_serving() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut worker = Worker::start(
        &addr,
        &[("burner", "hostile"), ("quick", "hello")],
        // Fuel for hours of this: the TTR is what stops it.
        &[
            "--max-attempts",
            "1",
            "--memory-mb",
            "256",
            "--fuel",
            "1000000000000000",
        ],
    );
    worker.wait_ready(&addr, "quick", 1).await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    // 60 MiB a message, a thousand times: minutes of host CPU in `log`.
    let kwargs = json!({"mb": 60, "times": 1000});
    let id = put_with(&mut producer, "burner", "log-huge", kwargs, None, 4).await;
    let mut client = connect(&addr).await;
    wait_state(&mut client, id, JobState::Reserved).await;

    // Meanwhile another tube answers as fast as ever (~1 ms a job here).
    let mut replies = Replies::watch(&addr, "quick-replies").await;
    let mut latencies = Vec::new();
    for _ in 0..11 {
        let sent = Instant::now();
        put(
            &mut producer,
            "quick",
            "task-one",
            abc(),
            Some("quick-replies"),
        )
        .await;
        replies.next(Duration::from_secs(10)).await;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(100),
        "a parallel tube's jobs took {latencies:?}"
    );

    // Stopped at its TTR (the deadline never exceeds it), touched until
    // then, and settled by the table: never timed out by beanstalkd, never
    // run again.
    let stats = wait_state(&mut client, id, JobState::Buried).await;
    assert_eq!((stats.reserves, stats.timeouts), (1, 0), "{stats:?}");
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("time limit"),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_flood_puts_at_most_the_budget_and_only_when_the_task_succeeds() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::start(&addr, &[("flood", "hostile")], &["--max-puts", "25"]);
    let mut producer = Producer::connect(&addr).await.unwrap();
    // Each follow-up is a `count-calls` job on the same tube.
    let id = put(
        &mut producer,
        "flood",
        "put-bomb",
        json!({"n": 100_000}),
        Some("flood-replies"),
    )
    .await;
    let mut replies = Replies::watch(&addr, "flood-replies").await;
    let reply = replies.next(Duration::from_secs(30)).await;
    assert_eq!(reply.job, id);
    assert_eq!(ok(&reply), &json!(25), "the guest saw 25 puts accepted");
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines[0]["puts"], 25, "{}", lines[0]);
    assert!(
        lines[0]["budget"].as_str().unwrap().contains("put"),
        "{}",
        lines[0]
    );
    let mut client = connect(&addr).await;
    let stats = client.stats_tube("flood").await.unwrap();
    assert_eq!(stats.total_jobs, 1 + 25, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_puts_then_fails_leaves_no_follow_up_and_one_that_succeeds_exactly_one() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::start(
        &addr,
        &[("staged", "hostile")],
        &["--max-attempts", "3", "--backoff", "0"],
    );
    let mut producer = Producer::connect(&addr).await.unwrap();
    // Each follow-up is a `count-calls` job on the same tube.
    let failing = put(&mut producer, "staged", "put-then-fail", json!({}), None).await;
    let mut client = connect(&addr).await;
    let stats = wait_state(&mut client, failing, JobState::Buried).await;
    assert_eq!(stats.reserves, 3, "{stats:?}");
    let tube = client.stats_tube("staged").await.unwrap();
    assert_eq!(
        tube.total_jobs, 1,
        "a failed job's follow-ups were put: {tube:?}"
    );

    let succeeding = put(&mut producer, "staged", "put-one", json!({}), None).await;
    eventually(
        Duration::from_secs(20),
        "the job to be deleted",
        async || {
            job_stats(&mut client, succeeding)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    let tube = client.stats_tube("staged").await.unwrap();
    assert_eq!(tube.total_jobs, 3, "exactly one follow-up: {tube:?}");
    let lines = worker.wait_outcomes(succeeding, 1).await;
    assert_eq!(lines[0]["puts"], 1, "{}", lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_worker_whose_guests_burn_cpu_in_log_after_its_grace() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut worker = Worker::start(
        &addr,
        &[("burners", "hostile")],
        &[
            "--grace",
            "1",
            "--concurrency",
            "2",
            "--memory-mb",
            "256",
            "--fuel",
            "1000000000000000",
            "--timeout",
            "60",
        ],
    );
    let mut producer = Producer::connect(&addr).await.unwrap();
    let kwargs = json!({"mb": 60, "times": 100_000});
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            put_with(
                &mut producer,
                "burners",
                "log-huge",
                kwargs.clone(),
                None,
                60,
            )
            .await,
        );
    }
    let mut client = connect(&addr).await;
    for &id in &ids {
        wait_state(&mut client, id, JobState::Reserved).await;
    }

    worker.sigterm();
    // The grace is 1 s; before, a guest inside `log` held the runtime's
    // threads and the worker took 13 s. 10 s tells them apart anywhere.
    let status = worker.exits_within(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    for &id in &ids {
        let stats = wait_state(&mut client, id, JobState::Ready).await;
        assert_eq!((stats.releases, stats.buries), (0, 0), "{stats:?}");
    }
}
