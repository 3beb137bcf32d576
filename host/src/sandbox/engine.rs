//! The engine: one wasmtime `Engine` per process with its pooling or
//! on-demand allocator and epoch ticker, and [`Sandbox`], which compiles
//! and links components into [`Module`]s.

use super::*;

/// How often the epoch ticks: the granularity of wall-clock deadlines and of
/// a spinning guest yielding to the async runtime.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Fuel between two yields of a running guest to the async runtime: a
/// millisecond or so of guest CPU here.
pub(super) const YIELD_EVERY_FUEL: u64 = 10_000_000;

/// With epochs on: extra time past the deadline before a call blocked in a
/// host call (a sleep, say) is abandoned rather than interrupted.
pub(super) const DEADLINE_GRACE: Duration = Duration::from_millis(50);

/// The wasm engine, its linker and the epoch ticker: one per process.
#[derive(Clone)]
pub struct Sandbox {
    pub(super) engine: Engine,
    pub(super) linker: Arc<Linker<State>>,
    pub(super) options: SandboxOptions,
    /// The largest module file it reads.
    pub(super) max_module_bytes: u64,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// The pooling allocator when its address-space reservation succeeds,
    /// else on-demand.
    Auto,
    /// Pre-reserved slots, reused job after job: the cheapest per job.
    Pooling,
    /// mmap per instance.
    OnDemand,
}

/// How the engine is built. The defaults are what the worker runs with;
/// the others exist so the benchmark can measure what each one costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxOptions {
    /// How instances get their memory.
    pub allocator: Allocator,
    /// Count fuel (the CPU budget). A guest also yields every few
    /// milliseconds of fuel, which is what lets the wall-clock deadline stop
    /// a spinning guest. Off, [`Limits::fuel`] is ignored.
    pub fuel: bool,
    /// Epoch interruption as well (default off): it stops a spinning guest
    /// at the deadline without fuel, but on top of fuel it doubles the cost
    /// of compute-heavy guests (BENCHMARKS.md, section c). With neither,
    /// only a guest that blocks in a host call can be stopped at its
    /// deadline.
    pub epochs: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            allocator: Allocator::Auto,
            fuel: true,
            epochs: false,
        }
    }
}

impl Sandbox {
    /// Creates the engine with the default options (fuel on, epochs off,
    /// pooling allocator if it can reserve its address space) and a linker
    /// offering WASI p2 and `beanbox:task`.
    ///
    /// # Errors
    ///
    /// When wasmtime rejects the configuration.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_options(SandboxOptions::default())
    }

    /// Like [`Sandbox::new`], with the given options.
    ///
    /// # Errors
    ///
    /// When wasmtime rejects the configuration, or `Allocator::Pooling` was
    /// asked for and its reservation fails (e.g. under `ulimit -v`).
    pub fn with_options(options: SandboxOptions) -> anyhow::Result<Self> {
        let engine = match options.allocator {
            Allocator::OnDemand => engine(options, false)?,
            Allocator::Pooling => engine(options, true)?,
            Allocator::Auto => engine(options, true).or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "pooling allocator unavailable; using on-demand allocation");
                engine(options, false)
            })?,
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("failed to link WASI")?;
        host::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("failed to link beanbox:task")?;
        if options.epochs {
            spawn_epoch_ticker(&engine);
        }
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            options,
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
        })
    }

    /// This sandbox (the same engine) reading module files of at most `max`
    /// bytes; the default is [`DEFAULT_MAX_MODULE_BYTES`].
    #[must_use]
    pub fn with_max_module_bytes(mut self, max: u64) -> Self {
        self.max_module_bytes = max;
        self
    }

    /// The largest module file it reads.
    pub fn max_module_bytes(&self) -> u64 {
        self.max_module_bytes
    }

    /// The options this sandbox was built with.
    pub fn options(&self) -> SandboxOptions {
        self.options
    }

    /// The engine modules are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads and compiles the component at `path`.
    ///
    /// # Errors
    ///
    /// When the file is larger than [`Sandbox::max_module_bytes`] (refused
    /// before reading), cannot be read, is not a valid component, imports
    /// what the sandbox does not offer, or exports a function whose
    /// signature cannot cross JSON.
    pub fn load_file(&self, path: &Path) -> Result<Module, LoadError> {
        let bytes = read_module(path, self.max_module_bytes)?;
        self.load(&bytes, &path.display().to_string())
    }

    /// Compiles a component from its bytes; `name` is used in messages.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_file`].
    pub fn load(&self, bytes: &[u8], name: &str) -> Result<Module, LoadError> {
        let component = self.compile(bytes, name)?;
        self.prepare(component, name, None, sha256(bytes))
    }

    /// Compiles a component from its bytes; `name` is used in messages.
    pub(super) fn compile(&self, bytes: &[u8], name: &str) -> Result<Component, LoadError> {
        Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            module: name.to_string(),
            message: one_line(&format!("{e:#}")),
        })
    }

    /// Lists the tasks of a compiled component and pre-links it; `cache_key`
    /// when it was loaded through a code cache; `sha256` of its bytes.
    pub(super) fn prepare(
        &self,
        component: Component,
        name: &str,
        cache_key: Option<CacheKey>,
        sha256: [u8; 32],
    ) -> Result<Module, LoadError> {
        let tasks = discover_tasks(&self.engine, &component, name)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                module: name.to_string(),
                message: one_line(&format!("{e:#}")),
            })?;
        Ok(Module {
            inner: Arc::new(ModuleInner {
                options: self.options,
                name: name.to_string(),
                pre,
                tasks,
                cache_key,
                sha256,
            }),
        })
    }
}

