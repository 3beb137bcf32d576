//! Failure records: why a job was buried, kept on beanstalkd itself so that
//! it survives worker restarts and every worker's CLI and dashboard see it.
//!
//! The worker puts one small JSON record on the tube [`FAILURES_TUBE`]
//! BEFORE it buries a job ([`write`]): a crash between the two leaves a
//! stale record, never a buried job without one. A reader ([`read`])
//! reserves every ready record, judges them against the jobs' states
//! ([`judge`], pure), deletes the stale and duplicate ones and releases the
//! rest. A reader that dies releases what it held (beanstalkd does, when
//! the connection closes): no record is lost to a crash.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use beanbox_queue::{Client, ErrorKind, JobState};
use serde::{Deserialize, Serialize};

/// The tube that holds the failure records. No tenant may serve it.
pub const FAILURES_TUBE: &str = "beanbox.failures";

/// The record format this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// The longest reason kept, in bytes (cut at a char boundary).
pub const MAX_REASON_BYTES: usize = 2048;

/// The longest task name kept, in bytes (a bad envelope may name anything).
const MAX_TASK_BYTES: usize = 256;

/// The most records one read reserves.
pub const MAX_RECORDS: usize = 10_000;

/// Records are put with beanbox's default job priority.
const RECORD_PRIORITY: u32 = beanbox_queue::producer::DEFAULT_PRIORITY;

/// A record's time to run: how long a reader may hold it before beanstalkd
/// gives it back by itself.
const RECORD_TTR: u32 = 60;

/// How often a reader tries again while another reader holds records.
const BUSY_TRIES: u32 = 3;

/// The pause between those tries.
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Why a job was buried: one record per burial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The format version, [`RECORD_VERSION`].
    pub v: u32,
    /// The buried job.
    pub job: u64,
    /// Its tube.
    pub tube: String,
    /// The task its envelope named (empty for a bad envelope).
    pub task: String,
    /// The tenant that ran it.
    pub tenant: String,
    /// The attempt that failed (beanstalkd's releases + 1; 0 if unknown).
    pub attempt: u32,
    /// The failure's kind, as in replies (`guest-error`, `fuel`, …).
    pub kind: String,
    /// The failure, for people (at most [`MAX_REASON_BYTES`]).
    pub reason: String,
    /// When it was buried, in Unix seconds.
    pub at: u64,
}

/// A record body that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or a field missing or of the wrong type.
    #[error("not a failure record: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not know (written by a newer beanbox).
    #[error("failure record version {0} is not {RECORD_VERSION}")]
    Version(u64),
}

/// What a failed job's record says, before it is stamped.
#[derive(Debug, Clone, Copy)]
pub struct Failed<'a> {
    /// The job.
    pub job: u64,
    /// Its tube.
    pub tube: &'a str,
    /// Its task.
    pub task: &'a str,
    /// The tenant.
    pub tenant: &'a str,
    /// The attempt.
    pub attempt: u32,
    /// Its kind.
    pub kind: ErrorKind,
    /// Why.
    pub reason: &'a str,
}

impl FailureRecord {
    /// The record of a failure, now; long task names and reasons are cut.
    pub fn new(failed: Failed<'_>) -> FailureRecord {
        FailureRecord {
            v: RECORD_VERSION,
            job: failed.job,
            tube: failed.tube.to_owned(),
            task: cut(failed.task, MAX_TASK_BYTES).to_owned(),
            tenant: failed.tenant.to_owned(),
            attempt: failed.attempt,
            kind: failed.kind.as_str().to_owned(),
            reason: cut(failed.reason, MAX_REASON_BYTES).to_owned(),
            at: unix_now(),
        }
    }

    /// The record's body on the failures tube.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serialises")
    }

    /// Reads a record body.
    ///
    /// # Errors
    ///
    /// [`RecordError`] for anything but a version-1 record.
    pub fn parse(body: &[u8]) -> Result<FailureRecord, RecordError> {
        #[derive(Deserialize)]
        struct Version {
            v: u64,
        }
        let Version { v } = serde_json::from_slice(body)?;
        if v != u64::from(RECORD_VERSION) {
            return Err(RecordError::Version(v));
        }
        Ok(serde_json::from_slice(body)?)
    }

    /// The kind, when this build knows it.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        ErrorKind::parse(&self.kind)
    }
}

/// The longest prefix of `text` of at most `max` bytes ending on a char
/// boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What became of a record the worker wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// On the failures tube, with this id.
    Written(u64),
    /// beanstalkd refused it (the job is buried anyway): why.
    Lost(String),
}

impl Written {
    /// Why the record was lost, if it was.
    pub fn lost(&self) -> Option<&str> {
        match self {
            Written::Written(_) => None,
            Written::Lost(why) => Some(why),
        }
    }
}

/// Puts `record` on [`FAILURES_TUBE`] over `client` (which goes on using
/// `default`). A refusal is logged and returned as [`Written::Lost`]: the
/// job is buried anyway.
///
/// # Errors
///
/// Only a connection error.
pub async fn write(client: &mut Client, record: &FailureRecord) -> beanbox_queue::Result<Written> {
    let put = client
        .put_in(
            FAILURES_TUBE,
            RECORD_PRIORITY,
            0,
            RECORD_TTR,
            &record.encode(),
        )
        .await;
    // The one place a record's fate is known: count it here
    // (`beanbox_failure_records_total{outcome="written"|"lost"}`).
    match put {
        Ok(id) => Ok(Written::Written(id)),
        Err(e) if e.is_connection_error() => Err(e),
        Err(e) => {
            tracing::warn!(job = record.job, error = %e, "cannot write the failure record");
            Ok(Written::Lost(format!("failure record lost: {e}")))
        }
    }
}

