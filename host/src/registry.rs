//! The live module registry behind `--modules DIR`: `DIR/<name>.wasm` is
//! module `<name>`. New, changed and removed files are noticed (inotify, with
//! a periodic rescan as backstop), compiled off the job path and swapped in
//! atomically; a file that does not load leaves the previous version serving.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::sandbox::{CacheKey, CodeCache, Module, Sandbox};

/// How long a file must stay unchanged before it is loaded: a file still
/// being copied in is never read half-written on purpose (and a half-written
/// one that slips through fails validation and is retried when it changes).
const SETTLE: Duration = Duration::from_millis(200);

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: SystemTime,
    inode: u64,
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            inode: meta.ino(),
        }
    }
}

#[derive(Default)]
struct State {
    loaded: HashMap<String, (Module, Fingerprint)>,
    /// Versions that failed to load: not retried until the file changes.
    failed: HashMap<String, Fingerprint>,
}

/// The code cache keys of the versions loaded now and of the one each
/// module had before (also after it was removed): what pruning keeps.
#[derive(Debug, Default)]
struct CacheKeys {
    current: HashMap<String, CacheKey>,
    previous: HashMap<String, CacheKey>,
}

impl CacheKeys {
    /// Records the keys of what is `loaded` now (by module name); returns
    /// the keys to keep.
    fn update(&mut self, loaded: HashMap<String, CacheKey>) -> HashSet<CacheKey> {
        for (name, key) in self.current.drain() {
            if loaded.get(&name) != Some(&key) {
                self.previous.insert(name, key);
            }
        }
        self.current = loaded;
        self.current
            .values()
            .chain(self.previous.values())
            .copied()
            .collect()
    }
}

struct Inner {
    dir: PathBuf,
    sandbox: Sandbox,
    cache: Option<CodeCache>,
    /// What the code cache keeps when it is pruned.
    cache_keys: Mutex<CacheKeys>,
    state: RwLock<State>,
    generation: watch::Sender<u64>,
}

