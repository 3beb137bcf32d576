//! The worker's compiled-code cache: by default outside the modules
//! directory (code planted in `modules/.cache` is never loaded), refused at
//! start when the operator names a directory that is not ours, and pruned
//! to the deployed version and one previous per module.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use beanbox::sandbox::CodeCache;
use beanbox_queue::Producer;
use beanbox_queue::testing::Beanstalkd;

use crate::cache::{hello_key, plant};
use crate::deploy_support::{Modules, cache_entries, hello_version, worker_cache_dir};
use crate::support::{runner, sandbox, stderr};
use crate::worker_support::Runner;
use crate::worker_support::{Replies, TempDir, abc, eventually, ok, put, run_bounded};

/// Puts hello's `task_one` and asserts hello answers it, on `replies`.
async fn assert_hello_serves(addr: &str, replies: &str) {
    let mut reader = Replies::watch(addr, replies).await;
    let mut producer = Producer::connect(addr).await.unwrap();
    let id = put(&mut producer, "hello", "task-one", abc(), Some(replies)).await;
    let reply = reader.next(Duration::from_secs(15)).await;
    assert_eq!((reply.job, ok(&reply)), (id, &serde_json::json!("abc")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_loads_code_planted_in_the_modules_directory() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    // The attack: whoever may rename files into the modules directory puts
    // a `.cache` there holding compute's code under hello's key, in an
    // entry valid for that directory (header, checksum, MAC, mode, owner).
    let planted_cache = CodeCache::new(modules.path().join(".cache")).unwrap();
    let planted = plant(&planted_cache);
    let before = std::fs::read(&planted).unwrap();

    let home = TempDir::new("cache-home");
    let env = [("XDG_CACHE_HOME", home.as_str())];
    let args = ["--modules", modules.as_str(), "--tube", "hello"];
    let mut first = Runner::start(&addr, &args, &env);
    first.wait_loaded("hello").await;
    assert_eq!(first.cache_messages(), ["module compiled"]);
    assert_hello_serves(&addr, "planted-replies-1").await;
    first.kill();

    // The worker's own default cache, outside the modules directory, is
    // what a restart loads from.
    let mut second = Runner::start(&addr, &args, &env);
    second.wait_loaded("hello").await;
    assert_eq!(second.cache_messages(), ["module loaded from cache"]);
    assert_hello_serves(&addr, "planted-replies-2").await;
    second.kill();
    let own = worker_cache_dir(home.path());
    assert_eq!(
        cache_entries(&own),
        [own.join(format!("{}.cwasm", hello_key()))]
    );
    assert!(!own.starts_with(modules.path()), "{}", own.display());

    // modules/.cache was left as planted: nothing read it into service,
    // nothing wrote to it.
    assert_eq!(std::fs::read(&planted).unwrap(), before);
    assert_eq!(cache_entries(planted_cache.dir()), [planted]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_dir_that_is_not_ours_stops_the_worker_at_start() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    let root = TempDir::new("cache-dir-flag");
    let dir = root.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "--modules",
        modules.as_str(),
        "--tube",
        "hello",
        "--cache-dir",
        dir_arg,
    ];

    let mut command = runner();
    command.args(["--beanstalkd", &addr]).args(args);
    let refused = run_bounded(&mut command, Duration::from_secs(20)).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let error = format!(
        "--cache-dir: cannot use code cache directory {dir_arg}: \
         writable by group or others (mode 777)"
    );
    assert!(stderr(&refused).contains(&error), "{}", stderr(&refused));

    // Obeyed: the same directory, closed to others, is used.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut worker = Runner::start(&addr, &args, &[]);
    worker.wait_loaded("hello").await;
    assert_eq!(worker.cache_messages(), ["module compiled"]);
    assert_eq!(cache_entries(&dir).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_the_deployed_version_and_one_previous() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    let home = TempDir::new("cache-home");
    let env = [("XDG_CACHE_HOME", home.as_str())];
    let args = ["--modules", modules.as_str(), "--tube", "hello"];
    let mut worker = Runner::start(&addr, &args, &env);
    worker.wait_loaded("hello").await;
    let cache = worker_cache_dir(home.path());
    let entry = |bytes: &[u8]| {
        cache.join(format!(
            "{}.cwasm",
            CodeCache::key(sandbox().engine(), bytes)
        ))
    };
    let original = std::fs::read(modules.file("hello")).unwrap();
    let v1 = hello_version(1);
    let v2 = hello_version(2);

    assert_eq!(cache_entries(&cache), [entry(&original)]);
    // Obeyed: the deployed version and the one before it stay.
    modules.deploy("hello", &v1);
    let mut expected: Vec<PathBuf> = vec![entry(&original), entry(&v1)];
    expected.sort();
    wait_entries(&cache, &expected).await;
    // A third version: the oldest goes.
    modules.deploy("hello", &v2);
    let mut expected: Vec<PathBuf> = vec![entry(&v1), entry(&v2)];
    expected.sort();
    wait_entries(&cache, &expected).await;
    let pruned = worker
        .wait_event("code cache pruned", Duration::from_secs(20))
        .await;
    assert_eq!(pruned["removed"], 1, "{pruned}");
}

/// Waits until the entries in `cache` are `expected` (sorted).
async fn wait_entries(cache: &std::path::Path, expected: &[PathBuf]) {
    let what = format!("the cache entries to be {expected:?}");
    eventually(Duration::from_secs(20), &what, async || {
        (cache_entries(cache) == expected).then_some(())
    })
    .await;
}
