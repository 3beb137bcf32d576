//! Follow-up jobs onto tubes the task's tenant is granted.
//!
//! A put is staged: checked at once, and put on the queue only when the
//! current task succeeds (before its job is deleted). A task that fails
//! leaves no follow-up jobs, and a retry does not duplicate them; a worker
//! crash between the puts and the delete can repeat them. A job may stage
//! 100 follow-up jobs unless its tenant's `max_puts` says otherwise.
//!
//! ```no_run
//! use beanbox_sdk::queue::{self, PutOptions};
//!
//! // Queues {"task": "task_one", "kwargs": {"arg1": "a", "arg2": "b", "arg3": "c"}}.
//! let n = queue::put(
//!     "thumbs",
//!     "task_one",
//!     r#"{"arg1": "a", "arg2": "b", "arg3": "c"}"#,
//!     PutOptions::default(),
//! )?;
//! beanbox_sdk::info!("staged follow-up {n}");
//! # Ok::<(), queue::PutError>(())
//! ```

use std::fmt;

use crate::wit::beanbox::task::queue as wit;

/// How a follow-up job is queued; `None` takes the worker's default.
///
/// ```
/// use beanbox_sdk::queue::PutOptions;
///
/// let urgent_later = PutOptions::default().priority(10).delay_secs(30);
/// let same = PutOptions { priority: Some(10), delay_secs: Some(30), ..Default::default() };
/// assert_eq!(urgent_later, same);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PutOptions {
    /// beanstalkd priority, lower runs first (default 1024).
    pub priority: Option<u32>,
    /// Seconds to wait before the job becomes ready (default 0).
    pub delay_secs: Option<u32>,
    /// Seconds a worker may hold the job (default 60).
    pub ttr_secs: Option<u32>,
}

impl PutOptions {
    /// Sets the beanstalkd priority (lower runs first).
    #[must_use]
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the seconds to wait before the job becomes ready.
    #[must_use]
    pub fn delay_secs(mut self, secs: u32) -> Self {
        self.delay_secs = Some(secs);
        self
    }

    /// Sets the seconds a worker may hold the job.
    #[must_use]
    pub fn ttr_secs(mut self, secs: u32) -> Self {
        self.ttr_secs = Some(secs);
        self
    }
}

/// Why a put failed. Each case carries the host's explanation.
///
/// ```no_run
/// use beanbox_sdk::queue::{self, PutError, PutOptions};
///
/// match queue::put("other-tenant", "task_one", "{}", PutOptions::default()) {
///     Ok(n) => beanbox_sdk::info!("staged follow-up {n}"),
///     Err(PutError::Denied(why)) => beanbox_sdk::warn!("not allowed: {why}"),
///     Err(e) => beanbox_sdk::error!("put failed: {e}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PutError {
    /// The task's tenant may not put to this tube, or the job's put budget
    /// is spent.
    Denied(String),
    /// The tube name or kwargs were not acceptable (not a JSON object, bad
    /// tube name, a job bigger than beanstalkd's 65,535 bytes).
    Invalid(String),
    /// No queue is reachable (e.g. under `runner call`) or it refused.
    Unavailable(String),
    /// Anything else.
    Other(String),
}

impl PutError {
    /// The host's explanation, without the kind.
    pub fn message(&self) -> &str {
        match self {
            PutError::Denied(m)
            | PutError::Invalid(m)
            | PutError::Unavailable(m)
            | PutError::Other(m) => m,
        }
    }
}

impl fmt::Display for PutError {
    /// `denied: <message>`, `invalid: …`, `unavailable: …` or `other: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            PutError::Denied(_) => "denied",
            PutError::Invalid(_) => "invalid",
            PutError::Unavailable(_) => "unavailable",
            PutError::Other(_) => "other",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for PutError {}

impl From<wit::PutError> for PutError {
    fn from(e: wit::PutError) -> Self {
        match e {
            wit::PutError::Denied(m) => PutError::Denied(m),
            wit::PutError::Invalid(m) => PutError::Invalid(m),
            wit::PutError::Unavailable(m) => PutError::Unavailable(m),
            wit::PutError::Other(m) => PutError::Other(m),
        }
    }
}

/// Stages a job `{"task": task, "kwargs": kwargs}` for `tube`, where
/// `kwargs_json` is a JSON object. Returns the staged put's number within
/// this job (1, 2, ...), not a job id: the job is put only when the task
/// succeeds.
///
/// `task` names the export the job will call, as a producer would write it
/// (e.g. `task_one` for the WIT export `task-one`).
///
/// ```no_run
/// use beanbox_sdk::queue::{self, PutOptions};
///
/// let n = queue::put("emails", "send", r#"{"to": "ann@example.com"}"#, PutOptions::default().ttr_secs(120));
/// match n {
///     Ok(n) => beanbox_sdk::info!("staged email job {n}"),
///     Err(e) => beanbox_sdk::error!("could not queue email: {e}"),
/// }
/// ```
pub fn put(
    tube: &str,
    task: &str,
    kwargs_json: &str,
    options: PutOptions,
) -> Result<u64, PutError> {
    let options = wit::PutOptions {
        priority: options.priority,
        delay_secs: options.delay_secs,
        ttr_secs: options.ttr_secs,
    };
    wit::put(tube, task, kwargs_json, options).map_err(PutError::from)
}
