//! One reserved job, from its body to its one log line: route it to the
//! module that serves its tube, wait out a deploy that brings its task, run
//! the call on the guest runtime while this (I/O) thread touches the job,
//! then settle it by the failure table ([`settle::decide`]) in one place:
//! follow-up puts, reply, delete/release/bury. All of these go to the
//! job's own server, on the connection that reserved it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use beanbox_queue::{Envelope, Job, JobStats};
use serde_json::Value;
use tokio::sync::watch;

use super::conn::{Conn, delete_riding};
use super::guest::GuestCall;
use super::observe::{self, LogExtras, log_finished};
use super::reply;
use super::settle::{self, Action, Failure, Policy};
use super::slot::SlotContext;
use super::{Phase, reached};
use crate::failures::{self, FailureRecord};
use crate::sandbox::{AttemptCell, CallContext, CallError, JobInfo, KeptInstance, Module, Outcome};

/// Where the reserve that rides along with a finished job's delete goes.
pub(super) enum Ride<'a> {
    /// In the delete's own write (one server, or the only one usable).
    Same,
    /// At the same time, on another server's connection.
    Other(&'a mut Conn),
    /// Nowhere: the next server to ask has no connection yet (the slot
    /// opens it when it looks for the next job).
    Nowhere,
}

/// What became of a reserved job.
pub(super) enum Settled {
    /// Deleted, released or buried (or lost to another worker); after a
    /// delete, the next job's reserve may have gone with it: in the same
    /// write (one round trip per job), or at the same time on another
    /// server's connection.
    Done {
        /// The reply to that reserve, when it was sent.
        next: Option<beanbox_queue::Result<Job>>,
    },
    /// Left untouched, to be handed back by closing the connection (the
    /// grace period is over, or its module is gone).
    HandedBack,
}

/// How long a job whose statistics are not yet known may run before they
/// are fetched (its TTR may call for touches or an earlier deadline).
const FACTS_AFTER: Duration = Duration::from_millis(250);

/// How long a job naming a task its module's serving version lacks waits
/// for a newer version being deployed, at most.
const DEPLOY_WAIT_MAX: Duration = Duration::from_secs(300);

/// How often a job waiting for a deploy looks again (besides every module
/// change the registry announces).
const DEPLOY_POLL: Duration = Duration::from_millis(100);

/// The reserve that rides along with a delete waits for nothing: a job that
/// is ready comes back in the same round trip, and otherwise the slot goes
/// back to its ordinary waiting reserve (so the finished job's log line is
/// not held up by the wait).
const RESERVE_NOW_SECS: u32 = 0;

