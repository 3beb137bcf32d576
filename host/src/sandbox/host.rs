//! The `beanbox:task` imports as the host implements them: log lines, the
//! current job's facts and follow-up puts.
//!
//! Every import bounds its own work by what the guest hands it: it checks
//! the call's wall-clock deadline first, charges fuel for the bytes it is
//! given ([`CALL_FUEL`] plus [`FUEL_PER_BYTE`] each), and yields to the async
//! runtime as a running guest does. `log` and `put` are written by hand
//! rather than by `bindgen!` so that their strings are read in place
//! ([`WasmStr`]): UTF-8 is validated over the whole string (bounded by the
//! memory cap, and charged), but only what is kept is copied — at most
//! [`MAX_LOG_LINE`] bytes of a log message, nothing of a put over
//! [`MAX_JOB_SIZE`].
//!
//! Puts are staged, not sent: a put is checked at once and kept in the
//! call's list; the embedder sends them when the task has succeeded
//! ([`Outcome::puts`](super::Outcome)). Whether a tenant may put to a tube is
//! the embedder's policy ([`Services::check_put`]).

use std::sync::Arc;
use std::time::Instant;

use beanbox_queue::{Envelope, KwargsError};
use wasmtime::component::{HasSelf, Linker, WasmStr};
use wasmtime::{AsContext, StoreContextMut, Trap};

use super::State;
use super::budget::{self, LogAdmit, TRUNCATED};

pub use super::budget::MAX_LOG_LINE;

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "beanbox:task/imports",
    imports: {
        "beanbox:task/job.info": async | trappable,
        default: tracing,
    },
    additional_derives: [PartialEq, Eq],
});

pub use self::beanbox::task::job::JobInfo;
pub use self::beanbox::task::log::Level;
pub use self::beanbox::task::queue::{PutError, PutOptions};

/// The largest job body beanstalkd takes by default (its `-z`): a staged
/// put whose body would be bigger is refused at once.
pub const MAX_JOB_SIZE: usize = 65_535;

/// Fuel an import call costs whatever its arguments: a call into the host
/// and back costs about 0.2-1 us, what wasm spends on a few thousand fuel.
pub const CALL_FUEL: u64 = 1_000;

/// Fuel per byte of string an import is given. The host validates UTF-8 at
/// ~3 GB/s (measured: 18 ms for a 60 MB message) while wasm burns 5e9-5e10
/// fuel a second, so at 4 fuel a byte a guest pays at least the CPU it makes
/// the host spend: the default fuel buys ~2.5 GB, under a second.
pub const FUEL_PER_BYTE: u64 = 4;

/// A follow-up job a task staged.
#[derive(Debug, Clone, PartialEq)]
pub struct PutRequest {
    /// The tube to put on; a valid tube name.
    pub tube: String,
    /// The task to run there.
    pub task: String,
    /// The kwargs, a JSON object.
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// Priority, delay and TTR, each optional.
    pub options: PutOptions,
}

impl PutRequest {
    /// The job body to put: `{"task": ..., "kwargs": {...}}`.
    pub fn body(&self) -> Vec<u8> {
        let envelope = Envelope {
            task: self.task.clone(),
            kwargs: self.kwargs.clone(),
            reply_to: None,
        };
        envelope.to_json()
    }
}

/// What the embedder does with a task's log lines, and whom its follow-up
/// puts may go to.
pub trait Services: Send + Sync {
    /// Records one log line of the task serving `job` (already cut to
    /// [`MAX_LOG_LINE`] and within the call's log budget).
    fn log(&self, job: &JobInfo, level: Level, message: &str);
    /// Whether the task serving `job` may stage `request` (already checked
    /// for a valid tube, a JSON object and its size); the error goes to the
    /// task as it is.
    ///
    /// # Errors
    ///
    /// Why the put is refused, e.g. [`PutError::Denied`] for a tube the
    /// tenant may not put to.
    fn check_put(&self, job: &JobInfo, request: &PutRequest) -> Result<(), PutError>;
}

/// Services for running outside a queue (`runner call`): log lines go to the
/// process log, puts are refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct Standalone;

impl Services for Standalone {
    fn log(&self, job: &JobInfo, level: Level, message: &str) {
        emit_log(job, level, message);
    }

