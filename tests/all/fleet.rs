//! The whole fleet over several servers, as the README's "Scaling out" sets
//! it up: three beanstalkd servers (one with a binlog), producers putting
//! through the SDK's `MultiProducer` and `runner put` with the list, and two
//! worker processes serving all three. Every job is answered through its
//! `reply_to`; killing the binlog server mid-run only delays its jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{MultiProducer, PutOptions, Servers};
use serde_json::json;

use crate::put::{runner_put, text};
use crate::worker_support::{Replies, TempDir, Worker, ok};

/// Jobs in all: through the SDK, then through `runner put`.
const SDK_JOBS: usize = 2_940;
const CLI_JOBS: usize = 60;
/// The SDK put after which the binlog server is killed.
const KILL_AFTER: usize = 1_000;
/// Slots per worker; two workers.
const SLOTS: usize = 3;

/// Upper bound for the whole drain (a debug-built worker on a loaded
/// machine drains hundreds of jobs a second).
const PATIENCE: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_drain_three_servers_and_a_killed_binlog_server_loses_nothing() {
    let binlog = TempDir::new("fleet-binlog");
    let a = Beanstalkd::start();
    let b = Beanstalkd::start();
    let mut c = Beanstalkd::start_with_args(&["-b", binlog.as_str()]);
    let addrs = [a.addr(), b.addr(), c.addr()];
    let list = addrs.join(",");
    let slots = SLOTS.to_string();
    let mut workers = [
        Worker::hello(&list, "fleet", &["--concurrency", &slots]),
        Worker::hello(&list, "fleet", &["--concurrency", &slots]),
    ];
    for worker in &mut workers {
        for addr in &addrs {
            worker.wait_ready(addr, "fleet", 1).await;
        }
    }

    // Round-robin through the SDK; the binlog server dies a third of the
    // way in and the puts go on to the other two.
    let mut producer = MultiProducer::new(list.parse::<Servers>().unwrap());
    let opts = PutOptions {
        reply_to: Some("fleet-replies".to_owned()),
        ..PutOptions::default()
    };
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    let mut before_kill = [0usize; 3];
    for i in 0..SDK_JOBS {
        if i == KILL_AFTER {
            c.kill();
        }
        let kwargs = json!({"arg1": "j", "arg2": "-", "arg3": i.to_string()});
        let at = producer
            .put("fleet", "task_one", kwargs.as_object().unwrap(), &opts)
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        if i < KILL_AFTER {
            before_kill[at.server] += 1;
        } else {
            assert_ne!(at.server, 2, "put {i} went to the killed server");
        }
        *placed.entry(at.addr).or_default() += 1;
    }
    // Each server took 20-45 % of the puts it was up for.
    for (k, n) in before_kill.iter().enumerate() {
        let share = *n as f64 / KILL_AFTER as f64;
        assert!((0.2..=0.45).contains(&share), "server {k}: {before_kill:?}");
    }

    // Keyed puts: the same key always lands on the same (live) server.
    let mut by_key: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for i in 0..60 {
        let key = format!("tenant-{}", i % 6);
        let keyed = PutOptions {
            key: Some(key.clone()),
            ..opts.clone()
        };
        let kwargs = json!({"arg1": "k", "arg2": "-", "arg3": i.to_string()});
        let at = producer
            .put("fleet", "task_one", kwargs.as_object().unwrap(), &keyed)
            .await
            .unwrap();
        by_key.entry(key).or_default().insert(at.server);
    }
    assert!(by_key.values().all(|s| s.len() == 1), "{by_key:?}");

    // And through `runner put` with the list; its output names the server.
    for i in 0..CLI_JOBS {
        let kwargs = format!(r#"{{"arg1":"r","arg2":"-","arg3":"{i}"}}"#);
        let output = runner_put(
            &list,
            &[
                "--tube",
                "fleet",
                "task_one",
                "--kwargs",
                &kwargs,
                "--reply-to",
                "fleet-replies",
            ],
        )
        .await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        let out = text(&output.stdout);
        let server = out.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            addrs[..2].contains(&server.to_owned()),
            "runner put said {out:?}"
        );
    }

    // The binlog server comes back with the jobs it held.
    c.restart();

    // Every job answered, on the server it was put to; duplicates only
    // for jobs that a slot held when their server was killed.
    let expected: BTreeSet<String> = (0..SDK_JOBS)
        .map(|i| format!("j-{i}"))
        .chain((0..60).map(|i| format!("k-{i}")))
        .chain((0..CLI_JOBS).map(|i| format!("r-{i}")))
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut replies = Vec::new();
    for addr in &addrs {
        replies.push(Replies::watch(addr, "fleet-replies").await);
    }
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} jobs answered; missing e.g. {:?}",
            seen.len(),
            expected.len(),
            expected
                .iter()
                .filter(|v| !seen.contains_key(*v))
                .take(5)
                .collect::<Vec<_>>()
        );
        let mut any = false;
        for r in &mut replies {
            while let Some(reply) = r.try_next().await {
                let value = ok(&reply).as_str().expect("a string").to_owned();
                assert!(expected.contains(&value), "unexpected reply {value}");
                *seen.entry(value).or_default() += 1;
                any = true;
            }
        }
        if !any {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 2 * SLOTS,
        "more jobs ran twice than slots could hold at the kill: {twice:?}"
    );
    for worker in &mut workers {
        assert!(worker.is_running(), "{}", worker.log());
    }
    assert_eq!(placed.values().sum::<usize>(), SDK_JOBS);
}