/// Runs one reserved job and settles it. Errors are lost connections only.
///
/// A slot watching one tube knows the job's tube, so the call starts at
/// once; the job's statistics (attempt, TTR, priority) ride along with the
/// delete on success, or are fetched when the task fails, asks for its
/// attempt, or runs longer than [`FACTS_AFTER`]. A slot watching several
/// tubes fetches them first, to route the job.
///
/// `conn` is the connection that reserved the job; `ride` says where the
/// next reserve goes with its delete.
pub(super) async fn handle(
    ctx: &SlotContext,
    conn: &mut Conn,
    ride: Ride<'_>,
    kept: &mut KeptInstance,
    job: Job,
    phase: &mut watch::Receiver<Phase>,
) -> beanbox_queue::Result<Settled> {
    let started = Instant::now();
    let mut stats = None;
    if conn.watching.len() != 1 && facts(&mut stats, conn, job.id).await?.is_none() {
        // Its tube cannot be known: hand it back rather than guess.
        return Ok(Settled::HandedBack);
    }
    let tube = match &stats {
        Some(s) => s.tube.clone(),
        None => conn.watching[0].clone(),
    };
    let mut envelope = match Envelope::parse(&job.body) {
        Ok(env) => env,
        Err(e) => {
            let ending = Ending {
                job: &job,
                tube: &tube,
                task: "",
                label: crate::metrics::UNKNOWN_TASK.to_string(),
                reply_to: Envelope::reply_to_of(&job.body),
                result: Err(Failure::BadEnvelope(e)),
                outcome: None,
                started,
            };
            return settle(ctx, (conn, ride), ending, &mut stats, phase).await;
        }
    };
    let Some(route) = ctx.tenant.routes.iter().find(|r| r.tube == tube) else {
        return Ok(gone(&job, conn.server.as_deref(), &tube));
    };
    let task = envelope.task.as_str();
    let module = deployed(ctx, conn, &job, &route.module, task, &mut stats, phase).await?;
    // Bounded: an export of the module, else `unknown`.
    let label = crate::metrics::task_label(module.as_ref(), task);
    let Some(module) = module else {
        observe::handed_back(ctx, &tube, &label);
        return Ok(gone(&job, conn.server.as_deref(), &tube));
    };
    // Moved into the call, not copied: nothing after it reads them.
    let kwargs = std::mem::take(&mut envelope.kwargs);
    let call = Call {
        job: &job,
        tube: &tube,
        module,
        module_name: &route.module,
        envelope: &envelope,
        kwargs,
        // The TTR's clock: after a deploy wait, from its closing touch.
        started: Instant::now(),
    };
    let Some(mut outcome) = run(ctx, conn, kept, call, &mut stats, phase).await? else {
        observe::handed_back(ctx, &tube, &label);
        return Ok(hand_back(&job, conn.server.as_deref(), &tube, task));
    };
    let result = std::mem::replace(&mut outcome.result, Ok(Value::Null)).map_err(Failure::Call);
    let ending = Ending {
        job: &job,
        tube: &tube,
        task: &envelope.task,
        label,
        reply_to: envelope.reply_to.clone(),
        result,
        outcome: Some(&outcome),
        started,
    };
    settle(ctx, (conn, ride), ending, &mut stats, phase).await
}

/// The module that is to judge a job naming `task`: the serving version,
/// unless it lacks the task while a newer version of the module is being
/// deployed; then the job waits for that version (touched, so it stays
/// ours), up to [`DEPLOY_WAIT_MAX`]. `None`: the module is gone, or the
/// worker is stopping — the job goes back untouched.
async fn deployed(
    ctx: &SlotContext,
    conn: &mut Conn,
    job: &Job,
    name: &str,
    task: &str,
    stats: &mut Option<JobStats>,
    phase: &mut watch::Receiver<Phase>,
) -> beanbox_queue::Result<Option<Module>> {
    let mut module = ctx.registry.get(name);
    let serves = |m: &Module| m.task(task).is_ok();
    if module.as_ref().is_none_or(serves) || !ctx.registry.pending(name) {
        return Ok(module);
    }
    let waiting = Instant::now();
    tracing::info!(
        job = job.id,
        server = conn.server.as_deref(),
        module = name,
        task,
        "task unknown to the serving version while a new version is being deployed; waiting for it"
    );
    let Some(s) = facts(stats, conn, job.id).await? else {
        return Ok(module);
    };
    let mut touch = touches(ttr_of(s), Instant::now());
    let mut changed = ctx.registry.subscribe();
    while module.as_ref().is_some_and(|m| !serves(m))
        && ctx.registry.pending(name)
        && waiting.elapsed() < DEPLOY_WAIT_MAX
    {
        tokio::select! {
            _ = changed.changed() => {}
            () = tokio::time::sleep(DEPLOY_POLL) => {}
            _ = touch.tick() => conn.client.touch(job.id).await.or_else(ignore_refusal)?,
            _ = reached(phase, Phase::Draining) => return Ok(None),
        }
        module = ctx.registry.get(name);
    }
    // A full TTR for the call from here: it runs on the clock of this touch.
    conn.client.touch(job.id).await.or_else(ignore_refusal)?;
    tracing::info!(
        job = job.id,
        server = conn.server.as_deref(),
        module = name,
        task,
        waited_ms = waiting.elapsed().as_millis() as u64,
        "deploy wait over"
    );
    Ok(module)
}

