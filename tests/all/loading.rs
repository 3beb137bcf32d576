//! Loading limits and order: module files over the size limit (a 3 GB
//! sparse file, a padded component one byte over) are refused unread, once;
//! a file name that cannot be a tube is refused once; compiling a huge
//! component gives its memory back; at start a quick module serves while a
//! slow one still compiles; and `Registry::pending`, the deploy window the
//! worker waits through instead of burying jobs; the directory watcher stops
//! when its handle is dropped.

use std::fs::File;
use std::time::Duration;

use beanbox::registry::Registry;
use beanbox::sandbox::Sandbox;
use beanbox_queue::Producer;
use beanbox_queue::testing::Beanstalkd;
use serde_json::Value;

use crate::deploy_support::{Modules, hello_version, version_marker, write_config};
use crate::support;
use crate::worker_support::Runner;
use crate::worker_support::{Replies, TempDir, abc, connect, ok, put, wait_deleted};

/// Rescans every 0.2 s: a refusal logged on every scan would show many times.
const FAST_RESCAN: &[&str] = &["--rescan", "0.2"];

/// The worker's resident set size (`VmRSS`), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb << 10
}

/// The events of `worker` whose message starts with `prefix` and whose
/// `module` field is `module`.
fn module_events(worker: &Runner, prefix: &str, module: &str) -> Vec<Value> {
    worker
        .events_starting(prefix)
        .into_iter()
        .filter(|e| e["module"] == module)
        .collect()
}

/// Lets the worker rescan a few times (at [`FAST_RESCAN`]).
async fn several_rescans() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Puts a `task_one` job on `tube` and waits until it is done (deleted).
async fn job_done(addr: &str, tube: &str) {
    let mut producer = Producer::connect(addr).await.unwrap();
    let id = put(&mut producer, tube, "task_one", abc(), None).await;
    wait_deleted(&mut connect(addr).await, id).await;
}