    fn check_put(&self, _job: &JobInfo, request: &PutRequest) -> Result<(), PutError> {
        Err(PutError::Unavailable(format!(
            "no queue to put to (tube `{}`): tasks run by `runner call` cannot put jobs",
            request.tube
        )))
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

/// Traps when the call's deadline has passed, as an epoch interrupt would
/// (so it is classified as a deadline).
fn check_deadline(state: &State) -> wasmtime::Result<()> {
    match state.deadline {
        Some(deadline) if Instant::now() >= deadline => Err(Trap::Interrupt.into()),
        _ => Ok(()),
    }
}

/// Charges [`CALL_FUEL`] and `bytes` of [`FUEL_PER_BYTE`]; traps out of fuel
/// when that is more than is left. Returns whether the guest has burned a
/// yield interval's worth of fuel since the host last yielded: charging
/// refills wasmtime's own yield counter, so the imports yield in its place.
fn charge(store: &mut StoreContextMut<'_, State>, bytes: usize) -> wasmtime::Result<bool> {
    // Without fuel counting (`SandboxOptions::fuel` off) there is nothing
    // to charge; the deadline still holds.
    let Ok(left) = store.get_fuel() else {
        return Ok(false);
    };
    let cost = CALL_FUEL.saturating_add((bytes as u64).saturating_mul(FUEL_PER_BYTE));
    if cost > left {
        store.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    let now = left - cost;
    store.set_fuel(now)?;
    let state = store.data_mut();
    if state.fuel_mark.saturating_sub(now) >= super::YIELD_EVERY_FUEL {
        state.fuel_mark = now;
        return Ok(true);
    }
    Ok(false)
}

/// Gives the async runtime a turn when `due`, as a spinning guest does.
async fn maybe_yield(due: bool) {
    if due {
        tokio::task::yield_now().await;
    }
}

/// `log.log`: cuts the message to [`MAX_LOG_LINE`] and the call's log
/// budget before copying it, then hands it to the services.
fn log(
    mut store: StoreContextMut<'_, State>,
    level: Level,
    message: &WasmStr,
) -> wasmtime::Result<bool> {
    check_deadline(store.data())?;
    let (kept, len) = {
        let text = message.to_str(store.as_context())?;
        (budget::prefix(&text, MAX_LOG_LINE).to_owned(), text.len())
    };
    let due = charge(&mut store, len)?;
    let state = store.data_mut();
    if let LogAdmit::Keep { keep, cut } = state.budgets.admit_log(len) {
        let mut line = budget::prefix(&kept, keep).to_owned();
        if cut {
            line.push_str(TRUNCATED);
        }
        state.services.log(&state.job, level, &line);
    }
    Ok(due)
}

/// `queue.put`: checks the put against the put budget, beanstalkd's rules
/// and the services' policy, and stages it. Returns the put's number within
/// the call.
fn put(
    mut store: StoreContextMut<'_, State>,
    (tube, task, kwargs_json, options): (WasmStr, WasmStr, WasmStr, PutOptions),
) -> wasmtime::Result<(Result<u64, PutError>, bool)> {
    check_deadline(store.data())?;
    // Read in place; nothing is copied until the sizes are known to fit.
    let (staged, bytes) = {
        let tube = tube.to_str(store.as_context())?;
        let task = task.to_str(store.as_context())?;
        let kwargs = kwargs_json.to_str(store.as_context())?;
        let bytes = tube.len() + task.len() + kwargs.len();
        (check_put_args(&tube, &task, &kwargs, options), bytes)
    };
    let due = charge(&mut store, bytes)?;
    let state = store.data_mut();
    let result = staged.and_then(|request| {
        state.services.check_put(&state.job, &request)?;
        let number = state.budgets.admit_put().ok_or_else(|| {
            PutError::Denied(format!(
                "put budget of {} follow-up jobs per job exceeded",
                state.budgets.max_puts()
            ))
        })?;
        state.puts.push(request);
        Ok(number)
    });
    Ok((result, due))
}

/// A put as the guest gave it, checked: a valid tube, kwargs a JSON object,
/// a body within [`MAX_JOB_SIZE`]. Sizes are checked before anything is
/// parsed or copied.
pub(crate) fn check_put_args(
    tube: &str,
    task: &str,
    kwargs_json: &str,
    options: PutOptions,
) -> Result<PutRequest, PutError> {
    beanbox_queue::beanstalk::proto::validate_tube(tube)
        .map_err(|e| PutError::Invalid(e.to_string()))?;
    let too_big = |size: usize| {
        PutError::Invalid(format!(
            "the job would be {size} bytes, more than beanstalkd's maximum of {MAX_JOB_SIZE}"
        ))
    };
    let raw = task.len() + kwargs_json.len();
    if raw > MAX_JOB_SIZE {
        return Err(too_big(raw));
    }
    let kwargs = match beanbox_queue::parse_kwargs(kwargs_json) {
        Ok(map) => map,
        Err(KwargsError::NotObject(other)) => {
            let shown = budget::prefix(kwargs_json, 100);
            let what = match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Err(PutError::Invalid(format!(
                "kwargs must be a JSON object, got {what}: {shown}"
            )));
        }
        Err(KwargsError::NotJson(e)) => {
            return Err(PutError::Invalid(format!("kwargs are not valid JSON: {e}")));
        }
    };
    let request = PutRequest {
        tube: tube.to_owned(),
        task: task.to_owned(),
        kwargs,
        options,
    };
    let size = request.body().len();
    if size > MAX_JOB_SIZE {
        return Err(too_big(size));
    }
    Ok(request)
}

impl self::beanbox::task::job::Host for State {
    async fn info(&mut self) -> wasmtime::Result<JobInfo> {
        check_deadline(self)?;
        if let Some(cell) = self.attempt.clone() {
            self.job.attempt = cell.get().await;
            self.attempt = None;
        }
        Ok(self.job.clone())
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

/// Adds the `beanbox:task` imports to a linker: `job` as `bindgen!` makes
/// it, `log` and `queue` by hand (see the module docs).
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    self::beanbox::task::job::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    linker.instance("beanbox:task/log@0.1.0")?.func_wrap_async(
        "log",
        |store: StoreContextMut<'_, State>, (level, message): (Level, WasmStr)| {
            let due = log(store, level, &message);
            Box::new(async move {
                maybe_yield(due?).await;
                Ok(())
            })
        },
    )?;
    linker
        .instance("beanbox:task/queue@0.1.0")?
        .func_wrap_async(
            "put",
            |store: StoreContextMut<'_, State>, args: (WasmStr, WasmStr, WasmStr, PutOptions)| {
                let done = put(store, args);
                Box::new(async move {
                    let (result, due) = done?;
                    maybe_yield(due).await;
                    Ok((result,))
                })
            },
        )?;
    Ok(())
}

impl std::fmt::Debug for dyn Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Services")
    }
}

