//! What the worker tells [`crate::metrics`] about each job: one call where a
//! job settles, one where it is handed back.

use std::time::Instant;

use serde_json::Value;

use super::settle::{Action, Failure};
use super::slot::SlotContext;
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
pub(super) fn record_written(ctx: &SlotContext, written: &crate::failures::Written) {
    ctx.metrics.failure_record(match written {
        crate::failures::Written::Written(_) => RecordOutcome::Written,
        crate::failures::Written::Lost(_) => RecordOutcome::Lost,
    });
}
