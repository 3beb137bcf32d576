//! The live module registry behind `--modules DIR`: `DIR/<name>.wasm` is
//! module `<name>`. New, changed and removed files are noticed (inotify, with
//! a periodic rescan as backstop), compiled off the job path, one at a time
//! and smallest first, and swapped in atomically; a file that does not load
//! leaves the previous version serving. Files whose name cannot be a tube,
//! or larger than the size limit, are refused without being read. A module
//! whose tenant has a `dir` of its own is looked for there instead.
//!
//! - [`disk`] lists the directory and fingerprints file versions by `stat`.
//! - [`plan`] decides what a scan does, and whether a module is pending.
//! - [`status`] is what the dashboard shows of each module.

mod cache_keys;
mod disk;
mod plan;
mod status;

pub use status::ModuleStatus;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::metrics::{Metrics, unix_now};
use crate::sandbox::{CacheKey, CodeCache, LoadError, Module, Sandbox};
use cache_keys::CacheKeys;
use disk::{Fingerprint, Seen};
use plan::{Refusal, SizeLimits};

/// How long a file must stay unchanged before it is loaded: a file still
/// being copied in is never read half-written on purpose (and a half-written
/// one that slips through fails validation and is retried when it changes).
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    loaded: HashMap<String, (Module, Fingerprint)>,
    /// Versions that were refused: not retried until the file changes.
    failed: HashMap<String, (Fingerprint, Refusal)>,
    /// What the dashboard shows, per module on disk or loaded.
    status: HashMap<String, ModuleStatus>,
}

struct Inner {
    dir: PathBuf,
    sandbox: Sandbox,
    cache: Option<CodeCache>,
    /// What the code cache keeps when it is pruned.
    cache_keys: Mutex<CacheKeys>,
    state: RwLock<State>,
    limits: RwLock<SizeLimits>,
    /// Modules whose tenant has a directory of its own.
    own_dirs: RwLock<HashMap<String, PathBuf>>,
    /// The inotify watcher, once started, and the directories it watches.
    watching: Mutex<Option<(notify::RecommendedWatcher, HashSet<PathBuf>)>>,
    generation: watch::Sender<u64>,
    /// Loads, load failures and load seconds are recorded here.
    metrics: Metrics,
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
    /// A registry of the modules in `dir`, compiled by `sandbox` (whose
    /// [`Sandbox::max_module_bytes`] is the size limit of every module not
    /// given its own by [`Registry::set_module_size_limits`]), through
    /// `cache` when there is one. Nothing is loaded yet: [`Registry::rescan`]
    /// loads, and [`Registry::spawn_watcher`] does so in the background,
    /// each module serving as soon as it is loaded.
    ///
    /// # Errors
    ///
    /// When `dir` cannot be read.
    pub fn open(
        dir: &Path,
        sandbox: Sandbox,
        cache: Option<CodeCache>,
    ) -> anyhow::Result<Registry> {
        Registry::open_with_metrics(dir, sandbox, cache, Metrics::new())
    }