/// What a job's call runs.
struct Call<'a> {
    job: &'a Job,
    tube: &'a str,
    module: Module,
    module_name: &'a str,
    envelope: &'a Envelope,
    /// The job's kwargs (taken out of the envelope).
    kwargs: serde_json::Map<String, Value>,
    /// When the job's TTR clock (last) started for this call.
    started: Instant,
}

/// Runs the call on the guest runtime while this thread fetches the job's
/// facts, touches it before its TTR and stops it at the TTR. `None`: the
/// grace period ended first, and the job is to be handed back.
async fn run(
    ctx: &SlotContext,
    conn: &mut Conn,
    kept: &mut KeptInstance,
    call: Call<'_>,
    stats: &mut Option<JobStats>,
    phase: &mut watch::Receiver<Phase>,
) -> beanbox_queue::Result<Option<Outcome>> {
    let Call {
        job,
        tube,
        module,
        module_name,
        envelope,
        kwargs,
        started,
    } = call;
    let cell = stats.is_none().then(|| Arc::new(AttemptCell::default()));
    let mut limits = ctx.tenant.limits;
    if let Some(s) = &stats {
        limits.timeout = limits.timeout.min(ttr_of(s));
    }
    let call_ctx = CallContext {
        limits,
        job: JobInfo {
            id: job.id,
            tube: tube.to_string(),
            task: envelope.task.clone(),
            attempt: stats.as_ref().map_or(0, attempt_of),
        },
        services: ctx.services.clone(),
        grants: ctx.grants.clone(),
        attempt: cell.clone(),
    };
    let mut call = GuestCall::spawn(
        &ctx.guests,
        module,
        envelope.task.clone(),
        kwargs,
        call_ctx,
        kept,
        ctx.tenant.jobs_per_instance(module_name),
    );

    let mut outcome = None;
    if let Some(cell) = &cell {
        tokio::select! {
            o = &mut call => outcome = Some(o),
            () = tokio::time::sleep(FACTS_AFTER) => {}
            () = cell.wanted() => {}
            _ = reached(phase, Phase::Abort) => return Ok(None),
        }
        if outcome.is_none() {
            // Fetched while the call goes on; both are polled here.
            let fetched = {
                let request = facts(stats, conn, job.id);
                tokio::pin!(request);
                tokio::select! {
                    s = &mut request => s,
                    o = &mut call => {
                        outcome = Some(o);
                        request.await
                    }
                }
            }?;
            // A job whose statistics are gone lost its reservation; the
            // call finishes, and settling reports it.
            cell.set(fetched.map_or(0, attempt_of));
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => {
            // Touch the job before its TTR runs out, so beanstalkd never
            // hands a running job to another worker, and stop the task at
            // its TTR: its deadline never exceeds it. The guest runs on
            // other threads, so these happen on time whatever it does.
            let ttr = stats.as_ref().map_or(limits.timeout, ttr_of);
            let mut touch = touches(ttr, started);
            let end = tokio::time::Instant::from_std(started) + ttr;
            loop {
                tokio::select! {
                    o = &mut call => break o,
                    _ = touch.tick() => conn.client.touch(job.id).await.or_else(ignore_refusal)?,
                    () = tokio::time::sleep_until(end) => break deadline_outcome(&envelope.task, ttr, started),
                    _ = reached(phase, Phase::Abort) => return Ok(None),
                }
            }
        }
    };
    *kept = call.into_kept();
    Ok(Some(outcome))
}

/// A touch before each TTR ends, from `since`.
fn touches(ttr: Duration, since: Instant) -> tokio::time::Interval {
    let every = ttr.saturating_sub(Duration::from_secs(1)).max(ttr / 2);
    let start = tokio::time::Instant::from_std(since);
    tokio::time::interval_at(start + every, every)
}

/// A touch refused (the job is no longer ours) changes nothing here:
/// settling finds out and says so.
fn ignore_refusal(e: beanbox_queue::Error) -> beanbox_queue::Result<()> {
    if e.is_connection_error() {
        Err(e)
    } else {
        Ok(())
    }
}

/// Everything settling needs to know of a finished job.
struct Ending<'a> {
    job: &'a Job,
    tube: &'a str,
    task: &'a str,
    /// The task's metrics label ([`crate::metrics::task_label`]).
    label: String,
    reply_to: Option<String>,
    result: Result<Value, Failure>,
    /// The call's outcome; `None` when there was no call (bad envelope).
    outcome: Option<&'a Outcome>,
    started: Instant,
}

