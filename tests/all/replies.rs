//! The reply contract end to end: a task's structured `err` value reaches
//! the producer as JSON under `error.value`, in the reply a worker puts and
//! in what `runner put --wait` and `runner call` print.

use std::time::Duration;

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{ErrorKind, Producer};
use serde_json::json;

use crate::support::{self, assert_exit, error_line, runner_call, stdout, wasm};
use crate::worker_support::{Replies, Worker, err, ok, put, run_bounded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_structured_err_value_arrives_in_the_reply_as_json() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::start(&addr, &[("places", "showcase")], &["--max-attempts", "1"]);
    let mut replies = Replies::watch(&addr, "places-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();

    // `place: func(p: point) -> result<point, placement-error>`, where
    // `variant placement-error { off-grid(point), unlabelled }`.
    let off_grid = json!({"x": 11, "y": 2, "label": "far"});
    let id = put(
        &mut producer,
        "places",
        "place",
        json!({"p": off_grid}),
        Some("places-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(reply.job, id);
    let error = err(&reply);
    assert_eq!(ErrorKind::parse(&error.kind), Some(ErrorKind::GuestError));
    assert_eq!(
        error.value,
        Some(json!({"off-grid": off_grid})),
        "{error:?}"
    );
    assert!(error.message.contains("off-grid"), "{}", error.message);

    // A case without payload is its name; other failures carry no value.
    put(
        &mut producer,
        "places",
        "place",
        json!({"p": {"x": 1, "y": 2}}),
        Some("places-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(20)).await;
    assert_eq!(err(&reply).value, Some(json!("unlabelled")));
    put(
        &mut producer,
        "places",
        "place",
        json!({"p": {"x": "one", "y": 2}}),
        Some("places-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(20)).await;
    let error = err(&reply);
    assert_eq!(ErrorKind::parse(&error.kind), Some(ErrorKind::BadKwargs));
    assert_eq!(error.value, None, "{error:?}");

    // And a success is the `ok` point itself.
    let on_grid = json!({"x": 1, "y": 2, "label": "near"});
    put(
        &mut producer,
        "places",
        "place",
        json!({"p": on_grid}),
        Some("places-replies"),
    )
    .await;
    assert_eq!(ok(&replies.next(Duration::from_secs(20)).await), &on_grid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_wait_prints_the_err_value_on_stdout() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let _worker = Worker::start(&addr, &[("places", "showcase")], &["--max-attempts", "1"]);
    let output = run_bounded(
        support::runner().args([
            "put",
            "--beanstalkd",
            &addr,
            "--tube",
            "places",
            "place",
            "--kwargs",
            r#"{"p": {"x": -1, "y": 0}}"#,
            "--wait",
            "--timeout",
            "20",
        ]),
        Duration::from_secs(30),
    )
    .await;
    assert_exit(&output, 3);
    assert!(error_line(&output).contains("returned an error"));
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(value, json!({"off-grid": {"x": -1, "y": 0, "label": null}}));
}

#[test]
fn call_prints_the_err_value_on_stdout_and_nothing_for_a_trap() {
    let output = runner_call(
        &wasm("showcase"),
        "place",
        r#"{"p": {"x": 3, "y": 3}}"#,
        &[],
    );
    assert_exit(&output, 3);
    assert_eq!(stdout(&output), "\"unlabelled\"\n");

    let output = runner_call(&wasm("hostile"), "panic", r#"{"message": "m"}"#, &[]);
    assert_exit(&output, 3);
    assert_eq!(stdout(&output), "");
}
