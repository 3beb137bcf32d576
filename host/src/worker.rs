//! The worker: N slots, each with its own beanstalkd connection, reserve a
//! job, run it in the module that serves its tube, and then delete, release
//! with backoff or bury it by the failure policy in DESIGN.md. Nothing is
//! deleted unless it succeeded; a stopping worker hands unfinished jobs back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beanbox_queue::{Client, Envelope, Job, JobStats, Producer, reply_err, reply_ok};
use tokio::sync::{Mutex, watch};

use crate::sandbox::{
    CallContext, CallError, JobInfo, Level, Limits, Module, PutError, PutRequest, Services,
    host::PutFuture,
};

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Reserving and running jobs.
    Running,
    /// Reserving nothing more; running jobs may finish.
    Draining,
    /// The grace period is over: unfinished jobs are handed back now.
    Abort,
}

/// Which tubes a task may put follow-up jobs on.
#[derive(Debug, Clone)]
pub enum PutPolicy {
    /// Any tube.
    Any,
    /// Only these.
    Only(Vec<String>),
}

impl PutPolicy {
    fn allows(&self, tube: &str) -> bool {
        match self {
            PutPolicy::Any => true,
            PutPolicy::Only(tubes) => tubes.iter().any(|t| t == tube),
        }
    }
}

/// Everything a worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// beanstalkd's `host:port`.
    pub addr: String,
    /// Tube -> the module that serves it.
    pub modules: HashMap<String, Module>,
    /// Jobs run at once (one connection each).
    pub concurrency: usize,
    /// Each job's budget; the wall-clock part is cut to the job's TTR.
    pub limits: Limits,
    /// Attempts before a retryable failure is buried.
    pub max_attempts: u32,
    /// Release delay after the first failed attempt; doubles each attempt.
    pub backoff: Duration,
    /// The longest release delay.
    pub backoff_max: Duration,
    /// Where tasks may put follow-up jobs.
    pub put_policy: PutPolicy,
}

/// What slots share.
struct Shared {
    config: WorkerConfig,
    tubes: Vec<String>,
    services: Arc<WorkerServices>,
}

/// Runs the worker until `phase` says stop and every slot has finished.
///
/// # Errors
///
/// None at present once started: connection trouble is retried, job
/// failures are policy. The signature leaves room for fatal set-up errors.
pub async fn run(config: WorkerConfig, phase: watch::Receiver<Phase>) -> anyhow::Result<()> {
    let mut tubes: Vec<String> = config.modules.keys().cloned().collect();
    tubes.sort();
    let services = Arc::new(WorkerServices {
        addr: config.addr.clone(),
        policy: config.put_policy.clone(),
        producer: Arc::new(Mutex::new(None)),
    });
    tracing::info!(
        addr = %config.addr,
        tubes = %tubes.join(","),
        concurrency = config.concurrency,
        "worker started"
    );
    let shared = Arc::new(Shared {
        config,
        tubes,
        services,
    });
    let slots: Vec<_> = (0..shared.config.concurrency.max(1))
        .map(|n| tokio::spawn(slot(n, shared.clone(), phase.clone())))
        .collect();
    for handle in slots {
        handle.await?;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Waits until the worker's phase is `at` or later.
async fn reached(phase: &mut watch::Receiver<Phase>, at: Phase) {
    // The borrow guard is dropped here, before any other await.
    if phase.wait_for(|p| *p >= at).await.is_err() {
        // The sender is gone (the process is ending): treat as reached.
    }
}

/// A slot's connection and the tube it last `use`d for replies.
struct Conn {
    client: Client,
    used: Option<String>,
}

impl Conn {
    async fn open(shared: &Shared) -> beanbox_queue::Result<Conn> {
        let mut client = Client::connect(&shared.config.addr).await?;
        for tube in &shared.tubes {
            client.watch(tube).await?;
        }
        // A fresh connection watches `default`; this worker serves only its tubes.
        if !shared.tubes.iter().any(|t| t == "default") {
            client.ignore("default").await?;
        }
        Ok(Conn {
            client,
            used: Some("default".into()),
        })
    }

    async fn put(&mut self, tube: &str, body: &[u8]) -> beanbox_queue::Result<u64> {
        if self.used.as_deref() != Some(tube) {
            self.used = None;
            self.client.use_tube(tube).await?;
            self.used = Some(tube.to_string());
        }
        self.client
            .put(
                beanbox_queue::producer::DEFAULT_PRIORITY,
                0,
                beanbox_queue::producer::DEFAULT_TTR,
                body,
            )
            .await
    }
}

/// Reconnect delays: 100 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        now
    }
}

