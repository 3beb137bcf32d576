//! What an operator looks at: tube counts and buried jobs with why they
//! failed.

use beanbox_queue::{JobState, TubeStats};

use super::{BuriedJob, BuriedList, Conn, MAX_BODY_BYTES, OpsError, TubeRow};
use crate::failures::{Current, FAILURES_TUBE, cut};

/// The counts of one tube (`Some`), or of every tube beanstalkd lists,
/// sorted by name with [`FAILURES_TUBE`] last.
///
/// # Errors
///
/// [`OpsError::InvalidTube`], [`OpsError::UnknownTube`],
/// [`OpsError::Unreachable`].
pub async fn tube_stats(addr: &str, tube: Option<&str>) -> Result<Vec<TubeRow>, OpsError> {
    let mut conn = Conn::open(addr).await?;
    if let Some(tube) = tube {
        let stats = conn.tube(tube).await?;
        return Ok(vec![row(&stats)]);
    }
    let mut tubes = conn.client.list_tubes().await.map_err(|e| conn.fail(e))?;
    tubes.sort_by_key(|t| (t == FAILURES_TUBE, t.clone()));
    let mut rows = Vec::with_capacity(tubes.len());
    for tube in tubes {
        match conn.client.stats_tube(&tube).await {
            Ok(stats) => rows.push(row(&stats)),
            // Gone since it was listed.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(conn.fail(e)),
        }
    }
    Ok(rows)
}

fn row(stats: &TubeStats) -> TubeRow {
    let left = u64::try_from(stats.pause_time_left).unwrap_or(0);
    TubeRow {
        tube: stats.name.clone(),
        ready: stats.current_jobs_ready,
        reserved: stats.current_jobs_reserved,
        delayed: stats.current_jobs_delayed,
        buried: stats.current_jobs_buried,
        urgent: stats.current_jobs_urgent,
        waiting: stats.current_waiting,
        paused: left > 0,
        pause_time_left: left,
        total: stats.total_jobs,
    }
}

/// The buried jobs of `tube`, at most `limit`, by id: those with a failure
/// record (task, attempt, reason) and, when some have none, the oldest
/// buried job (all beanstalkd can show) with null reason; each with the
/// first [`MAX_BODY_BYTES`] of its body and its age. Stale records met on
/// the way are deleted.
///
/// # Errors
///
/// [`OpsError::InvalidTube`], [`OpsError::UnknownTube`],
/// [`OpsError::Unreachable`].
pub async fn buried(addr: &str, tube: &str, limit: usize) -> Result<BuriedList, OpsError> {
    let mut conn = Conn::open(addr).await?;
    let count = conn.tube(tube).await?.current_jobs_buried;
    let records = conn.records().await?;
    let recorded: Vec<&Current> = records
        .by_job
        .values()
        .filter(|c| c.record.tube == tube && c.state == Some(JobState::Buried))
        .collect();
    let unrecorded = count.saturating_sub(recorded.len() as u64);
    let mut ids: Vec<(u64, Option<&Current>)> =
        recorded.iter().map(|c| (c.record.job, Some(*c))).collect();
    if unrecorded > 0 {
        conn.client.use_tube(tube).await.map_err(|e| conn.fail(e))?;
        match conn.client.peek_buried().await {
            Ok(job) if !records.by_job.contains_key(&job.id) => ids.push((job.id, None)),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(conn.fail(e)),
        }
    }
    ids.sort_by_key(|(id, _)| *id);
    ids.truncate(limit);
    let mut jobs = Vec::with_capacity(ids.len());
    for (id, current) in ids {
        // Kicked or deleted since: not buried any more.
        let Some((age, body)) = peek(&mut conn, id).await? else {
            continue;
        };
        let record = current.map(|c| &c.record);
        jobs.push(BuriedJob {
            job: id,
            server: None,
            task: record.map(|r| r.task.clone()),
            attempt: record.map(|r| r.attempt),
            kind: record.map(|r| r.kind.clone()),
            reason: record.map(|r| r.reason.clone()),
            tenant: record.map(|r| r.tenant.clone()),
            at: record.map(|r| r.at),
            age,
            body,
        });
    }
    Ok(BuriedList {
        tube: tube.to_owned(),
        buried: count,
        jobs,
        unrecorded,
        complete: records.complete,
        servers: Vec::new(),
    })
}

/// Whether job `id` is on the server at `addr`.
///
/// # Errors
///
/// [`OpsError::Unreachable`].
pub async fn has_job(addr: &str, id: u64) -> Result<bool, OpsError> {
    Conn::open(addr).await?.has_job(id).await
}

/// A job's age and the start of its body; `None` when it is gone.
async fn peek(conn: &mut Conn, id: u64) -> Result<Option<(i64, String)>, OpsError> {
    let stats = match conn.client.stats_job(id).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(conn.fail(e)),
    };
    let job = match conn.client.peek(id).await {
        Ok(job) => job,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(conn.fail(e)),
    };
    let text = String::from_utf8_lossy(&job.body);
    Ok(Some((stats.age, cut(&text, MAX_BODY_BYTES).to_owned())))
}