/// The modules of a directory, kept current. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Loads every module in `dir` now (compiled code from `cache` when it
    /// has it). Modules that fail to load are logged and skipped.
    ///
    /// # Errors
    ///
    /// When `dir` cannot be read.
    pub fn open(
        dir: &Path,
        sandbox: Sandbox,
        cache: Option<CodeCache>,
    ) -> anyhow::Result<Registry> {
        std::fs::read_dir(dir).map_err(|e| {
            anyhow::anyhow!("cannot read the modules directory {}: {e}", dir.display())
        })?;
        let registry = Registry {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                sandbox,
                cache,
                cache_keys: Mutex::new(CacheKeys::default()),
                state: RwLock::new(State::default()),
                generation: watch::Sender::new(0),
            }),
        };
        // At start nothing is being copied in as far as we know: load all.
        registry.rescan(Duration::ZERO);
        Ok(registry)
    }

    /// The directory the modules come from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The current version of module `name`, if it is loaded.
    pub fn get(&self, name: &str) -> Option<Module> {
        let state = self.inner.state.read().expect("registry lock poisoned");
        state.loaded.get(name).map(|(m, _)| m.clone())
    }

    /// Whether a newer version of `name` is on its way (stub; see h-load).
    pub fn pending(&self, _name: &str) -> bool {
        false
    }

    /// The names of the loaded modules, sorted.
    pub fn names(&self) -> Vec<String> {
        let state = self.inner.state.read().expect("registry lock poisoned");
        let mut names: Vec<String> = state.loaded.keys().cloned().collect();
        names.sort();
        names
    }

    /// A receiver that changes whenever a module is added, replaced or removed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Brings the registry in line with the directory. Files modified less
    /// than `settle` ago are left for a later scan. Returns whether such a
    /// file was seen (the caller should scan again soon).
    pub fn rescan(&self, settle: Duration) -> bool {
        let dir = &self.inner.dir;
        let mut on_disk: HashMap<String, (PathBuf, Fingerprint)> = HashMap::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_none_or(|e| e != "wasm") {
                        continue;
                    }
                    let (Some(name), Ok(meta)) = (
                        path.file_stem().and_then(|s| s.to_str()),
                        std::fs::metadata(&path),
                    ) else {
                        continue;
                    };
                    if meta.is_file() {
                        on_disk.insert(name.to_string(), (path.clone(), Fingerprint::of(&meta)));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot scan the modules directory");
                return false;
            }
        }

        let mut unsettled = false;
        let mut changed = false;
        let now = SystemTime::now();
        let todo: Vec<(String, PathBuf, Fingerprint)> = {
            let state = self.inner.state.read().expect("registry lock poisoned");
            on_disk
                .iter()
                .filter(|(name, (_, fp))| {
                    state.loaded.get(*name).is_none_or(|(_, old)| old != fp)
                        && state.failed.get(*name) != Some(fp)
                })
                .map(|(name, (path, fp))| (name.clone(), path.clone(), *fp))
                .collect()
        };
        for (name, path, fp) in todo {
            if now.duration_since(fp.modified).unwrap_or_default() < settle {
                unsettled = true;
                continue;
            }
            let loaded = self
                .inner
                .sandbox
                .load_file_through(&path, self.inner.cache.as_ref());
            let mut state = self.inner.state.write().expect("registry lock poisoned");
            match loaded {
                Ok(module) => {
                    let replaced = state.loaded.insert(name.clone(), (module, fp)).is_some();
                    state.failed.remove(&name);
                    tracing::info!(
                        module = %name, path = %path.display(),
                        "{}", if replaced { "module replaced: new jobs get the new version" } else { "module loaded" }
                    );
                    changed = true;
                }
                Err(e) => {
                    state.failed.insert(name.clone(), fp);
                    let serving = if state.loaded.contains_key(&name) {
                        "the previous version keeps serving"
                    } else {
                        "not serving"
                    };
                    tracing::warn!(module = %name, path = %path.display(), error = %e, "module failed to load; {serving}");
                }
            }
        }
        {
            let mut state = self.inner.state.write().expect("registry lock poisoned");
            let gone: Vec<String> = state
                .loaded
                .keys()
                .filter(|n| !on_disk.contains_key(*n))
                .cloned()
                .collect();
            for name in gone {
                state.loaded.remove(&name);
                tracing::warn!(module = %name, "module removed: its tubes are no longer served; their jobs stay queued");
                changed = true;
            }
            state.failed.retain(|n, _| on_disk.contains_key(n));
        }
        if changed {
            self.prune_cache();
            self.inner.generation.send_modify(|g| *g += 1);
        }
        unsettled
    }

    /// Bounds the code cache: keeps the entries of the loaded versions and
    /// of the version each module had before, removes the rest.
    fn prune_cache(&self) {
        let Some(cache) = &self.inner.cache else {
            return;
        };
        let loaded: HashMap<String, CacheKey> = {
            let state = self.inner.state.read().expect("registry lock poisoned");
            state
                .loaded
                .iter()
                .filter_map(|(name, (module, _))| Some((name.clone(), module.cache_key()?)))
                .collect()
        };
        let keep = self
            .inner
            .cache_keys
            .lock()
            .expect("cache keys lock poisoned")
            .update(loaded);
        let removed = cache.retain(&keep);
        if removed > 0 {
            tracing::info!(removed, dir = %cache.dir().display(), "code cache pruned");
        }
    }

    /// Watches the directory (inotify) and rescans on every change, and
    /// every `every` regardless, until the process ends. Compiling happens on
    /// the blocking pool, never on a job's thread.
    pub fn spawn_watcher(&self, every: Duration) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = {
            use notify::Watcher as _;
            let tx = tx.clone();
            notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
                let _ = tx.send(());
            })
            .and_then(|mut w| {
                w.watch(&self.inner.dir, notify::RecursiveMode::NonRecursive)
                    .map(|()| w)
            })
        };
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, every = ?every, "cannot watch the modules directory; rescanning periodically only");
                None
            }
        };
        let registry = self.clone();
        tokio::spawn(async move {
            let _watcher = watcher; // dropping it stops the notifications
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut retry_soon = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    Some(()) = rx.recv() => {
                        // Debounce: let a burst of events (a copy) settle.
                        tokio::time::sleep(SETTLE).await;
                        while rx.try_recv().is_ok() {}
                    }
                    () = tokio::time::sleep(SETTLE), if retry_soon => {}
                }
                let r = registry.clone();
                retry_soon = tokio::task::spawn_blocking(move || r.rescan(SETTLE))
                    .await
                    .unwrap_or(true);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CacheKey {
        let text = format!("{byte:02x}").repeat(32);
        CacheKey::parse(&text).expect("64 hex digits")
    }

    #[test]
    fn the_cache_keeps_loaded_versions_and_one_previous_each() {
        let mut keys = CacheKeys::default();
        let loaded = |pairs: &[(&str, u8)]| {
            pairs
                .iter()
                .map(|(n, k)| (n.to_string(), key(*k)))
                .collect::<HashMap<_, _>>()
        };
        let set = |ks: &[u8]| ks.iter().map(|k| key(*k)).collect::<HashSet<_>>();
        assert_eq!(keys.update(loaded(&[("a", 1), ("b", 2)])), set(&[1, 2]));
        assert_eq!(keys.update(loaded(&[("a", 3), ("b", 2)])), set(&[1, 2, 3]));
        assert_eq!(
            keys.update(loaded(&[("a", 4), ("b", 2)])),
            set(&[2, 3, 4]),
            "a's 1 goes"
        );
        assert_eq!(
            keys.update(loaded(&[("a", 4)])),
            set(&[2, 3, 4]),
            "removed b: 2 kept"
        );
        assert_eq!(
            keys.update(loaded(&[("a", 3)])),
            set(&[2, 3, 4]),
            "a rolled back"
        );
    }
}