/// Settles a finished job by the failure table, in one place: the
/// follow-up puts of a success, the reply of a finished job, then delete,
/// release or bury; then its one log line. Only a lost connection is an
/// error; every refusal is told in the log line.
async fn settle(
    ctx: &SlotContext,
    (conn, ride): (&mut Conn, Ride<'_>),
    ending: Ending<'_>,
    stats: &mut Option<JobStats>,
    phase: &watch::Receiver<Phase>,
) -> beanbox_queue::Result<Settled> {
    let Ending {
        job,
        tube,
        task,
        label,
        reply_to,
        mut result,
        outcome,
        started,
    } = ending;
    let staged = outcome.map_or(&[][..], |o| o.puts.as_slice());
    if result.is_ok()
        && !staged.is_empty()
        && let Err(why) = super::puts::send(conn, staged).await?
    {
        result = Err(Failure::FollowUps(why));
    }
    let policy = Policy {
        max_attempts: ctx.tenant.max_attempts,
        backoff: ctx.tenant.backoff,
        backoff_max: ctx.tenant.backoff_max,
    };
    let action = match &result {
        Ok(_) => Action::Delete,
        // Statistics that cannot be read (the job vanished, or a reply the
        // client cannot parse): bury, which loses nothing and is never
        // retried blindly; beanstalkd refuses it if the job is not ours.
        Err(failure) => match facts(stats, conn, job.id).await? {
            Some(s) => settle::decide(Some(failure), attempt_of(s), &policy),
            None => Action::Bury,
        },
    };
    let mut extras = LogExtras::default();
    if action.replies()
        && let Some(reply_to) = &reply_to
    {
        let body = reply::body(job.id, task, result.as_ref());
        extras.reply = Some(reply::send(conn, reply_to, job.id, task, &body).await?);
    }
    let mut next = None;
    // A success needs the job's statistics only for its log line (the
    // attempt): unknown yet and that line written, they go in the delete's
    // write; otherwise no `stats-job` at all.
    let fetch = stats.is_none() && observe::job_line_written();
    let done = match action {
        Action::Delete if *phase.borrow() == Phase::Running => {
            let (deleted, reserved) = if let Ride::Other(other) = ride {
                delete_riding(conn, Some(other), job.id, fetch, stats, RESERVE_NOW_SECS).await?
            } else if matches!(ride, Ride::Nowhere) {
                delete_riding(conn, None, job.id, fetch, stats, RESERVE_NOW_SECS).await?
            } else if !fetch {
                let (d, r) = conn
                    .client
                    .delete_and_reserve_with_timeout(job.id, RESERVE_NOW_SECS)
                    .await;
                (d, Some(r))
            } else {
                // The statistics, for the log line, in the same write.
                let (s, d, r) = conn
                    .client
                    .stats_delete_and_reserve_with_timeout(job.id, RESERVE_NOW_SECS)
                    .await;
                match s {
                    Ok(s) => *stats = Some(s),
                    Err(e) if e.is_connection_error() => return Err(e),
                    Err(_) => {}
                }
                (d, Some(r))
            };
            next = reserved;
            deleted
        }
        Action::Delete => {
            facts(stats, conn, job.id).await?;
            conn.client.delete(job.id).await
        }
        Action::Release { delay } => {
            let pri = stats
                .as_ref()
                .map_or(beanbox_queue::producer::DEFAULT_PRIORITY, |s| s.pri);
            conn.client.release(job.id, pri, delay).await
        }
        Action::Bury => {
            // The record first: a crash before the bury leaves a stale
            // record (readers drop it), never a buried job without one.
            if let Err(failure) = &result {
                let attempt = stats.as_ref().map_or(0, attempt_of);
                let failed = failures::Failed {
                    job: job.id,
                    tube,
                    task,
                    tenant: &ctx.tenant.name,
                    attempt,
                    kind: failure.kind(),
                    reason: &failure.to_string(),
                };
                let record = FailureRecord::new(failed);
                let written = failures::write(&mut conn.client, &record).await?;
                observe::record_written(ctx, &written);
                extras.record = Some(written);
            }
            let pri = stats
                .as_ref()
                .map_or(beanbox_queue::producer::DEFAULT_PRIORITY, |s| s.pri);
            conn.client.bury(job.id, pri).await
        }
    };
    match done {
        Ok(()) => {}
        Err(e) if e.is_connection_error() => return Err(e),
        // E.g. NOT_FOUND: its TTR ran out and another worker has it.
        Err(e) => {
            extras.refused = Some(format!(
                "{} refused: {e}; the job may run again",
                action.outcome()
            ))
        }
    }
    // 0 only when the statistics could not be had (the job vanished).
    let attempt = stats.as_ref().map_or(0, attempt_of);
    let settled = observe::Settled {
        id: job.id,
        tube,
        label: &label,
        action,
        attempt,
        started,
    };
    observe::settled(ctx, &settled, &result, outcome);
    log_finished(
        job.id,
        conn.server.as_deref(),
        tube,
        task,
        attempt,
        Some(action),
        &result,
        outcome,
        &extras,
        started,
    );
    Ok(Settled::Done { next })
}

/// The job's statistics, fetched now unless already known. `None`: the job
/// is gone from beanstalkd's view of this connection (NOT_FOUND).
async fn facts<'a>(
    stats: &'a mut Option<JobStats>,
    conn: &mut Conn,
    id: u64,
) -> beanbox_queue::Result<Option<&'a JobStats>> {
    if stats.is_none() {
        match conn.client.stats_job(id).await {
            Ok(s) => *stats = Some(s),
            Err(e) if e.is_connection_error() => return Err(e),
            Err(e) => {
                tracing::warn!(job = id, server = conn.server.as_deref(), error = %e, "cannot read the job's statistics");
                return Ok(None);
            }
        }
    }
    Ok(stats.as_ref())
}