/// `hello.wasm` grown to exactly `len` bytes by a custom section at its end:
/// still a valid component, with the same tasks.
fn hello_padded(len: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(support::wasm("hello")).unwrap();
    let name = b"padding";
    // Section: id 0, size (LEB128, padded to 5 bytes), name length, name,
    // payload.
    let overhead = 1 + 5 + 1 + name.len();
    assert!(
        len >= bytes.len() + overhead,
        "{len} is too small to pad to"
    );
    let payload = len - bytes.len() - overhead;
    let size = u32::try_from(1 + name.len() + payload).unwrap();
    bytes.push(0);
    for i in 0..5 {
        let more = if i < 4 { 0x80 } else { 0 };
        bytes.push(u8::try_from((size >> (7 * i)) & 0x7f).unwrap() | more);
    }
    bytes.push(u8::try_from(name.len()).unwrap());
    bytes.extend_from_slice(name);
    bytes.resize(len, 0);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_gb_sparse_module_is_refused_unread_once_and_costs_no_memory() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    // 3 GB of holes: reading it would cost 3 GB of memory.
    File::create(modules.file("huge"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let mut worker = Runner::start(
        &addr,
        &[&["--modules", modules.as_str()], FAST_RESCAN].concat(),
        &[],
    );
    let refused = worker
        .wait_event("module refused", Duration::from_secs(20))
        .await;
    assert_eq!(refused["module"], "huge", "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(
        reason.contains("3221225472 bytes") && reason.contains("64 MiB"),
        "{reason}"
    );
    // The other module serves.
    job_done(&addr, "hello").await;
    several_rescans().await;
    assert_eq!(module_events(&worker, "module refused", "huge").len(), 1);
    assert!(module_events(&worker, "compiling module", "huge").is_empty());
    let rss = rss(worker.pid());
    assert!(rss < 100 << 20, "the worker holds {} MiB", rss >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_up_to_their_limit_load_one_byte_over_is_refused() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&[]);
    const MIB: usize = 1 << 20;
    modules.deploy("fits", &hello_padded(MIB));
    modules.deploy("over", &hello_padded(MIB + 1));
    modules.deploy("roomy", &hello_padded(MIB + MIB / 2));
    let dir = TempDir::new("loading-config");
    // The flag says 1 MiB; tenant b's own limit is 2 MiB.
    let config = write_config(
        &dir,
        "[tenants.a]\nmodules = [\"fits\", \"over\"]\n\n\
         [tenants.b]\nmodules = [\"roomy\"]\nmax_module_mb = 2\n",
    );
    let args = [
        "--modules",
        modules.as_str(),
        "--config",
        &config,
        "--max-module-mb",
        "1",
    ];
    let mut worker = Runner::start(&addr, &[&args[..], FAST_RESCAN].concat(), &[]);
    let refused = worker
        .wait_event("module refused", Duration::from_secs(20))
        .await;
    assert_eq!(refused["module"], "over", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("{} bytes, over the limit of {MIB} bytes", MIB + 1)),
        "{refused}"
    );
    job_done(&addr, "fits").await;
    job_done(&addr, "roomy").await;
    several_rescans().await;
    assert_eq!(module_events(&worker, "module refused", "over").len(), 1);

    // `runner inspect` and `runner call` refuse it the same way.
    let over = modules.file("over");
    let output = support::runner()
        .arg("inspect")
        .arg(&over)
        .args(["--max-module-mb", "1"])
        .output()
        .unwrap();
    support::assert_exit(&output, 2);
    let line = support::error_line(&output);
    assert!(
        line.contains(&over.display().to_string())
            && line.contains(&format!("{} bytes", MIB + 1))
            && line.contains("1 MiB"),
        "{line}"
    );
    let output = support::runner_call(
        &over,
        "task_one",
        &abc().to_string(),
        &["--max-module-mb", "1"],
    );
    support::assert_exit(&output, 2);
    let output = support::runner_call(
        &over,
        "task_one",
        &abc().to_string(),
        &["--max-module-mb", "2"],
    );
    support::assert_exit(&output, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_name_that_cannot_be_a_tube_is_refused_once_and_others_serve() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    modules.copy("hello", "bad name");
    let mut worker = Runner::start(
        &addr,
        &[&["--modules", modules.as_str()], FAST_RESCAN].concat(),
        &[],
    );
    let refused = worker
        .wait_event("module refused", Duration::from_secs(20))
        .await;
    assert_eq!(refused["module"], "bad name", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("not a valid tube name"),
        "{refused}"
    );
    job_done(&addr, "hello").await;
    several_rescans().await;
    assert_eq!(
        module_events(&worker, "module refused", "bad name").len(),
        1
    );
    // Never served: no slot tried (and failed) to watch its tube.
    let reconnects: Vec<Value> = worker
        .events()
        .into_iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("beanstalkd"))
        })
        .collect();
    assert!(reconnects.is_empty(), "{reconnects:?}");
}

