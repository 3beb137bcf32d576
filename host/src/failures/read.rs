//! The reader: reserve every ready record, judge, delete the stale ones,
//! release the rest.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use beanbox_queue::{Client, JobState};

use super::{FAILURES_TUBE, FailureRecord, RECORD_PRIORITY, judge};

/// The most records one read reserves.
pub const MAX_RECORDS: usize = 10_000;

/// How often a reader tries again while another reader holds records.
const BUSY_TRIES: u32 = 3;

/// The pause between those tries.
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// A standing record and its job's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The record.
    pub record: FailureRecord,
    /// The job's state when read (buried, or reserved: running again).
    pub state: Option<JobState>,
}

/// What one read found.
#[derive(Debug, Default, Clone)]
pub struct Records {
    /// The standing record of each job, by job id.
    pub by_job: BTreeMap<u64, Current>,
    /// Whether every record was seen: false while another reader held
    /// some (after a few tries) or past [`MAX_RECORDS`].
    pub complete: bool,
    /// Stale or duplicate records deleted by this read.
    pub deleted: usize,
    /// Records that could not be read (left in place).
    pub unreadable: usize,
}

/// Reads the failure records over `client`: reserves every ready record,
/// judges them, deletes the stale ones and releases the others. The
/// client's watch list is restored (`default` only) afterwards.
///
/// # Errors
///
/// A connection error or a refusal of a reserve, delete or release (what
/// it held goes back when the connection closes).
pub async fn read(client: &mut Client) -> beanbox_queue::Result<Records> {
    client.watch(FAILURES_TUBE).await?;
    client.ignore("default").await?;
    let mut tries = 0;
    let records = loop {
        tries += 1;
        let (records, others_hold) = read_once(client).await?;
        if !others_hold || tries >= BUSY_TRIES {
            break Records {
                complete: records.complete && !others_hold,
                ..records
            };
        }
        tokio::time::sleep(BUSY_PAUSE).await;
    };
    client.watch("default").await?;
    client.ignore(FAILURES_TUBE).await?;
    Ok(records)
}

/// One pass of [`read`]; also says whether another connection held
/// records meanwhile.
async fn read_once(client: &mut Client) -> beanbox_queue::Result<(Records, bool)> {
    let mut held: Vec<(u64, Option<FailureRecord>)> = Vec::new();
    let mut complete = true;
    loop {
        if held.len() >= MAX_RECORDS {
            complete = false;
            break;
        }
        match client.reserve_with_timeout(0).await {
            Ok(job) => {
                let record = FailureRecord::parse(&job.body)
                    .inspect_err(|e| {
                        tracing::warn!(record = job.id, error = %e, "skipping an unreadable failure record");
                    })
                    .ok();
                held.push((job.id, record));
            }
            Err(e) if e.is_timeout() => break,
            // A record held here is near its TTR: stop and give all back.
            Err(e) if e.is_deadline_soon() => {
                complete = false;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let others_hold = match client.stats_tube(FAILURES_TUBE).await {
        Ok(stats) => stats.current_jobs_reserved > held.len() as u64,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e),
    };

    let pairs: Vec<(u64, u64)> = held
        .iter()
        .filter_map(|(id, r)| r.as_ref().map(|r| (*id, r.job)))
        .collect();
    let mut states = HashMap::new();
    for &(_, job) in &pairs {
        if states.contains_key(&job) {
            continue;
        }
        match client.stats_job(job).await {
            Ok(s) => {
                states.insert(job, Some(s.state));
            }
            Err(e) if e.is_not_found() => {
                states.insert(job, None);
            }
            Err(e) if e.is_connection_error() => return Err(e),
            Err(e) => tracing::warn!(job, error = %e, "cannot read a failed job's state"),
        }
    }
    let verdict = judge(&pairs, &states);

    let mut records = Records {
        complete,
        unreadable: held.iter().filter(|(_, r)| r.is_none()).count(),
        ..Records::default()
    };
    let mut standing: HashMap<u64, u64> = verdict.keep.iter().map(|(j, r)| (*r, *j)).collect();
    for (id, record) in held {
        if verdict.delete.binary_search(&id).is_ok() {
            match client.delete(id).await {
                Ok(()) => records.deleted += 1,
                Err(e) if e.is_connection_error() => return Err(e),
                Err(e) => {
                    tracing::warn!(record = id, error = %e, "cannot delete a stale failure record")
                }
            }
            continue;
        }
        client.release(id, RECORD_PRIORITY, 0).await?;
        if let (Some(job), Some(record)) = (standing.remove(&id), record) {
            let state = states.get(&job).copied().flatten();
            records.by_job.insert(job, Current { record, state });
        }
    }
    Ok((records, others_hold))
}
