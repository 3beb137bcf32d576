//! A task written in Python (tasks/hello-py, built by componentize-py) runs
//! under the sandbox's default limits like a Rust one: `runner call` returns
//! its result, refuses bad kwargs, and reports an uncaught exception as a
//! task failure naming the exception; the beanbox:task imports work from
//! Python.

use std::process::Output;

use crate::support::{assert_exit, error_line, python_wasm, runner_call, stderr, stdout};

/// Runs `runner call hello-py.wasm TASK --kwargs KWARGS`.
fn call(task: &str, kwargs: &str) -> Output {
    runner_call(python_wasm(), task, kwargs, &[])
}

#[test]
fn python_task_one_joins_its_arguments() {
    let output = call("task_one", r#"{"arg1":"a","arg2":"b","arg3":"c"}"#);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "\"abc\"\n");
    // The log import works from Python: the line reaches the runner's log.
    assert!(
        stderr(&output).contains("task_one joining 3 strings"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn python_task_refuses_a_bad_kwarg_by_name() {
    let output = call("task_one", r#"{"arg1":"a","arg2":"b","argX":"c"}"#);
    assert_exit(&output, 2);
    let line = error_line(&output);
    assert!(line.contains("argX"), "{line}");
}

#[test]
fn python_exception_is_a_task_failure_with_its_message() {
    let output = call("boom", r#"{"message":"the flux capacitor broke"}"#);
    assert_exit(&output, 3);
    let line = error_line(&output);
    assert!(line.contains("boom"), "{line}");
    assert!(
        line.contains("RuntimeError: the flux capacitor broke"),
        "{line}"
    );
}

#[test]
fn python_task_reads_job_info_and_logs() {
    let output = call("describe_job", "{}");
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output),
        "\"id=0 tube= task=describe_job attempt=1\"\n"
    );
    assert!(
        stderr(&output).contains("describing job 0"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn python_follow_up_reports_the_put_error() {
    // `runner call` has no queue: the put fails, and the task turns the
    // error variant into its own `err` text.
    let output = call("follow_up", r#"{"tube":"next","word":"w"}"#);
    assert_exit(&output, 3);
    let line = error_line(&output);
    assert!(line.contains("unavailable: "), "{line}");
}
