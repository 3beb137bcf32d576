//! The worker: every tenant gets its own slots (its share of the worker),
//! each slot its own beanstalkd connection watching only that tenant's tubes,
//! so one tenant's flood or slow jobs never starve another's. A slot reserves
//! a job, runs it in the current version of the module that serves its tube,
//! and deletes, releases with backoff or buries it by the failure policy in
//! DESIGN.md. Nothing is deleted unless it succeeded; a stopping worker hands
//! unfinished jobs back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beanbox_queue::{Client, Envelope, Job, JobStats, Producer, reply_err, reply_ok};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, Defaults, PutTubes, Tenant};
use crate::registry::Registry;
use crate::sandbox::{
    AttemptCell, CallContext, CallError, JobInfo, KeptInstance, Level, PutError, PutRequest,
    Services, host::PutFuture,
};

/// Where a worker (or one tenant's slots) is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Reserving and running jobs.
    Running,
    /// Reserving nothing more; running jobs may finish.
    Draining,
    /// The grace period is over: unfinished jobs are handed back now.
    Abort,
}

/// Where the tenants come from.
#[derive(Debug, Clone)]
pub enum Tenants {
    /// A config file (`--config`), reloaded on SIGHUP.
    File {
        /// The file.
        path: PathBuf,
        /// What the flags give, under the file's settings.
        defaults: Defaults,
    },
    /// No file: every module is its own tenant with the defaults.
    Implicit {
        /// Serve only these tubes (module `<tube>`), waiting for missing
        /// ones; `None` serves every module in the directory, as they come.
        tubes: Option<Vec<String>>,
        /// The flags.
        defaults: Defaults,
        /// Where tasks may put follow-up jobs; `None`: each module's own tube.
        put_tubes: Option<PutTubes>,
    },
}

impl Tenants {
    /// The tenants as they stand now.
    ///
    /// # Errors
    ///
    /// A config file that does not load.
    pub fn resolve(&self, registry: &Registry) -> Result<Config, crate::config::ConfigError> {
        match self {
            Tenants::File { path, defaults } => Config::load(path, defaults),
            Tenants::Implicit {
                tubes,
                defaults,
                put_tubes,
            } => {
                let modules = tubes.clone().unwrap_or_else(|| registry.names());
                let mut config = Config::implicit(&modules, defaults);
                if let Some(put_tubes) = put_tubes {
                    for tenant in &mut config.tenants {
                        tenant.put_tubes = put_tubes.clone();
                    }
                }
                Ok(config)
            }
        }
    }
}

/// Everything a worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// beanstalkd's `host:port`.
    pub addr: String,
    /// The modules, kept current.
    pub registry: Registry,
    /// Who runs what.
    pub tenants: Tenants,
}

