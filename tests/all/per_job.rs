//! What one job costs beanstalkd: the requests the worker sends per job,
//! counted by the server itself (`stats`), never timed. A successful job
//! is one `reserve-with-timeout` (riding on the previous job's delete) and
//! one `delete`; its `stats-job` goes with the delete only when the job's
//! log line, which shows the attempt, is written.

use std::time::Duration;

use beanbox_queue::Producer;
use beanbox_queue::testing::Beanstalkd;

use crate::worker_support::{Worker, abc, connect, eventually, put};

const JOBS: u64 = 40;

/// Puts `JOBS` hello jobs on `tube`, then starts a worker with `args` and
/// waits until all are deleted; returns the server's command counters over
/// that span. The jobs are all ready before the worker looks, so every
/// reserve but the idle ones at the end finds a job, however fast either
/// side runs.
async fn drain(
    addr: &str,
    tube: &str,
    args: &[&str],
) -> (Worker, std::collections::BTreeMap<String, u64>) {
    let mut client = connect(addr).await;
    let before = counters(&mut client).await;
    let mut producer = Producer::connect(addr).await.unwrap();
    for _ in 0..JOBS {
        put(&mut producer, tube, "task-one", abc(), None).await;
    }
    let worker = Worker::hello(addr, tube, args);
    eventually(Duration::from_secs(60), "every job deleted", async || {
        let s = client.stats_tube(tube).await.ok()?;
        (s.cmd_delete == JOBS).then_some(())
    })
    .await;
    let after = counters(&mut client).await;
    let sent = after
        .into_iter()
        .map(|(k, v)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, v - was)
        })
        .collect();
    (worker, sent)
}

async fn counters(client: &mut beanbox_queue::Client) -> std::collections::BTreeMap<String, u64> {
    client
        .stats()
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("cmd-"))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_job_lines_off_a_job_costs_no_stats_job() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let (mut worker, sent) = drain(&addr, "quiet", &["--concurrency", "1", "--log", "warn"]).await;
    assert_eq!(sent["cmd-delete"], JOBS, "{sent:?}");
    assert_eq!(
        sent["cmd-stats-job"], 0,
        "no job line, no statistics: {sent:?}"
    );
    // One reserve per job, riding with the previous delete; then a few
    // that find the tube empty.
    let reserves = sent["cmd-reserve-with-timeout"];
    assert!(
        (JOBS..=JOBS + 10).contains(&reserves),
        "{reserves} reserves for {JOBS} jobs: {sent:?}"
    );
    assert!(worker.is_running(), "{}", worker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_job_lines_on_each_job_reads_its_statistics_once() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let (worker, sent) = drain(&addr, "told", &["--concurrency", "1"]).await;
    assert_eq!(sent["cmd-delete"], JOBS, "{sent:?}");
    assert_eq!(sent["cmd-stats-job"], JOBS, "one stats-job a job: {sent:?}");
    // Each line is written just after its delete.
    let done = eventually(
        Duration::from_secs(10),
        "a line for every job",
        async || {
            let done = worker.events_starting("job done");
            (done.len() as u64 == JOBS).then_some(done)
        },
    )
    .await;
    assert!(done.iter().all(|e| e["attempt"] == 1), "{done:?}");
}
