//! The sandbox: compiles task components, lists their exports, and calls one
//! export per job in a fresh store under fuel, memory, wall-clock and output
//! limits, with WASI granting nothing; or, when asked, in an instance kept
//! from the caller's previous job ([`Module::call_reusing`]). It knows
//! nothing of beanstalkd.
//!
//! Why this file is over 600 lines: the engine, task discovery, the call and
//! instance reuse still share the private store state (`State`, `Live`,
//! `Kept`) here; splitting them along those seams (engine / discover / call /
//! reuse) is tracked with the rest of the house work (issue 15).

mod budget;
mod cache;
mod capture;
mod convert;
mod diagnose;
pub mod docs;
mod error;
pub mod host;
mod limits;
mod read;
pub mod types;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Map, Value};
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{
    Component, ComponentExportIndex, Instance, InstancePre, Linker, ResourceTable, Val,
};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use budget::{Budget, BudgetHit, MAX_LOG_LINE};
pub use cache::{CacheKey, CacheOutcome, CodeCache, Refusal};
pub use convert::{ArgError, ArgErrorKind, same_name};
pub use error::{CallError, FailureClass, LoadError};
pub use host::{
    AttemptCell, JobInfo, Level, MAX_JOB_SIZE, PutError, PutOptions, PutRequest, Services,
    SharedServices, Standalone,
};
pub use limits::{
    DEFAULT_FUEL, DEFAULT_LOG_LINES, DEFAULT_MAX_PUTS, DEFAULT_MEMORY_BYTES, DEFAULT_OUTPUT_BYTES,
    DEFAULT_TABLE_ELEMENTS, DEFAULT_TIMEOUT, Limits,
};
pub use read::{DEFAULT_MAX_MODULE_BYTES, read_module, release_freed_memory, resident_bytes};

use budget::Budgets;

use capture::Capture;
use diagnose::{guest_complaint, one_line, short_backtrace};
use limits::Limiter;

/// How often the epoch ticks: the granularity of wall-clock deadlines and of
/// a spinning guest yielding to the async runtime.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Fuel between two yields of a running guest to the async runtime: a
/// millisecond or so of guest CPU here.
const YIELD_EVERY_FUEL: u64 = 10_000_000;

/// With epochs on: extra time past the deadline before a call blocked in a
/// host call (a sleep, say) is abandoned rather than interrupted.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

/// The wasm engine, its linker and the epoch ticker: one per process.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<State>>,
    options: SandboxOptions,
    /// The largest module file it reads.
    max_module_bytes: u64,
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
    fn compile(&self, bytes: &[u8], name: &str) -> Result<Component, LoadError> {
        Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            module: name.to_string(),
            message: one_line(&format!("{e:#}")),
        })
    }

    /// Lists the tasks of a compiled component and pre-links it; `cache_key`
    /// when it was loaded through a code cache; `sha256` of its bytes.
    fn prepare(
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
fn sha256(bytes: &[u8]) -> [u8; 32] {
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

/// One export of a component that a job can call.
#[derive(Debug, Clone)]
pub struct Task {
    /// The name jobs use: the export's WIT name (`task-one`), or
    /// `interface.function` for a function inside an exported interface.
    pub name: String,
    /// The interface that holds it (`beanbox:showcase/math`), if any.
    pub interface: Option<String>,
    /// Parameter names (WIT kebab-case) and types.
    pub params: Vec<(String, Type)>,
    /// The result type, if the function returns one.
    pub result: Option<Type>,
    index: ComponentExportIndex,
}

impl Task {
    /// The WIT signature, e.g. `func(arg1: string) -> string`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(n, t)| format!("{n}: {}", types::wit_name(t)))
            .collect();
        match &self.result {
            Some(r) => format!("func({}) -> {}", params.join(", "), types::wit_name(r)),
            None => format!("func({})", params.join(", ")),
        }
    }

    /// A JSON Schema of this task's kwargs object.
    pub fn kwargs_schema(&self) -> Value {
        let mut props = Map::new();
        let mut required = Vec::new();
        for (name, ty) in &self.params {
            if !matches!(ty, Type::Option(_)) {
                required.push(Value::from(name.as_str()));
            }
            props.insert(name.clone(), types::json_schema(ty));
        }
        serde_json::json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        })
    }
}

