//! The compiled-code cache: a component compiled once is kept on disk as a
//! wasmtime artifact, keyed by its bytes, the wasmtime version and the
//! engine configuration, so a restart deserializes it instead of compiling
//! it again.
//!
//! An entry is native code, so it is trusted only when it is ours: the
//! directory and the entry are opened without following symlinks and must
//! be owned by this process's user and writable by nobody else (checked on
//! the opened descriptors, at every load and store), and the entry must
//! carry a valid HMAC made with the cache's secret key (`mac.key`, 0600).
//! An entry that fails any check is recompiled from the `.wasm` and
//! replaced, never deserialized; a log line says why.

mod entry;
mod key;
mod secret;
mod trust;

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

pub use key::CacheKey;
pub use trust::Refusal;

use super::{LoadError, Module, Sandbox, one_line};
use entry::HEADER_LEN;
use secret::{KEY_FILE, Secret};
use trust::Role;

/// Entry files are `<key>.cwasm`.
const EXTENSION: &str = "cwasm";

/// Files being written start with this (entries and the key alike).
const TEMP_PREFIX: &str = ".tmp-";

/// A temporary file this old was left by a writer that died: pruned.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// Names temporary files uniquely among the threads of this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How [`Sandbox::load_file_cached`] got its module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a trusted entry; nothing was compiled.
    Hit,
    /// No entry: compiled, and an entry written.
    Compiled,
    /// An entry existed but was refused (why): compiled from the `.wasm`,
    /// and the entry replaced.
    Replaced(Refusal),
    /// The cache directory itself was refused (why): compiled, nothing read
    /// or written.
    Bypassed(Refusal),
}

/// A directory of compiled components, trusted only when it is ours.
#[derive(Debug)]
pub struct CodeCache {
    dir: PathBuf,
    secret: Secret,
    compilations: AtomicU64,
}

/// What the cache holds under a key.
enum Lookup {
    Missing,
    /// A whole entry that passed every check.
    Found(Vec<u8>),
    /// An entry that must not be trusted, and why.
    Refused(Refusal),
}

/// What pruning does with a name in the cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prune {
    Keep,
    Remove,
    /// A temporary file: removed if it is stale.
    RemoveIfStale,
}

impl CodeCache {
    /// Opens the cache in `dir`, creating it (mode 0700) if needed, and its
    /// secret key (mode 0600) on first use.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created, or is refused (a symlink, not
    /// owned by this process's effective uid, writable by group or others),
    /// or its key is (a symlink, not ours, readable by others); the message
    /// names the directory and says why.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        let fail = |why: String| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("cannot use code cache directory {}: {why}", dir.display()),
            )
        };
        create_private_dir(&dir).map_err(|e| fail(e.to_string()))?;
        let fd = trust::open_dir(&dir).map_err(|r| fail(r.to_string()))?;
        let secret = Secret::load_or_create(&fd).map_err(|r| fail(format!("{KEY_FILE}: {r}")))?;
        Ok(Self {
            dir,
            secret,
            compilations: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many components loads through this cache have compiled (rather
    /// than deserialized), failed compilations included.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// The key of component bytes `wasm` compiled by `engine`.
    pub fn key(engine: &Engine, wasm: &[u8]) -> CacheKey {
        CacheKey::derive(engine, wasm)
    }

    /// The file that holds (or would hold) the entry for `key`.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(entry_name(key))
    }

    /// Writes `artifact` (from [`Engine::precompile_component`] or
    /// [`Component::serialize`]) as the entry for `key`, atomically: a
    /// reader sees the old entry or the new one, never half of it.
    ///
    /// Loading an entry checks its MAC and lets wasmtime refuse an artifact
    /// from another engine, but cannot tell an artifact of another module:
    /// store only what was compiled from the bytes of `key`.
    ///
    /// # Errors
    ///
    /// When the directory is refused or the entry cannot be written; no
    /// partial entry is left behind.
    pub fn store(&self, key: &CacheKey, artifact: &[u8]) -> io::Result<()> {
        let dir = self.open().map_err(|r| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("code cache directory {} refused: {r}", self.dir.display()),
            )
        })?;
        self.store_in(&dir, key, artifact)
    }

    /// Removes every entry whose key is not in `keep`, and temporary files
    /// left by writers that died; returns how many files were removed. The
    /// key file and anything else is left alone. A refused directory is
    /// logged and left alone.
    pub fn retain(&self, keep: &HashSet<CacheKey>) -> usize {
        let dir = match self.open() {
            Ok(dir) => dir,
            Err(refusal) => {
                tracing::warn!(dir = %self.dir.display(), reason = %refusal, "code cache directory refused: {refusal}; not pruned");
                return 0;
            }
        };
        let names = match trust::names_in(&dir) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot list the code cache: {e}");
                return 0;
            }
        };
        let mut removed = 0;
        for name in names {
            let remove = match prune(&name, keep) {
                Prune::Keep => false,
                Prune::Remove => true,
                Prune::RemoveIfStale => trust::age_in(&dir, &name).is_ok_and(|a| a >= STALE_TEMP),
            };
            if remove {
                match trust::remove_in(&dir, &name) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), file = name, "cannot prune code cache: {e}");
                    }
                }
            }
        }
        removed
    }

    /// Opens the directory, without following a symlink, and judges it.
    fn open(&self) -> Result<OwnedFd, Refusal> {
        trust::open_dir(&self.dir)
    }

    /// [`CodeCache::store`] through the opened directory `dir`.
    fn store_in(&self, dir: &OwnedFd, key: &CacheKey, artifact: &[u8]) -> io::Result<()> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = format!("{TEMP_PREFIX}{key}-{}-{n}", std::process::id());
        // No fsync: an entry torn by a crash fails its checks and is
        // replaced, which is all a cache needs.
        let written = trust::create_in(dir, &temp)
            .and_then(|mut file| {
                file.write_all(&entry::header(key, artifact, &self.secret))?;
                file.write_all(artifact)
            })
            .and_then(|()| trust::rename_in(dir, &temp, &entry_name(key)));
        if written.is_err() {
            let _ = trust::remove_in(dir, &temp);
        }
        written
    }

    /// Reads the entry for `key` through the opened directory `dir` and
    /// checks it: a regular file of ours that others cannot write, with a
    /// valid header and MAC.
    fn lookup_in(&self, dir: &OwnedFd, key: &CacheKey) -> Lookup {
        match trust::read_in(dir, &entry_name(key), Role::Entry) {
            Ok(None) => Lookup::Missing,
            Ok(Some(data)) => match entry::check(&data, key, &self.secret) {
                Ok(()) => Lookup::Found(data),
                Err(refusal) => Lookup::Refused(refusal),
            },
            Err(refusal) => Lookup::Refused(refusal),
        }
    }
}

