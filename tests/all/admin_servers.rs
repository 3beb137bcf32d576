//! The admin views over several beanstalkd servers (`--beanstalkd a,b,c`),
//! against real beanstalkd processes: `runner stats` sums each tube with
//! each server's split, `buried` shows each job's server, a job id held by
//! several servers needs `--server`, and a server down is named on stderr
//! (exit 1) beside what the others answered. The admin listener polls each
//! server on its own: `beanbox_beanstalkd_up{server}`, `/api/state`'s
//! split, and `/readyz` under `--ready-when any|all`.

use std::process::Output;
use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Client, JobState};
use prometheus_parse::{Scrape, Value as Prom};
use serde_json::Value;

use crate::http_support::{free_addr, get, request};
use crate::support::{self, assert_exit, stderr, stdout};
use crate::worker_support::{Worker, connect, eventually, job_stats, put_buried, run_bounded};

/// Runs `runner ARGS --beanstalkd servers` (bounded).
async fn admin(servers: &str, args: &[&str]) -> Output {
    run_bounded(
        support::runner().args(args).args(["--beanstalkd", servers]),
        Duration::from_secs(30),
    )
    .await
}

/// stdout as JSON.
fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

/// Puts `n` ready jobs on `tube`: their ids.
async fn put_ready(client: &mut Client, tube: &str, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(client.put_in(tube, 0, 0, 60, b"{}").await.unwrap());
    }
    ids
}

/// The tube `tube` of a `stats --json` answer.
fn tube<'a>(stats: &'a Value, tube: &str) -> &'a Value {
    stats["tubes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tube"] == tube)
        .unwrap_or_else(|| panic!("no tube {tube}: {stats}"))
}