/// A compiled, pre-linked component, cheap to clone and share between jobs.
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    options: SandboxOptions,
    name: String,
    pre: InstancePre<State>,
    tasks: Vec<Task>,
    cache_key: Option<CacheKey>,
    /// SHA-256 of the component's bytes.
    sha256: [u8; 32],
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// What one call produced, whatever its outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The export's result as JSON (`null` when it returns nothing), or why
    /// the call failed.
    pub result: Result<Value, CallError>,
    /// Fuel burned, start-up included.
    pub fuel_used: u64,
    /// What the guest wrote to stdout (up to the cap).
    pub stdout: Vec<u8>,
    /// What the guest wrote to stderr (up to the cap).
    pub stderr: Vec<u8>,
    /// Wall-clock time of instantiation (when there was one) and call.
    pub elapsed: Duration,
    /// Jobs the instance has served, this one included: 1 for a fresh
    /// instance, more for a kept one ([`Module::call_reusing`]), 0 when the
    /// call never reached an instance (unknown task, bad kwargs).
    pub instance_jobs: u32,
    /// The follow-up jobs the task staged, in order: to be put only because
    /// it succeeded, so empty unless `result` is `Ok`.
    pub puts: Vec<PutRequest>,
    /// The most linear memory the call's store held at once, in bytes (for
    /// a kept instance, what earlier jobs grew included); 0 when the call
    /// never reached a store.
    pub memory_peak: u64,
    /// The budgets the call reached (log lines and bytes, puts, output),
    /// with what went past them; empty when it stayed within all.
    pub budget_hits: Vec<BudgetHit>,
}

impl Outcome {
    /// An outcome of a call that never ran or was stopped from outside:
    /// nothing used, nothing staged.
    pub fn stopped(result: Result<Value, CallError>, elapsed: Duration) -> Self {
        Self {
            result,
            fuel_used: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            elapsed,
            instance_jobs: 0,
            puts: Vec::new(),
            memory_peak: 0,
            budget_hits: Vec::new(),
        }
    }

    /// The budget hits as one phrase for a log line, e.g. `log budget of
    /// 1000 lines exceeded (5 lines dropped)`; `None` without any.
    pub fn budget_summary(&self) -> Option<String> {
        let hits: Vec<String> = self.budget_hits.iter().map(ToString::to_string).collect();
        (!hits.is_empty()).then(|| hits.join("; "))
    }
}

/// WASI capabilities beyond the bare sandbox. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Environment variables, sorted by name.
    pub env: Vec<(String, String)>,
}

/// A host directory preopened in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Absolute path on the host.
    pub host: std::path::PathBuf,
    /// Absolute path the guest sees it at.
    pub guest: String,
    /// Read-write (`rw`) rather than read-only (`ro`).
    pub writable: bool,
}

/// Everything a call needs besides the module, task and kwargs.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The budget.
    pub limits: Limits,
    /// The job's facts, as the guest sees them.
    pub job: JobInfo,
    /// Where log lines and follow-up puts go.
    pub services: SharedServices,
    /// What WASI grants beyond nothing.
    pub grants: Arc<Grants>,
    /// Where `job.attempt` comes from when it was not known at the start
    /// (then `job.attempt` is a placeholder).
    pub attempt: Option<Arc<AttemptCell>>,
}

impl CallContext {
    /// A context for running outside a queue: job id 0, attempt 1.
    pub fn standalone(task: &str, limits: Limits) -> Self {
        Self {
            limits,
            job: JobInfo {
                id: 0,
                tube: String::new(),
                task: task.to_string(),
                attempt: 1,
            },
            services: Arc::new(Standalone),
            grants: Arc::new(Grants::default()),
            attempt: None,
        }
    }
}

impl Module {
    /// The name given at load time (usually the file path).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The key of its compiled code in the code cache it was loaded
    /// through; `None` when it was loaded without one.
    pub fn cache_key(&self) -> Option<CacheKey> {
        self.inner.cache_key
    }

