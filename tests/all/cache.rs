//! The compiled-code cache: a second load deserializes instead of compiling,
//! and an entry that is damaged or from another engine is recompiled and
//! replaced, never trusted.

use std::fs;
use std::path::{Path, PathBuf};

use beanbox::sandbox::{CacheOutcome, CallContext, CodeCache, Limits, Module};
use serde_json::json;

use crate::support::{object, sandbox, wasm};

/// A cache directory of its own, removed on drop.
struct CacheDir(PathBuf);

impl CacheDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("beanbox-cache-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Self(dir)
    }

    /// A fresh cache on this directory, as a restarted process opens it.
    fn open(&self) -> CodeCache {
        CodeCache::new(&self.0).expect("cache directory can be created")
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Loads hello through `cache`.
fn load_hello(cache: &CodeCache) -> (Module, CacheOutcome) {
    sandbox()
        .load_file_cached(&wasm("hello"), cache)
        .expect("hello loads through the cache")
}

/// The path of hello's entry in `cache`.
fn hello_entry(cache: &CodeCache) -> PathBuf {
    let bytes = fs::read(wasm("hello")).unwrap();
    cache.entry_path(&CodeCache::key(sandbox().engine(), &bytes))
}

/// Asserts the module runs: hello's `task_one` joins its arguments.
async fn assert_works(module: &Module) {
    let kwargs = object(json!({"arg1": "a", "arg2": "b", "arg3": "c"}));
    let ctx = CallContext::standalone("task_one", Limits::default());
    let outcome = module.call("task_one", &kwargs, &ctx).await;
    assert_eq!(outcome.result.expect("task_one succeeds"), json!("abc"));
}

/// The names of the files in `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Damages hello's entry with `damage`, then checks that a restart replaces
/// it, that the module works, and that the following restart is a hit.
async fn assert_replaced_after(test: &str, damage: impl FnOnce(&Path)) {
    let dir = CacheDir::new(test);
    let first = dir.open();
    assert_eq!(load_hello(&first).1, CacheOutcome::Compiled);
    damage(&hello_entry(&first));

    let second = dir.open();
    let (module, outcome) = load_hello(&second);
    assert_eq!(outcome, CacheOutcome::Replaced);
    assert_eq!(second.compilations(), 1);
    assert_works(&module).await;

    let third = dir.open();
    let (module, outcome) = load_hello(&third);
    assert_eq!(outcome, CacheOutcome::Hit, "the entry is valid again");
    assert_eq!(third.compilations(), 0);
    assert_works(&module).await;
}

#[tokio::test]
async fn second_start_loads_from_cache_and_compiles_nothing() {
    let dir = CacheDir::new("second-start");
    let first = dir.open();
    let (module, outcome) = load_hello(&first);
    assert_eq!(outcome, CacheOutcome::Compiled);
    assert_eq!(first.compilations(), 1);
    assert_works(&module).await;

    let second = dir.open();
    let (module, outcome) = load_hello(&second);
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(second.compilations(), 0);
    assert_works(&module).await;

    let entry = hello_entry(&second);
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".cwasm"), "{name}");
    assert_eq!(files(&dir.0), [name], "one entry, no temporary files");
}

#[tokio::test]
async fn flipped_byte_in_entry_is_recompiled() {
    assert_replaced_after("flipped", |entry| {
        let mut bytes = fs::read(entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(entry, bytes).unwrap();
    })
    .await;
}

#[tokio::test]
async fn truncated_entry_is_recompiled() {
    assert_replaced_after("truncated", |entry| {
        let bytes = fs::read(entry).unwrap();
        fs::write(entry, &bytes[..bytes.len() / 2]).unwrap();
    })
    .await;
}

#[tokio::test]
async fn entry_cut_inside_its_header_is_recompiled() {
    assert_replaced_after("cut-header", |entry| {
        let bytes = fs::read(entry).unwrap();
        fs::write(entry, &bytes[..20]).unwrap();
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
        CodeCache::key(sandbox().engine(), &bytes),
        "the engine configuration is part of the key"
    );

    let dir = CacheDir::new("foreign");
    let cache = dir.open();
    // Under the sandbox's key with a valid header and checksum: only
    // wasmtime's own check can tell.
    cache
        .store(&CodeCache::key(sandbox().engine(), &bytes), &foreign)
        .unwrap();
    let (module, outcome) = load_hello(&cache);
    assert_eq!(outcome, CacheOutcome::Replaced);
    assert_eq!(cache.compilations(), 1);
    assert_works(&module).await;

    let again = dir.open();
    assert_eq!(load_hello(&again).1, CacheOutcome::Hit);
    assert_eq!(again.compilations(), 0);
}