    /// [`Registry::open`], recording module loads into `metrics`.
    ///
    /// # Errors
    ///
    /// When `dir` cannot be read.
    pub fn open_with_metrics(
        dir: &Path,
        sandbox: Sandbox,
        cache: Option<CodeCache>,
        metrics: Metrics,
    ) -> anyhow::Result<Registry> {
        std::fs::read_dir(dir).map_err(|e| {
            anyhow::anyhow!("cannot read the modules directory {}: {e}", dir.display())
        })?;
        let limits = SizeLimits {
            default: sandbox.max_module_bytes(),
            per_module: HashMap::new(),
        };
        Ok(Registry {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                sandbox,
                cache,
                cache_keys: Mutex::new(CacheKeys::default()),
                state: RwLock::new(State::default()),
                limits: RwLock::new(limits),
                own_dirs: RwLock::new(HashMap::new()),
                watching: Mutex::new(None),
                generation: watch::Sender::new(0),
                metrics,
            }),
        })
    }

    /// The directory the modules come from, unless their tenant has its own.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The file module `name` is loaded from.
    pub fn file_of(&self, name: &str) -> PathBuf {
        let own = self.inner.own_dirs.read().expect("registry lock poisoned");
        own.get(name)
            .map_or(self.inner.dir.as_path(), PathBuf::as_path)
            .join(format!("{name}.wasm"))
    }

    /// The current version of module `name`, if it is loaded.
    pub fn get(&self, name: &str) -> Option<Module> {
        let state = self.inner.state.read().expect("registry lock poisoned");
        state.loaded.get(name).map(|(m, _)| m.clone())
    }

    /// The names of the loaded modules, sorted.
    pub fn names(&self) -> Vec<String> {
        let state = self.inner.state.read().expect("registry lock poisoned");
        let mut names: Vec<String> = state.loaded.keys().cloned().collect();
        names.sort();
        names
    }

    /// Every module on disk or loaded, with its serving version's hash, load
    /// time and last load error, sorted by name (for the dashboard).
    pub fn modules(&self) -> Vec<ModuleStatus> {
        let state = self.inner.state.read().expect("registry lock poisoned");
        let mut modules: Vec<ModuleStatus> = state.status.values().cloned().collect();
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        modules
    }

    /// The names of the module files on disk now (valid names only), sorted:
    /// what a worker without a config waits for before it is ready.
    pub fn on_disk(&self) -> Vec<String> {
        let own = self
            .inner
            .own_dirs
            .read()
            .expect("registry lock poisoned")
            .clone();
        let mut names: Vec<String> = disk::scan(&self.inner.dir, &own)
            .map(|found| found.into_keys().filter(|n| plan::valid_name(n)).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A receiver that changes whenever a module is added, replaced or removed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Whether a version of module `name` other than the one serving is on
    /// disk and on its way: renamed into place but not yet noticed, settling,
    /// or compiling (at start: not loaded yet). False once it is live, when
    /// it was refused or failed to load, when the file is gone, and for a
    /// name that cannot be a module. Costs one `stat`.
    pub fn pending(&self, name: &str) -> bool {
        if !plan::valid_name(name) {
            return false;
        }
        let on_disk = disk::stat(self.file_of(name)).map(|seen| seen.fp);
        let limit = self.limits().of(name);
        let state = self.inner.state.read().expect("registry lock poisoned");
        plan::pending(
            on_disk,
            state.loaded.get(name).map(|(_, fp)| *fp),
            state.failed.get(name).map(|(fp, _)| *fp),
            limit,
        )
    }

    /// Applies what the tenants say about loading: each module's size limit
    /// and directory ([`Registry::set_module_size_limits`],
    /// [`Registry::set_module_dirs`]).
    pub fn configure(&self, config: &Config) {
        self.set_module_size_limits(config.module_size_limits());
        self.set_module_dirs(config.module_dirs());
    }

    /// Takes the modules named in `own` from their own directory (their
    /// tenant's `dir`) instead of the registry's, from the next scan on,
    /// and watches those directories.
    pub fn set_module_dirs(&self, own: HashMap<String, PathBuf>) {
        let mut dirs = self.inner.own_dirs.write().expect("registry lock poisoned");
        if *dirs == own {
            return;
        }
        *dirs = own;
        drop(dirs);
        self.watch_dirs();
    }

    /// Sets the size limit of the modules named in `per_module` (a tenant's
    /// `max_module_mb`); the others keep the sandbox's. Applies to the next
    /// load: a loaded module stays. A file refused for its size is looked at
    /// again at the next scan.
    pub fn set_module_size_limits(&self, per_module: HashMap<String, u64>) {
        let mut limits = self.inner.limits.write().expect("registry lock poisoned");
        if limits.per_module == per_module {
            return;
        }
        limits.per_module = per_module;
        drop(limits);
        let mut state = self.inner.state.write().expect("registry lock poisoned");
        state
            .failed
            .retain(|_, (_, refusal)| !matches!(refusal, Refusal::Size { .. }));
    }

    fn limits(&self) -> SizeLimits {
        self.inner
            .limits
            .read()
            .expect("registry lock poisoned")
            .clone()
    }

    /// Brings the registry in line with the directory: refuses, loads (one
    /// at a time, smallest first, each serving as soon as it is loaded) and
    /// drops modules. Files modified less than `settle` ago are left for a
    /// later scan. Returns whether such a file was seen (the caller should
    /// scan again soon).
    pub fn rescan(&self, settle: Duration) -> bool {
        let dir = &self.inner.dir;
        let own_dirs = self
            .inner
            .own_dirs
            .read()
            .expect("registry lock poisoned")
            .clone();
        let on_disk = match disk::scan(dir, &own_dirs) {
            Ok(on_disk) => on_disk,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot scan the modules directory");
                return false;
            }
        };
        let todo = {
            let state = self.inner.state.read().expect("registry lock poisoned");
            let live = state
                .loaded
                .iter()
                .map(|(n, (_, fp))| (n.clone(), *fp))
                .collect();
            let failed = state
                .failed
                .iter()
                .map(|(n, (fp, _))| (n.clone(), *fp))
                .collect();
            plan::plan(
                &on_disk,
                &live,
                &failed,
                &self.limits(),
                SystemTime::now(),
                settle,
            )
        };
        let mut removed = false;
        {
            let mut state = self.inner.state.write().expect("registry lock poisoned");
            for name in &todo.gone {
                state.loaded.remove(name);
                state.status.remove(name);
                tracing::warn!(module = %name, "module removed: its tubes are no longer served; their jobs stay queued");
                removed = true;
            }
            state.failed.retain(|n, _| on_disk.contains_key(n));
            let State { loaded, status, .. } = &mut *state;
            status.retain(|n, _| on_disk.contains_key(n) || loaded.contains_key(n));
            for (name, seen, refusal) in todo.refuse {
                refuse(&mut state, name, &seen, refusal);
            }
            drop(state);
            if removed {
                self.bump();
            }
        }
        let mut changed = removed;
        for (name, seen) in todo.load {
            changed |= self.load(name, &seen);
        }
        // Pruned once this pass has loaded what it found: at start, before
        // that, the entries of modules still to load would look unused.
        if changed && !todo.unsettled {
            self.prune_cache();
        }
        todo.unsettled
    }

    /// Loads one version of a module and makes it serve at once; returns
    /// whether it loaded.
    fn load(&self, name: String, seen: &Seen) -> bool {
        let path = seen.path.display();
        tracing::info!(module = %name, path = %path, bytes = seen.fp.len, "compiling module");
        let started = Instant::now();
        let limit = self.limits().of(&name);
        let loaded = self
            .inner
            .sandbox
            .clone()
            .with_max_module_bytes(limit)
            .load_file_through(&seen.path, self.inner.cache.as_ref());
        // Cranelift's freed working memory goes back to the system instead
        // of staying in glibc's arenas for good: compiling 150,000 functions
        // left 848 MiB resident without this, 65 MiB with it (the module
        // itself: 62 MiB when loaded from the cache). It took 0.09 s after
        // that 55 s compile.
        crate::sandbox::release_freed_memory();
        let secs = started.elapsed().as_secs_f64();
        let mut state = self.inner.state.write().expect("registry lock poisoned");
        match loaded {
            Ok(module) => {
                self.inner.metrics.module_loaded(&name, secs);
                ModuleStatus::of(&mut state.status, &name).loaded(
                    module.content_hash(),
                    unix_now(),
                    secs,
                );
                let replaced = state
                    .loaded
                    .insert(name.clone(), (module, seen.fp))
                    .is_some();
                state.failed.remove(&name);
                drop(state);
                tracing::info!(
                    module = %name, path = %path, secs,
                    "{}", if replaced { "module replaced: new jobs get the new version" } else { "module loaded" }
                );
                self.bump();
                true
            }
            Err(LoadError::TooBig { size, limit, .. }) => {
                self.inner.metrics.module_load_failed(&name);
                refuse(&mut state, name, seen, Refusal::Size { size, limit });
                false
            }
            Err(e) => {
                self.inner.metrics.module_load_failed(&name);
                refuse(&mut state, name, seen, Refusal::Load(e.to_string()));
                false
            }
        }
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

    /// Tells the subscribers that the modules changed.
    fn bump(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Loads every module now, in the background (smallest first, each
    /// serving as soon as it is loaded), then watches the directory
    /// (inotify) and rescans on every change, and every `every` regardless,
    /// until the returned [`Watcher`] is dropped. Compiling happens on the
    /// blocking pool, never on a job's thread.
    pub fn spawn_watcher(&self, every: Duration) -> Watcher {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            let _ = tx.send(());
        });
        match watcher {
            Ok(w) => {
                *self.inner.watching.lock().expect("registry lock poisoned") =
                    Some((w, HashSet::new()));
                self.watch_dirs();
            }
            Err(e) => {
                tracing::warn!(error = %e, every = ?every, "cannot watch the modules directory; rescanning periodically only");
            }
        }
        let registry = self.clone();
        let task = tokio::spawn(async move {
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
        Watcher {
            registry: self.clone(),
            task,
        }
    }
}

/// The running watcher of [`Registry::spawn_watcher`]; dropping it stops
/// the rescans and the directory watch (a rescan already on the blocking
/// pool finishes).
#[must_use = "dropping the Watcher stops it"]
#[derive(Debug)]
pub struct Watcher {
    registry: Registry,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut watching) = self.registry.inner.watching.lock() {
            *watching = None;
        }
    }
}

impl Registry {
    /// Makes the watcher (once started) watch exactly the registry's
    /// directory and the modules' own ones.
    fn watch_dirs(&self) {
        use notify::Watcher as _;
        let mut wanted: HashSet<PathBuf> = self
            .inner
            .own_dirs
            .read()
            .expect("registry lock poisoned")
            .values()
            .cloned()
            .collect();
        wanted.insert(self.inner.dir.clone());
        let mut watching = self.inner.watching.lock().expect("registry lock poisoned");
        let Some((watcher, watched)) = watching.as_mut() else {
            return;
        };
        for dir in watched.difference(&wanted) {
            let _ = watcher.unwatch(dir);
        }
        watched.retain(|dir| wanted.contains(dir));
        for dir in wanted {
            if watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a modules directory; rescanning it periodically only");
                }
            }
        }
    }
}

/// Records a refused version (not tried again until it changes) and says so,
/// once per version.
fn refuse(state: &mut State, name: String, seen: &Seen, refusal: Refusal) {
    let serving = if state.loaded.contains_key(&name) {
        "the previous version keeps serving"
    } else {
        "not serving"
    };
    let path = seen.path.display();
    match &refusal {
        Refusal::Load(error) => {
            tracing::warn!(module = %name, path = %path, error = %error, "module failed to load; {serving}");
        }
        Refusal::Name | Refusal::Size { .. } => {
            tracing::warn!(module = %name, path = %path, reason = %refusal, "module refused; {serving}");
        }
    }
    if refusal != Refusal::Name {
        ModuleStatus::of(&mut state.status, &name).error = Some(refusal.to_string());
    }
    state.failed.insert(name, (seen.fp, refusal));
}
