//! The sandbox: compiles task components, lists their exports, and calls one
//! export per job in a fresh store under fuel, memory, wall-clock and output
//! limits, with WASI granting nothing; or, when asked, in an instance kept
//! from the caller's previous job ([`Module::call_reusing`]). It knows
//! nothing of beanstalkd.
//!
//! By idea: `engine` (the wasmtime engine and [`Sandbox`], which loads
//! modules), `discover` (a component's [`Task`]s), `call` (one call under
//! its limits), `reuse` (kept instances); [`Module`] itself is here.

mod budget;
mod cache;
mod call;
mod capture;
mod convert;
mod diagnose;
mod discover;
pub mod docs;
mod engine;
mod error;
pub mod host;
mod limits;
mod read;
mod reuse;
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
pub use call::{CallContext, DirGrant, Grants, Outcome};
pub use convert::{ArgError, ArgErrorKind, same_name};
pub use discover::Task;
pub use engine::{Allocator, Sandbox, SandboxOptions};
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
pub use reuse::{KeptInstance, Spent};

use budget::Budgets;
use call::{Live, State};
use discover::discover_tasks;
use engine::{DEADLINE_GRACE, YIELD_EVERY_FUEL, sha256};
use reuse::Kept;

use capture::Capture;
use diagnose::{guest_complaint, one_line, short_backtrace};
use limits::Limiter;

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
}
