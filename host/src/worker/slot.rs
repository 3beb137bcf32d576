//! A slot: one of a tenant's concurrent workers, with its own connection to
//! each beanstalkd server ([`Links`]), each watching only that tenant's
//! tubes whose module is loaded. It looks for a job on the servers in the
//! order [`plan`] decides, has [`handle`] run and settle it on the
//! connection that reserved it, and reconnects to a server with backoff
//! when its connection is lost, while the others serve on.

use std::sync::Arc;
use std::time::Duration;

use beanbox_queue::Job;
use tokio::sync::watch;
use tokio::time::Instant;

use super::health::Health;
use super::job::{Ride, Settled, handle};
use super::links::{Links, Owner, STALL, stalled};
use super::plan::{self, Last};
use super::services::WorkerServices;
use super::{Phase, reached};
use crate::config::Tenant;
use crate::registry::Registry;
use crate::sandbox::KeptInstance;

/// A pause after beanstalkd refused a reserve.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

/// What a tenant's slots share.
pub(super) struct SlotContext {
    /// The beanstalkd servers; a server's index is its identity here.
    pub(super) servers: beanbox_queue::Servers,
    /// What the worker's slots know of each server.
    pub(super) health: Arc<Health>,
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

/// Seconds a reserve waits before the slot looks at its tubes (and its
/// other servers) again.
const RESERVE_WAIT_SECS: u32 = 1;

/// A reserve's reply and the server that gave it.
struct Reserved {
    server: usize,
    result: beanbox_queue::Result<Job>,
    /// From a reserve that waited [`RESERVE_WAIT_SECS`] (an idle second
    /// when it timed out).
    waited: bool,
}

/// Serves the tenant's tubes until the phase says stop: looks for jobs on
/// the servers, runs each ([`handle`]), and reopens connections whose
/// tubes changed with the tenant's loaded modules.
pub(super) async fn slot(n: usize, ctx: Arc<SlotContext>, mut phase: watch::Receiver<Phase>) {
    let tenant = ctx.tenant.name.as_str();
    let owner = Owner {
        tenant,
        slot: n,
        metrics: &ctx.metrics,
    };
    let mut modules_changed = ctx.registry.subscribe();
    let mut links = Links::new(ctx.servers.as_slice(), ctx.health.clone());
    let home = plan::home(n, plan::offset(tenant), links.len());
    let mut last = Last::Start;
    // The instance kept from this slot's last job, when its tenant allows
    // reuse: only this slot's own consecutive jobs ever run in it.
    let mut kept = KeptInstance::default();
    // The next job, when it came back with the previous one's delete.
    let mut next: Option<Reserved> = None;
    while *phase.borrow() == Phase::Running {
        // Modules came or went: watch exactly the tubes that have one.
        // (A job reserved meanwhile goes back when its connection closes.)
        if modules_changed.has_changed().unwrap_or(false) {
            modules_changed.mark_unchanged();
            let closed = links.close_stale(&ctx.active_tubes());
            if next.as_ref().is_some_and(|r| closed[r.server]) {
                next = None;
            }
        }
        let tubes = ctx.active_tubes();
        if tubes.is_empty() {
            links.close_all();
            next = None;
            wait_for_modules(&ctx, n, &mut modules_changed, &mut phase).await;
            continue;
        }
        let Reserved {
            server,
            result,
            waited,
        } = match next.take() {
            // Stopping with a job in hand: closing the connection hands it
            // back untouched.
            Some(_) if *phase.borrow() != Phase::Running => break,
            Some(reserved) => reserved,
            None => match find(&mut links, home, last, &tubes, &owner, &mut phase).await {
                Some(reserved) => reserved,
                None => break,
            },
        };
        let job = match result {
            Ok(job) => job,
            Err(e) if e.is_timeout() => {
                if waited {
                    // A second without a job: an idle slot gives its
                    // instance's memory and pool slots back.
                    kept.clear();
                }
                last = Last::Empty(server);
                continue;
            }
            Err(e) => {
                failed(&mut links, server, &e, &owner, running(&phase));
                last = Last::Empty(server);
                continue;
            }
        };
        last = Last::Served(server);
        let ride = plan::ride_along(server, &links.usable(Instant::now()));
        let (Some(conn), other) = links.pair(server, ride) else {
            // Never: the job's connection just reserved it.
            continue;
        };
        let rode = other.is_some();
        let other = match other {
            Some(other) => Ride::Other(other),
            // Not open yet: the next round opens it.
            None if ride != server => Ride::Nowhere,
            None => Ride::Same,
        };
        let settled = {
            let _busy = ctx.metrics.busy(tenant);
            handle(&ctx, conn, other, &mut kept, job, &mut phase).await
        };
        match settled {
            Ok(Settled::Done { next: pipelined }) => {
                next = pipelined.map(|result| Reserved {
                    server: ride,
                    result,
                    waited: false,
                });
            }
            // Closing the connection hands the job back.
            Ok(Settled::HandedBack) => links.close(server),
            Err(e) => {
                // What the other connection may have reserved meanwhile
                // goes back with it.
                if rode {
                    links.close(ride);
                }
                failed(&mut links, server, &e, &owner, running(&phase));
            }
        }
    }
}

/// Looks for a job: one round of [`plan::reserve_plan`] over the servers
/// that may be asked now, or, when none may, a wait for the first backoff
/// to end. Returns the first job, error, or idle timeout of the blocking
/// reserve; `None` when the worker is stopping.
async fn find(
    links: &mut Links,
    home: usize,
    last: Last,
    tubes: &[String],
    owner: &Owner<'_>,
    phase: &mut watch::Receiver<Phase>,
) -> Option<Reserved> {
    let mut last = last;
    loop {
        let plan = plan::reserve_plan(home, last, &links.usable(Instant::now()));
        for &server in &plan.tries {
            let Some(conn) = links.connect(server, tubes, owner).await else {
                continue;
            };
            let result = reserve(conn, 0, phase).await?;
            if !result.as_ref().is_err_and(beanbox_queue::Error::is_timeout) {
                return Some(Reserved {
                    server,
                    result,
                    waited: false,
                });
            }
        }
        // The planned server may have gone down during the round.
        let wait = plan
            .wait
            .filter(|&s| links.usable(Instant::now())[s])
            .or_else(|| plan::wait_on(home, &links.usable(Instant::now())));
        if let Some(server) = wait {
            if let Some(conn) = links.connect(server, tubes, owner).await {
                let result = reserve(conn, RESERVE_WAIT_SECS, phase).await?;
                return Some(Reserved {
                    server,
                    result,
                    waited: true,
                });
            }
            // Could not connect: another round, from after it.
            last = Last::Empty(server);
            continue;
        }
        // Every server is waiting out a backoff.
        let until = links
            .next_usable()
            .unwrap_or_else(|| Instant::now() + REFUSED_PAUSE);
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            _ = reached(phase, Phase::Draining) => return None,
        }
        last = Last::Start;
    }
}

