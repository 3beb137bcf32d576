//! What an operator does: kick (retry with a fresh attempt budget),
//! delete, pause.

use beanbox_queue::JobState;

use super::{Conn, Kick, Kicked, OpsError, check_tube};

/// Retries buried jobs of `tube` with a FRESH attempt budget: each job is
/// reserved by id, its body put again on the same tube (same priority and
/// TTR, no delay) as a new job, and the buried one deleted with its
/// failure record. beanstalkd's own `kick` would give the job one more
/// attempt only (its release count stays).
///
/// [`Kick::All`] kicks the jobs buried when it starts, oldest first. A
/// crash midway can leave both copies (the old one, reserved, goes back to
/// ready when the connection closes): at least once, never lost.
///
/// # Errors
///
/// [`OpsError::InvalidTube`], [`OpsError::UnknownTube`], and for
/// [`Kick::Job`]: [`OpsError::NoSuchJob`], [`OpsError::WrongTube`],
/// [`OpsError::NotBuried`], [`OpsError::Changed`]; [`OpsError::Unreachable`],
/// [`OpsError::Refused`] (a put beanstalkd refused: the job stays buried).
pub async fn kick(addr: &str, tube: &str, which: Kick) -> Result<Vec<Kicked>, OpsError> {
    let mut conn = Conn::open(addr).await?;
    let buried = conn.tube(tube).await?.current_jobs_buried;
    let kicked = match which {
        Kick::Job(id) => vec![retry(&mut conn, tube, id).await?],
        Kick::All => {
            let mut kicked: Vec<Kicked> = Vec::new();
            // Bounded by the count at the start: a copy that fails and is
            // buried again meanwhile is not kicked again.
            for _ in 0..buried {
                conn.client.use_tube(tube).await.map_err(|e| conn.fail(e))?;
                let id = match conn.client.peek_buried().await {
                    Ok(job) => job.id,
                    Err(e) if e.is_not_found() => break,
                    Err(e) => return Err(conn.fail(e)),
                };
                if kicked.iter().any(|k| k.new_job == id) {
                    break;
                }
                match retry(&mut conn, tube, id).await {
                    Ok(k) => kicked.push(k),
                    // Kicked or deleted by someone else meanwhile.
                    Err(
                        OpsError::NoSuchJob(_) | OpsError::NotBuried { .. } | OpsError::Changed(_),
                    ) => {}
                    Err(e) => return Err(e),
                }
            }
            kicked
        }
    };
    clean_records(&mut conn).await;
    Ok(kicked)
}

/// Puts a copy of buried job `id` of `tube` and deletes the original.
async fn retry(conn: &mut Conn, tube: &str, id: u64) -> Result<Kicked, OpsError> {
    let before = conn.job(id).await?;
    if before.tube != tube {
        return Err(OpsError::WrongTube {
            job: id,
            tube: tube.to_owned(),
            actual: before.tube,
        });
    }
    if before.state != JobState::Buried {
        return Err(OpsError::NotBuried {
            job: id,
            state: before.state,
        });
    }
    let job = match conn.client.reserve_job(id).await {
        Ok(job) => job,
        // Reserved by a worker, or gone, since.
        Err(e) if e.is_not_found() => return Err(changed_or_gone(conn, id).await),
        Err(e) => return Err(conn.fail(e)),
    };
    // `reserve-job` takes a job in any state: make sure it was still the
    // buried job looked at (not kicked and put back meanwhile).
    let after = conn.job(id).await?;
    if after.kicks != before.kicks || after.releases != before.releases {
        // It was ready again: leave it so.
        let _ = conn.client.release(id, after.pri, 0).await;
        return Err(OpsError::Changed(id));
    }
    let put = conn
        .client
        .put_in(tube, before.pri, 0, before.ttr, &job.body)
        .await;
    let new_job = match put {
        Ok(new_job) => new_job,
        Err(e) => {
            // Back where it was.
            let _ = conn.client.bury(id, before.pri).await;
            return Err(conn.fail(e));
        }
    };
    conn.client.delete(id).await.map_err(|e| conn.fail(e))?;
    Ok(Kicked {
        job: id,
        new_job,
        server: None,
    })
}

/// Why a job that was there could not be reserved or deleted.
async fn changed_or_gone(conn: &mut Conn, id: u64) -> OpsError {
    match conn.job(id).await {
        Ok(s) if s.state == JobState::Reserved => OpsError::Reserved(id),
        Ok(_) => OpsError::Changed(id),
        Err(e) => e,
    }
}

/// Deletes job `id` and its failure record. Without `force`, only a buried
/// or delayed job; with it, a ready one too. A reserved job cannot be
/// deleted (beanstalkd lets only its worker).
///
/// # Errors
///
/// [`OpsError::NoSuchJob`], [`OpsError::NotDeletable`],
/// [`OpsError::Reserved`], [`OpsError::Unreachable`].
pub async fn delete(addr: &str, id: u64, force: bool) -> Result<u64, OpsError> {
    let mut conn = Conn::open(addr).await?;
    let stats = conn.job(id).await?;
    match stats.state {
        JobState::Buried | JobState::Delayed => {}
        JobState::Reserved => return Err(OpsError::Reserved(id)),
        _ if force => {}
        state => return Err(OpsError::NotDeletable { job: id, state }),
    }
    match conn.client.delete(id).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => return Err(changed_or_gone(&mut conn, id).await),
        Err(e) => return Err(conn.fail(e)),
    }
    clean_records(&mut conn).await;
    Ok(id)
}

/// Pauses `tube` for `secs` seconds (0 ends a pause).
///
/// # Errors
///
/// [`OpsError::InvalidTube`], [`OpsError::UnknownTube`],
/// [`OpsError::Unreachable`].
pub async fn pause(addr: &str, tube: &str, secs: u32) -> Result<(), OpsError> {
    check_tube(tube)?;
    let mut conn = Conn::open(addr).await?;
    match conn.client.pause_tube(tube, secs).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Err(OpsError::UnknownTube(tube.to_owned())),
        Err(e) => Err(conn.fail(e)),
    }
}

/// Drops the records of jobs just kicked or deleted. Best effort: the
/// action is done, and the next reader drops what this one could not.
async fn clean_records(conn: &mut Conn) {
    if let Err(e) = conn.records().await {
        tracing::warn!(error = %e, "failure records not cleaned; the next reader will");
    }
}