/// Runs the worker until `phase` says stop and every slot has finished.
/// Each message on `reload` re-reads a config file (SIGHUP); a bad file
/// leaves the old tenants in place.
///
/// # Errors
///
/// A config file that does not load at start.
pub async fn run(
    config: WorkerConfig,
    mut phase: watch::Receiver<Phase>,
    mut reload: mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    let registry = config.registry.clone();
    let mut modules_changed = registry.subscribe();
    let mut tenants = config.tenants.resolve(&registry)?;
    let shared = Arc::new(SharedPuts {
        addr: config.addr.clone(),
        producer: Arc::new(Mutex::new(None)),
    });
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut retired: Vec<Group> = Vec::new();
    apply(&config, &shared, &tenants, &mut groups, &mut retired);
    tracing::info!(addr = %config.addr, tenants = groups.len(), "worker started");

    loop {
        tokio::select! {
            _ = reached(&mut phase, Phase::Draining) => break,
            Some(()) = reload.recv() => match config.tenants.resolve(&registry) {
                Ok(new) => {
                    tracing::info!("config reloaded");
                    registry.configure(&new);
                    tenants = new;
                    apply(&config, &shared, &tenants, &mut groups, &mut retired);
                }
                Err(e) => tracing::error!(error = %e, "config reload failed; keeping the old config"),
            },
            Ok(()) = modules_changed.changed() => {
                if matches!(config.tenants, Tenants::Implicit { tubes: None, .. })
                    && let Ok(new) = config.tenants.resolve(&registry)
                    && new != tenants
                {
                    tenants = new;
                    apply(&config, &shared, &tenants, &mut groups, &mut retired);
                }
            }
        }
        retired.retain(|g| g.slots.iter().any(|h| !h.is_finished()));
    }

    // Stopping: pass each phase on to every group until all have finished.
    let all: Vec<Group> = groups.into_values().chain(retired).collect();
    let mut waiting = Box::pin(async {
        for group in &all {
            for slot in &group.slots {
                while !slot.is_finished() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    loop {
        let now = *phase.borrow_and_update();
        for group in &all {
            // Never move a group backwards (a retired one may be draining).
            group.phase.send_if_modified(|p| {
                let was = *p;
                *p = was.max(now);
                *p != was
            });
        }
        tokio::select! {
            () = &mut waiting => break,
            changed = phase.changed() => if changed.is_err() {
                // The signal watcher is gone, right after its last word
                // (Abort): still wait for the slots to hand their jobs back.
                for group in &all {
                    group.phase.send_replace(Phase::Abort);
                }
                (&mut waiting).await;
                break;
            },
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// One tenant's running slots.
struct Group {
    tenant: Tenant,
    phase: watch::Sender<Phase>,
    slots: Vec<JoinHandle<()>>,
}

/// Starts slots for new or changed tenants and drains those of removed or
/// changed ones (their running jobs finish on the old settings).
fn apply(
    config: &WorkerConfig,
    shared: &Arc<SharedPuts>,
    tenants: &Config,
    groups: &mut HashMap<String, Group>,
    retired: &mut Vec<Group>,
) {
    let wanted: HashMap<&str, &Tenant> = tenants
        .tenants
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let stale: Vec<String> = groups
        .iter()
        .filter(|(name, g)| wanted.get(name.as_str()).is_none_or(|t| **t != g.tenant))
        .map(|(name, _)| name.clone())
        .collect();
    for name in stale {
        if let Some(group) = groups.remove(&name) {
            group.phase.send_replace(Phase::Draining);
            retired.push(group);
        }
    }
    for tenant in &tenants.tenants {
        if groups.contains_key(&tenant.name) {
            continue;
        }
        let (tx, rx) = watch::channel(Phase::Running);
        let services = Arc::new(WorkerServices {
            shared: shared.clone(),
            put_tubes: tenant.put_tubes.clone(),
        });
        let ctx = Arc::new(SlotContext {
            addr: config.addr.clone(),
            registry: config.registry.clone(),
            tenant: tenant.clone(),
            services,
            grants: Arc::new(tenant.grants.clone()),
        });
        let slots = (0..tenant.concurrency.max(1))
            .map(|n| tokio::spawn(slot(n, ctx.clone(), rx.clone())))
            .collect();
        let tubes: Vec<&str> = tenant.tubes().collect();
        tracing::info!(
            tenant = %tenant.name, tubes = %tubes.join(","), concurrency = tenant.concurrency,
            "serving tenant"
        );
        groups.insert(
            tenant.name.clone(),
            Group {
                tenant: tenant.clone(),
                phase: tx,
                slots,
            },
        );
    }
}

/// What a tenant's slots share.
struct SlotContext {
    addr: String,
    registry: Registry,
    tenant: Tenant,
    services: Arc<WorkerServices>,
    grants: Arc<crate::sandbox::Grants>,
}

impl SlotContext {
    /// The tenant's tubes whose module is loaded now, sorted.
    fn active_tubes(&self) -> Vec<String> {
        let mut tubes: Vec<String> = self
            .tenant
            .routes
            .iter()
            .filter(|r| self.registry.get(&r.module).is_some())
            .map(|r| r.tube.clone())
            .collect();
        tubes.sort();
        tubes
    }
}

/// Waits until the phase is `at` or later.
async fn reached(phase: &mut watch::Receiver<Phase>, at: Phase) {
    // The borrow guard is dropped here, before any other await. An error
    // means the sender is gone (the process is ending): treat as reached.
    let _ = phase.wait_for(|p| *p >= at).await;
}

/// A slot's connection, the tubes it watches, and the tube it last `use`d.
struct Conn {
    client: Client,
    watching: Vec<String>,
    used: Option<String>,
}

impl Conn {
    async fn open(addr: &str, tubes: Vec<String>) -> beanbox_queue::Result<Conn> {
        let mut client = Client::connect(addr).await?;
        for tube in &tubes {
            client.watch(tube).await?;
        }
        // A fresh connection watches `default`; a slot serves only its tubes.
        if !tubes.iter().any(|t| t == "default") {
            client.ignore("default").await?;
        }
        Ok(Conn {
            client,
            watching: tubes,
            used: Some("default".into()),
        })
    }

    async fn put(&mut self, tube: &str, body: &[u8]) -> beanbox_queue::Result<u64> {
        if self.used.as_deref() != Some(tube) {
            self.used = None;
            self.client.use_tube(tube).await?;
            self.used = Some(tube.to_string());
        }
        let (pri, ttr) = (
            beanbox_queue::producer::DEFAULT_PRIORITY,
            beanbox_queue::producer::DEFAULT_TTR,
        );
        self.client.put(pri, 0, ttr, body).await
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

/// Seconds a reserve waits before the slot looks at its tubes again.
const RESERVE_WAIT_SECS: u32 = 1;

/// The reserve that rides along with a delete waits for nothing: a job that
/// is ready comes back in the same round trip, and otherwise the slot goes
/// back to its ordinary waiting reserve (so the finished job's log line is
/// not held up by the wait).
const RESERVE_NOW_SECS: u32 = 0;

async fn slot(n: usize, ctx: Arc<SlotContext>, mut phase: watch::Receiver<Phase>) {
    let tenant = ctx.tenant.name.as_str();
    let mut modules_changed = ctx.registry.subscribe();
    let mut reconnect = Backoff(Backoff::FIRST);
    // Set when a connection was lost or could not be opened, so that the
    // next successful open is logged even when it is the first try.
    let mut lost = false;
    // The instance kept from this slot's last job, when its tenant allows
    // reuse: only this slot's own consecutive jobs ever run in it.
    let mut kept = KeptInstance::default();
    'connect: while *phase.borrow() == Phase::Running {
        let tubes = ctx.active_tubes();
        if tubes.is_empty() {
            // Nothing to serve until a module arrives. (One on its way, at
            // start or deployed, is not worth a warning: the registry logs
            // its compile, and its failure.)
            let on_its_way = ctx
                .tenant
                .routes
                .iter()
                .any(|r| ctx.registry.pending(&r.module));
            if n == 0 && !on_its_way {
                let expected: Vec<String> = ctx
                    .tenant
                    .routes
                    .iter()
                    .map(|r| ctx.registry.file_of(&r.module).display().to_string())
                    .collect();
                tracing::warn!(
                    tenant,
                    expected = %expected.join(", "),
                    "waiting for modules: none of this tenant's modules is loaded"
                );
            }
            tokio::select! {
                _ = modules_changed.changed() => {}
                _ = reached(&mut phase, Phase::Draining) => {}
            }
            continue;
        }
        let mut conn = match Conn::open(&ctx.addr, tubes).await {
            Ok(conn) => {
                if std::mem::take(&mut lost) {
                    tracing::info!(tenant, slot = n, addr = %ctx.addr, "reconnected to beanstalkd");
                }
                reconnect = Backoff(Backoff::FIRST);
                conn
            }
            Err(e) => {
                lost = true;
                let delay = reconnect.next();
                tracing::warn!(tenant, slot = n, addr = %ctx.addr, error = %e, retry_in = ?delay, "cannot reach beanstalkd");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = reached(&mut phase, Phase::Draining) => {}
                }
                continue 'connect;
            }
        };
        // The next job, when it came back with the previous one's delete.
        let mut next: Option<beanbox_queue::Result<Job>> = None;
        loop {
            let (reserved, waited) = match next.take() {
                // Stopping with a job in hand: closing the connection hands
                // it back untouched.
                Some(_) if *phase.borrow() != Phase::Running => break 'connect,
                Some(reserved) => (reserved, false),
                // Dropping a pending reserve breaks the connection, which is
                // then closed: beanstalkd hands back anything it reserved.
                None => tokio::select! {
                    biased;
                    _ = reached(&mut phase, Phase::Draining) => break 'connect,
                    r = conn.client.reserve_with_timeout(RESERVE_WAIT_SECS) => (r, true),
                },
            };
            let result = match reserved {
                Ok(job) => handle(&ctx, &mut conn, &mut kept, job, &mut phase).await,
                Err(e) if e.is_timeout() || e.is_deadline_soon() => {
                    if waited && e.is_timeout() {
                        // A second without a job: an idle slot gives its
                        // instance's memory and pool slots back.
                        kept.clear();
                    }
                    Ok(Settled::Done { next: None })
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(Settled::Done { next: pipelined }) => next = pipelined,
                // Dropping the connection hands the job back.
                Ok(Settled::HandedBack) => continue 'connect,
                Err(e) if e.is_connection_error() => {
                    if *phase.borrow() == Phase::Running {
                        tracing::warn!(tenant, slot = n, error = %e, "lost beanstalkd connection; reconnecting");
                        lost = true;
                    }
                    continue 'connect;
                }
                Err(e) => {
                    // A server refusal (out of memory, draining...): pause, go on.
                    tracing::warn!(tenant, slot = n, error = %e, "beanstalkd refused a request");
                    tokio::time::sleep(reconnect.next()).await;
                }
            }
            // Modules came or went: watch exactly the tubes that have one.
            // (A job reserved meanwhile goes back when the connection closes.)
            if modules_changed.has_changed().unwrap_or(false) {
                modules_changed.mark_unchanged();
                if ctx.active_tubes() != conn.watching {
                    continue 'connect;
                }
            }
        }
    }
}

/// What became of a reserved job.
enum Settled {
    /// Deleted, released or buried; after a delete, the next job's reserve
    /// may have gone in the same write (one round trip per job).
    Done {
        /// The reply to that reserve, when it was sent.
        next: Option<beanbox_queue::Result<Job>>,
    },
    /// Left untouched, to be handed back by closing the connection (the
    /// grace period is over, or its module is gone).
    HandedBack,
}

/// Why a job ended the way it did, for the log line.
enum Verdict {
    Deleted,
    Released { delay: u32 },
    Buried,
}

/// How long a job whose statistics are not yet known may run before they
/// are fetched (its TTR may call for touches or an earlier deadline).
const FACTS_AFTER: Duration = Duration::from_millis(250);

/// Runs one reserved job and settles it. Errors are beanstalkd errors only.
///
/// A slot watching one tube knows the job's tube, so the call starts at
/// once; the job's statistics (attempt, TTR, priority) ride along with the
/// delete on success, or are fetched when the task fails, asks for its
/// attempt, or runs longer than [`FACTS_AFTER`]. A slot watching several
/// tubes fetches them first, to route the job.
async fn handle(
    ctx: &SlotContext,
    conn: &mut Conn,
    kept: &mut KeptInstance,
    job: Job,
    phase: &mut watch::Receiver<Phase>,
) -> beanbox_queue::Result<Settled> {
    let started = Instant::now();
    let mut stats = match conn.watching.as_slice() {
        [_] => None,
        _ => Some(conn.client.stats_job(job.id).await?),
    };
    let tube = match &stats {
        Some(s) => s.tube.clone(),
        None => conn.watching[0].clone(),
    };
    let envelope = match Envelope::parse(&job.body) {
        Ok(env) => env,
        Err(e) => {
            let s = facts(&mut stats, conn, job.id).await?;
            conn.client.bury(job.id, s.pri).await?;
            tracing::error!(
                job = job.id, tube = %tube, attempt = attempt_of(s), outcome = "buried",
                reason = %format!("bad envelope: {e}"),
                "job failed"
            );
            return Ok(Settled::Done { next: None });
        }
    };
    let route = ctx.tenant.routes.iter().find(|r| r.tube == tube);
    let module = route.and_then(|r| ctx.registry.get(&r.module).map(|m| (m, &r.module)));
    let Some((module, module_name)) = module else {
        // The module was removed after the reserve: leave the job untouched.
        // Closing the connection puts it back without counting an attempt.
        tracing::warn!(job = job.id, tube = %tube, "module gone; leaving the job queued");
        return Ok(Settled::HandedBack);
    };
    let cell = stats.is_none().then(|| Arc::new(AttemptCell::default()));
    let mut limits = ctx.tenant.limits;
    if let Some(s) = &stats {
        limits.timeout = limits.timeout.min(ttr_of(s));
    }
    let call_ctx = CallContext {
        limits,
        job: JobInfo {
            id: job.id,
            tube: tube.clone(),
            task: envelope.task.clone(),
            attempt: stats.as_ref().map_or(0, attempt_of),
        },
        services: ctx.services.clone(),
        grants: ctx.grants.clone(),
        attempt: cell.clone(),
    };
    let jobs_per_instance = ctx.tenant.jobs_per_instance(module_name);
    let call = module.call_reusing(
        &envelope.task,
        &envelope.kwargs,
        &call_ctx,
        kept,
        jobs_per_instance,
    );
    tokio::pin!(call);

    let mut outcome = None;
    if let Some(cell) = &cell {
        tokio::select! {
            o = &mut call => outcome = Some(o),
            () = tokio::time::sleep(FACTS_AFTER) => {}
            () = cell.wanted() => {}
            _ = reached(phase, Phase::Abort) => return Ok(hand_back(&job, &tube, &envelope.task)),
        }
        if outcome.is_none() {
            // Fetched while the call goes on; both are polled here.
            let fetched = {
                let request = conn.client.stats_job(job.id);
                tokio::pin!(request);
                tokio::select! {
                    s = &mut request => s,
                    o = &mut call => {
                        outcome = Some(o);
                        request.await
                    }
                }
            }?;
            cell.set(attempt_of(&fetched));
            stats = Some(fetched);
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => {
            // Touch the job before its TTR runs out, so beanstalkd never
            // hands a running job to another worker, and stop the task at
            // its TTR: its deadline never exceeds it.
            let ttr = stats.as_ref().map_or(limits.timeout, ttr_of);
            let touch_every = ttr.saturating_sub(Duration::from_secs(1)).max(ttr / 2);
            let start = tokio::time::Instant::from_std(started);
            let mut touch = tokio::time::interval_at(start + touch_every, touch_every);
            loop {
                tokio::select! {
                    o = &mut call => break o,
                    _ = touch.tick() => conn.client.touch(job.id).await?,
                    () = tokio::time::sleep_until(start + ttr) => break deadline_outcome(&envelope.task, ttr, started),
                    _ = reached(phase, Phase::Abort) => return Ok(hand_back(&job, &tube, &envelope.task)),
                }
            }
        }
    };

    let mut next = None;
    let verdict = match &outcome.result {
        Ok(value) => {
            if let Some(reply_to) = &envelope.reply_to {
                conn.put(reply_to, &reply_ok(job.id, &envelope.task, value))
                    .await?;
            }
            if *phase.borrow() == Phase::Running {
                let (deleted, reserved) = if stats.is_some() {
                    conn.client
                        .delete_and_reserve_with_timeout(job.id, RESERVE_NOW_SECS)
                        .await
                } else {
                    // The statistics, for the log line, in the same write.
                    let (s, d, r) = conn
                        .client
                        .stats_delete_and_reserve_with_timeout(job.id, RESERVE_NOW_SECS)
                        .await;
                    match s {
                        Ok(s) => stats = Some(s),
                        Err(e) if e.is_connection_error() => return Err(e),
                        Err(_) => {}
                    }
                    (d, r)
                };
                match deleted {
                    Ok(()) => {}
                    Err(e) if e.is_connection_error() => return Err(e),
                    // E.g. NOT_FOUND: its TTR ran out and another worker
                    // has it. Keep the reserve's answer either way.
                    Err(e) => {
                        tracing::warn!(job = job.id, error = %e, "delete failed; the job may run again")
                    }
                }
                next = Some(reserved);
            } else {
                if stats.is_none() {
                    stats = conn.client.stats_job(job.id).await.ok();
                }
                conn.client.delete(job.id).await?;
            }
            Verdict::Deleted
        }
        Err(e) => {
            let s = facts(&mut stats, conn, job.id).await?;
            let (attempt, pri) = (attempt_of(s), s.pri);
            if e.is_retryable() && attempt < ctx.tenant.max_attempts {
                let delay = backoff_delay(&ctx.tenant, attempt);
                conn.client.release(job.id, pri, delay).await?;
                Verdict::Released { delay }
            } else {
                conn.client.bury(job.id, pri).await?;
                if let Some(reply_to) = &envelope.reply_to {
                    conn.put(
                        reply_to,
                        &reply_err(job.id, &envelope.task, e.kind(), &e.to_string()),
                    )
                    .await?;
                }
                Verdict::Buried
            }
        }
    };
    // 0 only when the statistics could not be had (the job vanished).
    let attempt = stats.as_ref().map_or(0, attempt_of);
    log_finished(
        job.id,
        &tube,
        &envelope.task,
        attempt,
        &verdict,
        &outcome,
        started.elapsed(),
    );
    Ok(Settled::Done { next })
}

/// The job's statistics, fetched now unless already known.
async fn facts<'a>(
    stats: &'a mut Option<JobStats>,
    conn: &mut Conn,
    id: u64,
) -> beanbox_queue::Result<&'a JobStats> {
    if stats.is_none() {
        *stats = Some(conn.client.stats_job(id).await?);
    }
    Ok(stats.as_ref().expect("set above"))
}

/// Which attempt a job is on: beanstalkd's release count, plus one. It
/// survives worker restarts.
fn attempt_of(stats: &JobStats) -> u32 {
    u32::try_from(stats.releases)
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

fn ttr_of(stats: &JobStats) -> Duration {
    Duration::from_secs(u64::from(stats.ttr.max(1)))
}

/// The outcome of a call stopped at the job's TTR.
fn deadline_outcome(task: &str, ttr: Duration, started: Instant) -> crate::sandbox::Outcome {
    crate::sandbox::Outcome {
        result: Err(CallError::Deadline {
            task: task.to_string(),
            after: ttr,
        }),
        fuel_used: 0,
        stdout: Vec::new(),
        stderr: Vec::new(),
        elapsed: started.elapsed(),
        // Stopped mid-call: its instance, fresh or kept, is gone.
        instance_jobs: 0,
    }
}

/// The grace period is over: the caller closes the connection, which makes
/// beanstalkd put the job back at once, without counting an attempt.
fn hand_back(job: &Job, tube: &str, task: &str) -> Settled {
    tracing::warn!(
        job = job.id,
        tube,
        task,
        "grace period over: handing the unfinished job back"
    );
    Settled::HandedBack
}

fn backoff_delay(tenant: &Tenant, attempt: u32) -> u32 {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    let delay = tenant
        .backoff
        .saturating_mul(factor)
        .min(tenant.backoff_max);
    u32::try_from(delay.as_secs()).unwrap_or(u32::MAX)
}

fn log_finished(
    id: u64,
    tube: &str,
    task: &str,
    attempt: u32,
    verdict: &Verdict,
    outcome: &crate::sandbox::Outcome,
    elapsed: Duration,
) {
    let fuel = outcome.fuel_used;
    let instance_jobs = outcome.instance_jobs;
    // Whole microseconds: prints as 0.706, not 0.7059460000000001.
    let ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
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
                instance_jobs,
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
            instance_jobs,
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
            instance_jobs,
            reason = reason.as_deref().unwrap_or(""),
            "job failed"
        ),
    }
}

/// The one connection all follow-up puts share, opened on first use.
struct SharedPuts {
    addr: String,
    producer: Arc<Mutex<Option<Producer>>>,
}

/// Log lines and follow-up puts of one tenant's tasks.
struct WorkerServices {
    shared: Arc<SharedPuts>,
    put_tubes: PutTubes,
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