async fn slot(n: usize, shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
    let mut reconnect = Backoff(Backoff::FIRST);
    'connect: while *phase.borrow() == Phase::Running {
        let mut conn = match Conn::open(&shared).await {
            Ok(conn) => {
                if reconnect.0 > Backoff::FIRST {
                    tracing::info!(slot = n, addr = %shared.config.addr, "reconnected to beanstalkd");
                }
                reconnect = Backoff(Backoff::FIRST);
                conn
            }
            Err(e) => {
                let delay = reconnect.next();
                tracing::warn!(slot = n, addr = %shared.config.addr, error = %e, retry_in = ?delay, "cannot reach beanstalkd");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = reached(&mut phase, Phase::Draining) => {}
                }
                continue 'connect;
            }
        };
        loop {
            // Dropping a pending reserve breaks the connection, which is then
            // closed: beanstalkd hands back anything it reserved for us.
            let reserved = tokio::select! {
                biased;
                _ = reached(&mut phase, Phase::Draining) => break 'connect,
                r = conn.client.reserve() => r,
            };
            let result = match reserved {
                Ok(job) => handle(&shared, &mut conn, job, &mut phase).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {}
                Err(e) if e.is_connection_error() => {
                    tracing::warn!(slot = n, error = %e, "lost beanstalkd connection; reconnecting");
                    continue 'connect;
                }
                Err(e) => {
                    // A server refusal (out of memory, draining...): pause, go on.
                    tracing::warn!(slot = n, error = %e, "beanstalkd refused a request");
                    tokio::time::sleep(reconnect.next()).await;
                }
            }
        }
    }
}

/// Why a job ended the way it did, for the log line.
enum Verdict {
    Deleted,
    Released { delay: u32 },
    Buried,
}

