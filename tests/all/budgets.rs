//! What a guest hands the host is bounded and paid for, each as a pair,
//! obeyed and violated: a huge `log` message is cut and charged fuel, and the
//! deadline stops a guest looping in `log`; log lines past the per-job
//! budget are dropped and reported; follow-up puts are staged, at most
//! `max_puts` of them, and only a call that succeeded hands them on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use beanbox::sandbox::{
    Budget, BudgetHit, CallContext, CallError, DEFAULT_LOG_LINES, DEFAULT_MAX_PUTS, Grants,
    JobInfo, KeptInstance, Level, Limits, MAX_LOG_LINE, Outcome, PutError, PutOptions, PutRequest,
    Services,
};
use serde_json::{Value, json};

use crate::support::{self, assert_exit, error_line, object, runner_call, stderr, stdout};
use crate::worker_support::run_bounded;

/// Far more fuel than any of these calls can burn before its deadline.
const ENDLESS_FUEL: &str = "1000000000000000000";

/// `runner call hostile.wasm TASK --kwargs KWARGS EXTRA...` with JSON logs;
/// returns the output and how long it took.
fn hostile(task: &str, kwargs: Value, extra: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let mut args = vec!["--log-format", "json"];
    args.extend_from_slice(extra);
    let output = runner_call(&support::wasm("hostile"), task, &kwargs.to_string(), &args);
    (output, started.elapsed())
}

/// The task's own log lines among `runner`'s JSON log lines.
fn task_lines(output: &std::process::Output) -> Vec<Value> {
    stderr(output)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "task")
        .collect()
}

/// `runner call hostile.wasm log-huge` with `extra` flags and the task's
/// own log lines filtered out, killed (and failing) after 60 s; returns the
/// output and how long it took.
async fn log_huge_bounded(kwargs: Value, extra: &[&str]) -> (std::process::Output, Duration) {
    hostile_bounded("log-huge", kwargs, extra).await
}

/// `runner call hostile.wasm TASK` with `extra` flags, task log lines
/// filtered out, killed (and failing) after 60 s; returns the output and how
/// long it took.
async fn hostile_bounded(
    task: &str,
    kwargs: Value,
    extra: &[&str],
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let output = run_bounded(
        support::runner()
            .arg("call")
            .arg(support::wasm("hostile"))
            .args([task, "--kwargs", &kwargs.to_string(), "--log", "warn"])
            .args(extra),
        Duration::from_secs(60),
    )
    .await;
    (output, started.elapsed())
}

