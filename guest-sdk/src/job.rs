//! The job that the current call serves.
//!
//! ```no_run
//! let job = beanbox_sdk::job::info();
//! if job.attempt > 1 {
//!     beanbox_sdk::warn!("job {} on {}: attempt {}", job.id, job.tube, job.attempt);
//! }
//! ```

use crate::wit::beanbox::task::job as wit;

/// Facts about the current job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobInfo {
    /// The beanstalkd job id; 0 when run outside a queue (`runner call`).
    pub id: u64,
    /// The tube the job was reserved from; empty outside a queue.
    pub tube: String,
    /// The task (export) name as the producer wrote it.
    pub task: String,
    /// Which attempt this is, starting at 1.
    pub attempt: u32,
}

/// Returns the current job's facts.
///
/// ```no_run
/// let job = beanbox_sdk::job::info();
/// let line = format!("id={} tube={} task={} attempt={}", job.id, job.tube, job.task, job.attempt);
/// ```
pub fn info() -> JobInfo {
    let wit::JobInfo {
        id,
        tube,
        task,
        attempt,
    } = wit::info();
    JobInfo {
        id,
        tube,
        task,
        attempt,
    }
}