/// A component of `functions` empty core functions and no exports: a
/// small file that takes cranelift long, and much memory, to compile.
fn huge_component(functions: u32) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection,
        TypeSection,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instruction(&Instruction::End);
    for _ in 0..functions {
        funcs.function(0);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// Measured with 150,000 functions: the worker at 27 MiB with hello loaded
/// went to ~850 MiB while compiling and stayed there; with the compile's
/// freed memory given back it is at ~65 MiB, against ~62 MiB for a worker
/// that loaded the same module from the code cache (no compile at all: the
/// module's own compiled code, a 37 MB artifact, is what stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiling_a_huge_component_gives_its_memory_back() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    let cache = TempDir::new("huge-cache");
    let cache_dir = cache.path().join("cache");
    let args = [
        "--modules",
        modules.as_str(),
        "--cache-dir",
        cache_dir.to_str().unwrap(),
    ];
    let huge = huge_component(150_000);

    let mut worker = Runner::start(&addr, &args, &[]);
    job_done(&addr, "hello").await;
    let before = rss(worker.pid());
    modules.deploy("huge", &huge);
    // A debug build of the runner on a busy machine takes minutes.
    worker
        .wait_event_where("module loaded", Duration::from_secs(600), |e| {
            e["module"] == "huge"
        })
        .await;
    job_done(&addr, "hello").await;
    let compiled = rss(worker.pid());
    worker.kill();

    // The same modules without compiling: what the module itself costs.
    let mut restarted = Runner::start(&addr, &args, &[]);
    restarted.wait_loaded("huge").await;
    job_done(&addr, "hello").await;
    let from_cache = rss(restarted.pid());
    let mib = |b: u64| b >> 20;
    assert!(
        compiled <= 2 * from_cache,
        "RSS {} MiB with hello only, {} MiB after compiling {} functions, \
         {} MiB when the same modules were loaded from the cache",
        mib(before),
        mib(compiled),
        150_000,
        mib(from_cache)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_a_quick_module_serves_while_a_slow_one_compiles() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    std::fs::copy(support::python_wasm(), modules.file("hello-py")).unwrap();
    // No cache: the Python module compiles (seconds, where hello takes a
    // fraction of one).
    let mut worker = Runner::start(&addr, &["--modules", modules.as_str(), "--no-cache"], &[]);
    job_done(&addr, "hello").await;
    let py_live = module_events(&worker, "module loaded", "hello-py");
    assert!(
        py_live.is_empty(),
        "hello's job waited for the Python module: {py_live:?}"
    );
    let compiling = worker
        .wait_event("compiling module", Duration::from_secs(20))
        .await;
    assert_eq!(compiling["module"], "hello", "smallest first: {compiling}");
    assert!(
        compiling["bytes"].as_u64().is_some_and(|b| b > 0),
        "{compiling}"
    );
    // The slow one still comes, with its compile time.
    let live = worker
        .wait_event_where("module loaded", Duration::from_secs(300), |e| {
            e["module"] == "hello-py"
        })
        .await;
    assert!(live["secs"].as_f64().is_some_and(|s| s > 0.0), "{live}");
}

// ---- the deploy window, at the registry ----

/// A registry of a directory holding `hello.wasm`, nothing loaded yet.
fn registry(modules: &Modules) -> Registry {
    Registry::open(modules.path(), Sandbox::new().unwrap(), None).unwrap()
}

#[test]
fn pending_from_the_rename_until_the_new_version_is_live_or_fails() {
    let modules = Modules::with(&["hello"]);
    let registry = registry(&modules);
    // At start: on disk, not loaded yet.
    assert!(registry.pending("hello"));
    registry.rescan(Duration::ZERO);
    assert!(registry.get("hello").is_some());
    assert!(!registry.pending("hello"), "live");

    // A new version renamed into place: pending before any scan saw it.
    modules.deploy("hello", &hello_version(2));
    assert!(registry.pending("hello"));
    registry.rescan(Duration::ZERO);
    assert!(!registry.pending("hello"), "the new version is live");

    // A version that fails to load: pending until it failed, then not.
    modules.deploy("hello", b"\0asm not a component");
    assert!(registry.pending("hello"));
    registry.rescan(Duration::ZERO);
    assert!(!registry.pending("hello"), "it failed: nothing is coming");
    assert!(registry.get("hello").is_some(), "the old version serves");

    // Gone, unknown, or a name that cannot be a module.
    modules.remove("hello");
    assert!(!registry.pending("hello"));
    assert!(!registry.pending("nothing"));
    assert!(!registry.pending("../hello"));
}

#[test]
fn each_module_is_announced_as_soon_as_it_is_loaded() {
    let modules = Modules::with(&["hello", "showcase"]);
    let registry = registry(&modules);
    let generation = registry.subscribe();
    registry.rescan(Duration::ZERO);
    assert_eq!(registry.names(), ["hello", "showcase"]);
    assert_eq!(*generation.borrow(), 2, "one change per module loaded");
    registry.rescan(Duration::ZERO);
    assert_eq!(*generation.borrow(), 2, "nothing new");
}

#[test]
fn too_big_and_badly_named_files_are_never_pending() {
    let modules = Modules::with(&["hello"]);
    modules.copy("hello", "bad name");
    let sandbox = Sandbox::new().unwrap().with_max_module_bytes(1 << 20);
    let registry = Registry::open(modules.path(), sandbox, None).unwrap();
    modules.deploy("big", &hello_padded((1 << 20) + 1));
    assert!(!registry.pending("big"), "over the limit");
    assert!(!registry.pending("bad name"));
    // Its tenant's own limit lets it load.
    registry.set_module_size_limits([("big".to_string(), 2 << 20)].into());
    assert!(registry.pending("big"));
    registry.rescan(Duration::ZERO);
    assert_eq!(registry.names(), ["big", "hello"]);
}

// ---- a tenant's own modules directory ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_its_own_dir_is_served_and_deployed_from_there_only() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    // The shared directory holds a hello of another version: not acme's.
    let shared = Modules::with(&["showcase"]);
    shared.deploy("hello", &hello_version(1));
    let acme = Modules::with(&[]);
    acme.deploy("hello", &hello_version(2));
    let dir = TempDir::new("loading-config");
    let config = write_config(
        &dir,
        &format!(
            "[tenants.acme]\nmodules = [\"hello\"]\ndir = \"{}\"\n\n\
             [tenants.other]\nmodules = [\"showcase\"]\n",
            acme.as_str()
        ),
    );
    let mut worker = Runner::start(
        &addr,
        &["--modules", shared.as_str(), "--config", &config],
        &[],
    );
    let loaded = worker.wait_loaded("hello").await;
    assert_eq!(
        loaded["path"],
        acme.file("hello").display().to_string(),
        "{loaded}"
    );
    let mut replies = Replies::watch(&addr, "own-dir-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let version = async |producer: &mut Producer, replies: &mut Replies| {
        put(
            producer,
            "hello",
            "version",
            serde_json::json!({}),
            Some("own-dir-replies"),
        )
        .await;
        ok(&replies.next(Duration::from_secs(20)).await).clone()
    };
    assert_eq!(
        version(&mut producer, &mut replies).await,
        version_marker(2)
    );

    // Deployed into its own directory: noticed and served.
    acme.deploy("hello", &hello_version(3));
    worker
        .wait_event("module replaced", Duration::from_secs(20))
        .await;
    assert_eq!(
        version(&mut producer, &mut replies).await,
        version_marker(3)
    );
    // A change in the shared directory does nothing to acme's module, and
    // the other tenant's module comes from there.
    shared.deploy("hello", &hello_version(4));
    worker.wait_loaded("showcase").await;
    several_rescans().await;
    assert_eq!(
        version(&mut producer, &mut replies).await,
        version_marker(3)
    );
    assert_eq!(worker.events_starting("module replaced").len(), 1);
    // Modules compiling at start are no reason to warn.
    let waiting = worker.events_starting("waiting for modules");
    assert!(waiting.is_empty(), "{waiting:?}");
}

