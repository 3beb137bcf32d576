//! What the worker tells about each job: [`crate::metrics`] (one call where
//! a job settles, one where it is handed back, one per failure record) and
//! the one log line every finished job gets.

use std::time::Instant;

use serde_json::Value;

use super::reply::Delivery;
use super::settle::{Action, Failure};
use super::slot::SlotContext;
use crate::failures;
use crate::metrics::{JobOutcome, JobRecord, RecordOutcome};
use crate::sandbox::Outcome;

/// A settled job's facts besides its result and call outcome.
pub(super) struct Settled<'a> {
    pub(super) id: u64,
    pub(super) tube: &'a str,
    /// Its task label (an export, or `unknown`).
    pub(super) label: &'a str,
    pub(super) action: Action,
    pub(super) attempt: u32,
    /// When it was reserved.
    pub(super) started: Instant,
}

/// Records a settled job (deleted, released or buried).
pub(super) fn settled(
    ctx: &SlotContext,
    job: &Settled<'_>,
    result: &Result<Value, Failure>,
    outcome: Option<&Outcome>,
) {
    let failure = result
        .as_ref()
        .err()
        .map(|f| (f.kind().as_str(), f.to_string()));
    ctx.metrics.job_settled(&JobRecord {
        job: job.id,
        tenant: &ctx.tenant.name,
        tube: job.tube,
        task: job.label,
        outcome: match job.action {
            Action::Delete => JobOutcome::Deleted,
            Action::Release { .. } => JobOutcome::Released,
            Action::Bury => JobOutcome::Buried,
        },
        attempt: job.attempt,
        seconds: job.started.elapsed().as_secs_f64(),
        call_seconds: outcome.map_or(0.0, |o| o.elapsed.as_secs_f64()),
        fuel: outcome.map_or(0, |o| o.fuel_used),
        memory_peak: outcome.map_or(0, |o| o.memory_peak),
        instance_jobs: outcome.map_or(0, |o| o.instance_jobs),
        failure,
    });
}

/// Records a job left untouched for beanstalkd to hand out again.
pub(super) fn handed_back(ctx: &SlotContext, tube: &str, label: &str) {
    ctx.metrics.job_handed_back(&ctx.tenant.name, tube, label);
}

/// Records what became of a buried job's failure record.
pub(super) fn record_written(ctx: &SlotContext, written: &failures::Written) {
    ctx.metrics.failure_record(match written {
        failures::Written::Written(_) => RecordOutcome::Written,
        failures::Written::Lost(_) => RecordOutcome::Lost,
    });
}

/// What the log line adds besides the outcome.
#[derive(Default)]
pub(super) struct LogExtras {
    pub(super) reply: Option<Delivery>,
    /// A settling request beanstalkd refused.
    pub(super) refused: Option<String>,
    /// What became of a buried job's failure record.
    pub(super) record: Option<failures::Written>,
}

/// Whether a successful job's line ([`log_finished`], at `info`) is
/// written under the worker's log filter: with `--log warn` it is not, and
/// the job's statistics it would show are not fetched.
pub(super) fn job_line_written() -> bool {
    tracing::enabled!(tracing::Level::INFO)
}

/// The one line every finished job gets.
#[allow(clippy::too_many_arguments)]
pub(super) fn log_finished(
    id: u64,
    server: Option<&str>,
    tube: &str,
    task: &str,
    attempt: u32,
    action: Option<Action>,
    result: &Result<Value, Failure>,
    outcome: Option<&Outcome>,
    extras: &LogExtras,
    started: Instant,
) {
    let fuel = outcome.map_or(0, |o| o.fuel_used);
    let instance_jobs = outcome.map_or(0, |o| o.instance_jobs);
    let puts = outcome.map_or(0, |o| o.puts.len());
    let budget = outcome.and_then(Outcome::budget_summary);
    let budget = budget.as_deref();
    // Whole microseconds: prints as 0.706, not 0.7059460000000001.
    let ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let reason = result.as_ref().err().map(ToString::to_string);
    let reply = extras.reply.as_ref().map(Delivery::describe);
    let reply = reply.as_deref();
    let refused = extras.refused.as_deref();
    let record = extras.record.as_ref().and_then(failures::Written::lost);
    let outcome_word = action.map_or("lost", Action::outcome);
    match action {
        Some(Action::Delete) => tracing::info!(
            job = id,
            server,
            tube,
            task,
            attempt,
            outcome = outcome_word,
            ms,
            fuel,
            instance_jobs,
            puts,
            budget,
            reply,
            refused,
            "job done"
        ),
        Some(Action::Release { delay }) => tracing::warn!(
            job = id,
            server,
            tube,
            task,
            attempt,
            outcome = outcome_word,
            delay,
            ms,
            fuel,
            instance_jobs,
            reason = reason.as_deref().unwrap_or(""),
            budget,
            refused,
            "job failed; retrying"
        ),
        Some(Action::Bury) | None => tracing::error!(
            job = id,
            server,
            tube,
            task,
            attempt,
            outcome = outcome_word,
            ms,
            fuel,
            instance_jobs,
            reason = reason.as_deref().unwrap_or(""),
            budget,
            reply,
            refused,
            record,
            "job failed"
        ),
    }
}
