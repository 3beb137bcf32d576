//! One worker, several beanstalkd servers (`--beanstalkd a,b,c`): every
//! server is served, none starved by a slot that could serve it; a server
//! absent at start or killed mid-run costs only its own jobs until it is
//! back; a job's reply, follow-up puts and failure record land on the
//! server the job came from. Jobs are put straight to each server (job ids
//! are per server); each server's replies go to a reply tube named after
//! it, so a reply on the wrong server is missed, and the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{JobState, Producer};
use serde_json::{Value, json};

use crate::worker_support::{
    Replies, TempDir, Worker, connect, eventually, ok, put, put_raw, wait_state,
};

/// Generous: a reconnect backoff is at most 5 s.
const PATIENCE: Duration = Duration::from_secs(40);

/// Three servers and their `a,b,c` list.
fn three() -> (Vec<Beanstalkd>, String) {
    let servers: Vec<Beanstalkd> = (0..3).map(|_| Beanstalkd::start()).collect();
    let list = list(&servers.iter().map(Beanstalkd::addr).collect::<Vec<_>>());
    (servers, list)
}

fn list(addrs: &[String]) -> String {
    addrs.join(",")
}

/// Puts `n` `task-one` jobs on `tube` at `addr`, replying to `reply_to`;
/// returns their ids. The reply names the server (`label`) and the job.
async fn put_jobs(addr: &str, tube: &str, label: &str, n: usize, reply_to: &str) -> Vec<u64> {
    let mut producer = Producer::connect(addr).await.unwrap();
    let mut ids = Vec::new();
    for k in 0..n {
        let kwargs = json!({"arg1": label, "arg2": "-", "arg3": k.to_string()});
        ids.push(put(&mut producer, tube, "task-one", kwargs, Some(reply_to)).await);
    }
    ids
}

/// Reads replies on `addr`'s `tube` until every id in `ids` has one;
/// returns how many replies each got. Every reply must be a success whose
/// value starts with `label` (the server the job was put to).
async fn replies_for(addr: &str, tube: &str, label: &str, ids: &[u64]) -> BTreeMap<u64, usize> {
    let wanted: BTreeSet<u64> = ids.iter().copied().collect();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut replies = Replies::watch(addr, tube).await;
    let deadline = Instant::now() + PATIENCE;
    while !wanted.iter().all(|id| seen.contains_key(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{label}: {} of {} jobs replied on {addr}",
            seen.len(),
            wanted.len()
        );
        let reply = replies.next(left).await;
        let value = ok(&reply).as_str().unwrap_or_default().to_owned();
        assert!(
            value.starts_with(&format!("{label}-")),
            "{label}: reply {value:?} to job {} came from another server's job",
            reply.job
        );
        assert!(
            wanted.contains(&reply.job),
            "{label}: unknown job {}",
            reply.job
        );
        *seen.entry(reply.job).or_default() += 1;
    }
    seen
}

/// Waits until a slot of `worker` blocks in `reserve` on each server.
async fn wait_ready(worker: &mut Worker, addrs: &[String], tube: &str) {
    for addr in addrs {
        worker.wait_ready(addr, tube, 1).await;
    }
}

/// The `server` field of the worker's finished-job lines, in order, once
/// there are `n` (a job's line follows its reply closely).
async fn served_by(worker: &Worker, n: usize) -> Vec<String> {
    eventually(PATIENCE, &format!("{n} finished jobs"), async || {
        let served: Vec<String> = worker
            .events()
            .into_iter()
            .filter(|f| f["outcome"] == "deleted")
            .map(|f| f["server"].as_str().unwrap_or("(none)").to_owned())
            .collect();
        (served.len() >= n).then_some(served)
    })
    .await
}