/// The file name of the entry for `key`.
fn entry_name(key: &CacheKey) -> String {
    format!("{key}.{EXTENSION}")
}

/// What pruning does with `name`, keeping the entries of `keep`.
fn prune(name: &str, keep: &HashSet<CacheKey>) -> Prune {
    if name.starts_with(TEMP_PREFIX) {
        return Prune::RemoveIfStale;
    }
    match name.strip_suffix(&format!(".{EXTENSION}")) {
        Some(stem) if CacheKey::parse(stem).is_some_and(|k| keep.contains(&k)) => Prune::Keep,
        Some(_) => Prune::Remove,
        None => Prune::Keep,
    }
}

impl Sandbox {
    /// Loads the component at `path`, through `cache` when there is one
    /// ([`Sandbox::load_file_cached`]), else by compiling it.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_file`].
    pub fn load_file_through(
        &self,
        path: &Path,
        cache: Option<&CodeCache>,
    ) -> Result<Module, LoadError> {
        match cache {
            Some(cache) => self.load_file_cached(path, cache).map(|(m, _)| m),
            None => self.load_file(path),
        }
    }

    /// Loads the component at `path` through `cache`: deserializes its
    /// compiled code when a trusted entry exists, else compiles it and
    /// stores the entry. Either way the module is then checked and
    /// pre-linked as by [`Sandbox::load_file`], and knows its
    /// [`Module::cache_key`].
    ///
    /// A refused entry or directory, or a cache that cannot be written,
    /// only costs a compile: it is logged, not returned.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_file`]; a bad cache entry is never an error.
    pub fn load_file_cached(
        &self,
        path: &Path,
        cache: &CodeCache,
    ) -> Result<(Module, CacheOutcome), LoadError> {
        let name = path.display().to_string();
        let wasm = super::read_module(path, self.max_module_bytes)?;
        let started = Instant::now();
        let key = CodeCache::key(&self.engine, &wasm);
        // The directory is judged once per load, and the entry is read and
        // written through this descriptor: a path swapped meanwhile is not
        // followed.
        let dir = cache.open();
        let distrusted = match &dir {
            Err(_) => None,
            Ok(dir) => match cache.lookup_in(dir, &key) {
                Lookup::Missing => None,
                Lookup::Refused(refusal) => Some(refusal),
                Lookup::Found(entry) => match deserialize(&self.engine, &entry[HEADER_LEN..]) {
                    Ok(component) => {
                        let module =
                            self.prepare(component, &name, Some(key), super::sha256(&wasm))?;
                        tracing::info!(
                            module = %name,
                            %key,
                            ms = millis_since(started),
                            "module loaded from cache"
                        );
                        return Ok((module, CacheOutcome::Hit));
                    }
                    Err(e) => Some(Refusal::Incompatible(one_line(&format!("{e:#}")))),
                },
            },
        };

        let compiled = self.compile(&wasm, &name);
        cache.compilations.fetch_add(1, Ordering::Relaxed);
        let component = compiled?;
        let module = self.prepare(component.clone(), &name, Some(key), super::sha256(&wasm))?;
        if let Ok(dir) = &dir {
            let stored = component
                .serialize()
                .map_err(|e| io::Error::other(one_line(&format!("{e:#}"))))
                .and_then(|artifact| cache.store_in(dir, &key, &artifact));
            if let Err(e) = stored {
                tracing::warn!(
                    module = %name,
                    %key,
                    dir = %cache.dir.display(),
                    "cannot write code cache entry: {e}"
                );
            }
        }
        let ms = millis_since(started);
        let outcome = match (dir, distrusted) {
            (Err(refusal), _) => {
                tracing::warn!(
                    module = %name,
                    %key,
                    ms,
                    dir = %cache.dir.display(),
                    reason = %refusal,
                    "code cache directory refused: {refusal}; compiled without it"
                );
                CacheOutcome::Bypassed(refusal)
            }
            (Ok(_), None) => {
                tracing::info!(module = %name, %key, ms, "module compiled");
                CacheOutcome::Compiled
            }
            (Ok(_), Some(refusal)) => {
                tracing::warn!(
                    module = %name,
                    %key,
                    ms,
                    reason = %refusal,
                    "cache entry refused: {refusal}; recompiled"
                );
                CacheOutcome::Replaced(refusal)
            }
        };
        Ok((module, outcome))
    }
}

