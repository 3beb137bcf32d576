//! Why a module would not load and why a call failed, as types the worker
//! matches on; each renders as one line naming the task and, for bad
//! kwargs, the argument.

use std::time::Duration;

use super::convert::ArgError;

/// A module that cannot serve jobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read module {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The file is larger than the module size limit; it was not read.
    #[error(
        "module {path} is {size} bytes, over the limit of {limit} bytes ({} MiB): \
         not loaded (raise --max-module-mb, or the tenant's max_module_mb)",
        limit >> 20
    )]
    TooBig {
        /// The file.
        path: String,
        /// Its size (or, for a file still growing, the bytes read so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a valid component (or wasmtime refused to compile it).
    #[error("module {module} is not a valid component: {message}")]
    Compile {
        /// The module.
        module: String,
        /// wasmtime's reason.
        message: String,
    },
    /// It imports something the sandbox does not grant.
    #[error("module {module} needs an import the sandbox does not grant: {message}")]
    Link {
        /// The module.
        module: String,
        /// wasmtime's reason, naming the import.
        message: String,
    },
    /// An export's signature cannot be called with JSON.
    #[error("module {module}: export `{export}` cannot be a task: {reason}")]
    Unsupported {
        /// The module.
        module: String,
        /// The export.
        export: String,
        /// Which part of the signature.
        reason: String,
    },
}

/// How a failed call should be treated: what a worker does with its job and
/// which exit code `runner call` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The job cannot run as written: unknown task, kwargs that do not fit.
    /// Retrying cannot help.
    BadInput,
    /// The task ran and failed: returned `err` or trapped. May succeed on a
    /// retry.
    TaskFailed,
    /// The task hit a resource limit. Fuel, memory and output limits are
    /// deterministic; the wall-clock deadline may not be.
    LimitHit,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No export of that name.
    #[error("unknown task `{task}` (available: {})", available.join(", "))]
    UnknownTask {
        /// The name asked for.
        task: String,
        /// The tasks the module has.
        available: Vec<String>,
    },
    /// The kwargs do not fit the export's parameters.
    #[error("task `{task}`: {error}")]
    BadKwargs {
        /// The task.
        task: String,
        /// Which argument and how.
        error: ArgError,
    },
    /// The export returned `err(payload)`.
    #[error("task `{task}` returned an error: {payload}")]
    Guest {
        /// The task.
        task: String,
        /// The error payload as JSON.
        payload: serde_json::Value,
    },
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    #[error("task `{task}` trapped: {message}")]
    Trap {
        /// The task.
        task: String,
        /// The trap, the guest's last stderr line, and a short backtrace.
        message: String,
    },
    /// The fuel budget ran out.
    #[error("task `{task}` ran out of fuel (limit {limit})")]
    Fuel {
        /// The task.
        task: String,
        /// The budget.
        limit: u64,
    },
    /// The guest asked for more linear memory than allowed.
    #[error("task `{task}` exceeded its memory limit of {} MiB", limit >> 20)]
    Memory {
        /// The task.
        task: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The wall-clock deadline passed.
    #[error("task `{task}` exceeded its time limit of {after:?}")]
    Deadline {
        /// The task.
        task: String,
        /// The limit.
        after: Duration,
    },
    /// The guest filled its stdout or stderr capture and then failed.
    #[error("task `{task}` wrote more than {limit} bytes to {stream}")]
    Output {
        /// The task.
        task: String,
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The cap in bytes.
        limit: usize,
    },
}

impl CallError {
    /// Which class of failure this is.
    pub fn class(&self) -> FailureClass {
        match self {
            CallError::UnknownTask { .. } | CallError::BadKwargs { .. } => FailureClass::BadInput,
            CallError::Guest { .. } | CallError::Trap { .. } => FailureClass::TaskFailed,
            CallError::Fuel { .. }
            | CallError::Memory { .. }
            | CallError::Deadline { .. }
            | CallError::Output { .. } => FailureClass::LimitHit,
        }
    }

    /// The task's `err` value when it returned one (`null` for a
    /// `result<T>` without an error type): what a reply carries as
    /// `error.value` and `runner call` prints on stdout.
    pub fn guest_value(&self) -> Option<&serde_json::Value> {
        match self {
            CallError::Guest { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// Whether running the same job again may succeed: guest errors, traps
    /// and deadlines (a slow dependency, a busy machine) are retried; bad
    /// input and deterministic limits are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CallError::Guest { .. } | CallError::Trap { .. } | CallError::Deadline { .. }
        )
    }
}
