//! The worker: every tenant gets its own slots (its share of the worker),
//! each slot its own beanstalkd connections watching only that tenant's
//! tubes, so one tenant's flood or slow jobs never starve another's. A slot
//! reserves a job, runs it on the guest runtime in the current version of
//! the module that serves its tube, and deletes, releases with backoff or
//! buries it by the failure table (docs/architecture.md). Nothing is
//! deleted unless it succeeded; a stopping worker hands unfinished jobs
//! back.
//!
//! With several beanstalkd servers a tenant keeps its number of slots; each
//! slot has a connection per server and takes jobs from all of them in
//! turn (`plan.rs`), and everything a job sends (reply, follow-up puts,
//! failure record, delete/release/bury, touches) goes to the job's own
//! server. Each server connects, reconnects and fails on its own.
//!
//! - `slot.rs`: one slot's reserve loop over the servers;
//! - `plan.rs`: which server a slot asks next (pure);
//! - `links.rs`, `health.rs`: a slot's connection per server, and what all
//!   slots know of each server (its state changes are logged once);
//! - `job.rs`: one job, from its body to its log line;
//! - `settle.rs`: the failure table as a pure decision;
//! - `reply.rs`, `puts.rs`: what a finished job sends;
//! - `guest.rs`: calls on the guest runtime;
//! - `observe.rs`: what each job tells the metrics;
//! - `conn.rs`, `services.rs`: a slot's connection, the tasks' imports.

mod conn;
mod guest;
mod health;
mod job;
mod links;
mod observe;
mod plan;
mod puts;
mod reply;
mod services;
pub mod settle;
mod slot;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, Defaults, PutTubes, Tenant};
use crate::metrics::Metrics;
use crate::registry::Registry;
use health::Health;
use services::WorkerServices;
use slot::{SlotContext, slot};

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
    /// The beanstalkd servers, each served by every tenant's slots.
    pub servers: beanbox_queue::Servers,
    /// The modules, kept current.
    pub registry: Registry,
    /// Who runs what.
    pub tenants: Tenants,
    /// The runtime guests run on: not the one that runs the worker, so
    /// that no guest ever holds up a reserve, a touch or a signal.
    pub guests: tokio::runtime::Handle,
    /// Where jobs, busy slots and reconnects are recorded, and the tenants
    /// served are published ([`Metrics::set_tenants`]).
    pub metrics: Metrics,
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
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut retired: Vec<Group> = Vec::new();
    let health = Arc::new(Health::new(config.servers.len()));
    apply(&config, &health, &tenants, &mut groups, &mut retired);
    tracing::info!(addr = %config.servers, tenants = groups.len(), "worker started");

    loop {
        tokio::select! {
            _ = reached(&mut phase, Phase::Draining) => break,
            Some(()) = reload.recv() => match config.tenants.resolve(&registry) {
                Ok(new) => {
                    tracing::info!("config reloaded");
                    registry.configure(&new);
                    tenants = new;
                    apply(&config, &health, &tenants, &mut groups, &mut retired);
                }
                Err(e) => tracing::error!(error = %e, "config reload failed; keeping the old config"),
            },
            Ok(()) = modules_changed.changed() => {
                if matches!(config.tenants, Tenants::Implicit { tubes: None, .. })
                    && let Ok(new) = config.tenants.resolve(&registry)
                    && new != tenants
                {
                    tenants = new;
                    apply(&config, &health, &tenants, &mut groups, &mut retired);
                }
            }
        }
        retired.retain(|g| g.slots.iter().any(|h| !h.is_finished()));
    }

    // Stopping: pass each phase on to every group until all have finished.
    let mut all: Vec<Group> = groups.into_values().chain(retired).collect();
    let slots: Vec<JoinHandle<()>> = all.iter_mut().flat_map(|g| g.slots.drain(..)).collect();
    let mut waiting = Box::pin(async move {
        for slot in slots {
            // A slot that panicked has finished too.
            let _ = slot.await;
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
    health: &Arc<Health>,
    tenants: &Config,
    groups: &mut HashMap<String, Group>,
    retired: &mut Vec<Group>,
) {
    config.metrics.set_tenants(tenants);
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
            put_tubes: tenant.put_tubes.clone(),
        });
        let ctx = Arc::new(SlotContext {
            servers: config.servers.clone(),
            health: health.clone(),
            registry: config.registry.clone(),
            tenant: tenant.clone(),
            services,
            grants: Arc::new(tenant.grants.clone()),
            guests: config.guests.clone(),
            metrics: config.metrics.clone(),
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

/// Waits until the phase is `at` or later.
pub(crate) async fn reached(phase: &mut watch::Receiver<Phase>, at: Phase) {
    // The borrow guard is dropped here, before any other await. An error
    // means the sender is gone (the process is ending): treat as reached.
    let _ = phase.wait_for(|p| *p >= at).await;
}
