//! `runner deploy`: a checked, atomic deploy that waits (with `--admin`)
//! until the worker serves the new version; bad modules and an admin
//! address that does not answer deploy nothing.

use std::path::Path;
use std::time::Duration;

use beanbox_queue::Producer;
use beanbox_queue::testing::Beanstalkd;
use serde_json::json;

use crate::deploy_support::{Modules, hello_version, version_marker};
use crate::http_support::{free_addr, request};
use crate::support::{assert_exit, error_line, runner, stdout};
use crate::worker_support::Runner;
use crate::worker_support::{Replies, TempDir, eventually, ok, put};

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_with_admin_waits_until_the_new_version_serves() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let admin = free_addr();
    let modules = Modules::with(&["hello"]);
    let _worker = Runner::start(
        &addr,
        &["--modules", modules.as_str(), "--admin", &admin],
        &[],
    );
    eventually(Duration::from_secs(30), "the admin listener", async || {
        request(&admin, "GET", "/healthz", &[], "").filter(|a| a.status == 200)
    })
    .await;

    let new = TempDir::new("deploy-new");
    let file = new.path().join("build-output.wasm");
    std::fs::write(&file, hello_version(7)).expect("write the new version");
    let output = runner()
        .arg("deploy")
        .arg(&file)
        .args(["--modules", modules.as_str(), "--name", "hello"])
        .args(["--admin", &admin, "--timeout", "60"])
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("deployed hello sha256="), "{text}");
    let hash = lines[0].split(['=', ' ']).nth(3).expect("a hash");
    assert_eq!(hash.len(), 64, "{text}");
    assert!(
        lines[1].starts_with(&format!("live hello sha256={hash} after ")),
        "{text}"
    );
    assert_eq!(
        entries(modules.path()),
        ["hello.wasm"],
        "no temporary file left"
    );

    // Live means live: the next job runs the new version.
    let mut replies = Replies::watch(&addr, "deploy-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "hello",
        "version",
        json!({}),
        Some("deploy-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(15)).await;
    assert_eq!((reply.job, ok(&reply)), (id, &json!(version_marker(7))));
}

#[test]
fn deploy_refuses_a_file_that_is_not_a_component_and_writes_nothing() {
    let modules = Modules::with(&["hello"]);
    let dir = TempDir::new("deploy-bad");
    let file = dir.path().join("hello.wasm");
    std::fs::write(&file, b"not a component").expect("write");
    let before = std::fs::read(modules.file("hello")).expect("read");
    let output = runner()
        .arg("deploy")
        .arg(&file)
        .args(["--modules", modules.as_str()])
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 2);
    let error = error_line(&output);
    assert!(error.contains("nothing deployed"), "{error}");
    assert_eq!(entries(modules.path()), ["hello.wasm"]);
    assert_eq!(std::fs::read(modules.file("hello")).expect("read"), before);
}

#[test]
fn deploy_to_an_admin_address_that_does_not_answer_writes_nothing() {
    let modules = TempDir::new("deploy-no-admin");
    let admin = free_addr();
    let output = runner()
        .arg("deploy")
        .arg(crate::support::wasm("hello"))
        .args(["--modules", modules.as_str(), "--admin", &admin])
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 1);
    let error = error_line(&output);
    assert!(
        error.contains(&format!("admin listener at {admin}")),
        "{error}"
    );
    assert!(entries(modules.path()).is_empty());
}
