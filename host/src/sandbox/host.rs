//! The `beanbox:task` imports as the host implements them: log lines, the
//! current job's facts and follow-up puts. What a put does is the embedder's
//! business ([`Services`]); the sandbox only forwards it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::State;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "beanbox:task/imports",
    imports: {
        "beanbox:task/queue.put": async,
        "beanbox:task/job.info": async,
        default: tracing,
    },
});

pub use self::beanbox::task::job::JobInfo;
pub use self::beanbox::task::log::Level;
pub use self::beanbox::task::queue::{PutError, PutOptions};

/// What a follow-up put asks for.
#[derive(Debug, Clone)]
pub struct PutRequest {
    /// The tube to put on.
    pub tube: String,
    /// The task to run there.
    pub task: String,
    /// The kwargs, a JSON object.
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// Priority, delay and TTR, each optional.
    pub options: PutOptions,
}

/// A boxed future, as a follow-up put returns.
pub type PutFuture = Pin<Box<dyn Future<Output = Result<u64, PutError>> + Send>>;

/// What the embedder does with a task's log lines and follow-up puts.
pub trait Services: Send + Sync {
    /// Records one log line of the task serving `job`.
    fn log(&self, job: &JobInfo, level: Level, message: &str);
    /// Queues a follow-up job for the task serving `job`.
    fn put(&self, job: &JobInfo, request: PutRequest) -> PutFuture;
}

/// Services for running outside a queue (`runner call`): log lines go to the
/// process log, puts are refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct Standalone;

impl Services for Standalone {
    fn log(&self, job: &JobInfo, level: Level, message: &str) {
        emit_log(job, level, message);
    }

    fn put(&self, _job: &JobInfo, request: PutRequest) -> PutFuture {
        Box::pin(async move {
            Err(PutError::Unavailable(format!(
                "no queue to put to (tube `{}`): tasks run by `runner call` cannot put jobs",
                request.tube
            )))
        })
    }
}

/// Writes a task's log line to the process log, tagged with the job.
pub fn emit_log(job: &JobInfo, level: Level, message: &str) {
    // No attempt number: the worker may not know it yet when the task logs
    // (the job's finished line carries it).
    let (id, tube, task) = (job.id, job.tube.as_str(), job.task.as_str());
    match level {
        Level::Trace => tracing::trace!(target: "task", job = id, tube, task, "{message}"),
        Level::Debug => tracing::debug!(target: "task", job = id, tube, task, "{message}"),
        Level::Info => tracing::info!(target: "task", job = id, tube, task, "{message}"),
        Level::Warn => tracing::warn!(target: "task", job = id, tube, task, "{message}"),
        Level::Error => tracing::error!(target: "task", job = id, tube, task, "{message}"),
    }
}

/// The longest log line kept; the rest is cut.
const MAX_LOG_LINE: usize = 4096;

impl self::beanbox::task::log::Host for State {
    fn log(&mut self, level: Level, mut message: String) {
        // Log lines draw on the same budget as stdout, so a chatty task
        // cannot flood the worker's log.
        if self.log_budget == 0 {
            return;
        }
        if message.len() > MAX_LOG_LINE.min(self.log_budget) {
            let cut = MAX_LOG_LINE.min(self.log_budget);
            let cut = (0..=cut)
                .rev()
                .find(|&i| message.is_char_boundary(i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        self.log_budget = self.log_budget.saturating_sub(message.len());
        self.services.log(&self.job, level, &message);
    }
}

impl self::beanbox::task::job::Host for State {
    async fn info(&mut self) -> JobInfo {
        if let Some(cell) = self.attempt.clone() {
            self.job.attempt = cell.get().await;
            self.attempt = None;
        }
        self.job.clone()
    }
}

/// The attempt number of a job whose statistics the embedder is still
/// fetching: a task that asks for it waits until [`AttemptCell::set`], and
/// [`AttemptCell::wanted`] tells the embedder someone is waiting.
#[derive(Debug, Default)]
pub struct AttemptCell {
    value: tokio::sync::watch::Sender<Option<u32>>,
    wanted: tokio::sync::Notify,
}

impl AttemptCell {
    /// Provides the attempt number.
    pub fn set(&self, attempt: u32) {
        self.value.send_replace(Some(attempt));
    }

    /// Completes once a task has asked for the attempt number.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    async fn get(&self) -> u32 {
        if let Some(attempt) = *self.value.borrow() {
            return attempt;
        }
        // A stored permit if nobody waits yet: `wanted` sees it later.
        self.wanted.notify_one();
        let mut rx = self.value.subscribe();
        let attempt = rx.wait_for(Option::is_some).await.map(|v| v.unwrap_or(0));
        attempt.unwrap_or(0)
    }
}

impl self::beanbox::task::queue::Host for State {
    async fn put(
        &mut self,
        tube: String,
        task: String,
        kwargs_json: String,
        options: PutOptions,
    ) -> Result<u64, PutError> {
        let kwargs = match serde_json::from_str::<serde_json::Value>(&kwargs_json) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(other) => {
                return Err(PutError::Invalid(format!(
                    "kwargs must be a JSON object, got {other}"
                )));
            }
            Err(e) => return Err(PutError::Invalid(format!("kwargs are not valid JSON: {e}"))),
        };
        let request = PutRequest {
            tube,
            task,
            kwargs,
            options,
        };
        self.services.put(&self.job, request).await
    }
}

/// Adds the `beanbox:task` imports to a linker.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<State>,
) -> wasmtime::Result<()> {
    Imports::add_to_linker::<State, wasmtime::component::HasSelf<State>>(linker, |s| s)
}

impl std::fmt::Debug for dyn Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Services")
    }
}

/// Shared services handle.
pub type SharedServices = Arc<dyn Services>;