#[test]
fn a_module_with_its_own_dir_is_pending_and_loaded_from_there() {
    let shared = Modules::with(&["hello"]);
    let own = Modules::with(&[]);
    let registry = registry(&shared);
    registry.set_module_dirs([("hello".to_string(), own.path().to_path_buf())].into());
    assert_eq!(registry.file_of("hello"), own.file("hello"));
    assert!(!registry.pending("hello"), "not in its own dir yet");
    registry.rescan(Duration::ZERO);
    assert_eq!(
        registry.names(),
        Vec::<String>::new(),
        "the shared copy is not it"
    );
    own.deploy("hello", &hello_version(2));
    assert!(registry.pending("hello"));
    registry.rescan(Duration::ZERO);
    assert_eq!(registry.names(), ["hello"]);
    assert!(!registry.pending("hello"));
}

#[tokio::test]
async fn the_watcher_loads_new_modules_until_it_is_dropped() {
    let modules = Modules::with(&[]);
    let registry = registry(&modules);
    let watcher = registry.spawn_watcher(Duration::from_millis(50));
    let mut generation = registry.subscribe();
    modules.deploy("hello", &std::fs::read(support::wasm("hello")).unwrap());
    tokio::time::timeout(Duration::from_secs(120), async {
        while registry.get("hello").is_none() {
            generation.changed().await.unwrap();
        }
    })
    .await
    .expect("the watcher loads a module deployed while it runs");

    drop(watcher);
    // Not a component: a scan would refuse it at once, ending its pending.
    modules.deploy("again", b"\0asm not a component");
    // Ten times the settle time plus forty rescan periods: a running watcher
    // would have scanned it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        registry.pending("again"),
        "a dropped watcher rescans no more"
    );
}
