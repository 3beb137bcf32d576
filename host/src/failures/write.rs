//! The worker's writer: one record per burial, put before the bury.

use beanbox_queue::Client;

use super::{FAILURES_TUBE, FailureRecord, RECORD_PRIORITY};

/// A record's time to run: how long a reader may hold it before beanstalkd
/// gives it back by itself.
const RECORD_TTR: u32 = 60;

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
    match put {
        Ok(id) => Ok(Written::Written(id)),
        Err(e) if e.is_connection_error() => Err(e),
        Err(e) => {
            tracing::warn!(job = record.job, error = %e, "cannot write the failure record");
            Ok(Written::Lost(format!("failure record lost: {e}")))
        }
    }
}