    /// The SHA-256 of the component's bytes, as 64 hex digits: which
    /// version of the module this is.
    pub fn content_hash(&self) -> String {
        self.inner
            .sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every callable export.
    pub fn tasks(&self) -> &[Task] {
        &self.inner.tasks
    }

    /// Finds a task by name; snake_case matches kebab-case, and a function
    /// in an exported interface may be named without its interface when no
    /// other task has that name.
    ///
    /// # Errors
    ///
    /// [`CallError::UnknownTask`], listing the tasks there are.
    pub fn task(&self, name: &str) -> Result<&Task, CallError> {
        let tasks = &self.inner.tasks;
        if let Some(t) = tasks.iter().find(|t| same_name(&t.name, name)) {
            return Ok(t);
        }
        let mut short = tasks.iter().filter(|t| {
            t.interface.is_some()
                && t.name
                    .rsplit('.')
                    .next()
                    .is_some_and(|f| same_name(f, name))
        });
        match (short.next(), short.next()) {
            (Some(t), None) => Ok(t),
            _ => Err(CallError::UnknownTask {
                task: name.to_string(),
                available: tasks.iter().map(|t| t.name.clone()).collect(),
            }),
        }
    }

    /// Calls `task` with `kwargs` in a fresh instance under `ctx.limits`.
    pub async fn call(
        &self,
        task: &str,
        kwargs: &Map<String, Value>,
        ctx: &CallContext,
    ) -> Outcome {
        self.call_in(task, kwargs, ctx, None).await
    }

    /// Calls `task` like [`Module::call`], but in the instance `kept` holds
    /// when it is this module's (this very version, same limits and grants)
    /// and has served fewer than `jobs_per_instance` jobs; otherwise in a
    /// fresh one, which `kept` then holds if the call succeeds and
    /// `jobs_per_instance` allows another job.
    ///
    /// The instance is taken out of `kept` when the call starts and put back
    /// only when it succeeds: a failed call (guest error, trap, any limit,
    /// bad kwargs) discards it, and so does dropping the call unfinished.
    /// Each call gets its own fuel, deadline, output caps, job facts and
    /// services; the instance's memory, globals and WASI state carry over,
    /// and its memory counts against `ctx.limits.memory_bytes` for its whole
    /// life.
    pub async fn call_reusing(
        &self,
        task: &str,
        kwargs: &Map<String, Value>,
        ctx: &CallContext,
        kept: &mut KeptInstance,
        jobs_per_instance: u32,
    ) -> Outcome {
        self.call_in(task, kwargs, ctx, Some((kept, jobs_per_instance)))
            .await
    }

    async fn call_in(
        &self,
        task: &str,
        kwargs: &Map<String, Value>,
        ctx: &CallContext,
        mut reuse: Option<(&mut KeptInstance, u32)>,
    ) -> Outcome {
        let started = Instant::now();
        // Out of the slot before anything else: only a call that succeeds
        // puts it back, so a failed or abandoned one never leaves it behind.
        let kept = reuse.as_mut().and_then(|(slot, _)| slot.kept.take());
        let (task, params) = match self.prepare(task, kwargs) {
            Ok(prepared) => prepared,
            Err(e) => return Outcome::stopped(Err(e), started.elapsed()),
        };
        let limits = ctx.limits;
        let (mut live, setup) = match kept.filter(|k| k.serves(&self.inner, ctx)) {
            Some(kept) => (kept.resume(ctx), Ok(())),
            None => self.fresh(ctx),
        };
        let mut result = setup
            .and_then(|()| self.arm(&mut live.store, &limits, started))
            .map_err(|message| CallError::Trap {
                task: task.name.clone(),
                message,
            });

        let mut value = Value::Null;
        if result.is_ok() {
            let run = run(
                &self.inner.pre,
                &mut live.store,
                &mut live.instance,
                task,
                &params,
            );
            // Epochs interrupt at the deadline itself (the timeout is then
            // only for a guest blocked in a host call); without them, the
            // timeout is the deadline.
            let grace = if self.inner.options.epochs {
                DEADLINE_GRACE
            } else {
                Duration::ZERO
            };
            result = match tokio::time::timeout(limits.timeout + grace, run).await {
                Ok(Ok(v)) => {
                    value = v;
                    Ok(())
                }
                Ok(Err(RunError::Guest(payload))) => Err(CallError::Guest {
                    task: task.name.clone(),
                    payload,
                }),
                Ok(Err(RunError::Wasm(e))) => {
                    Err(classify(e, task, &limits, &live.store, &live.stderr))
                }
                Err(_elapsed) => Err(CallError::Deadline {
                    task: task.name.clone(),
                    after: limits.timeout,
                }),
            };
        }
        // A guest that filled its capture went past the cap, whether it then
        // trapped on the refused write or carried on: a limit hit either way.
        if matches!(result, Ok(()) | Err(CallError::Trap { .. }))
            && let Some(e) = output_overflow(task, &limits, &live.stdout, &live.stderr)
        {
            result = Err(e);
        }
        let state = live.store.data_mut();
        let mut budget_hits = state.budgets.hits();
        budget_hits.extend(output_hits(&limits, &live.stdout, &live.stderr));
        // Staged puts go out only for a call that succeeded.
        let puts = std::mem::take(&mut state.puts);
        state.deadline = None;
        let outcome = Outcome {
            puts: if result.is_ok() { puts } else { Vec::new() },
            result: result.map(|()| value),
            fuel_used: limits
                .fuel
                .saturating_sub(live.store.get_fuel().unwrap_or(limits.fuel)),
            stdout: live.stdout.contents().to_vec(),
            stderr: live.stderr.contents().to_vec(),
            elapsed: started.elapsed(),
            instance_jobs: live.jobs,
            memory_peak: live.store.data().limiter.memory_peak(),
            budget_hits,
        };
        if let Some((slot, max_jobs)) = reuse
            && outcome.result.is_ok()
            && live.jobs < max_jobs
            && live.instance.is_some()
        {
            slot.kept = Some(Kept {
                live,
                module: self.inner.clone(),
                limits,
                grants: ctx.grants.clone(),
            });
        }
        outcome
    }

    /// The task `name` and `kwargs` as its typed parameters.
    fn prepare(
        &self,
        name: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<(&Task, Vec<Val>), CallError> {
        let task = self.task(name)?;
        let params = convert::kwargs_to_params(&task.params, kwargs).map_err(|error| {
            CallError::BadKwargs {
                task: task.name.clone(),
                error,
            }
        })?;
        Ok((task, params))
    }

    /// A new store for one call (or the first of a kept instance's calls):
    /// WASI with the grants and fresh captures, the job's facts, the
    /// limiter. The error says why a grant could not be made.
    fn fresh(&self, ctx: &CallContext) -> (Live, Result<(), String>) {
        let limits = ctx.limits;
        let stdout = Capture::new(limits.output_bytes);
        let stderr = Capture::new(limits.output_bytes);
        // Nothing is inherited: no files, env, args or network beyond the
        // grants, which name each directory and variable.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&ctx.grants.env);
        let mut setup = Ok(());
        for dir in &ctx.grants.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            if let Err(e) = wasi.preopened_dir(&dir.host, &dir.guest, perms) {
                setup = Err(format!(
                    "cannot open granted directory {}: {e:#}",
                    dir.host.display()
                ));
            }
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(&limits),
            job: ctx.job.clone(),
            attempt: ctx.attempt.clone(),
            services: ctx.services.clone(),
            budgets: Budgets::new(limits.log_lines, limits.output_bytes, limits.max_puts),
            puts: Vec::new(),
            deadline: None,
            fuel_mark: 0,
        };
        let mut store = Store::new(self.inner.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        let live = Live {
            store,
            instance: None,
            stdout,
            stderr,
            jobs: 1,
        };
        (live, setup)
    }

    /// Gives `store` this call's fuel and, with epochs, its deadline.
    fn arm(
        &self,
        store: &mut Store<State>,
        limits: &Limits,
        started: Instant,
    ) -> Result<(), String> {
        let options = self.inner.options;
        let state = store.data_mut();
        state.deadline = Some(started + limits.timeout);
        state.fuel_mark = limits.fuel;
        if options.fuel {
            // Yielding every few milliseconds of fuel keeps a spinning guest
            // from starving the async runtime and lets the call's timeout
            // stop it, at no cost beyond the fuel counting itself.
            store
                .set_fuel(limits.fuel)
                .and_then(|()| store.fuel_async_yield_interval(Some(YIELD_EVERY_FUEL)))
                .map_err(|e| format!("{e:#}"))?;
        }
        if options.epochs {
            let deadline = started + limits.timeout;
            store.epoch_deadline_callback(move |_| {
                // Yield each tick so a spinning guest never starves the async
                // runtime; stop it once the deadline has passed.
                Ok(if Instant::now() >= deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Yield(1)
                })
            });
            store.set_epoch_deadline(1);
        }
        Ok(())
    }
}

/// A store ready for a call, with its captures: fresh, or a kept
/// instance's.
struct Live {
    store: Store<State>,
    /// `None` until the call instantiates it.
    instance: Option<Instance>,
    stdout: Capture,
    stderr: Capture,
    /// Jobs the instance has served, the coming call included.
    jobs: u32,
}

/// Where [`Module::call_reusing`] keeps an instance between calls: empty, or
/// one instance with the jobs it has served. One per worker slot, so only
/// that slot's (one tenant's) consecutive jobs ever share an instance.
#[derive(Default)]
pub struct KeptInstance {
    kept: Option<Kept>,
}

impl std::fmt::Debug for KeptInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptInstance")
            .field("module", &self.kept.as_ref().map(|k| &k.module.name))
            .field("jobs", &self.jobs())
            .finish()
    }
}