/// The worker's log lines saying `message` of `addr`.
fn said(worker: &Worker, message: &str, addr: &str) -> Vec<Value> {
    worker
        .events()
        .into_iter()
        .filter(|f| f["message"] == message && f["addr"] == addr)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_drains_three_servers_and_replies_on_each_jobs_own_server() {
    let (servers, list) = three();
    let addrs: Vec<String> = servers.iter().map(Beanstalkd::addr).collect();
    let mut worker = Worker::hello(&list, "spread", &["--concurrency", "3"]);
    wait_ready(&mut worker, &addrs, "spread").await;

    let mut ids = Vec::new();
    for (k, addr) in addrs.iter().enumerate() {
        let label = format!("s{k}");
        ids.push(put_jobs(addr, "spread", &label, 30, &format!("spread-{label}")).await);
    }
    for (k, addr) in addrs.iter().enumerate() {
        let label = format!("s{k}");
        let seen = replies_for(addr, &format!("spread-{label}"), &label, &ids[k]).await;
        assert!(seen.values().all(|&n| n == 1), "{label}: {seen:?}");
    }
    // No reply strayed to another server, and every job is gone.
    for (k, addr) in addrs.iter().enumerate() {
        let mut client = connect(addr).await;
        for other in (0..3).filter(|&o| o != k) {
            assert!(
                client
                    .stats_tube(&format!("spread-s{other}"))
                    .await
                    .is_err(),
                "a reply of server {other} reached server {k}"
            );
        }
        let stats = client.stats_tube("spread").await.unwrap();
        assert_eq!(
            (stats.current_jobs_ready, stats.current_jobs_reserved),
            (0, 0)
        );
    }
    // Each job's log line names its server.
    let served = served_by(&worker, 90).await;
    for addr in &addrs {
        assert_eq!(
            served.iter().filter(|s| *s == addr).count(),
            30,
            "{served:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_takes_jobs_from_every_loaded_server_in_turn() {
    let (servers, list) = three();
    let addrs: Vec<String> = servers.iter().map(Beanstalkd::addr).collect();
    // Every server loaded before the worker starts.
    let mut ids = Vec::new();
    for (k, addr) in addrs.iter().enumerate() {
        let label = format!("s{k}");
        ids.push(put_jobs(addr, "turns", &label, 20, &format!("turns-{label}")).await);
    }
    let worker = Worker::hello(&list, "turns", &["--concurrency", "1"]);
    for (k, addr) in addrs.iter().enumerate() {
        let label = format!("s{k}");
        replies_for(addr, &format!("turns-{label}"), &label, &ids[k]).await;
    }
    // Not one server's backlog first: every server is served within the
    // first six jobs (in turn, it is every three).
    let served = served_by(&worker, 60).await;
    assert_eq!(served.len(), 60, "{served:?}");
    for addr in &addrs {
        assert!(served[..6].contains(addr), "{addr} starved: {served:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_absent_at_start_is_served_once_it_appears() {
    let a = Beanstalkd::start();
    let b = Beanstalkd::start();
    let port = Beanstalkd::free_port();
    let late_addr = format!("127.0.0.1:{port}");
    let addrs = [a.addr(), b.addr(), late_addr.clone()];
    let mut worker = Worker::hello(&list(&addrs), "late", &["--concurrency", "3"]);
    wait_ready(&mut worker, &addrs[..2], "late").await;

    for (k, addr) in addrs[..2].iter().enumerate() {
        let label = format!("s{k}");
        let ids = put_jobs(addr, "late", &label, 10, &format!("late-{label}")).await;
        replies_for(addr, &format!("late-{label}"), &label, &ids).await;
    }
    // One line for the server, not one per slot per retry.
    let unreachable = said(&worker, "cannot reach beanstalkd", &late_addr);
    assert_eq!(unreachable.len(), 1, "{}", worker.log());

    let late = Beanstalkd::start_on(port, &[]);
    let ids = put_jobs(&late.addr(), "late", "s2", 10, "late-s2").await;
    replies_for(&late.addr(), "late-s2", "s2", &ids).await;
    let back = said(&worker, "reconnected to beanstalkd", &late_addr);
    assert_eq!(back.len(), 1, "{}", worker.log());
    assert!(worker.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_stops_only_its_own_jobs_and_its_binlog_brings_them_back() {
    let binlog = TempDir::new("servers-binlog");
    let a = Beanstalkd::start();
    let b = Beanstalkd::start();
    let mut c = Beanstalkd::start_with_args(&["-b", binlog.as_str()]);
    let addrs = [a.addr(), b.addr(), c.addr()];
    let mut worker = Worker::hello(&list(&addrs), "dur", &["--concurrency", "3"]);
    wait_ready(&mut worker, &addrs, "dur").await;

    // Jobs that nap, so that some are still queued or running on `c`
    // when it is killed (whichever they are, all must complete).
    let mut producer = Producer::connect(&c.addr()).await.unwrap();
    let mut c_ids = Vec::new();
    for _ in 0..30 {
        let id = put(
            &mut producer,
            "dur",
            "nap",
            json!({"ms": 30}),
            Some("dur-s2"),
        )
        .await;
        c_ids.push(id);
    }
    drop(producer);
    let mut replies = Replies::watch(&c.addr(), "dur-s2").await;
    let mut replied = BTreeSet::new();
    replied.insert(replies.next(PATIENCE).await.job);
    drop(replies);

    c.kill();
    // Puts go on to the other two, and are served.
    for (k, addr) in addrs[..2].iter().enumerate() {
        let label = format!("s{k}");
        let ids = put_jobs(addr, "dur", &label, 20, &format!("dur-{label}")).await;
        replies_for(addr, &format!("dur-{label}"), &label, &ids).await;
    }
    // One line for the outage (whichever slot saw it first, by a lost
    // connection or a refused one), not one per slot per retry.
    let down = said(
        &worker,
        "lost beanstalkd connection; reconnecting",
        &addrs[2],
    )
    .len()
        + said(&worker, "cannot reach beanstalkd", &addrs[2]).len();
    assert_eq!(down, 1, "{}", worker.log());

    // Back from its binlog: every job put before the kill completes
    // (those running at the kill may run twice), and new ones too.
    c.restart();
    let mut replies = Replies::watch(&c.addr(), "dur-s2").await;
    let deadline = Instant::now() + PATIENCE;
    while replied.len() < c_ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} of {} replied",
            replied.len(),
            c_ids.len()
        );
        let reply = replies.next(left).await;
        assert_eq!(ok(&reply), &json!(30));
        assert!(c_ids.contains(&reply.job), "unknown job {}", reply.job);
        replied.insert(reply.job);
    }
    drop(replies);
    let ids = put_jobs(&c.addr(), "dur", "s2", 5, "dur-new").await;
    replies_for(&c.addr(), "dur-new", "s2", &ids).await;
    assert!(worker.is_running());
    let back = said(&worker, "reconnected to beanstalkd", &addrs[2]);
    assert_eq!(back.len(), 1, "{}", worker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_and_failure_records_land_on_the_jobs_own_server() {
    let (servers, list) = three();
    let addrs: Vec<String> = servers.iter().map(Beanstalkd::addr).collect();
    let mut worker = Worker::hello(&list, "chain", &["--concurrency", "3", "--put-tube", "*"]);
    wait_ready(&mut worker, &addrs, "chain").await;

    // A follow-up put by a job of the second server.
    let mut producer = Producer::connect(&addrs[1]).await.unwrap();
    let id = put(
        &mut producer,
        "chain",
        "follow_up",
        json!({"tube": "elsewhere", "word": "yo"}),
        Some("chain-replies"),
    )
    .await;
    let mut replies = Replies::watch(&addrs[1], "chain-replies").await;
    let reply = replies.next(PATIENCE).await;
    assert_eq!((reply.job, ok(&reply)), (id, &json!(1)));
    let mut client = connect(&addrs[1]).await;
    client.use_tube("elsewhere").await.unwrap();
    let child = client
        .peek_ready()
        .await
        .expect("the follow-up is on its parent's server");
    wait_state(&mut client, child.id, JobState::Ready).await;

    // A bad envelope on the third server: buried there, its record too.
    let mut producer = Producer::connect(&addrs[2]).await.unwrap();
    let bad = put_raw(&mut producer, "chain", b"not json", 60).await;
    let mut client = connect(&addrs[2]).await;
    wait_state(&mut client, bad, JobState::Buried).await;
    eventually(PATIENCE, "the failure record", async || {
        let stats = client.stats_tube("beanbox.failures").await.ok()?;
        (stats.current_jobs_ready == 1).then_some(())
    })
    .await;

    for (k, addr) in addrs.iter().enumerate() {
        let mut client = connect(addr).await;
        if k != 1 {
            assert!(client.stats_tube("elsewhere").await.is_err(), "server {k}");
            assert!(
                client.stats_tube("chain-replies").await.is_err(),
                "server {k}"
            );
        }
        if k != 2 {
            assert!(
                client.stats_tube("beanbox.failures").await.is_err(),
                "server {k}"
            );
        }
    }
}
