//! The compiled-code cache in process: a second load deserializes instead
//! of compiling; an entry that is damaged, from another engine, or not
//! ours (another owner, writable by others, a symlink, no valid MAC), and a
//! directory that is not ours, are never deserialized: the module is
//! recompiled from its `.wasm` and a log line says why. Each rule is a
//! pair: the entry that obeys it is loaded, the one that breaks it is not.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use beanbox::sandbox::{CacheKey, CacheOutcome, CallContext, CodeCache, Limits, Module, Refusal};
use serde_json::json;

use crate::support::{object, sandbox, wasm};
use crate::worker_support::TempDir;

/// The second user that owns files in the ownership tests.
const OTHER_USER: &str = "beanbox-test-other";

/// A cache directory (`cache` in a temporary directory of its own, so a
/// test may move it aside), removed on drop.
struct CacheDir {
    _root: TempDir,
    path: PathBuf,
}

impl CacheDir {
    fn new(test: &str) -> Self {
        let root = TempDir::new(&format!("cache-{test}"));
        let path = root.path().join("cache");
        Self { _root: root, path }
    }

    /// A fresh cache on this directory, as a restarted process opens it.
    fn open(&self) -> CodeCache {
        CodeCache::new(&self.path).expect("cache directory can be created")
    }
}

/// Loads hello through `cache`, with the log captured.
fn load_hello(cache: &CodeCache) -> (Module, CacheOutcome, String) {
    let ((module, outcome), log) = logged(|| {
        sandbox()
            .load_file_cached(&wasm("hello"), cache)
            .expect("hello loads through the cache")
    });
    (module, outcome, log)
}

/// Runs `f` with the log (text) captured; returns its result and the log.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Captured(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let log = String::from_utf8(buffer.lock().unwrap().clone()).expect("UTF-8 log");
    (result, log)
}

#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hello's key under the shared sandbox's engine.
pub fn hello_key() -> CacheKey {
    CodeCache::key(sandbox().engine(), &fs::read(wasm("hello")).unwrap())
}

/// The path of hello's entry in `cache`.
fn hello_entry(cache: &CodeCache) -> PathBuf {
    cache.entry_path(&hello_key())
}

/// Plants compute's compiled code under hello's key in `cache`: an entry
/// that `cache` itself wrote (valid header, checksum and MAC), so that if
/// it is trusted, loading hello yields compute. Returns its path.
pub fn plant(cache: &CodeCache) -> PathBuf {
    cache.store(&hello_key(), planted_artifact()).unwrap();
    hello_entry(cache)
}

/// Compute's compiled code, compiled once.
fn planted_artifact() -> &'static [u8] {
    static ARTIFACT: OnceLock<Vec<u8>> = OnceLock::new();
    ARTIFACT.get_or_init(|| {
        let compute = fs::read(wasm("compute")).unwrap();
        sandbox().engine().precompile_component(&compute).unwrap()
    })
}

/// Whether `module` is hello (compute has no `task_one`).
fn is_hello(module: &Module) -> bool {
    module.task("task_one").is_ok()
}

/// Asserts the module runs: hello's `task_one` joins its arguments.
async fn assert_works(module: &Module) {
    let kwargs = object(json!({"arg1": "a", "arg2": "b", "arg3": "c"}));
    let ctx = CallContext::standalone("task_one", Limits::default());
    let outcome = module.call("task_one", &kwargs, &ctx).await;
    assert_eq!(outcome.result.expect("task_one succeeds"), json!("abc"));
}

/// The names of the files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The uid of a second Unix user, created if missing; `None` (saying so)
/// unless this runs as root, which alone can give files away.
fn other_user() -> Option<u32> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving a file to another user needs root");
        return None;
    }
    let uid = || {
        let out = Command::new("id").args(["-u", OTHER_USER]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        out.status
            .success()
            .then(|| text.trim().parse().ok())
            .flatten()
    };
    if let Some(uid) = uid() {
        return Some(uid);
    }
    // Tests run in parallel: another may create the user first.
    let _ = Command::new("useradd")
        .args(["--system", "--no-create-home", OTHER_USER])
        .status();
    Some(uid().unwrap_or_else(|| panic!("cannot create the user {OTHER_USER} (useradd)")))
}

/// Gives `path` (not following a symlink) to `uid`.
fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), None)
        .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
}