/// What a record is to become, given its job's state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Per job, the record id that stands.
    pub keep: BTreeMap<u64, u64>,
    /// Record ids to delete: their job is gone, ready or delayed (kicked or
    /// deleted elsewhere), or a newer record of the same job stands.
    pub delete: Vec<u64>,
}

/// Judges records against their jobs' states. `records` are (record id,
/// job id) pairs; `states` maps a job to `Some(state)`, or `None` when
/// beanstalkd does not know it; a job missing from `states` (its state
/// could not be read) keeps all its records. A buried or reserved job
/// keeps its newest record (the highest record id); the others go.
pub fn judge(records: &[(u64, u64)], states: &HashMap<u64, Option<JobState>>) -> Verdict {
    let mut by_job: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(record, job) in records {
        by_job.entry(job).or_default().push(record);
    }
    let mut verdict = Verdict::default();
    for (job, mut ids) in by_job {
        ids.sort_unstable();
        match states.get(&job) {
            // Unknown: keep everything, judge again next time.
            None => {
                let newest = *ids.last().expect("one record at least");
                verdict.keep.insert(job, newest);
            }
            Some(Some(JobState::Buried | JobState::Reserved)) => {
                let newest = ids.pop().expect("one record at least");
                verdict.keep.insert(job, newest);
                verdict.delete.extend(ids);
            }
            // Gone, or back in the queue: the failure is no longer current.
            Some(_) => verdict.delete.extend(ids),
        }
    }
    verdict.delete.sort_unstable();
    verdict
}

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
    /// some (after [`BUSY_TRIES`]) or past [`MAX_RECORDS`].
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(reason: &str) -> Failed<'_> {
        Failed {
            job: 12,
            tube: "t",
            task: "fail",
            tenant: "acme",
            attempt: 3,
            kind: ErrorKind::GuestError,
            reason,
        }
    }

    #[test]
    fn a_record_round_trips_in_the_agreed_format() {
        let record = FailureRecord::new(failed("boom"));
        let json: serde_json::Value = serde_json::from_slice(&record.encode()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["job"], 12);
        assert_eq!(json["tube"], "t");
        assert_eq!(json["task"], "fail");
        assert_eq!(json["tenant"], "acme");
        assert_eq!(json["attempt"], 3);
        assert_eq!(json["kind"], "guest-error");
        assert_eq!(json["reason"], "boom");
        assert!(json["at"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(FailureRecord::parse(&record.encode()).unwrap(), record);
        assert_eq!(record.error_kind(), Some(ErrorKind::GuestError));
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let record = FailureRecord::new(failed(&reason));
        assert_eq!(record.reason.len(), MAX_REASON_BYTES);
        assert!(record.reason.chars().all(|c| c == 'é'));
        assert_eq!(cut("héllo", 2), "h");
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert!(matches!(
            FailureRecord::parse(b"not json"),
            Err(RecordError::Malformed(_))
        ));
        assert!(matches!(
            FailureRecord::parse(br#"{"v":1,"job":"x"}"#),
            Err(RecordError::Malformed(_))
        ));
        let mut json: serde_json::Value =
            serde_json::from_slice(&FailureRecord::new(failed("x")).encode()).unwrap();
        json["v"] = 2.into();
        let err = FailureRecord::parse(json.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, RecordError::Version(2)), "{err}");
    }

    fn states(pairs: &[(u64, Option<JobState>)]) -> HashMap<u64, Option<JobState>> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn records_of_gone_ready_or_delayed_jobs_are_stale() {
        let records = [(100, 1), (101, 2), (102, 3), (103, 4)];
        let verdict = judge(
            &records,
            &states(&[
                (1, None),
                (2, Some(JobState::Ready)),
                (3, Some(JobState::Delayed)),
                (4, Some(JobState::Buried)),
            ]),
        );
        assert_eq!(verdict.delete, [100, 101, 102]);
        assert_eq!(verdict.keep, BTreeMap::from([(4, 103)]));
    }

    #[test]
    fn the_newest_record_of_a_job_wins() {
        let records = [(105, 7), (101, 7), (103, 7)];
        let verdict = judge(&records, &states(&[(7, Some(JobState::Buried))]));
        assert_eq!(verdict.keep, BTreeMap::from([(7, 105)]));
        assert_eq!(verdict.delete, [101, 103]);
    }

    #[test]
    fn records_of_reserved_jobs_are_kept() {
        // Written just before the bury, or kicked by another tool and
        // running again: not stale yet.
        let records = [(100, 1), (101, 1)];
        let verdict = judge(&records, &states(&[(1, Some(JobState::Reserved))]));
        assert_eq!(verdict.keep, BTreeMap::from([(1, 101)]));
        assert_eq!(verdict.delete, [100]);
    }

    #[test]
    fn records_of_jobs_whose_state_is_unknown_are_all_kept() {
        let verdict = judge(&[(100, 1), (101, 1)], &HashMap::new());
        assert_eq!(verdict.keep, BTreeMap::from([(1, 101)]));
        assert!(verdict.delete.is_empty());
    }
}