/// Which attempt a job is on: beanstalkd's release count, plus one. It
/// survives worker restarts.
fn attempt_of(stats: &JobStats) -> u32 {
    u32::try_from(stats.releases)
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

fn ttr_of(stats: &JobStats) -> Duration {
    Duration::from_secs(u64::from(stats.ttr.max(1)))
}

/// The outcome of a call stopped at the job's TTR: its instance, fresh or
/// kept, is gone.
fn deadline_outcome(task: &str, ttr: Duration, started: Instant) -> Outcome {
    let result = Err(CallError::Deadline {
        task: task.to_string(),
        after: ttr,
    });
    Outcome::stopped(result, started.elapsed())
}

/// The grace period is over: the caller closes the connection, which makes
/// beanstalkd put the job back at once, without counting an attempt.
fn hand_back(job: &Job, server: Option<&str>, tube: &str, task: &str) -> Settled {
    tracing::warn!(
        job = job.id,
        server,
        tube,
        task,
        "grace period over: handing the unfinished job back"
    );
    Settled::HandedBack
}

/// The module was removed after the reserve (or the worker is stopping
/// while the job waited for a deploy): leave the job untouched. Closing the
/// connection puts it back without counting an attempt.
fn gone(job: &Job, server: Option<&str>, tube: &str) -> Settled {
    tracing::warn!(
        job = job.id,
        server,
        tube,
        "module gone or worker stopping; leaving the job queued"
    );
    Settled::HandedBack
}