/// Shared services handle.
pub type SharedServices = Arc<dyn Services>;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(tube: &str, kwargs: &str) -> Result<PutRequest, PutError> {
        let options = PutOptions {
            priority: None,
            delay_secs: None,
            ttr_secs: None,
        };
        check_put_args(tube, "task-one", kwargs, options)
    }

    #[test]
    fn a_put_with_a_bad_tube_or_kwargs_is_invalid() {
        assert!(
            matches!(check("bad tube", "{}"), Err(PutError::Invalid(m)) if m.contains("bad tube"))
        );
        assert!(matches!(check("t", "[1]"), Err(PutError::Invalid(m)) if m.contains("an array")));
        assert!(
            matches!(check("t", "{"), Err(PutError::Invalid(m)) if m.contains("not valid JSON"))
        );
        let request = check("t", r#"{"a": 1}"#).unwrap();
        assert_eq!(request.body(), br#"{"task":"task-one","kwargs":{"a":1}}"#);
    }

    #[test]
    fn a_put_bigger_than_a_job_may_be_is_refused_before_parsing() {
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_JOB_SIZE));
        assert!(
            matches!(check("t", &big), Err(PutError::Invalid(m)) if m.contains("maximum of 65535"))
        );
        // Just fits: the body is the kwargs plus the envelope around them.
        let overhead = check("t", r#"{"a":""}"#).unwrap().body().len();
        let fits = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_JOB_SIZE - overhead));
        assert_eq!(check("t", &fits).unwrap().body().len(), MAX_JOB_SIZE);
        let over = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_JOB_SIZE - overhead + 1));
        assert!(matches!(check("t", &over), Err(PutError::Invalid(_))));
    }
}
