//! Failure records: why a job was buried, kept on beanstalkd itself so that
//! it survives worker restarts and every worker's CLI and dashboard see it.
//!
//! The worker puts one small JSON record on the tube [`FAILURES_TUBE`]
//! BEFORE it buries a job ([`write()`]): a crash between the two leaves a
//! stale record, never a buried job without one. A reader ([`read()`])
//! reserves every ready record, judges them against the jobs' states
//! ([`judge`], pure), deletes the stale and duplicate ones and releases the
//! rest. A reader that dies releases what it held (beanstalkd does, when
//! the connection closes): no record is lost to a crash.
//!
//! - `record.rs`: the record, its format and version;
//! - `write.rs`: the worker's writer;
//! - `judge.rs`: which records stand (pure);
//! - `read.rs`: the reader.

mod judge;
mod read;
mod record;
mod write;

pub use judge::{Verdict, judge};
pub use read::{Current, MAX_RECORDS, Records, read};
pub(crate) use record::cut;
pub use record::{Failed, FailureRecord, MAX_REASON_BYTES, RECORD_VERSION, RecordError};
pub use write::{Written, write};

/// The tube that holds the failure records. No tenant may serve it.
pub const FAILURES_TUBE: &str = "beanbox.failures";

/// Records are put with beanbox's default job priority.
const RECORD_PRIORITY: u32 = beanbox_queue::producer::DEFAULT_PRIORITY;