#[tokio::test]
async fn a_guest_looping_on_huge_log_messages_stops_at_its_deadline() {
    // 32 MiB a message, a million times: before the host checked the
    // deadline itself, a 2 s timeout let this run 12-25 s.
    let (output, elapsed) = log_huge_bounded(
        json!({"mb": 32, "times": 1_000_000}),
        &["--timeout", "1", "--fuel", ENDLESS_FUEL],
    )
    .await;
    assert_exit(&output, 4);
    let line = error_line(&output);
    assert!(line.contains("time limit"), "{line}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn a_guest_looping_on_huge_puts_stops_at_its_deadline() {
    // 32 MiB of kwargs a put, a million times: each is refused as too big,
    // but only after the host has been handed the whole string.
    let (output, elapsed) = hostile_bounded(
        "put-huge",
        json!({"mb": 32, "times": 1_000_000}),
        &[
            "--timeout",
            "1",
            "--fuel",
            ENDLESS_FUEL,
            "--memory-mb",
            "256",
        ],
    )
    .await;
    assert_exit(&output, 4);
    let line = error_line(&output);
    assert!(line.contains("time limit"), "{line}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn a_few_huge_log_messages_are_cut_and_the_call_succeeds() {
    let (output, _) = hostile(
        "log-huge",
        json!({"mb": 2, "times": 3}),
        &["--timeout", "10"],
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "3\n");
    let lines = task_lines(&output);
    assert_eq!(lines.len(), 3, "{}", stderr(&output));
    for line in lines {
        let message = line["fields"]["message"].as_str().expect("a message");
        assert_eq!(message.len(), MAX_LOG_LINE + " [truncated]".len());
        assert!(message.ends_with("x [truncated]"), "{message:.40}");
    }
}

#[tokio::test]
async fn huge_log_messages_are_paid_for_in_fuel() {
    // Each message costs fuel per byte: 500 million fuel is a few messages
    // of 32 MiB, long before a 30 s timeout.
    let (output, elapsed) = log_huge_bounded(
        json!({"mb": 32, "times": 1_000_000}),
        &["--fuel", "500000000", "--timeout", "30"],
    )
    .await;
    assert_exit(&output, 4);
    let line = error_line(&output);
    assert!(line.contains("ran out of fuel"), "{line}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn a_log_bomb_of_empty_messages_stops_at_the_line_budget() {
    // A generous deadline: a debug build on a loaded machine takes seconds.
    let (output, _) = hostile(
        "log-bomb",
        json!({"n": 1_000_000, "len": 0}),
        &["--timeout", "600"],
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "1000000\n");
    assert_eq!(task_lines(&output).len(), DEFAULT_LOG_LINES as usize);
    let dropped = 1_000_000 - DEFAULT_LOG_LINES;
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "warning: log budget of {DEFAULT_LOG_LINES} lines exceeded ({dropped} lines dropped)"
        )),
        "{}",
        &text[text.len().saturating_sub(500)..]
    );
}

#[test]
fn log_lines_under_the_budget_all_arrive() {
    let (output, _) = hostile("log-bomb", json!({"n": 500, "len": 10}), &[]);
    assert_exit(&output, 0);
    let lines = task_lines(&output);
    assert_eq!(lines.len(), 500);
    assert!(lines.iter().all(|l| l["fields"]["message"] == "xxxxxxxxxx"));
    assert!(!stderr(&output).contains("warning"), "{}", stderr(&output));
}

#[tokio::test]
async fn the_outcome_reports_log_lines_dropped_and_bytes_cut() {
    let limits = Limits {
        log_lines: 10,
        output_bytes: 1000,
        ..Limits::default()
    };
    let outcome =
        support::call_with("hostile", "log-bomb", json!({"n": 25, "len": 0}), limits).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let hit = BudgetHit {
        budget: Budget::LogLines,
        limit: 10,
        refused: 15,
    };
    assert_eq!(outcome.budget_hits, [hit]);
    assert_eq!(
        outcome.budget_summary().as_deref(),
        Some("log budget of 10 lines exceeded (15 lines dropped)")
    );

    // 300-byte lines under a 1000-byte budget: the fourth is cut, the rest
    // dropped.
    let outcome =
        support::call_with("hostile", "log-bomb", json!({"n": 6, "len": 300}), limits).await;
    outcome.result.expect("a log bomb succeeds");
    let hit = BudgetHit {
        budget: Budget::LogBytes,
        limit: 1000,
        refused: 2,
    };
    assert_eq!(outcome.budget_hits, [hit]);

    let outcome =
        support::call_with("hostile", "log-bomb", json!({"n": 3, "len": 300}), limits).await;
    outcome.result.expect("a few lines succeed");
    assert!(outcome.budget_hits.is_empty(), "{:?}", outcome.budget_hits);
}