/// A `reserve-with-timeout secs` that gives way to a stopping worker
/// (`None`) and to a server that stopped answering (an error).
async fn reserve(
    conn: &mut super::conn::Conn,
    secs: u32,
    phase: &mut watch::Receiver<Phase>,
) -> Option<beanbox_queue::Result<Job>> {
    let limit = Duration::from_secs(u64::from(secs)) + STALL;
    // Dropping a pending reserve breaks the connection, which is then
    // closed: beanstalkd hands back anything it reserved.
    tokio::select! {
        biased;
        _ = reached(phase, Phase::Draining) => None,
        r = tokio::time::timeout(limit, conn.client.reserve_with_timeout(secs)) => {
            Some(r.unwrap_or_else(|_| Err(stalled("reserve"))))
        }
    }
}

/// A request on server `s` failed: a lost connection is closed and opened
/// again (with backoff if that fails); a connection holding a job near its
/// TTR is closed to hand it back; a refusal pauses the server briefly.
fn failed(links: &mut Links, s: usize, e: &beanbox_queue::Error, owner: &Owner<'_>, running: bool) {
    if e.is_connection_error() {
        links.lost(s, e, running, owner);
    } else if e.is_deadline_soon() {
        // This connection still holds a reserved job it has not settled
        // (never meant to happen): closing it hands that job back, rather
        // than spinning on the reply.
        tracing::warn!(
            tenant = owner.tenant,
            slot = owner.slot,
            "a job reserved by this slot is near its TTR; reconnecting to hand it back"
        );
        links.close(s);
    } else {
        // A refusal of a reserve (beanstalkd draining, out of memory): not
        // a lost connection, so no reconnect backoff; a short pause before
        // this server is asked again.
        tracing::warn!(tenant = owner.tenant, slot = owner.slot, error = %e, "beanstalkd refused a reserve");
        links.pause(s, REFUSED_PAUSE);
    }
}

/// Nothing to serve until a module arrives. (One on its way, at start or
/// deployed, is not worth a warning: the registry logs its compile, and its
/// failure.)
async fn wait_for_modules(
    ctx: &SlotContext,
    n: usize,
    modules_changed: &mut watch::Receiver<u64>,
    phase: &mut watch::Receiver<Phase>,
) {
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
            tenant = ctx.tenant.name,
            expected = %expected.join(", "),
            "waiting for modules: none of this tenant's modules is loaded"
        );
    }
    tokio::select! {
        _ = modules_changed.changed() => {}
        _ = reached(phase, Phase::Draining) => {}
    }
}

fn running(phase: &watch::Receiver<Phase>) -> bool {
    *phase.borrow() == Phase::Running
}
