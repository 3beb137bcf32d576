//! A task written in JavaScript (tasks/hello-js, built by componentize-js)
//! runs under the sandbox's default limits like a Rust one: `runner call`
//! returns its result, refuses bad kwargs, and reports an uncaught exception
//! as a task failure carrying the error's message; the beanbox:task imports
//! work from JavaScript.

use std::process::Output;

use crate::support::{assert_exit, error_line, javascript_wasm, runner_call, stderr, stdout};

/// Runs `runner call hello-js.wasm TASK --kwargs KWARGS`.
fn call(task: &str, kwargs: &str) -> Output {
    runner_call(javascript_wasm(), task, kwargs, &[])
}

#[test]
fn javascript_task_one_joins_its_arguments() {
    let output = call("task_one", r#"{"arg1":"a","arg2":"b","arg3":"c"}"#);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "\"abc\"\n");
    // The log import works from JavaScript: the line reaches the runner's log.
    assert!(
        stderr(&output).contains("task_one joining 3 strings"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn javascript_task_refuses_a_bad_kwarg_by_name() {
    let output = call("task_one", r#"{"arg1":"a","arg2":"b","argX":"c"}"#);
    assert_exit(&output, 2);
    let line = error_line(&output);
    assert!(line.contains("argX"), "{line}");
}

#[test]
fn javascript_exception_is_a_task_failure_with_its_message() {
    let output = call("boom", r#"{"message":"the flux capacitor broke"}"#);
    assert_exit(&output, 3);
    let line = error_line(&output);
    assert!(line.contains("boom"), "{line}");
    assert!(line.contains("the flux capacitor broke"), "{line}");
    // The runtime's generic abort line is not what the author needs to see.
    assert!(!line.contains("mozalloc_abort"), "{line}");
}

#[test]
fn javascript_error_thrown_in_a_result_export_is_its_err() {
    // app.js's `fail` throws `new Error(message)` inside its documented
    // `result(...)` wrapper: the task returns `err` with the message, no trap.
    let output = call("fail", r#"{"message":"no flux"}"#);
    assert_exit(&output, 3);
    let line = error_line(&output);
    assert_eq!(line, r#"error: task `fail` returned an error: "no flux""#);
}

#[test]
fn javascript_task_reads_job_info_and_logs() {
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