impl KeptInstance {
    /// Jobs the kept instance has served, if one is kept.
    pub fn jobs(&self) -> Option<u32> {
        self.kept.as_ref().map(|k| k.live.jobs)
    }

    /// Drops the kept instance, if any.
    pub fn clear(&mut self) {
        self.kept = None;
    }
}

/// A live instance and what it was built for.
struct Kept {
    /// Its store, with the instance always `Some`.
    live: Live,
    module: Arc<ModuleInner>,
    limits: Limits,
    grants: Arc<Grants>,
}

impl Kept {
    /// Whether a call of `module` under `ctx` may run in this instance: the
    /// same loaded version, with the same caps (only the deadline may
    /// differ, e.g. cut to a job's TTR) and the same grants.
    fn serves(&self, module: &Arc<ModuleInner>, ctx: &CallContext) -> bool {
        let same_caps = Limits {
            timeout: ctx.limits.timeout,
            ..self.limits
        } == ctx.limits;
        Arc::ptr_eq(&self.module, module)
            && same_caps
            && (Arc::ptr_eq(&self.grants, &ctx.grants) || self.grants == ctx.grants)
    }

    /// The instance, readied for its next job: empty captures with that
    /// job's cap, its facts and services (fuel and deadline are armed by
    /// the call).
    fn resume(self, ctx: &CallContext) -> Live {
        let mut live = self.live;
        live.stdout.reset(ctx.limits.output_bytes);
        live.stderr.reset(ctx.limits.output_bytes);
        live.store.data_mut().start_job(ctx);
        live.jobs += 1;
        live
    }
}

