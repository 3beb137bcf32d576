//! A slot: one of a tenant's concurrent workers, with its own beanstalkd
//! connection watching only that tenant's tubes whose module is loaded. It
//! reserves a job, has [`handle`] run and settle it, and reconnects with
//! backoff when the connection is lost.

use std::sync::Arc;
use std::time::Duration;

use beanbox_queue::Job;
use tokio::sync::watch;

use super::conn::{Backoff, Conn};
use super::job::{Settled, handle};
use super::services::WorkerServices;
use super::{Phase, reached};
use crate::config::Tenant;
use crate::registry::Registry;
use crate::sandbox::KeptInstance;

/// A pause after beanstalkd refused a reserve.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

/// What a tenant's slots share.
pub(super) struct SlotContext {
    pub(super) addr: String,
    pub(super) registry: Registry,
    pub(super) tenant: Tenant,
    pub(super) services: Arc<WorkerServices>,
    pub(super) grants: Arc<crate::sandbox::Grants>,
    /// Where guests run: never the threads that reserve and touch.
    pub(super) guests: tokio::runtime::Handle,
    pub(super) metrics: crate::metrics::Metrics,
}

impl SlotContext {
    /// The tenant's tubes whose module is loaded now, sorted.
    pub(super) fn active_tubes(&self) -> Vec<String> {
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

/// Seconds a reserve waits before the slot looks at its tubes again.
const RESERVE_WAIT_SECS: u32 = 1;

/// Serves the tenant's tubes until the phase says stop: (re)connects,
/// reserves, runs each job ([`handle`]) and reconnects when the tenant's
/// loaded modules change.
pub(super) async fn slot(n: usize, ctx: Arc<SlotContext>, mut phase: watch::Receiver<Phase>) {
    let tenant = ctx.tenant.name.as_str();
    let mut modules_changed = ctx.registry.subscribe();
    let mut reconnect = Backoff::new();
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
                    ctx.metrics.reconnected();
                    tracing::info!(tenant, slot = n, addr = %ctx.addr, "reconnected to beanstalkd");
                }
                reconnect = Backoff::new();
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
                Ok(job) => {
                    let _busy = ctx.metrics.busy(tenant);
                    handle(&ctx, &mut conn, &mut kept, job, &mut phase).await
                }
                Err(e) if e.is_timeout() => {
                    if waited {
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
                Err(e) if e.is_deadline_soon() => {
                    // This connection still holds a reserved job it has
                    // not settled (never meant to happen): closing it hands
                    // that job back, rather than spinning on the reply.
                    tracing::warn!(
                        tenant,
                        slot = n,
                        "a job reserved by this slot is near its TTR; reconnecting to hand it back"
                    );
                    continue 'connect;
                }
                Err(e) => {
                    // A refusal of a reserve (beanstalkd draining, out of
                    // memory): not a lost connection, so no reconnect
                    // backoff; a short pause before the next reserve.
                    tracing::warn!(tenant, slot = n, error = %e, "beanstalkd refused a reserve");
                    tokio::select! {
                        () = tokio::time::sleep(REFUSED_PAUSE) => {}
                        _ = reached(&mut phase, Phase::Draining) => {}
                    }
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