/// The pair for a rule on entries: compute's code planted under hello's
/// key by the cache itself is loaded as written (the rule obeyed: the
/// check, not chance, is what refuses it next), and once `break_rule`
/// changed the entry it is refused for `why`: hello is recompiled from its
/// `.wasm`, the log says why, and the entry is replaced by a trusted one.
async fn assert_entry_rule(test: &str, why: Refusal, break_rule: impl FnOnce(&Path)) {
    let dir = CacheDir::new(test);
    let entry = plant(&dir.open());

    let cache = dir.open();
    let (module, outcome, _) = load_hello(&cache);
    assert_eq!((outcome, cache.compilations()), (CacheOutcome::Hit, 0));
    assert!(
        !is_hello(&module),
        "obeyed: the planted entry is what loads"
    );

    break_rule(&entry);
    let cache = dir.open();
    let (module, outcome, log) = load_hello(&cache);
    assert_eq!(outcome, CacheOutcome::Replaced(why.clone()), "{log}");
    assert_eq!(cache.compilations(), 1, "recompiled, not deserialized");
    let line = format!("cache entry refused: {why}; recompiled");
    assert!(log.contains(&line), "the log should say {line:?}: {log}");
    assert_works(&module).await;

    let again = dir.open();
    let (module, outcome, _) = load_hello(&again);
    assert_eq!(outcome, CacheOutcome::Hit, "replaced by a trusted entry");
    assert_eq!(again.compilations(), 0);
    assert_works(&module).await;
}

/// The pair for a rule on the directory: a cache whose directory is ours
/// loads the planted entry (obeyed); once `break_rule` changed the
/// directory, the same cache (opened before) refuses it for `why`: hello is
/// compiled without the cache and the log says why; and opening the cache
/// anew fails, naming the directory.
async fn assert_dir_rule(test: &str, why: Refusal, break_rule: impl FnOnce(&Path)) {
    let dir = CacheDir::new(test);
    let cache = dir.open();
    plant(&cache);
    let (module, outcome, _) = load_hello(&cache);
    assert_eq!((outcome, cache.compilations()), (CacheOutcome::Hit, 0));
    assert!(
        !is_hello(&module),
        "obeyed: the planted entry is what loads"
    );

    break_rule(&dir.path);
    let (module, outcome, log) = load_hello(&cache);
    assert_eq!(outcome, CacheOutcome::Bypassed(why.clone()), "{log}");
    assert_eq!(cache.compilations(), 1, "compiled, not deserialized");
    let line = format!("code cache directory refused: {why}; compiled without it");
    assert!(log.contains(&line), "the log should say {line:?}: {log}");
    assert_works(&module).await;

    let error = CodeCache::new(&dir.path)
        .expect_err("a refused directory")
        .to_string();
    let named = format!(
        "cannot use code cache directory {}: {why}",
        dir.path.display()
    );
    assert_eq!(error, named);
}

#[tokio::test]
async fn second_start_loads_from_cache_and_compiles_nothing() {
    let dir = CacheDir::new("second-start");
    let first = dir.open();
    let (module, outcome, log) = load_hello(&first);
    assert_eq!(outcome, CacheOutcome::Compiled);
    assert_eq!(first.compilations(), 1);
    assert!(log.contains("module compiled"), "{log}");
    assert_eq!(module.cache_key(), Some(hello_key()));
    assert_works(&module).await;

    let second = dir.open();
    let (module, outcome, log) = load_hello(&second);
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(second.compilations(), 0);
    assert!(log.contains("module loaded from cache"), "{log}");
    assert_eq!(module.cache_key(), Some(hello_key()));
    assert_works(&module).await;

    let entry = hello_entry(&second);
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".cwasm"), "{name}");
    assert_eq!(
        files(&dir.path),
        [name.as_str(), "mac.key"],
        "one entry and the key, no temporary files"
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path), 0o700);
    assert_eq!(mode(&dir.path.join("mac.key")), 0o600);
    assert_eq!(mode(&entry), 0o600);
    assert_eq!(fs::metadata(dir.path.join("mac.key")).unwrap().len(), 32);
}

