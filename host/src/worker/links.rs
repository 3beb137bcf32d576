//! A slot's connections, one per server: each opened when first needed,
//! with its own reconnect backoff, so that a server that is down is skipped
//! until its backoff ends while the others serve on. Changes of a server's
//! state go to the worker's shared [`Health`], which says them once.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::conn::{Backoff, Conn};
use super::health::{Change, Health, Seen};

/// The longest a connect, or a reserve beyond its own timeout, may take
/// before the server counts as down: a server that stopped answering must
/// not hold a slot that could serve the others.
pub(super) const STALL: Duration = Duration::from_secs(5);

/// One server as one slot sees it.
struct Link {
    addr: Arc<str>,
    conn: Option<Conn>,
    /// The [`Health`] epoch `conn` was opened in.
    epoch: u64,
    backoff: Backoff,
    /// Not to be asked before then (a reconnect backoff, or a pause after
    /// a refused reserve).
    not_before: Option<Instant>,
    /// The last connection was lost or could not be opened: the next one
    /// opened is a reconnect.
    lost: bool,
}

/// Who owns the links, for log lines.
pub(super) struct Owner<'a> {
    pub(super) tenant: &'a str,
    pub(super) slot: usize,
    pub(super) metrics: &'a crate::metrics::Metrics,
}

/// A slot's connections, indexed like the worker's servers.
pub(super) struct Links {
    links: Vec<Link>,
    health: Arc<Health>,
}

impl Links {
    /// One closed link per server.
    pub(super) fn new(servers: &[String], health: Arc<Health>) -> Links {
        let links = servers
            .iter()
            .map(|addr| Link {
                addr: Arc::from(addr.as_str()),
                conn: None,
                epoch: 0,
                backoff: Backoff::new(),
                not_before: None,
                lost: false,
            })
            .collect();
        Links { links, health }
    }

    /// How many servers.
    pub(super) fn len(&self) -> usize {
        self.links.len()
    }

    /// Which servers may be asked now (not waiting out a backoff).
    pub(super) fn usable(&self, now: Instant) -> Vec<bool> {
        self.links
            .iter()
            .map(|l| l.not_before.is_none_or(|t| t <= now))
            .collect()
    }

    /// When the first server waiting out a backoff may be asked again.
    pub(super) fn next_usable(&self) -> Option<Instant> {
        self.links.iter().filter_map(|l| l.not_before).min()
    }

    /// Server `s`'s connection, opened (watching `tubes`) if it is not;
    /// `None` when it cannot be opened (logged, and backed off).
    pub(super) async fn connect(
        &mut self,
        s: usize,
        tubes: &[String],
        owner: &Owner<'_>,
    ) -> Option<&mut Conn> {
        let several = self.links.len() > 1;
        let link = &mut self.links[s];
        if link.conn.is_none() {
            let opened = tokio::time::timeout(STALL, Conn::open(&link.addr, tubes.to_vec()))
                .await
                .unwrap_or_else(|_| Err(stalled("connect")));
            match opened {
                Ok(mut conn) => {
                    let (change, epoch) = self.health.saw(s, Seen::Opened);
                    if change == Change::Back {
                        tracing::info!(addr = %link.addr, "reconnected to beanstalkd");
                    }
                    if std::mem::take(&mut link.lost) {
                        owner.metrics.reconnected();
                    }
                    conn.server = several.then(|| link.addr.clone());
                    link.conn = Some(conn);
                    link.epoch = epoch;
                    link.backoff = Backoff::new();
                    link.not_before = None;
                }
                Err(e) => {
                    let delay = link.backoff.next();
                    link.lost = true;
                    link.not_before = Some(Instant::now() + delay);
                    let (change, _) = self.health.saw(s, Seen::Refused);
                    if change == Change::Unreachable {
                        tracing::warn!(
                            tenant = owner.tenant, slot = owner.slot, addr = %link.addr,
                            error = %e, retry_in = ?delay, "cannot reach beanstalkd"
                        );
                    }
                    return None;
                }
            }
        }
        link.conn.as_mut()
    }

    /// Server `s`'s connection and, when `other` is another open one, that
    /// one too.
    pub(super) fn pair(
        &mut self,
        s: usize,
        other: usize,
    ) -> (Option<&mut Conn>, Option<&mut Conn>) {
        if s == other {
            return (self.links[s].conn.as_mut(), None);
        }
        let (low, high) = self.links.split_at_mut(s.max(other));
        let (a, b) = (&mut low[s.min(other)], &mut high[0]);
        let (a, b) = (a.conn.as_mut(), b.conn.as_mut());
        if s < other { (a, b) } else { (b, a) }
    }

    /// Server `s`'s connection failed: it is closed (beanstalkd hands back
    /// what it held) and opened again on next use; the outage is logged
    /// once, when `running` (a stopping worker's losses are no news).
    pub(super) fn lost(
        &mut self,
        s: usize,
        error: &beanbox_queue::Error,
        running: bool,
        owner: &Owner<'_>,
    ) {
        let link = &mut self.links[s];
        if link.conn.take().is_none() || !running {
            return;
        }
        link.lost = true;
        let (change, _) = self.health.saw(s, Seen::Lost(link.epoch));
        if change == Change::Lost {
            tracing::warn!(
                tenant = owner.tenant, slot = owner.slot, addr = %link.addr,
                error = %error, "lost beanstalkd connection; reconnecting"
            );
        }
    }

    /// Closes server `s`'s connection (handing back anything it holds);
    /// it is opened again on next use, without backoff.
    pub(super) fn close(&mut self, s: usize) {
        self.links[s].conn = None;
    }

    /// Closes every connection.
    pub(super) fn close_all(&mut self) {
        for link in &mut self.links {
            link.conn = None;
        }
    }

    /// Closes the connections that do not watch exactly `tubes`; returns
    /// which were closed.
    pub(super) fn close_stale(&mut self, tubes: &[String]) -> Vec<bool> {
        self.links
            .iter_mut()
            .map(|l| {
                let stale = l.conn.as_ref().is_some_and(|c| c.watching != tubes);
                if stale {
                    l.conn = None;
                }
                stale
            })
            .collect()
    }

    /// Asks nothing of server `s` for `pause` (it refused a reserve), its
    /// connection kept.
    pub(super) fn pause(&mut self, s: usize, pause: Duration) {
        self.links[s].not_before = Some(Instant::now() + pause);
    }
}

/// The error of a server that did not answer within [`STALL`].
pub(super) fn stalled(what: &str) -> beanbox_queue::Error {
    beanbox_queue::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer to {what} within {STALL:?}"),
    ))
}
