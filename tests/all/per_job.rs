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

/// Puts `JOBS` hello jobs on `tube` while the worker waits, and waits until
/// all are deleted; returns the server's command counters after that.
async fn drain(
    addr: &str,
    tube: &str,
    worker: &mut Worker,
) -> std::collections::BTreeMap<String, u64> {
    worker.wait_ready(addr, tube, 1).await;
    let mut client = connect(addr).await;
    let before = counters(&mut client).await;
    let mut producer = Producer::connect(addr).await.unwrap();
    for _ in 0..JOBS {
        put(&mut producer, tube, "task-one", abc(), None).await;
    }
    eventually(Duration::from_secs(30), "every job deleted", async || {
        let s = client.stats_tube(tube).await.ok()?;
        (s.cmd_delete == JOBS).then_some(())
    })
    .await;
    let after = counters(&mut client).await;
    after
        .into_iter()
        .map(|(k, v)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, v - was)
        })
        .collect()
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
    let mut worker = Worker::hello(&addr, "quiet", &["--concurrency", "1", "--log", "warn"]);
    let sent = drain(&addr, "quiet", &mut worker).await;
    assert_eq!(sent["cmd-delete"], JOBS, "{sent:?}");
    assert_eq!(
        sent["cmd-stats-job"], 0,
        "no job line, no statistics: {sent:?}"
    );
    // One reserve per job rides with the delete; an idle worker adds one a
    // second while the jobs are being put.
    let reserves = sent["cmd-reserve-with-timeout"];
    assert!(
        reserves <= JOBS + 30,
        "{reserves} reserves for {JOBS} jobs: {sent:?}"
    );
    assert!(worker.is_running(), "{}", worker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_job_lines_on_each_job_reads_its_statistics_once() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut worker = Worker::hello(&addr, "told", &["--concurrency", "1"]);
    let sent = drain(&addr, "told", &mut worker).await;
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
