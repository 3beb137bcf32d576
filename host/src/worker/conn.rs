//! A slot's connection to one beanstalkd server: the tubes it watches, its
//! puts (replies and follow-up jobs), a delete with the next reserve riding
//! on another server's connection, and the delays between reconnects.

use std::sync::Arc;
use std::time::Duration;

use beanbox_queue::{Client, Job, JobStats};

/// A slot's connection and the tubes it watches.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) watching: Vec<String>,
    /// The server's address, named in its jobs' log lines when the worker
    /// serves several (job ids are per server); `None` with one.
    pub(super) server: Option<Arc<str>>,
}

impl Conn {
    /// Connects, watches exactly `tubes` (not `default`, unless listed).
    pub(super) async fn open(addr: &str, tubes: Vec<String>) -> beanbox_queue::Result<Conn> {
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
            server: None,
        })
    }

    /// Puts `body` on `tube` in one round trip that leaves the connection
    /// using `default` again, so that no slot keeps a reply tube alive.
    pub(super) async fn put(
        &mut self,
        tube: &str,
        (priority, delay, ttr): (u32, u32, u32),
        body: &[u8],
    ) -> beanbox_queue::Result<u64> {
        self.client.put_in(tube, priority, delay, ttr, body).await
    }

    /// [`Conn::put`], tried again after a short pause while beanstalkd
    /// refuses it for a reason that may pass (draining, out of memory, an
    /// internal error): four tries over about 0.35 s. A connection error or
    /// a refusal that cannot pass (too big) is returned at once.
    pub(super) async fn put_retrying(
        &mut self,
        tube: &str,
        options: (u32, u32, u32),
        body: &[u8],
    ) -> beanbox_queue::Result<u64> {
        let mut pause = Duration::from_millis(50);
        for _ in 0..3 {
            match self.put(tube, options, body).await {
                Err(e) if e.is_server_busy() => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                done => return done,
            }
        }
        self.put(tube, options, body).await
    }
}

/// Deletes job `id` on its own connection, `conn`, while the next reserve
/// (`reserve-with-timeout reserve_secs`) goes to another server's, `other`
/// (if any), at the same time: one round trip, as with one server. With
/// `fetch`, the job's statistics go in the delete's write, into `stats`.
pub(super) async fn delete_riding(
    conn: &mut Conn,
    other: Option<&mut Conn>,
    id: u64,
    fetch: bool,
    stats: &mut Option<JobStats>,
    reserve_secs: u32,
) -> beanbox_queue::Result<(
    beanbox_queue::Result<()>,
    Option<beanbox_queue::Result<Job>>,
)> {
    let delete = async {
        if !fetch {
            (None, conn.client.delete(id).await)
        } else {
            let (s, d) = conn.client.stats_and_delete(id).await;
            (Some(s), d)
        }
    };
    let reserve = async {
        match other {
            Some(other) => Some(other.client.reserve_with_timeout(reserve_secs).await),
            None => None,
        }
    };
    let ((fetched, deleted), reserved) = tokio::join!(delete, reserve);
    match fetched {
        Some(Ok(s)) => *stats = Some(s),
        Some(Err(e)) if e.is_connection_error() => return Err(e),
        _ => {}
    }
    Ok((deleted, reserved))
}

/// Reconnect delays: 100 ms doubling to 5 s. Only for a connection that
/// was lost or could not be opened, never for a request beanstalkd refused.
pub(super) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(super) fn new() -> Self {
        Backoff(Self::FIRST)
    }

    pub(super) fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        now
    }
}
