//! What every test shares: the task components (built once per run, or taken
//! from `BEANBOX_TASKS_DIR`), one sandbox with each component compiled once,
//! call helpers, and the `runner` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use beanbox::sandbox::{
    CallContext, CallError, CodeCache, FailureClass, Limits, Module, Outcome, Sandbox,
};
use serde_json::{Map, Value};

/// The components every test run needs.
const COMPONENTS: [&str; 4] = ["hello", "showcase", "hostile", "compute"];

/// The directory holding `hello.wasm`, `showcase.wasm` and `hostile.wasm`:
/// `$BEANBOX_TASKS_DIR` if set, else what `tasks/build.sh` builds (run once
/// per test run).
pub fn tasks_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let (dir, origin) = match std::env::var_os("BEANBOX_TASKS_DIR") {
            Some(dir) => (PathBuf::from(dir), "BEANBOX_TASKS_DIR"),
            None => (build_tasks(), "tasks/build.sh"),
        };
        let missing: Vec<String> = COMPONENTS
            .iter()
            .map(|name| format!("{name}.wasm"))
            .filter(|file| !dir.join(file).is_file())
            .collect();
        assert!(
            missing.is_empty(),
            "{} (from {origin}) lacks {}; build the task components with tasks/build.sh \
             or point BEANBOX_TASKS_DIR at a directory that has them",
            dir.display(),
            missing.join(", "),
        );
        dir
    })
}

/// Runs `tasks/build.sh` and returns the directory it prints.
fn build_tasks() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/build.sh");
    let output = Command::new(&script)
        // The script reports `tasks/target/...`; a target dir inherited from
        // the `cargo test` that runs us would send the build elsewhere.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("failed to run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed ({}); is the wasm32-wasip2 target installed \
         (`rustup target add wasm32-wasip2`)?\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr),
    );
    let printed = String::from_utf8(output.stdout).expect("build.sh prints a UTF-8 path");
    PathBuf::from(printed.trim())
}

/// The path of the task component `name` (`"hello"` for `hello.wasm`).
pub fn wasm(name: &str) -> PathBuf {
    tasks_dir().join(format!("{name}.wasm"))
}

/// The sandbox all in-process tests share.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("failed to create the sandbox"))
}

/// The compiled component `name`, compiled once per test run.
pub fn module(name: &str) -> Module {
    static MODULES: [OnceLock<Module>; COMPONENTS.len()] =
        [const { OnceLock::new() }; COMPONENTS.len()];
    let index = COMPONENTS
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| {
            panic!(
                "no task component `{name}` (have: {})",
                COMPONENTS.join(", ")
            )
        });
    MODULES[index]
        .get_or_init(|| {
            sandbox()
                .load_file(&wasm(name))
                .unwrap_or_else(|e| panic!("failed to load {name}.wasm: {e}"))
        })
        .clone()
}

/// Limits with a different fuel budget.
pub fn fuel(fuel: u64) -> Limits {
    Limits {
        fuel,
        ..Limits::default()
    }
}

/// Limits with a different memory cap, in MiB.
pub fn memory_mb(mb: u64) -> Limits {
    Limits {
        memory_bytes: mb << 20,
        ..Limits::default()
    }
}

/// Limits with a different wall-clock budget (and fuel enough to outlast it).
pub fn timeout(timeout: Duration) -> Limits {
    Limits {
        timeout,
        fuel: u64::MAX,
        ..Limits::default()
    }
}

/// Calls `task` of component `module` with `kwargs` (a JSON object) under
/// default limits.
pub async fn call(module: &str, task: &str, kwargs: Value) -> Outcome {
    call_with(module, task, kwargs, Limits::default()).await
}

/// Calls `task` of component `module` with `kwargs` under `limits`.
pub async fn call_with(module: &str, task: &str, kwargs: Value, limits: Limits) -> Outcome {
    let kwargs = object(kwargs);
    let ctx = CallContext::standalone(task, limits);
    self::module(module).call(task, &kwargs, &ctx).await
}

/// The result of a call that must succeed under default limits.
pub async fn ok(module: &str, task: &str, kwargs: Value) -> Value {
    let outcome = call(module, task, kwargs).await;
    outcome
        .result
        .unwrap_or_else(|e| panic!("{module}.{task} should succeed, failed: {e}"))
}

/// The error of a call that must fail, under `limits`.
pub async fn fails_with(module: &str, task: &str, kwargs: Value, limits: Limits) -> CallError {
    let outcome = call_with(module, task, kwargs, limits).await;
    match outcome.result {
        Ok(v) => panic!("{module}.{task} should fail, returned {v}"),
        Err(e) => e,
    }
}

