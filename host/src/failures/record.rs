//! The failure record: what it holds, its JSON and its version.

use crate::metrics::unix_now;

use beanbox_queue::ErrorKind;
use serde::{Deserialize, Serialize};

/// The record format this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// The longest reason kept, in bytes (cut at a char boundary).
pub const MAX_REASON_BYTES: usize = 2048;

/// The longest task name kept, in bytes (a bad envelope may name anything).
const MAX_TASK_BYTES: usize = 256;

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
    &text[..text.floor_char_boundary(max)]
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
}
