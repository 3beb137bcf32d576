//! The `runner` binary as a user runs it: `call` prints the result as JSON
//! and exits 0, or prints one line on stderr and exits 2 (bad input), 3 (task
//! failed) or 4 (limit hit); `inspect` lists tasks as WIT or JSON Schema.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::support::{assert_exit, error_line, runner, runner_call, stderr, stdout, wasm};
use crate::worker_support::TempDir;

/// Runs `runner call MODULE.wasm TASK --kwargs KWARGS [extra...]`.
fn call(module: &str, task: &str, kwargs: &str, extra: &[&str]) -> Output {
    runner_call(&wasm(module), task, kwargs, extra)
}

/// Stderr when it must be nothing but one `error:` line.
fn only_line(output: &Output) -> String {
    let text = stderr(output);
    assert_eq!(
        text.lines().count(),
        1,
        "expected one line on stderr, got: {text}"
    );
    error_line(output)
}

#[test]
fn call_prints_the_json_result() {
    let output = call(
        "hello",
        "task_one",
        r#"{"arg1":"a","arg2":"b","arg3":"c"}"#,
        &[],
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "\"abc\"\n");
}

#[test]
fn call_of_unknown_task_is_bad_input() {
    let output = call("hello", "task_two", "{}", &[]);
    assert_exit(&output, 2);
    let line = only_line(&output);
    assert!(line.contains("`task_two`"), "{line}");
    assert!(line.contains("task-one"), "{line}");
    assert!(output.stdout.is_empty());
}

#[test]
fn call_with_kwargs_that_do_not_fit_is_bad_input() {
    let output = call(
        "hello",
        "task-one",
        r#"{"arg1":"a","arg2":"b","arg3":3}"#,
        &[],
    );
    assert_exit(&output, 2);
    let line = only_line(&output);
    assert!(line.contains("`arg3`"), "{line}");
    assert!(line.contains("string"), "{line}");
}