/// The error of a call that must fail under default limits.
pub async fn fails(module: &str, task: &str, kwargs: Value) -> CallError {
    fails_with(module, task, kwargs, Limits::default()).await
}

/// The error of a call that must be refused as bad input, with its class
/// checked; returns the one-line message.
pub async fn refused(module: &str, task: &str, kwargs: Value) -> CallError {
    let error = fails(module, task, kwargs).await;
    assert_eq!(error.class(), FailureClass::BadInput, "{error}");
    error
}

/// `value` as a kwargs map; panics unless it is a JSON object.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("kwargs must be a JSON object, got {other}"),
    }
}

/// Runs `runner call WASM TASK --kwargs KWARGS EXTRA...` to completion.
pub fn runner_call(wasm: &Path, task: &str, kwargs: &str, extra: &[&str]) -> Output {
    runner()
        .arg("call")
        .arg(wasm)
        .args([task, "--kwargs", kwargs])
        .args(extra)
        .output()
        .expect("failed to run runner")
}

/// The `XDG_CACHE_HOME` of every `runner` the tests start.
pub fn runner_cache_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("runner-cache-home")
}

/// A `runner` command, as a user would start it.
pub fn runner() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runner"));
    // Keep the process log quiet unless a test asks otherwise.
    command.env_remove("RUST_LOG");
    // `call` and `inspect` cache compiled code per user: here, under the
    // target dir, never in the home of whoever runs the tests.
    command.env("XDG_CACHE_HOME", runner_cache_home());
    command
}

/// The Python task component `hello-py.wasm` (tasks/hello-py):
/// `$BEANBOX_PY_TASKS_DIR/hello-py.wasm` if that is set, else what
/// `tasks/hello-py/build.sh` builds (once per test run; it needs
/// componentize-py, which scripts/setup.sh installs).
pub fn python_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| other_language_wasm("BEANBOX_PY_TASKS_DIR", "hello-py", "componentize-py"))
}

/// The JavaScript task component `hello-js.wasm` (tasks/hello-js):
/// `$BEANBOX_JS_TASKS_DIR/hello-js.wasm` if that is set, else what
/// `tasks/hello-js/build.sh` builds (once per test run; it needs
/// componentize-js in tasks/hello-js/node_modules, which scripts/setup.sh
/// installs).
pub fn javascript_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| other_language_wasm("BEANBOX_JS_TASKS_DIR", "hello-js", "componentize-js"))
}

/// [`python_wasm`] compiled in the shared sandbox, once per run (and
/// cached under the target dir across runs: it is an 18 MB component).
pub fn python_module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| cached_module(python_wasm())).clone()
}

/// [`javascript_wasm`] compiled in the shared sandbox, once per run (and
/// cached under the target dir across runs).
pub fn javascript_module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE
        .get_or_init(|| cached_module(javascript_wasm()))
        .clone()
}

fn cached_module(path: &Path) -> Module {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("in-process-cache");
    let cache = CodeCache::new(&dir)
        .unwrap_or_else(|e| panic!("cannot use cache dir {}: {e}", dir.display()));
    sandbox()
        .load_file_cached(path, &cache)
        .unwrap_or_else(|e| panic!("failed to load {}: {e}", path.display()))
        .0
}

/// `$<dir_env>/<task>.wasm` if that variable is set, else what
/// `tasks/<task>/build.sh` builds and prints; `tool` names what the build
/// needs, for the failure message.
fn other_language_wasm(dir_env: &str, task: &str, tool: &str) -> PathBuf {
    let path = match std::env::var_os(dir_env) {
        Some(dir) => PathBuf::from(dir).join(format!("{task}.wasm")),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tasks")
                .join(task)
                .join("build.sh");
            let output = Command::new(&script)
                .output()
                .unwrap_or_else(|e| panic!("failed to run {}: {e}", script.display()));
            assert!(
                output.status.success(),
                "{} failed ({}); is {tool} installed (scripts/setup.sh)?\n{}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr),
            );
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    };
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// A spawned process's stdout, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A spawned process's stderr, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// The one `error:` line on stderr, which comes last (after anything the
/// guest itself wrote, which `runner call` copies to stderr).
pub fn error_line(output: &Output) -> String {
    let text = stderr(output);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one error line on stderr, got: {text}"
    );
    assert_eq!(text.lines().last(), Some(errors[0]), "{text}");
    errors[0].to_string()
}