/// Services that let a task put to `tube` only, and print its log lines.
struct OnlyTube(&'static str);

impl Services for OnlyTube {
    fn log(&self, _job: &JobInfo, _level: Level, message: &str) {
        println!("task: {message}");
    }

    fn check_put(&self, _job: &JobInfo, request: &PutRequest) -> Result<(), PutError> {
        if request.tube == self.0 {
            Ok(())
        } else {
            Err(PutError::Denied(format!("not `{}`", request.tube)))
        }
    }
}

/// A context for a job on tube `bomb` whose services allow only that tube.
fn on_tube_bomb(task: &str, limits: Limits) -> CallContext {
    CallContext {
        limits,
        job: JobInfo {
            id: 7,
            tube: "bomb".into(),
            task: task.into(),
            attempt: 1,
        },
        services: Arc::new(OnlyTube("bomb")),
        grants: Arc::new(Grants::default()),
        attempt: None,
    }
}

async fn call_on_bomb(task: &str, kwargs: Value, limits: Limits) -> Outcome {
    support::module("hostile")
        .call(task, &object(kwargs), &on_tube_bomb(task, limits))
        .await
}

/// The put hostile stages: `count-calls` on its own tube.
fn count_calls_on_bomb() -> PutRequest {
    PutRequest {
        tube: "bomb".into(),
        task: "count-calls".into(),
        kwargs: serde_json::Map::new(),
        options: PutOptions {
            priority: None,
            delay_secs: None,
            ttr_secs: None,
        },
    }
}

#[tokio::test]
async fn a_put_bomb_stages_max_puts_and_the_rest_are_refused() {
    let outcome = call_on_bomb("put-bomb", json!({"n": 1000}), Limits::default()).await;
    let max = DEFAULT_MAX_PUTS;
    assert_eq!(outcome.result.expect("put-bomb succeeds"), json!(max));
    assert_eq!(outcome.puts.len(), max as usize);
    assert!(outcome.puts.iter().all(|p| *p == count_calls_on_bomb()));
    let hit = BudgetHit {
        budget: Budget::Puts,
        limit: max.into(),
        refused: 1000 - u64::from(max),
    };
    assert_eq!(outcome.budget_hits, [hit]);

    // The error the guest sees past the budget.
    let limits = Limits {
        max_puts: 0,
        ..Limits::default()
    };
    let outcome = call_on_bomb("put-one", json!({}), limits).await;
    let error = outcome.result.expect_err("no put allowed");
    let CallError::Guest { payload, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(
        payload,
        &json!("denied: put budget of 0 follow-up jobs per job exceeded")
    );
}

#[tokio::test]
async fn puts_under_the_budget_are_all_staged_in_order() {
    let outcome = call_on_bomb("put-bomb", json!({"n": 5}), Limits::default()).await;
    assert_eq!(outcome.result.expect("put-bomb succeeds"), json!(5));
    assert_eq!(outcome.puts, vec![count_calls_on_bomb(); 5]);
    assert!(outcome.budget_hits.is_empty(), "{:?}", outcome.budget_hits);

    // `put` returns the put's number within the job.
    let outcome = call_on_bomb("put-one", json!({}), Limits::default()).await;
    assert_eq!(outcome.result.expect("put-one succeeds"), json!(1));
    assert_eq!(outcome.puts, [count_calls_on_bomb()]);
}

#[tokio::test]
async fn a_call_that_fails_hands_on_no_puts() {
    let outcome = call_on_bomb("put-then-fail", json!({}), Limits::default()).await;
    let error = outcome.result.expect_err("put-then-fail fails");
    assert!(
        error.to_string().contains("after staging follow-up 1"),
        "{error}"
    );
    assert!(outcome.puts.is_empty(), "{:?}", outcome.puts);
}

#[tokio::test]
async fn a_kept_instance_gets_a_fresh_put_budget_per_job() {
    let module = support::module("hostile");
    let limits = Limits {
        max_puts: 1,
        ..Limits::default()
    };
    let ctx = on_tube_bomb("put-one", limits);
    let mut kept = KeptInstance::default();
    for job in 1..=3 {
        let outcome = module
            .call_reusing("put-one", &object(json!({})), &ctx, &mut kept, 10)
            .await;
        assert_eq!(outcome.result.expect("put-one succeeds"), json!(1));
        assert_eq!(outcome.puts.len(), 1);
        assert_eq!(outcome.instance_jobs, job);
    }
}
