//! The admin commands (`runner stats|buried|kick|delete|pause`) and the
//! failure records behind `buried`, against a real beanstalkd and real
//! workers running `hello.wasm`: why a job was buried survives a worker
//! restart, kick retries with a fresh attempt budget, and no record is
//! lost to a reader's crash.

use std::process::Output;
use std::time::Duration;

use beanbox::failures::FAILURES_TUBE;
use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{Client, JobState, Producer};
use serde_json::{Value, json};

use crate::support::{self, assert_exit, stderr, stdout};
use crate::worker_support::{
    Worker, abc, bury_with_record, connect, eventually, job_stats, put, put_raw, run_bounded,
    wait_deleted, wait_state,
};

/// Runs `runner ARGS --beanstalkd addr` (bounded).
async fn admin(addr: &str, args: &[&str]) -> Output {
    run_bounded(
        support::runner().args(args).args(["--beanstalkd", addr]),
        Duration::from_secs(30),
    )
    .await
}

/// Runs `runner ARGS --json`, which must succeed, and parses its output.
async fn admin_json(addr: &str, args: &[&str]) -> Value {
    let output = admin(addr, &[args, &["--json"]].concat()).await;
    assert_exit(&output, 0);
    serde_json::from_str(&stdout(&output))
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {}", stdout(&output)))
}

/// `runner buried --tube TUBE --json`.
async fn buried(addr: &str, tube: &str) -> Value {
    admin_json(addr, &["buried", "--tube", tube]).await
}

/// The ids of the listed buried jobs.
fn ids(list: &Value) -> Vec<u64> {
    list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_u64().unwrap())
        .collect()
}

/// Ready records on the failures tube (0 when the tube is gone).
async fn records_ready(client: &mut Client) -> u64 {
    match client.stats_tube(FAILURES_TUBE).await {
        Ok(stats) => stats.current_jobs_ready,
        Err(e) if e.is_not_found() => 0,
        Err(e) => panic!("stats-tube {FAILURES_TUBE} failed: {e}"),
    }
}

/// Puts `n` jobs of hello's `fail` on `tube`, with messages `disk N on fire`.
async fn put_failing(producer: &mut Producer, tube: &str, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 1..=n {
        let kwargs = json!({"message": format!("disk {i} on fire")});
        ids.push(put(producer, tube, "fail", kwargs, None).await);
    }
    ids
}

