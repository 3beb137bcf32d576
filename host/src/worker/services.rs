//! What a tenant's tasks reach through their host imports: log lines go to
//! the worker's log; follow-up puts are checked against the tenant's
//! `put_tubes`.

use std::sync::Arc;

use beanbox_queue::Producer;
use tokio::sync::Mutex;

use crate::config::PutTubes;
use crate::sandbox::{JobInfo, Level, PutError, PutRequest, Services, host::PutFuture};

/// The one connection all follow-up puts share, opened on first use.
pub(super) struct SharedPuts {
    pub(super) addr: String,
    pub(super) producer: Arc<Mutex<Option<Producer>>>,
}

/// Log lines and follow-up puts of one tenant's tasks.
pub(super) struct WorkerServices {
    pub(super) shared: Arc<SharedPuts>,
    pub(super) put_tubes: PutTubes,
}

impl Services for WorkerServices {
    fn log(&self, job: &JobInfo, level: Level, message: &str) {
        crate::sandbox::host::emit_log(job, level, message);
    }

    fn put(&self, _job: &JobInfo, request: PutRequest) -> PutFuture {
        let allowed = self.put_tubes.allows(&request.tube);
        let (addr, producer) = (self.shared.addr.clone(), self.shared.producer.clone());
        Box::pin(async move {
            if !allowed {
                return Err(PutError::Denied(format!(
                    "this task may not put jobs on tube `{}`",
                    request.tube
                )));
            }
            let opts = beanbox_queue::PutOptions {
                priority: request
                    .options
                    .priority
                    .unwrap_or(beanbox_queue::producer::DEFAULT_PRIORITY),
                delay: request.options.delay_secs.unwrap_or(0),
                ttr: request
                    .options
                    .ttr_secs
                    .unwrap_or(beanbox_queue::producer::DEFAULT_TTR),
                reply_to: None,
            };
            let mut guard = producer.lock().await;
            // One retry on a fresh connection: the shared one may have gone
            // stale while beanstalkd restarted.
            for _ in 0..2 {
                let p = match guard.as_mut() {
                    Some(p) => p,
                    None => match Producer::connect(&addr).await {
                        Ok(p) => guard.insert(p),
                        Err(e) => {
                            return Err(PutError::Unavailable(format!(
                                "cannot reach beanstalkd at {addr}: {e}"
                            )));
                        }
                    },
                };
                match p
                    .put(&request.tube, &request.task, &request.kwargs, &opts)
                    .await
                {
                    Ok(id) => return Ok(id),
                    Err(e) if e.is_connection_error() => *guard = None,
                    Err(beanbox_queue::Error::InvalidTube(t)) => {
                        return Err(PutError::Invalid(format!("bad tube name: {t}")));
                    }
                    Err(e @ beanbox_queue::Error::JobTooBig) => {
                        return Err(PutError::Invalid(e.to_string()));
                    }
                    Err(e) => return Err(PutError::Other(e.to_string())),
                }
            }
            Err(PutError::Unavailable(format!(
                "lost the connection to beanstalkd at {addr}"
            )))
        })
    }
}