#[test]
fn call_with_missing_kwarg_is_bad_input() {
    let output = call("hello", "task-one", r#"{"arg1":"a","arg2":"b"}"#, &[]);
    assert_exit(&output, 2);
    assert!(only_line(&output).contains("`arg3` is missing"));
}

#[test]
fn call_with_invalid_json_is_bad_input() {
    let output = call("hello", "task-one", r#"{"arg1": "#, &[]);
    assert_exit(&output, 2);
    assert!(only_line(&output).contains("not valid JSON"));
}

#[test]
fn call_with_non_object_kwargs_is_bad_input() {
    let output = call("hello", "task-one", r#"["a","b","c"]"#, &[]);
    assert_exit(&output, 2);
    assert!(only_line(&output).contains("JSON object"));
}

#[test]
fn call_of_missing_module_file_is_bad_input() {
    let missing = wasm("hello").with_file_name("no-such-module.wasm");
    let output = runner()
        .arg("call")
        .arg(&missing)
        .arg("task-one")
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 2);
    assert!(only_line(&output).contains("no-such-module.wasm"));
}

#[test]
fn call_of_a_file_that_is_not_wasm_is_bad_input() {
    let not_wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = runner()
        .args(["call", not_wasm, "task-one"])
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 2);
    assert!(only_line(&output).contains("not a valid component"));
}

#[test]
fn call_of_a_failing_task_exits_3_with_its_message() {
    let output = call("hello", "fail", r#"{"message":"disk on fire"}"#, &[]);
    assert_exit(&output, 3);
    assert!(only_line(&output).contains("disk on fire"));
    // The err value, as JSON, is the one thing on stdout.
    assert_eq!(stdout(&output), "\"disk on fire\"\n");
}

#[test]
fn call_of_a_panicking_task_exits_3_with_the_panic_message() {
    let output = call("hostile", "panic", r#"{"message":"out of cheese"}"#, &[]);
    assert_exit(&output, 3);
    let error = stderr(&output)
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(error.contains("out of cheese"), "{}", stderr(&output));
}

#[test]
fn call_out_of_fuel_exits_4() {
    let output = call("hostile", "spin", "{}", &["--fuel", "1000000"]);
    assert_exit(&output, 4);
    assert!(error_line(&output).contains("fuel"));
}

#[test]
fn call_past_its_timeout_exits_4() {
    let started = std::time::Instant::now();
    let output = call(
        "hostile",
        "sleep-ms",
        r#"{"ms":60000}"#,
        &["--timeout", "0.5"],
    );
    assert_exit(&output, 4);
    assert!(error_line(&output).contains("time limit"));
    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn call_over_its_memory_limit_exits_4() {
    let output = call(
        "hostile",
        "allocate-mb",
        r#"{"mb":40}"#,
        &["--memory-mb", "16"],
    );
    assert_exit(&output, 4);
    assert!(error_line(&output).contains("memory limit of 16 MiB"));
}

#[test]
fn call_over_its_output_limit_exits_4() {
    let output = call(
        "hostile",
        "print",
        r#"{"bytes":100000}"#,
        &["--output-bytes", "65536"],
    );
    assert_exit(&output, 4);
    assert!(
        stderr(&output).contains("more than 65536 bytes to stdout"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn call_help_lists_the_exit_codes() {
    let output = runner()
        .args(["call", "--help"])
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let help = stdout(&output);
    assert!(help.contains("Exit codes:"), "{help}");
    for line in [
        "0  success",
        "2  bad input",
        "3  task failed",
        "4  limit hit",
    ] {
        assert!(help.contains(line), "{help} lacks {line}");
    }
}

#[test]
fn inspect_lists_tasks_with_their_wit_signatures() {
    let output = runner()
        .arg("inspect")
        .arg(wasm("hello"))
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|l| l.trim()
                == "task-one: func(arg1: string, arg2: string, arg3: string) -> string"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.trim() == "fail: func(message: string) -> result<string, string>"),
        "{text}"
    );
}

#[test]
fn inspect_json_gives_a_schema_per_task() {
    let output = runner()
        .arg("inspect")
        .arg(wasm("showcase"))
        .arg("--json")
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let doc: Value = serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON");
    let tasks = &doc["tasks"];
    let kwargs = &tasks["echo-point"]["kwargs"];
    assert_eq!(kwargs["type"], "object", "{kwargs}");
    assert_eq!(kwargs["required"], json!(["p"]), "{kwargs}");
    let p = &kwargs["properties"]["p"];
    assert_eq!(p["type"], "object", "{p}");
    assert_eq!(p["required"], json!(["x", "y"]), "{p}");
    assert_eq!(p["properties"]["x"]["type"], "integer", "{p}");

    let add = &tasks["math.add"];
    assert!(add.is_object(), "{doc}");
    assert_eq!(add["signature"], "func(a: s64, b: s64) -> s64");
    assert_eq!(add["kwargs"]["required"], json!(["a", "b"]));
    // An option parameter is not required.
    assert_eq!(
        tasks["describe"]["kwargs"]["required"],
        json!(["name", "age", "tags"])
    );
    assert_eq!(
        add["result"],
        json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX})
    );
    assert_eq!(add["error"], Value::Null);
}

#[test]
fn inspect_json_describes_a_result_export_as_call_answers_it() {
    let output = runner()
        .arg("inspect")
        .arg(wasm("hello"))
        .arg("--json")
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 0);
    let doc: Value = serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON");
    // `fail: func(message: string) -> result<string, string>`: the result is
    // the `ok` string itself, the error the `err` string.
    let fail = &doc["tasks"]["fail"];
    assert_eq!(fail["result"], json!({"type": "string"}), "{fail}");
    assert_eq!(fail["error"], json!({"type": "string"}), "{fail}");
    // As `runner call` answers: the err value is a bare JSON string.
    let output = call("hello", "fail", r#"{"message":"m"}"#, &[]);
    assert_exit(&output, 3);
    assert!(only_line(&output).ends_with(r#"returned an error: "m""#));
    // The ok value of `follow-up: result<u64, string>` is a bare integer.
    let follow_up = &doc["tasks"]["follow-up"];
    assert_eq!(follow_up["result"]["type"], "integer", "{follow_up}");
}

#[test]
fn inspect_of_a_file_that_is_not_wasm_is_bad_input() {
    let not_wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = runner()
        .args(["inspect", not_wasm])
        .output()
        .expect("failed to run runner");
    assert_exit(&output, 2);
    assert!(only_line(&output).contains("not a valid component"));
}

#[test]
fn call_shows_the_task_its_standalone_job() {
    let output = call("hello", "describe-job", "{}", &[]);
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output),
        "\"id=0 tube= task=describe-job attempt=1\"\n"
    );
}

#[test]
fn call_cannot_put_follow_up_jobs() {
    let output = call("hello", "follow-up", r#"{"tube":"next","word":"hi"}"#, &[]);
    assert_exit(&output, 3);
    let line = error_line(&output);
    assert!(line.contains("unavailable"), "{line}");
    assert!(line.contains("`next`"), "{line}");
}

#[test]
fn call_waits_for_a_short_nap() {
    let output = call("hello", "nap", r#"{"ms":20}"#, &[]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "20\n");
}

/// The compiled-code entries (`*.cwasm`) in `dir`, with their modification
/// times; none when `dir` does not exist.
fn cache_entries(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut entries: Vec<(PathBuf, SystemTime)> = read
        .map(|e| e.expect("readable cache entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .map(|p| {
            let modified = p.metadata().and_then(|m| m.modified()).unwrap();
            (p, modified)
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn call_and_inspect_compile_a_component_once_then_use_the_cache() {
    let dir = TempDir::new("call-cache");
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let kwargs = r#"{"arg1":"a","arg2":"b","arg3":"c"}"#;
    let first = call("hello", "task_one", kwargs, &["--cache-dir", cache_arg]);
    assert_exit(&first, 0);
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 1, "one entry after the first call");

    // Later calls and inspect read the entry and write nothing.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = call("hello", "task_one", kwargs, &["--cache-dir", cache_arg]);
    assert_exit(&second, 0);
    assert_eq!(stdout(&second), stdout(&first));
    let inspect = runner()
        .args(["inspect", "--cache-dir", cache_arg])
        .arg(wasm("hello"))
        .output()
        .expect("failed to run runner");
    assert_exit(&inspect, 0);
    assert!(stdout(&inspect).contains("task-one: func("));
    assert_eq!(
        cache_entries(&cache),
        entries,
        "the entry was not rewritten"
    );

    // The cache stays out of stderr, which is the task's and the error's.
    let failed = call(
        "hello",
        "fail",
        r#"{"message":"disk on fire"}"#,
        &["--cache-dir", cache_arg],
    );
    assert!(only_line(&failed).contains("disk on fire"));
}

#[test]
fn call_caches_in_the_user_cache_dir_unless_told_not_to() {
    let home = TempDir::new("xdg-cache-home");
    let cache = home.path().join("beanbox");
    let run = |extra: &[&str]| {
        runner()
            .env("XDG_CACHE_HOME", home.path())
            .arg("call")
            .arg(wasm("hello"))
            .args([
                "task_one",
                "--kwargs",
                r#"{"arg1":"a","arg2":"b","arg3":"c"}"#,
            ])
            .args(extra)
            .output()
            .expect("failed to run runner")
    };
    assert_exit(&run(&["--no-cache"]), 0);
    assert!(
        cache_entries(&cache).is_empty(),
        "--no-cache wrote to {}",
        cache.display()
    );
    assert_exit(&run(&[]), 0);
    assert_eq!(cache_entries(&cache).len(), 1, "in $XDG_CACHE_HOME/beanbox");
}
