//! `runner put --beanstalkd a,b,c`: jobs spread over the servers, `--key`
//! keeps a key on one server, down servers are skipped or named, and
//! `--wait` waits on the server that took the job.

use beanbox_queue::placement;
use beanbox_queue::testing::Beanstalkd;

use crate::put::{ABC, runner_put, text};
use crate::worker_support::{Worker, connect, job_stats};

/// Three servers and their list, `a,b,c`.
fn three() -> (Vec<Beanstalkd>, Vec<String>, String) {
    let guards: Vec<Beanstalkd> = (0..3).map(|_| Beanstalkd::start()).collect();
    let addrs: Vec<String> = guards.iter().map(Beanstalkd::addr).collect();
    let list = addrs.join(",");
    (guards, addrs, list)
}

/// A key whose first choice among `addrs` is server `i`.
fn key_for(addrs: &[String], i: usize) -> String {
    (0..)
        .map(|k| format!("key-{k}"))
        .find(|key| placement::by_key(addrs, key)[0] == i)
        .unwrap()
}

/// Runs `runner put` (no --wait) and returns the `ID SERVER` it printed.
async fn put_one(list: &str, tube: &str, extra: &[&str]) -> (u64, String) {
    let mut args = vec!["--tube", tube, "task_one", "--kwargs", ABC];
    args.extend_from_slice(extra);
    let output = runner_put(list, &args).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let (id, server) = stdout
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("stdout {stdout:?} is not `ID SERVER`"));
    (id.parse().unwrap(), server.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_spread_over_the_servers_and_name_the_server() {
    let (_guards, addrs, list) = three();
    let mut per_server = [0u64; 3];
    for _ in 0..30 {
        let (id, server) = put_one(&list, "spread", &[]).await;
        let i = addrs
            .iter()
            .position(|a| *a == server)
            .expect("a listed server");
        per_server[i] += 1;
        let mut client = connect(&server).await;
        let stats = job_stats(&mut client, id).await.expect("the job is there");
        assert_eq!(stats.tube, "spread");
    }
    // Each run starts at a random server: all three get jobs.
    assert!(per_server.iter().all(|&n| n > 0), "{per_server:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_keeps_its_server_and_a_down_one_passes_to_the_next() {
    let (mut guards, addrs, list) = three();
    let key = key_for(&addrs, 1);
    for _ in 0..5 {
        let (_, server) = put_one(&list, "keyed", &["--key", &key]).await;
        assert_eq!(server, addrs[1]);
    }
    let mut client = connect(&addrs[1]).await;
    assert_eq!(
        client.stats_tube("keyed").await.unwrap().current_jobs_ready,
        5
    );
    guards[1].kill();
    let second = &addrs[placement::by_key(&addrs, &key)[1]];
    let (_, server) = put_one(&list, "keyed", &["--key", &key]).await;
    assert_eq!(&server, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_down_exits_1_naming_each() {
    let (mut guards, addrs, list) = three();
    for g in &mut guards {
        g.kill();
    }
    let output = runner_put(&list, &["--tube", "down", "task_one", "--kwargs", ABC]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(text(&output.stdout), "");
    assert!(
        stderr.contains("no beanstalkd server could take the job"),
        "{stderr}"
    );
    for addr in &addrs {
        assert!(stderr.contains(addr.as_str()), "{addr} not in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_wait_waits_on_the_server_that_took_the_job() {
    let (_guards, addrs, list) = three();
    // The worker serves one server only; the key sends the job there.
    let _worker = Worker::hello(&addrs[2], "servers-wait", &[]);
    let key = key_for(&addrs, 2);
    let output = runner_put(
        &list,
        &[
            "--tube",
            "servers-wait",
            "task_one",
            "--kwargs",
            ABC,
            "--key",
            &key,
            "--wait",
            "--timeout",
            "20",
        ],
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&output.stdout), "\"abc\"\n");
    assert!(stderr.contains(&addrs[2]), "{stderr}");
}