enum RunError {
    Guest(Value),
    Wasm(wasmtime::Error),
}

impl From<wasmtime::Error> for RunError {
    fn from(e: wasmtime::Error) -> Self {
        RunError::Wasm(e)
    }
}

/// Calls `task` in `instance`, instantiating it first when there is none.
async fn run(
    pre: &InstancePre<State>,
    store: &mut Store<State>,
    instance: &mut Option<Instance>,
    task: &Task,
    params: &[Val],
) -> Result<Value, RunError> {
    let instance = match *instance {
        Some(live) => live,
        None => *instance.insert(pre.instantiate_async(&mut *store).await?),
    };
    let func = instance.get_func(&mut *store, task.index).ok_or_else(|| {
        wasmtime::format_err!("export `{}` vanished after instantiation", task.name)
    })?;
    let mut results = vec![Val::Bool(false); usize::from(task.result.is_some())];
    func.call_async(&mut *store, params, &mut results).await?;
    match results.pop() {
        None => Ok(Value::Null),
        // A top-level `result` is the task's own verdict: `err` fails the job.
        Some(Val::Result(Ok(ok))) => Ok(ok.as_deref().map_or(Value::Null, convert::to_json)),
        Some(Val::Result(Err(err))) => Err(RunError::Guest(
            err.as_deref().map_or(Value::Null, convert::to_json),
        )),
        Some(v) => Ok(convert::to_json(&v)),
    }
}

/// Tells fuel, memory, deadline, output-cap and plain traps apart.
fn classify(
    error: wasmtime::Error,
    task: &Task,
    limits: &Limits,
    store: &Store<State>,
    stderr: &Capture,
) -> CallError {
    let name = task.name.clone();
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            return CallError::Fuel {
                task: name,
                limit: limits.fuel,
            };
        }
        Some(Trap::Interrupt) => {
            return CallError::Deadline {
                task: name,
                after: limits.timeout,
            };
        }
        _ => {}
    }
    if store.data().limiter.memory_refused {
        return CallError::Memory {
            task: name,
            limit: limits.memory_bytes,
        };
    }
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{:#}", error),
    };
    // A Rust panic prints its message to stderr before it traps: that is
    // what the author wants to see.
    if let Some(said) = guest_complaint(&stderr.contents()) {
        message = format!("{message}: {said}");
    }
    if let Some(bt) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let trace = short_backtrace(bt);
        if !trace.is_empty() {
            message = format!("{message} (at {trace})");
        }
    }
    CallError::Trap {
        task: name,
        message,
    }
}

