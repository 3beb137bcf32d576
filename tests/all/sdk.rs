//! The guest SDK stands alone: a task crate builds from the SDK crate and its
//! own sources, with nothing else of the repository beside it.

use std::path::Path;
use std::process::Command;

use crate::support::{assert_exit, error_line, runner, runner_call, stderr, stdout};
use crate::worker_support::TempDir;

/// Copies the directory `from` to `to`, leaving out build output (`target/`,
/// `Cargo.lock`) that a local build may have left there.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("readable directory entry");
        let name = entry.file_name();
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        let kind = entry.file_type().expect("file type");
        assert!(
            !kind.is_symlink(),
            "{} is a symlink: the copy would not stand alone",
            entry.path().display()
        );
        if kind.is_dir() {
            copy_sources(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", entry.path().display()));
        }
    }
}

#[test]
fn a_task_crate_builds_with_only_the_sdk_beside_it() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = TempDir::new("sdk-alone");
    // The same relative layout as in the repository, and nothing else.
    copy_sources(&repo.join("guest-sdk"), &root.path().join("guest-sdk"));
    let task = root.path().join("examples/rust-task");
    copy_sources(&repo.join("examples/rust-task"), &task);

    let world = std::fs::read_to_string(task.join("wit/world.wit")).expect("world.wit");
    assert!(
        world.lines().count() <= 6,
        "the task's WIT declares only its exports:\n{world}"
    );

    // Registry crates come from the local cargo cache (--offline); the
    // target dir outlives the temp dir so that they are compiled once.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-alone-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&task)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .args([
            "build",
            "--offline",
            "--release",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("failed to run cargo");
    assert_exit(&build, 0);

    let wasm = target.join("wasm32-wasip2/release/my_task.wasm");
    let output = runner_call(
        &wasm,
        "task_one",
        r#"{"arg1":"a","arg2":"b","arg3":"c"}"#,
        &[],
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).trim(), r#""abc""#);
    // The SDK's log import reached the host.
    assert!(
        stderr(&output).contains("job 0 joining 3 strings"),
        "{}",
        stderr(&output)
    );
}

/// The repository's `beanbox:task` WIT, which `runner wit` must reproduce.
fn repository_wit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/task.wit");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn runner_wit_writes_the_task_package() {
    let root = TempDir::new("wit-out");
    let dir = root.path().join("wit/deps/beanbox-task");
    let output = runner()
        .args(["wit", "--out"])
        .arg(&dir)
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let written = dir.join("task.wit");
    assert_eq!(stdout(&output).trim(), written.display().to_string());
    let text = std::fs::read_to_string(&written).expect("task.wit written");
    assert_eq!(text, repository_wit());
    assert!(text.contains("package beanbox:task@0.1.0;"));

    // Without --out: the same text on stdout.
    let output = runner().arg("wit").output().expect("failed to run runner");
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), repository_wit());
}

#[test]
fn runner_wit_refuses_an_out_that_is_a_file() {
    let root = TempDir::new("wit-bad-out");
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, "keep me").expect("write");
    let output = runner()
        .args(["wit", "--out"])
        .arg(&file)
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 1);
    let error = error_line(&output);
    assert!(
        error.contains(&file.display().to_string()) && error.contains("not a directory"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
}
