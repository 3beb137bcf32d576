//! What the sandbox does not grant: files, environment variables and the
//! network are out of reach of hostile's attempts, which fail inside the
//! guest, and the host serves the next call as usual.

use std::io::ErrorKind;
use std::net::TcpListener;

use beanbox::sandbox::CallError;
use serde_json::{Value, json};

use crate::support::{fails, ok, runner, wasm};

/// The error text of a hostile export that returns `err`.
async fn guest_error(task: &str, kwargs: Value) -> String {
    let error = fails("hostile", task, kwargs).await;
    match error {
        CallError::Guest {
            payload: Value::String(text),
            ..
        } => text,
        other => panic!("expected the guest's own error, got {other:?}"),
    }
}

/// Asserts the host still serves calls after a denial.
async fn host_lives_on() {
    assert_eq!(ok("hostile", "count-calls", json!({})).await, json!(1));
}

#[tokio::test]
async fn reading_a_host_file_fails_inside_the_guest() {
    assert!(
        std::path::Path::new("/etc/passwd").exists(),
        "the host has the file"
    );
    let text = guest_error("read-file", json!({"path": "/etc/passwd"})).await;
    assert!(!text.is_empty());
    assert!(!text.contains("root:"), "{text}");
    host_lives_on().await;
}

#[tokio::test]
async fn reading_the_current_directory_fails_inside_the_guest() {
    let text = guest_error("read-file", json!({"path": "."})).await;
    assert!(!text.is_empty());
    host_lives_on().await;
}

#[tokio::test]
async fn host_environment_is_invisible() {
    for name in ["PATH", "HOME"] {
        assert!(
            std::env::var_os(name).is_some(),
            "the test process should have {name}"
        );
        assert_eq!(
            ok("hostile", "read-env", json!({ "name": name })).await,
            json!(null),
            "{name}"
        );
    }
    host_lives_on().await;
}

#[test]
fn variable_set_for_the_runner_is_invisible_to_its_task() {
    // Setting a variable in this process needs `unsafe`, which the crate
    // forbids; a `runner` child with the variable set shows the same.
    let name = "BEANBOX_TEST_SECRET";
    let output = runner()
        .env(name, "hunter2")
        .args(["call", wasm("hostile").to_str().unwrap(), "read-env"])
        .args(["--kwargs", &json!({ "name": name }).to_string()])
        .output()
        .expect("failed to run runner");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "null\n");
}

#[tokio::test]
async fn connecting_to_a_listening_local_port_fails_inside_the_guest() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a local port");
    listener
        .set_nonblocking(true)
        .expect("failed to make the listener non-blocking");
    let addr = listener.local_addr().expect("the listener has an address");
    let text = guest_error("connect", json!({ "addr": addr.to_string() })).await;
    assert!(!text.is_empty());
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => panic!("accept failed: {e}"),
        Ok((_, peer)) => panic!("the guest reached the listener from {peer}"),
    }
    host_lives_on().await;
}