/// The output budgets a call reached: a capture that is full.
fn output_hits(limits: &Limits, stdout: &Capture, stderr: &Capture) -> Vec<BudgetHit> {
    [(Budget::Stdout, stdout), (Budget::Stderr, stderr)]
        .into_iter()
        .filter(|(_, pipe)| pipe.is_full())
        .map(|(budget, _)| BudgetHit {
            budget,
            limit: limits.output_bytes as u64,
            refused: 0,
        })
        .collect()
}

fn output_overflow(
    task: &Task,
    limits: &Limits,
    stdout: &Capture,
    stderr: &Capture,
) -> Option<CallError> {
    [("stdout", stdout), ("stderr", stderr)]
        .into_iter()
        .find(|(_, pipe)| pipe.is_full())
        .map(|(stream, _)| CallError::Output {
            task: task.name.clone(),
            stream,
            limit: limits.output_bytes,
        })
}

/// Lists a component's callable exports; refuses any whose signature cannot
/// cross JSON.
fn discover_tasks(
    engine: &Engine,
    component: &Component,
    module: &str,
) -> Result<Vec<Task>, LoadError> {
    let mut tasks = Vec::new();
    let ty = component.component_type();
    for (export, item) in ty.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let index = component
                    .get_export_index(None, export)
                    .expect("listed export has an index");
                tasks.push(make_task(module, export.to_string(), None, &func, index)?);
            }
            ComponentItem::ComponentInstance(instance) => {
                let iface_index = component
                    .get_export_index(None, export)
                    .expect("listed export has an index");
                let short = export.rsplit('/').next().unwrap_or(export);
                let short = short.split('@').next().unwrap_or(short);
                for (fname, fitem) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = fitem.ty {
                        let index = component
                            .get_export_index(Some(&iface_index), fname)
                            .expect("listed export has an index");
                        tasks.push(make_task(
                            module,
                            format!("{short}.{fname}"),
                            Some(export.to_string()),
                            &func,
                            index,
                        )?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(tasks)
}

fn make_task(
    module: &str,
    name: String,
    interface: Option<String>,
    func: &wasmtime::component::types::ComponentFunc,
    index: ComponentExportIndex,
) -> Result<Task, LoadError> {
    let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_string(), t)).collect();
    let result = func.results().next();
    let refuse = |reason: String| LoadError::Unsupported {
        module: module.to_string(),
        export: name.clone(),
        reason,
    };
    if func.async_() {
        return Err(refuse("async functions are not supported".into()));
    }
    for (pname, ty) in &params {
        if let Some(what) = types::unsupported(ty) {
            return Err(refuse(format!(
                "parameter `{pname}` uses {what}, which JSON cannot carry"
            )));
        }
    }
    if let Some(what) = result.as_ref().and_then(types::unsupported) {
        return Err(refuse(format!(
            "its result uses {what}, which JSON cannot carry"
        )));
    }
    Ok(Task {
        name,
        interface,
        params,
        result,
        index,
    })
}

/// What a store holds for one call.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    job: JobInfo,
    attempt: Option<Arc<AttemptCell>>,
    services: SharedServices,
    /// This call's log and put budgets.
    budgets: Budgets,
    /// The follow-up jobs staged so far.
    puts: Vec<PutRequest>,
    /// When the call must stop; set when it is armed. The imports check it.
    deadline: Option<Instant>,
    /// Fuel left when the host last yielded (or the call was armed).
    fuel_mark: u64,
}

impl State {
    /// Readies a kept instance's state for its next job: that job's facts,
    /// services and budgets, nothing staged, and no memory refusal on record.
    fn start_job(&mut self, ctx: &CallContext) {
        let limits = &ctx.limits;
        self.job = ctx.job.clone();
        self.attempt = ctx.attempt.clone();
        self.services = ctx.services.clone();
        self.budgets = Budgets::new(limits.log_lines, limits.output_bytes, limits.max_puts);
        self.puts.clear();
        self.limiter.memory_refused = false;
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