/// Asserts `list` shows `ids` in that order, each failed with `disk N on
/// fire` at `attempt`.
fn assert_reasons(list: &Value, ids: &[u64], attempt: u64) {
    assert_eq!(self::ids(list), ids, "{list}");
    for (i, job) in list["jobs"].as_array().unwrap().iter().enumerate() {
        let message = format!("disk {} on fire", i + 1);
        assert_eq!(job["task"], "fail", "{job}");
        assert_eq!(job["attempt"], attempt, "{job}");
        assert_eq!(job["kind"], "guest-error", "{job}");
        assert!(job["reason"].as_str().unwrap().contains(&message), "{job}");
        assert!(job["body"].as_str().unwrap().contains(&message), "{job}");
        assert!(job["at"].as_u64().unwrap() > 0, "{job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_jobs_were_buried_survives_a_worker_restart_and_kick_all_retries_them() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let args = ["--max-attempts", "1", "--concurrency", "1"];
    let mut worker = Worker::hello(&addr, "adm", &args);
    let mut producer = Producer::connect(&addr).await.unwrap();
    let jobs = put_failing(&mut producer, "adm", 3).await;
    let mut client = connect(&addr).await;
    for &id in &jobs {
        wait_state(&mut client, id, JobState::Buried).await;
    }

    // The table: one aligned row per job, with task, attempt and reason.
    let output = admin(&addr, &["buried", "--tube", "adm"]).await;
    assert_exit(&output, 0);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "tube `adm`: 3 buried", "{text}");
    assert!(lines[1].starts_with("JOB"), "{text}");
    let reason_at = lines[1].find("REASON").unwrap();
    for (i, id) in jobs.iter().enumerate() {
        let row = lines[2 + i];
        assert!(row.starts_with(&format!("{id} ")), "{text}");
        assert!(
            row.contains(" fail ") && row.contains(" guest-error "),
            "{text}"
        );
        assert!(
            row[reason_at..].contains(&format!("disk {} on fire", i + 1)),
            "the reason column is aligned: {text}"
        );
    }
    let list = buried(&addr, "adm").await;
    assert_eq!(list["buried"], 3);
    assert_reasons(&list, &jobs, 1);

    // A new worker: the reasons are still there.
    worker.kill();
    drop(worker);
    let mut worker = Worker::hello(&addr, "adm", &args);
    worker.wait_ready(&addr, "adm", 1).await;
    assert_reasons(&buried(&addr, "adm").await, &jobs, 1);

    // Kick them all: new jobs, run on the new worker at attempt 1, buried
    // again with new records; the old jobs and their records are gone.
    let kicked = admin_json(&addr, &["kick", "--tube", "adm", "--all"]).await;
    let kicked = kicked["kicked"].as_array().unwrap().clone();
    let old: Vec<u64> = kicked.iter().map(|k| k["job"].as_u64().unwrap()).collect();
    assert_eq!(old, jobs, "oldest first");
    let new: Vec<u64> = kicked
        .iter()
        .map(|k| k["new_job"].as_u64().unwrap())
        .collect();
    for (&old, &new) in jobs.iter().zip(&new) {
        assert!(
            job_stats(&mut client, old).await.is_none(),
            "job {old} left"
        );
        let lines = worker.wait_outcomes(new, 1).await;
        assert_eq!(lines[0]["attempt"], 1, "{}", lines[0]);
        assert_eq!(lines[0]["outcome"], "buried", "{}", lines[0]);
        wait_state(&mut client, new, JobState::Buried).await;
    }
    assert_reasons(&buried(&addr, "adm").await, &new, 1);
    assert_eq!(
        records_ready(&mut client).await,
        3,
        "one record per buried job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_gives_a_fresh_attempt_budget_and_beanstalkds_own_kick_one_more_attempt() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    // One slot: its log lines come in the order of the attempts.
    let args = [
        "--max-attempts",
        "2",
        "--backoff",
        "0",
        "--concurrency",
        "1",
    ];
    let worker = Worker::hello(&addr, "budget", &args);
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put_failing(&mut producer, "budget", 1).await[0];
    let mut client = connect(&addr).await;
    wait_state(&mut client, id, JobState::Buried).await;
    let attempts = |lines: &[Value]| -> Vec<(Value, Value)> {
        lines
            .iter()
            .map(|l| (l["attempt"].clone(), l["outcome"].clone()))
            .collect()
    };
    let budget = [(json!(1), json!("released")), (json!(2), json!("buried"))];
    assert_eq!(attempts(&worker.wait_outcomes(id, 2).await), budget);
    assert_eq!(buried(&addr, "budget").await["jobs"][0]["attempt"], 2);

    // beanbox's kick: a new job with the whole budget again.
    let output = admin(
        &addr,
        &["kick", "--tube", "budget", "--job", &id.to_string()],
    )
    .await;
    assert_exit(&output, 0);
    let text = stdout(&output);
    let new: u64 = text
        .split("new job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no new job id in {text:?}"));
    assert!(text.contains(&format!("job {id} kicked")), "{text}");
    assert_eq!(attempts(&worker.wait_outcomes(new, 2).await), budget);
    wait_state(&mut client, new, JobState::Buried).await;
    assert!(job_stats(&mut client, id).await.is_none());
    let list = buried(&addr, "budget").await;
    assert_eq!(ids(&list), [new], "the old job's record is gone: {list}");
    assert_eq!(records_ready(&mut client).await, 1);

    // beanstalkd's own kick: one more attempt, logged with the attempt
    // number it was buried at (its release count stays).
    client.use_tube("budget").await.unwrap();
    client.kick_job(new).await.unwrap();
    let lines = worker.wait_outcomes(new, 3).await;
    assert_eq!(attempts(&lines[2..]), [(json!(2), json!("buried"))]);
    wait_state(&mut client, new, JobState::Buried).await;
    // Two records for one job: the newest stands, the other is dropped.
    let list = buried(&addr, "budget").await;
    assert_eq!(ids(&list), [new], "{list}");
    assert_eq!(records_ready(&mut client).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_pause_and_stats() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::hello(&addr, "del", &["--max-attempts", "1"]);
    let mut producer = Producer::connect(&addr).await.unwrap();
    let failed = put_failing(&mut producer, "del", 1).await[0];
    let ready = put(&mut producer, "del-idle", "task-one", abc(), None).await;
    let mut client = connect(&addr).await;
    wait_state(&mut client, failed, JobState::Buried).await;
    assert_eq!(records_ready(&mut client).await, 1);

    // A ready job only with --force.
    let output = admin(&addr, &["delete", "--job", &ready.to_string()]).await;
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains(&format!("job {ready} is ready"))
            && stderr(&output).contains("--force"),
        "{}",
        stderr(&output)
    );
    assert!(job_stats(&mut client, ready).await.is_some());
    let deleted = admin_json(&addr, &["delete", "--job", &ready.to_string(), "--force"]).await;
    assert_eq!(deleted, json!({"deleted": ready}));
    wait_deleted(&mut client, ready).await;

    // A buried job, with its record.
    let output = admin(&addr, &["delete", "--job", &failed.to_string()]).await;
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).trim(), format!("deleted job {failed}"));
    wait_deleted(&mut client, failed).await;
    assert_eq!(records_ready(&mut client).await, 0, "its record went too");

    let paused = admin_json(&addr, &["pause", "--tube", "del", "--secs", "60"]).await;
    assert_eq!(paused, json!({"paused": "del", "secs": 60}));
    let stats = client.stats_tube("del").await.unwrap();
    assert_eq!(stats.pause, 60);
    assert!(stats.pause_time_left > 0, "{stats:?}");

    let blocked = put(&mut producer, "del", "task-one", abc(), None).await;
    let all = admin_json(&addr, &["stats"]).await;
    let tubes = all["tubes"].as_array().unwrap();
    let row = tubes.iter().find(|t| t["tube"] == "del").expect("tube del");
    assert_eq!(row["paused"], true, "{row}");
    assert!(row["pause_time_left"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["ready"], 1, "the paused tube keeps its job: {row}");
    assert_eq!(row["buried"], 0, "{row}");
    assert_eq!(row["total"], 2, "{row}");
    assert!(
        !tubes.iter().any(|t| t["tube"] == "del-idle"),
        "a tube goes with its last job: {all}"
    );
    assert_eq!(
        job_stats(&mut client, blocked).await.unwrap().state,
        JobState::Ready
    );
    let one = admin_json(&addr, &["stats", "--tube", "del"]).await;
    assert_eq!(one["tubes"].as_array().unwrap().len(), 1, "{one}");
    let output = admin(&addr, &["stats"]).await;
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.starts_with("TUBE") && text.lines().any(|l| l.starts_with("del ")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_what_was_wrong() {
    let mut server = Beanstalkd::start();
    let addr = server.addr();
    let mut producer = Producer::connect(&addr).await.unwrap();
    let ready = put(&mut producer, "errs", "task-one", abc(), None).await;
    put(&mut producer, "errs-other", "task-one", abc(), None).await;
    let ready_id = ready.to_string();

    let cases: [(&[&str], &str); 8] = [
        (&["buried", "--tube", "nope"], "unknown tube `nope`"),
        (&["stats", "--tube", "nope"], "unknown tube `nope`"),
        (
            &["pause", "--tube", "nope", "--secs", "5"],
            "unknown tube `nope`",
        ),
        (
            &["buried", "--tube", "bad name"],
            "invalid tube name `bad name`",
        ),
        (
            &["kick", "--tube", "errs", "--job", "999999"],
            "no such job: 999999",
        ),
        (&["delete", "--job", "999999"], "no such job: 999999"),
        (
            &["kick", "--tube", "errs", "--job", &ready_id],
            &format!("job {ready} is ready, not buried"),
        ),
        (
            &["kick", "--tube", "errs-other", "--job", &ready_id],
            &format!("job {ready} is in tube `errs`, not `errs-other`"),
        ),
    ];
    for (args, words) in cases {
        let output = admin(&addr, args).await;
        assert_exit(&output, 2);
        let line = support::error_line(&output);
        assert!(
            line.starts_with(&format!("error: {words}")),
            "runner {args:?}: {line}"
        );
    }
    let mut client = connect(&addr).await;
    assert_eq!(
        job_stats(&mut client, ready).await.unwrap().state,
        JobState::Ready,
        "no error touched the job"
    );

    // No tenant serves the failure records' tube.
    let output = run_bounded(
        support::runner().args(["--tube", FAILURES_TUBE, "--beanstalkd", &addr]),
        Duration::from_secs(30),
    )
    .await;
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("`beanbox.failures` is beanbox's own tube"),
        "{}",
        stderr(&output)
    );

    server.kill();
    for args in [
        &["stats"][..],
        &["buried", "--tube", "errs"],
        &["delete", "--job", "1"],
    ] {
        let output = admin(&addr, args).await;
        assert_exit(&output, 1);
        assert!(
            support::error_line(&output).contains(&format!("cannot reach beanstalkd at {addr}")),
            "{}",
            stderr(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_records_are_dropped_and_a_readers_crash_loses_none() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let mut producer = Producer::connect(&addr).await.unwrap();
    let kept = put_raw(&mut producer, "rec", br#"{"task":"fail"}"#, 60).await;
    let stale = put_raw(&mut producer, "rec", br#"{"task":"fail"}"#, 60).await;
    let mut client = connect(&addr).await;
    client.watch("rec").await.unwrap();
    for _ in 0..2 {
        let job = client.reserve_with_timeout(1).await.unwrap();
        let reasons: &[&str] = if job.id == kept {
            &["first", "second"]
        } else {
            &["gone"]
        };
        bury_with_record(&mut client, job.id, "rec", reasons).await;
    }
    // Deleted by another tool: its record is stale.
    client.delete(stale).await.unwrap();
    // A record no beanbox wrote: skipped, never a crash.
    client
        .put_in(FAILURES_TUBE, 0, 0, 60, b"junk")
        .await
        .unwrap();
    assert_eq!(records_ready(&mut client).await, 4);

    let list = buried(&addr, "rec").await;
    assert_eq!(ids(&list), [kept], "{list}");
    assert_eq!(
        list["jobs"][0]["reason"], "second",
        "the newest record wins"
    );
    assert_eq!(list["complete"], true);
    assert_eq!(
        records_ready(&mut client).await,
        2,
        "the stale and the older record were deleted, the junk left alone"
    );

    // A reader that holds the records (mid-read) and dies.
    let mut reader = connect(&addr).await;
    reader.watch(FAILURES_TUBE).await.unwrap();
    reader.ignore("default").await.unwrap();
    while reader.reserve_with_timeout(0).await.is_ok() {}
    let partial = buried(&addr, "rec").await;
    assert_eq!(partial["complete"], false, "{partial}");
    assert_eq!(partial["unrecorded"], 1, "{partial}");
    assert_eq!(
        ids(&partial),
        [kept],
        "peek-buried still shows it: {partial}"
    );
    assert_eq!(partial["jobs"][0]["reason"], Value::Null, "{partial}");
    drop(reader);

    let list = eventually(Duration::from_secs(10), "the records back", async || {
        let list = buried(&addr, "rec").await;
        (list["complete"] == true).then_some(list)
    })
    .await;
    assert_eq!(list["jobs"][0]["reason"], "second", "{list}");
    assert_eq!(list["unrecorded"], 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_is_logged_and_the_job_buried_anyway() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let worker = Worker::hello(&addr, "unrec", &["--max-attempts", "1"]);
    let mut producer = Producer::connect(&addr).await.unwrap();
    let opts = beanbox_queue::PutOptions {
        delay: 1,
        ..beanbox_queue::PutOptions::default()
    };
    let kwargs = support::object(json!({"message": "no record"}));
    let id = producer.put("unrec", "fail", &kwargs, &opts).await.unwrap();
    // From now on beanstalkd refuses every put, the record's too; the
    // delayed job still gets ready and runs.
    server.drain();
    let mut client = connect(&addr).await;
    wait_state(&mut client, id, JobState::Buried).await;
    let lines = worker.wait_outcomes(id, 1).await;
    assert_eq!(lines[0]["outcome"], "buried", "{}", lines[0]);
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("no record"),
        "the log line still says why: {}",
        lines[0]
    );
    let record = lines[0]["record"].as_str().unwrap_or_default();
    assert!(
        record.contains("failure record lost") && record.contains("draining"),
        "{}",
        lines[0]
    );

    // Listed all the same, found by peek-buried, with no reason.
    let list = buried(&addr, "unrec").await;
    assert_eq!(ids(&list), [id], "{list}");
    assert_eq!(list["unrecorded"], 1, "{list}");
    assert_eq!(list["jobs"][0]["reason"], Value::Null, "{list}");
    assert!(
        list["jobs"][0]["body"]
            .as_str()
            .unwrap()
            .contains("no record"),
        "{list}"
    );
    let output = admin(&addr, &["buried", "--tube", "unrec"]).await;
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("1 without a failure record"),
        "{}",
        stdout(&output)
    );
}