/// The SHA-256 of a module's bytes.
pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Core instances the pool allows at once (see [`engine`]).
const POOL_CORE_INSTANCES: u32 = 20_000;

/// Tables the pool allows at once (see [`engine`]).
const POOL_TABLES: u32 = 2_000;

/// Bytes of a pooled memory (and table) kept resident between jobs when the
/// kernel can tell which pages a job dirtied.
const KEEP_RESIDENT: usize = 2 << 20;

/// Builds an engine; `pooling` picks the pooling allocator.
fn engine(options: SandboxOptions, pooling: bool) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.consume_fuel(options.fuel);
    config.epoch_interruption(options.epochs);
    // Concurrent component-model execution is not used; off, it saves
    // ~7 us of store set-up per job.
    config.concurrency_support(false);
    if pooling {
        // wasmtime's default pool: 1000 instances, memories and tables, each
        // memory slot a 4 GiB reservation. Virtual address space only, but
        // a `ulimit -v` refuses it, and then Auto falls back to on-demand.
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        // wasmtime's default pool holds 1,000 of each kind of slot. An
        // instance takes one memory, two tables and several core instances:
        // a Python one 14, so the default would stop at 71 Python instances
        // (running or kept) per worker. Core instances are only counted
        // and a table slot is ~160 KB of address space, so both are raised
        // until memories (and async stacks) are the bound for every
        // language: 1,000 instances at once.
        pool.total_core_instances(POOL_CORE_INSTANCES)
            .total_tables(POOL_TABLES);
        if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            // Reset a finished instance's memory by rewriting only the pages
            // it dirtied (PAGEMAP_SCAN, Linux 6.7+) instead of madvise: no
            // page faults on the next job and no TLB shootdowns. 2 MiB covers
            // a Rust guest's 1 MiB stack, data and small heap. Measured here:
            // 7.7 us p50 per job instead of 20 (BENCHMARKS.md, section b).
            pool.linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT)
                .pagemap_scan(wasmtime::Enabled::Yes);
        } else {
            // Without it, keeping pages resident means a memset of all of
            // them per job (slower); batching the madvise calls still helps.
            pool.decommit_batch_size(16);
        }
        config.allocation_strategy(pool);
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("failed to create the wasm engine (pooling: {pooling})"))
}

/// Ticks the engine's epoch until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("beanbox-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("failed to spawn the epoch ticker thread");
}
