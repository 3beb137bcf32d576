//! What a tenant's tasks reach through their host imports: log lines go to
//! the worker's log; a follow-up put is checked against the tenant's
//! `put_tubes` when the task asks (it is put by `puts.rs` once the task
//! succeeded).

use crate::config::PutTubes;
use crate::sandbox::{JobInfo, Level, PutError, PutRequest, Services};

/// Log lines and follow-up puts of one tenant's tasks.
pub(super) struct WorkerServices {
    pub(super) put_tubes: PutTubes,
}

impl Services for WorkerServices {
    fn log(&self, job: &JobInfo, level: Level, message: &str) {
        crate::sandbox::host::emit_log(job, level, message);
    }

    fn check_put(&self, _job: &JobInfo, request: &PutRequest) -> Result<(), PutError> {
        if self.put_tubes.allows(&request.tube) {
            Ok(())
        } else {
            Err(PutError::Denied(format!(
                "this task may not put jobs on tube `{}`",
                request.tube
            )))
        }
    }
}