/// Milliseconds since `start`, to the microsecond, for log lines.
fn millis_since(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Turns the payload of a checked entry back into a component.
#[expect(
    unsafe_code,
    reason = "wasmtime deserializes compiled code without validating it"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` must only see bytes produced by
    // wasmtime's own `Component::serialize`/`precompile_component`. The
    // only caller passes the payload of an entry after all of this held
    // (`CodeCache::lookup_in`, `entry::check`):
    // - the cache directory was opened with O_NOFOLLOW|O_DIRECTORY, and
    //   fstat on that descriptor showed a directory owned by this process's
    //   effective uid and not writable by group or others (so only this
    //   user, or root, can add or rename files in it);
    // - the entry was opened relative to that descriptor with O_NOFOLLOW,
    //   and fstat on its descriptor showed a regular file owned by the
    //   effective uid, not writable by group or others;
    // - its header names this entry's key, the current format and the
    //   payload's exact length;
    // - its HMAC-SHA256, keyed with the 32 random bytes of `mac.key` (read
    //   with O_NOFOLLOW, a regular file owned by the effective uid with no
    //   group or other permission bits), verified over header and payload.
    //   Only `CodeCache::store` writes such MACs, and only over wasmtime's
    //   serialized output; whoever can forge one can already read this
    //   user's files, i.e. act as this user.
    // The checks ran on the bytes in memory, which are the bytes passed
    // here: nothing is read from disk again. A truncated, torn or
    // bit-flipped file fails the MAC and never gets here. An artifact from
    // another wasmtime version or an engine configured differently is
    // refused by wasmtime itself with an error.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Creates `dir` and any missing parents, owner-only (0700).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_named_entries_the_key_and_fresh_temporaries() {
        let kept = CacheKey([1; 32]);
        let other = CacheKey([2; 32]);
        let keep = HashSet::from([kept]);
        assert_eq!(prune(&entry_name(&kept), &keep), Prune::Keep);
        assert_eq!(prune(&entry_name(&other), &keep), Prune::Remove);
        assert_eq!(prune("junk.cwasm", &keep), Prune::Remove);
        assert_eq!(prune(KEY_FILE, &keep), Prune::Keep);
        assert_eq!(prune("README", &keep), Prune::Keep);
        assert_eq!(
            prune(&format!(".tmp-{other}-1-0"), &keep),
            Prune::RemoveIfStale
        );
        assert_eq!(prune(".tmp-key-1-0", &keep), Prune::RemoveIfStale);
    }
}