/// Runs one reserved job and settles it. Errors are beanstalkd errors only.
async fn handle(
    shared: &Shared,
    conn: &mut Conn,
    job: Job,
    phase: &mut watch::Receiver<Phase>,
) -> beanbox_queue::Result<()> {
    let started = Instant::now();
    let stats = conn.client.stats_job(job.id).await?;
    let attempt = u32::try_from(stats.releases)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let envelope = match Envelope::parse(&job.body) {
        Ok(env) => env,
        Err(e) => {
            conn.client.bury(job.id, stats.pri).await?;
            tracing::error!(
                job = job.id, tube = %stats.tube, attempt, outcome = "buried",
                reason = %format!("bad envelope: {e}"),
                "job failed"
            );
            return Ok(());
        }
    };
    let Some(module) = shared.config.modules.get(&stats.tube) else {
        // Not reachable while every watched tube has a module; kept so that a
        // routing mistake buries (keeps) the job rather than losing it.
        conn.client.bury(job.id, stats.pri).await?;
        tracing::error!(job = job.id, tube = %stats.tube, outcome = "buried", "no module serves this tube");
        return Ok(());
    };
    let ttr = Duration::from_secs(u64::from(stats.ttr.max(1)));
    let mut limits = shared.config.limits;
    limits.timeout = limits.timeout.min(ttr);
    let ctx = CallContext {
        limits,
        job: JobInfo {
            id: job.id,
            tube: stats.tube.clone(),
            task: envelope.task.clone(),
            attempt,
        },
        services: shared.services.clone(),
    };

    // Touch the job before its TTR runs out, so beanstalkd never hands a
    // running job to another worker.
    let touch_every = ttr.saturating_sub(Duration::from_secs(1)).max(ttr / 2);
    let mut touch =
        tokio::time::interval_at(tokio::time::Instant::now() + touch_every, touch_every);
    let call = module.call(&envelope.task, &envelope.kwargs, &ctx);
    tokio::pin!(call);
    let outcome = loop {
        tokio::select! {
            outcome = &mut call => break Some(outcome),
            _ = touch.tick() => conn.client.touch(job.id).await?,
            _ = reached(phase, Phase::Abort) => break None,
        }
    };
    let Some(outcome) = outcome else {
        // Closing the connection (the caller does, on this error) makes
        // beanstalkd put the job back at once, without counting an attempt.
        tracing::warn!(job = job.id, tube = %stats.tube, task = %envelope.task, attempt, "grace period over: handing the unfinished job back");
        return Err(beanbox_queue::Error::Closed);
    };

    let verdict = match &outcome.result {
        Ok(value) => {
            if let Some(reply_to) = &envelope.reply_to {
                conn.put(reply_to, &reply_ok(job.id, &envelope.task, value))
                    .await?;
            }
            conn.client.delete(job.id).await?;
            Verdict::Deleted
        }
        Err(e) if e.is_retryable() && attempt < shared.config.max_attempts => {
            let delay = backoff_delay(&shared.config, attempt);
            conn.client.release(job.id, stats.pri, delay).await?;
            Verdict::Released { delay }
        }
        Err(e) => {
            conn.client.bury(job.id, stats.pri).await?;
            if let Some(reply_to) = &envelope.reply_to {
                conn.put(
                    reply_to,
                    &reply_err(job.id, &envelope.task, e.kind(), &e.to_string()),
                )
                .await?;
            }
            Verdict::Buried
        }
    };
    log_finished(
        &stats,
        &envelope.task,
        attempt,
        &verdict,
        &outcome,
        started.elapsed(),
    );
    Ok(())
}

fn backoff_delay(config: &WorkerConfig, attempt: u32) -> u32 {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let delay = config
        .backoff
        .saturating_mul(factor)
        .min(config.backoff_max);
    u32::try_from(delay.as_secs()).unwrap_or(u32::MAX)
}

fn log_finished(
    stats: &JobStats,
    task: &str,
    attempt: u32,
    verdict: &Verdict,
    outcome: &crate::sandbox::Outcome,
    elapsed: Duration,
) {
    let (id, tube, fuel, ms) = (
        stats.id,
        stats.tube.as_str(),
        outcome.fuel_used,
        elapsed.as_secs_f64() * 1e3,
    );
    let reason = outcome.result.as_ref().err().map(CallError::to_string);
    match verdict {
        Verdict::Deleted => {
            tracing::info!(
                job = id,
                tube,
                task,
                attempt,
                outcome = "deleted",
                ms,
                fuel,
                "job done"
            );
        }
        Verdict::Released { delay } => tracing::warn!(
            job = id,
            tube,
            task,
            attempt,
            outcome = "released",
            delay,
            ms,
            fuel,
            reason = reason.as_deref().unwrap_or(""),
            "job failed; retrying"
        ),
        Verdict::Buried => tracing::error!(
            job = id,
            tube,
            task,
            attempt,
            outcome = "buried",
            ms,
            fuel,
            reason = reason.as_deref().unwrap_or(""),
            "job failed"
        ),
    }
}

/// Log lines and follow-up puts of the worker's tasks.
struct WorkerServices {
    addr: String,
    policy: PutPolicy,
    /// One connection shared by all slots' follow-up puts, opened on first use.
    producer: Arc<Mutex<Option<Producer>>>,
}

impl Services for WorkerServices {
    fn log(&self, job: &JobInfo, level: Level, message: &str) {
        crate::sandbox::host::emit_log(job, level, message);
    }

    fn put(&self, _job: &JobInfo, request: PutRequest) -> PutFuture {
        let allowed = self.policy.allows(&request.tube);
        let (addr, producer) = (self.addr.clone(), self.producer.clone());
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
