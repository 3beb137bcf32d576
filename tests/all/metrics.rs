//! The admin listener (`runner --admin`): after a known run, `/metrics`
//! (read with a Prometheus parser) counts every job by tenant, tube, task
//! and outcome with its duration, fuel and memory; `/readyz` follows
//! beanstalkd going away and coming back; `/api/state` lists the tube,
//! tenant, module and failures; a bad address stops the worker at start.

use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{JobState, Producer};
use prometheus_parse::{Sample, Scrape, Value as Prom};
use serde_json::{Value, json};

use crate::http_support::{Answer, free_addr, get, request};
use crate::worker_support::{Worker, abc, connect, eventually, put, wait_deleted, wait_state};

/// `/metrics` parsed as Prometheus text.
fn scrape(admin: &str) -> Vec<Sample> {
    let answer = get(admin, "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let lines = answer.body.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).expect("/metrics parses").samples
}

/// The value of the sample `name` whose labels include all of `labels`
/// (summed over the others); 0 when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => *v,
            other => panic!("{name} is not a plain value: {other:?}"),
        })
        .sum()
}

/// Waits up to `timeout` for `path` to answer `status`.
async fn answers(admin: &str, path: &str, status: u16, timeout: Duration) -> Answer {
    let what = format!("GET {path} to answer {status}");
    eventually(timeout, &what, async || {
        request(admin, "GET", path, &[], "").filter(|a| a.status == status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_and_state_tell_what_the_worker_did() {
    let mut server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let args = [
        "--max-attempts",
        "1",
        "--concurrency",
        "2",
        "--admin",
        &admin,
    ];
    let mut worker = Worker::start(&addr, &[("m", "hello")], &args);
    worker.wait_ready(&addr, "m", 2).await;
    let health = get(&admin, "/healthz");
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    answers(&admin, "/readyz", 200, Duration::from_secs(10)).await;

    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut client = connect(&addr).await;
    let mut done = Vec::new();
    for _ in 0..20 {
        done.push(put(&mut producer, "m", "task-one", abc(), None).await);
    }
    let mut failed = Vec::new();
    for n in 0..3 {
        let kwargs = json!({"message": format!("boom {n}")});
        failed.push(put(&mut producer, "m", "fail", kwargs, None).await);
    }
    for &id in &done {
        wait_deleted(&mut client, id).await;
    }
    for &id in &failed {
        wait_state(&mut client, id, JobState::Buried).await;
    }

    let labels = |task| [("tenant", "m"), ("tube", "m"), ("task", task)];
    let samples = eventually(Duration::from_secs(5), "23 jobs in /metrics", async || {
        let samples = scrape(&admin);
        let n = value(
            &samples,
            "beanbox_job_duration_seconds_count",
            &[("tube", "m")],
        );
        (n >= 23.0).then_some(samples)
    })
    .await;
    let jobs = |task, outcome| {
        let mut l = labels(task).to_vec();
        l.push(("outcome", outcome));
        value(&samples, "beanbox_jobs_total", &l)
    };
    assert_eq!(jobs("task-one", "deleted"), 20.0);
    assert_eq!(jobs("fail", "buried"), 3.0);
    assert_eq!(jobs("fail", "released") + jobs("task-one", "buried"), 0.0);
    for family in [
        "beanbox_job_duration_seconds",
        "beanbox_job_fuel",
        "beanbox_job_memory_bytes",
    ] {
        let count = format!("{family}_count");
        let sum = format!("{family}_sum");
        let n =
            value(&samples, &count, &labels("task-one")) + value(&samples, &count, &labels("fail"));
        assert_eq!(n, 23.0, "{count}");
        for task in ["task-one", "fail"] {
            assert!(
                value(&samples, &sum, &labels(task)) > 0.0,
                "{sum} of {task}"
            );
        }
    }
    let histogram = samples.iter().find(|s| {
        s.metric == "beanbox_job_memory_bytes" && s.labels.get("task") == Some("task-one")
    });
    assert!(
        matches!(histogram.map(|s| &s.value), Some(Prom::Histogram(b)) if !b.is_empty()),
        "memory buckets: {histogram:?}"
    );
    let tenant = [("tenant", "m")];
    assert_eq!(
        value(&samples, "beanbox_instances_created_total", &tenant),
        23.0
    );
    assert_eq!(
        value(&samples, "beanbox_instances_reused_total", &tenant),
        0.0
    );
    assert_eq!(
        value(&samples, "beanbox_module_loads_total", &[("module", "m")]),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "beanbox_module_compile_seconds_count",
            &[("module", "m")]
        ),
        1.0
    );
    assert_eq!(value(&samples, "beanbox_beanstalkd_up", &[]), 1.0);
    let buried = [("tube", "m"), ("state", "buried")];
    eventually(
        Duration::from_secs(5),
        "3 buried in beanbox_tube_jobs",
        async || (value(&scrape(&admin), "beanbox_tube_jobs", &buried) == 3.0).then_some(()),
    )
    .await;

    // /api/state: the tube, the tenant, the module and the 3 failures.
    let state: Value = serde_json::from_str(&get(&admin, "/api/state").body).expect("JSON");
    assert_eq!(state["worker"]["beanstalkd"], json!(addr));
    assert_eq!(state["worker"]["ready"], json!(true));
    assert_eq!(state["worker"]["actions"], json!(false));
    assert_eq!(state["tubes"][0]["tube"], "m");
    assert_eq!(state["tubes"][0]["buried"], 3);
    let tenant = &state["tenants"][0];
    assert_eq!(
        (tenant["name"].as_str(), tenant["slots"].as_u64()),
        (Some("m"), Some(2))
    );
    assert_eq!(tenant["used"]["jobs"], 23);
    assert!(tenant["used"]["fuel"].as_u64() > Some(0), "{tenant}");
    assert!(
        tenant["used"]["memory_peak_bytes"].as_u64() > Some(0),
        "{tenant}"
    );
    let module = &state["modules"][0];
    assert_eq!(module["name"], "m");
    assert_eq!(module["hash"].as_str().map(str::len), Some(64), "{module}");
    assert_eq!(module["error"], Value::Null);
    let failures = state["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 3, "{failures:?}");
    for f in failures {
        assert_eq!(
            (f["tube"].as_str(), f["task"].as_str()),
            (Some("m"), Some("fail"))
        );
        assert_eq!(
            (f["kind"].as_str(), f["outcome"].as_str()),
            (Some("guest-error"), Some("buried"))
        );
        assert!(f["reason"].as_str().unwrap().contains("boom"), "{f}");
        assert!(failed.contains(&f["job"].as_u64().unwrap()), "{f}");
    }

    // A task the module does not export is counted as `unknown`.
    let stray = put(&mut producer, "m", "no-such-task", json!({}), None).await;
    wait_state(&mut client, stray, JobState::Buried).await;
    eventually(
        Duration::from_secs(5),
        "the stray job in /metrics",
        async || {
            let samples = scrape(&admin);
            let mut l = labels("unknown").to_vec();
            l.push(("outcome", "buried"));
            (value(&samples, "beanbox_jobs_total", &l) == 1.0).then_some(())
        },
    )
    .await;
    assert!(!get(&admin, "/metrics").body.contains("no-such-task"));

    // /readyz follows beanstalkd: gone within 5 s, back once it is.
    server.kill();
    let down = answers(&admin, "/readyz", 503, Duration::from_secs(5)).await;
    assert!(
        down.body.contains("unreachable") && down.body.contains(&addr),
        "{}",
        down.body
    );
    server.restart();
    answers(&admin, "/readyz", 200, Duration::from_secs(10)).await;
    assert!(worker.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_address_that_cannot_be_listened_on_stops_the_worker_at_start() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for bad in ["127.0.0.1:99999", taken.as_str()] {
        let mut worker = Worker::hello(&addr, "m", &["--admin", bad]);
        let status = worker.exits_within(Duration::from_secs(20)).await;
        assert_eq!(status.code(), Some(1), "{}", worker.log());
        let log = worker.log();
        let error = log
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_default();
        assert!(error.contains(&format!("--admin {bad}")), "{log}");
    }
}