#[tokio::test]
async fn flipped_byte_in_entry_is_recompiled() {
    assert_entry_rule("flipped", Refusal::Checksum, |entry| {
        let mut bytes = fs::read(entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(entry, bytes).unwrap();
    })
    .await;
}

#[tokio::test]
async fn truncated_entry_is_recompiled() {
    let full = planted_artifact().len();
    let why = Refusal::Malformed(format!(
        "payload of {} bytes, header says {full}",
        full - 1000
    ));
    assert_entry_rule("truncated", why, |entry| {
        let bytes = fs::read(entry).unwrap();
        fs::write(entry, &bytes[..bytes.len() - 1000]).unwrap();
    })
    .await;
}

#[tokio::test]
async fn entry_cut_inside_its_header_is_recompiled() {
    let why = Refusal::Malformed("truncated header (20 bytes)".into());
    assert_entry_rule("cut-header", why, |entry| {
        let bytes = fs::read(entry).unwrap();
        fs::write(entry, &bytes[..20]).unwrap();
    })
    .await;
}

#[tokio::test]
async fn entry_owned_by_another_user_is_recompiled() {
    let Some(other) = other_user() else { return };
    assert_entry_rule("entry-owner", Refusal::Owner { uid: other }, |entry| {
        chown(entry, other);
    })
    .await;
}

#[tokio::test]
async fn directory_owned_by_another_user_is_refused() {
    let Some(other) = other_user() else { return };
    assert_dir_rule("dir-owner", Refusal::Owner { uid: other }, |dir| {
        chown(dir, other);
    })
    .await;
}

#[tokio::test]
async fn world_writable_entry_is_recompiled() {
    assert_entry_rule(
        "entry-writable",
        Refusal::Writable { mode: 0o646 },
        |entry| {
            chmod(entry, 0o646);
        },
    )
    .await;
}

#[tokio::test]
async fn group_writable_entry_is_recompiled() {
    assert_entry_rule("entry-group", Refusal::Writable { mode: 0o660 }, |entry| {
        chmod(entry, 0o660);
    })
    .await;
}

#[tokio::test]
async fn group_writable_directory_is_refused() {
    assert_dir_rule("dir-group", Refusal::Writable { mode: 0o770 }, |dir| {
        chmod(dir, 0o770);
    })
    .await;
}

#[tokio::test]
async fn world_writable_directory_is_refused() {
    assert_dir_rule("dir-world", Refusal::Writable { mode: 0o1777 }, |dir| {
        chmod(dir, 0o1777);
    })
    .await;
}

#[tokio::test]
async fn symlinked_entry_is_recompiled() {
    // The link points at the planted entry itself: valid, ours, and still
    // not followed.
    assert_entry_rule("entry-symlink", Refusal::Symlink, |entry| {
        let aside = entry.with_file_name("aside.bin");
        fs::rename(entry, &aside).unwrap();
        std::os::unix::fs::symlink(&aside, entry).unwrap();
    })
    .await;
}

#[tokio::test]
async fn symlinked_directory_is_refused() {
    // The link points at the cache's own directory, moved aside.
    assert_dir_rule("dir-symlink", Refusal::Symlink, |dir| {
        let aside = dir.with_file_name("aside");
        fs::rename(dir, &aside).unwrap();
        std::os::unix::fs::symlink(&aside, dir).unwrap();
    })
    .await;
}

#[tokio::test]
async fn entry_copied_from_another_cache_is_recompiled() {
    // The other cache's entry has a valid header and checksum, and a MAC
    // made with the other cache's key: there it is a hit.
    let other = CacheDir::new("mac-other");
    let foreign = plant(&other.open());
    let (module, outcome, _) = load_hello(&other.open());
    assert_eq!(outcome, CacheOutcome::Hit, "valid in its own cache");
    assert!(!is_hello(&module));

    assert_entry_rule("mac", Refusal::BadMac, |entry| {
        fs::copy(&foreign, entry).unwrap();
    })
    .await;
}

#[tokio::test]
async fn entry_from_a_differently_configured_engine_is_not_trusted() {
    // No fuel, no epochs: an artifact the sandbox's engine cannot run.
    let other = wasmtime::Engine::new(&wasmtime::Config::new()).unwrap();
    let bytes = fs::read(wasm("hello")).unwrap();
    let foreign = other.precompile_component(&bytes).unwrap();
    assert_ne!(
        CodeCache::key(&other, &bytes),
        hello_key(),
        "the engine configuration is part of the key"
    );

    let dir = CacheDir::new("foreign");
    let cache = dir.open();
    // Under the sandbox's key with a valid header and MAC: only wasmtime's
    // own check can tell.
    cache.store(&hello_key(), &foreign).unwrap();
    let (module, outcome, log) = load_hello(&cache);
    assert!(
        matches!(&outcome, CacheOutcome::Replaced(Refusal::Incompatible(_))),
        "{outcome:?}"
    );
    assert!(
        log.contains("cache entry refused: wasmtime refused it"),
        "{log}"
    );
    assert_eq!(cache.compilations(), 1);
    assert_works(&module).await;

    let again = dir.open();
    assert_eq!(load_hello(&again).1, CacheOutcome::Hit);
    assert_eq!(again.compilations(), 0);
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let dir = CacheDir::new("key-mode");
    drop(dir.open());
    let key = dir.path.join("mac.key");
    chmod(&key, 0o640);
    let error = CodeCache::new(&dir.path)
        .expect_err("an exposed key")
        .to_string();
    assert!(
        error.ends_with("mac.key: key readable by group or others (mode 640)"),
        "{error}"
    );
    chmod(&key, 0o600);
    CodeCache::new(&dir.path).expect("the key is private again");
}

#[test]
fn retain_removes_entries_not_kept_and_stale_temporaries() {
    let dir = CacheDir::new("retain");
    let cache = dir.open();
    let key = |byte: u8| CacheKey::parse(&format!("{byte:02x}").repeat(32)).unwrap();
    for byte in 1..=3 {
        cache.store(&key(byte), b"artifact").unwrap();
    }
    let fresh = dir.path.join(".tmp-fresh-1-0");
    let stale = dir.path.join(".tmp-stale-1-0");
    fs::write(&fresh, b"").unwrap();
    fs::File::create(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    let removed = cache.retain(&HashSet::from([key(2)]));
    assert_eq!(removed, 3, "two entries and the stale temporary file");
    assert_eq!(
        files(&dir.path),
        [
            ".tmp-fresh-1-0".to_string(),
            format!("{}.cwasm", key(2)),
            "mac.key".into()
        ]
    );
    assert_eq!(cache.retain(&HashSet::from([key(2)])), 0, "nothing more");
}