/// `(server, ready, buried)` of each server of a tube row.
fn split(row: &Value) -> Vec<(String, u64, u64)> {
    row["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap();
            (
                s["server"].as_str().unwrap().to_owned(),
                n("ready"),
                n("buried"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_sum_over_servers_name_each_jobs_server_and_the_one_down() {
    let (a, mut b, c) = (
        Beanstalkd::start(),
        Beanstalkd::start(),
        Beanstalkd::start(),
    );
    let (a_addr, b_addr, c_addr) = (a.addr(), b.addr(), c.addr());
    let list = format!("{a_addr},{b_addr},{c_addr}");
    // Job 1 is buried on a and on b (ids are per server; their failure
    // records take ids too); c has 10 jobs on another tube, so jobs 9 and 10
    // are on c only.
    let on_a = put_buried(&a_addr, "multi", "fire on a").await;
    let on_b = put_buried(&b_addr, "multi", "fire on b").await;
    assert_eq!((on_a, on_b), (1, 1));
    put_ready(&mut connect(&a_addr).await, "multi", 2).await;
    put_ready(&mut connect(&b_addr).await, "multi", 1).await;
    let on_c = put_ready(&mut connect(&c_addr).await, "other", 10).await;

    // stats: the sums, and each server's share (zeros where a tube is not).
    let output = admin(&list, &["stats", "--json"]).await;
    assert_exit(&output, 0);
    let stats = json(&output);
    let multi = tube(&stats, "multi");
    assert_eq!(
        (multi["ready"].as_u64(), multi["buried"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        split(multi),
        [
            (a_addr.clone(), 2, 1),
            (b_addr.clone(), 1, 1),
            (c_addr.clone(), 0, 0)
        ]
    );
    assert_eq!(tube(&stats, "other")["ready"], 10);
    let output = admin(&list, &["stats", "--tube", "multi"]).await;
    assert_exit(&output, 0);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with("multi ") && lines[1].contains(" 3 "),
        "{text}"
    );
    for (line, server) in lines[2..].iter().zip([&a_addr, &b_addr, &c_addr]) {
        assert!(line.starts_with(&format!("  {server} ")), "{text}");
    }

    // buried: both jobs 1, each with its server and reason.
    let output = admin(&list, &["buried", "--tube", "multi", "--json"]).await;
    assert_exit(&output, 0);
    let buried = json(&output);
    assert_eq!(buried["buried"], 2, "{buried}");
    let jobs: Vec<(u64, &str, &str)> = buried["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let s = |k: &str| j[k].as_str().unwrap();
            (j["job"].as_u64().unwrap(), s("server"), s("reason"))
        })
        .collect();
    assert_eq!(
        jobs,
        [
            (1, a_addr.as_str(), "fire on a"),
            (1, b_addr.as_str(), "fire on b")
        ]
    );
    let output = admin(&list, &["buried", "--tube", "multi"]).await;
    let text = stdout(&output);
    assert!(
        text.lines().nth(1).unwrap().starts_with("JOB  SERVER"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("1    {b_addr}")) && l.contains("fire on b")),
        "{text}"
    );

    // A job id on several servers: refused, naming them; --server picks.
    let output = admin(&list, &["kick", "--tube", "multi", "--job", "1"]).await;
    assert_exit(&output, 2);
    let line = support::error_line(&output);
    assert!(
        line.contains(&a_addr) && line.contains(&b_addr) && line.contains("--server"),
        "{line}"
    );
    let output = admin(&list, &["delete", "--job", "1", "--server", "127.0.0.1:1"]).await;
    assert_exit(&output, 2);
    assert!(support::error_line(&output).contains("`127.0.0.1:1` is not one of"));
    let args = ["kick", "--tube", "multi", "--job", "1", "--server", &b_addr];
    let output = admin(&list, &args).await;
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.starts_with("job 1 kicked: new job "), "{text}");
    assert!(text.contains(&format!("at {b_addr}")), "{text}");
    let mut client_a = connect(&a_addr).await;
    let mut client_b = connect(&b_addr).await;
    assert!(job_stats(&mut client_b, 1).await.is_none(), "kicked on b");
    assert_eq!(
        job_stats(&mut client_a, 1).await.map(|s| s.state),
        Some(JobState::Buried),
        "a's job 1 untouched"
    );
    // A job id on one server only: found there.
    let id = on_c[9].to_string();
    let output = admin(&list, &["delete", "--job", &id, "--force", "--json"]).await;
    assert_exit(&output, 0);
    assert_eq!(json(&output)["server"], c_addr.as_str());

    // b down: the others answer, b is named on stderr, exit 1.
    b.kill();
    let output = admin(&list, &["stats", "--json"]).await;
    assert_exit(&output, 1);
    let servers: Vec<String> = split(tube(&json(&output), "multi"))
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(servers, [a_addr.clone(), c_addr.clone()]);
    let down = format!("cannot reach beanstalkd at {b_addr}");
    assert!(stderr(&output).contains(&down), "{}", stderr(&output));
    let output = admin(&list, &["buried", "--tube", "multi", "--json"]).await;
    assert_exit(&output, 1);
    assert_eq!(json(&output)["jobs"][0]["server"], a_addr.as_str());
    assert!(stderr(&output).contains(&down), "{}", stderr(&output));
    // Job 9 is on c, but b might hold a job 9 too: not acted on.
    let id = on_c[8].to_string();
    let output = admin(&list, &["delete", "--job", &id, "--force"]).await;
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains(&down) && stderr(&output).contains(&format!("--server {c_addr}")),
        "{}",
        stderr(&output)
    );
    assert!(
        job_stats(&mut connect(&c_addr).await, on_c[8])
            .await
            .is_some()
    );
    let output = admin(&list, &["kick", "--tube", "multi", "--all"]).await;
    assert_exit(&output, 1);
    assert!(
        stdout(&output).starts_with("job 1 kicked: new job ")
            && stdout(&output).contains(&format!("at {a_addr}")),
        "{}",
        stdout(&output)
    );
    assert!(stderr(&output).contains(&down), "{}", stderr(&output));
    wait_state_gone(&mut client_a, 1).await;
    let output = admin(&list, &["pause", "--tube", "multi", "--secs", "30"]).await;
    assert_exit(&output, 1);
    assert_eq!(
        stdout(&output).trim(),
        format!("tube `multi` paused for 30 s on {a_addr}")
    );
}

/// Waits until job `id` is gone.
async fn wait_state_gone(client: &mut Client, id: u64) {
    eventually(Duration::from_secs(10), "the job gone", async || {
        job_stats(client, id).await.is_none().then_some(())
    })
    .await;
}

/// The value of `beanbox_beanstalkd_up{server}`, if listed.
fn up(admin: &str, server: &str) -> Option<f64> {
    let body = get(admin, "/metrics").body;
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let samples = Scrape::parse(lines).expect("/metrics parses").samples;
    samples
        .iter()
        .find(|s| s.metric == "beanbox_beanstalkd_up" && s.labels.get("server") == Some(server))
        .map(|s| match s.value {
            Prom::Gauge(v) | Prom::Untyped(v) => v,
            ref other => panic!("not a gauge: {other:?}"),
        })
}

/// Waits up to 15 s for `path` to answer `status`: the body.
async fn answers(admin: &str, path: &str, status: u16) -> String {
    let what = format!("GET {path} to answer {status}");
    eventually(Duration::from_secs(15), &what, async || {
        request(admin, "GET", path, &[], "").filter(|a| a.status == status)
    })
    .await
    .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_polls_each_server_and_is_ready_while_any_or_all_are_up() {
    let (a, mut b) = (Beanstalkd::start(), Beanstalkd::start());
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let list = format!("{a_addr},{b_addr}");
    // Buried jobs (nothing for a worker to run): 1 on a, 2 on b.
    put_buried(&a_addr, "m", "x").await;
    for _ in 0..2 {
        put_buried(&b_addr, "m", "y").await;
    }
    let (any, all) = (free_addr(), free_addr());
    let _any = Worker::start(&list, &[("m", "hello")], &["--admin", &any]);
    let _all = Worker::start(
        &list,
        &[("m", "hello")],
        &["--admin", &all, "--ready-when", "all"],
    );
    for admin in [&any, &all] {
        answers(admin, "/readyz", 200).await;
    }
    assert_eq!(up(&any, &a_addr), Some(1.0));
    assert_eq!(up(&any, &b_addr), Some(1.0));
    let state: Value = eventually(
        Duration::from_secs(10),
        "3 buried in /api/state",
        async || {
            let state: Value = serde_json::from_str(&get(&any, "/api/state").body).ok()?;
            (state["tubes"][0]["buried"] == 3).then_some(state)
        },
    )
    .await;
    let split: Vec<(&str, u64)> = state["tubes"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["server"].as_str().unwrap(), s["buried"].as_u64().unwrap()))
        .collect();
    assert_eq!(split, [(a_addr.as_str(), 1), (b_addr.as_str(), 2)]);
    assert_eq!(state["servers"][1]["up"], true, "{state}");

    // b down: 0 for b alone; `any` stays ready, `all` names b.
    b.kill();
    let what = "b down in /metrics";
    eventually(Duration::from_secs(10), what, async || {
        (up(&any, &b_addr) == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(up(&any, &a_addr), Some(1.0));
    let why = answers(&all, "/readyz", 503).await;
    assert!(
        why.contains(&b_addr) && why.contains("unreachable") && !why.contains(&a_addr),
        "{why}"
    );
    let ready = get(&any, "/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let state: Value = serde_json::from_str(&get(&any, "/api/state").body).unwrap();
    assert_eq!(state["servers"][1]["up"], false, "{state}");
    assert_eq!(
        state["tubes"][0]["buried"], 1,
        "b's jobs are not counted while down"
    );

    // b back: ready under `all` again.
    b.restart();
    answers(&all, "/readyz", 200).await;
    assert_eq!(up(&all, &b_addr), Some(1.0));
}
