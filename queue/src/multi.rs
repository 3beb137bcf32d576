//! Putting jobs over several beanstalkd servers: a [`MultiProducer`] keeps
//! one [`Producer`] per server, connected when first needed, and places
//! each job by the rules in [`placement`]. The I/O of
//! placing lives here; the decisions are pure functions there.

use std::fmt;
use std::hash::{BuildHasher as _, RandomState};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::beanstalk::Error;
use crate::beanstalk::proto::validate_tube;
use crate::placement;
use crate::producer::{Attempt, Producer, PutOptions};
use crate::servers::Servers;

/// How long connecting to one server may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A job a [`MultiProducer`] put, and the server that holds it (job ids are
/// per server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The job's id on its server.
    pub id: u64,
    /// The server's index in the [`Servers`] list.
    pub server: usize,
    /// The server's address, as given in the list.
    pub addr: String,
}

/// A server that could not take a put, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The server's address, as given in the list.
    pub addr: String,
    /// What went wrong (connection refused, timed out, `DRAINING`, …).
    pub why: String,
}

/// Why a [`MultiProducer`] put failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// A bad tube or `reply_to` name, refused before sending anything.
    #[error(transparent)]
    Invalid(Error),
    /// A server refused the job (`JOB_TOO_BIG`, or `BURIED` with the new
    /// job's id); another server would most likely refuse it too.
    #[error("beanstalkd at {addr} refused the job")]
    Refused {
        /// The server's address.
        addr: String,
        /// The server's answer.
        #[source]
        source: Error,
    },
    /// The put was sent to `addr` and the connection broke before the
    /// reply: the job may or may not be there. It was not put anywhere
    /// else; whether to put it again is the caller's decision.
    #[error(
        "outcome unknown: the connection to beanstalkd at {addr} broke after the put was sent, \
         so the job may or may not be on that server (it was not put anywhere else)"
    )]
    OutcomeUnknown {
        /// The server's address.
        addr: String,
        /// How the connection broke.
        #[source]
        source: Error,
    },
    /// No server could take the job; every one is named, in list order.
    #[error("no beanstalkd server could take the job: {}", Down(.0))]
    AllDown(Vec<Unreachable>),
}

/// Formats `a:1 (why); b:2 (why)`.
struct Down<'a>(&'a [Unreachable]);

impl fmt::Display for Down<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, u) in self.0.iter().enumerate() {
            let sep = if n == 0 { "" } else { "; " };
            write!(f, "{sep}{} ({})", u.addr, u.why)?;
        }
        Ok(())
    }
}

/// One server's connection and health.
#[derive(Debug, Default)]
struct Slot {
    producer: Option<Producer>,
    /// When it last failed to take a put.
    down_at: Option<Instant>,
}

/// Puts jobs over several beanstalkd servers.
///
/// - Without [`PutOptions::key`], round-robin: each job goes to the server
///   after the one that took the previous job. The first job's server is
///   picked at random, so many short-lived producers (one `runner put` per
///   job) spread too.
/// - With a key, the server is picked by rendezvous hashing of the key over
///   the server addresses ([`placement::score`]):
///   the same key goes to the same server while it is up, and adding a
///   server moves about `1/n` of the keys, all to the new server.
/// - A server that cannot be reached (connection refused or timed out after
///   [`CONNECT_TIMEOUT`], lost before the put was sent, or answering
///   `DRAINING` / `OUT_OF_MEMORY`) is skipped for
///   [`SKIP_FOR`](crate::placement::SKIP_FOR) and the put goes to the next
///   server (the key's next choice, or the next in the list); skipped
///   servers are tried last, so a put only fails when every server fails:
///   [`PutError::AllDown`] names each.
/// - A put whose reply was lost is never repeated:
///   [`PutError::OutcomeUnknown`] names the server.
///
/// Each server's connection is made on its first put and remembers its
/// used tube, as a [`Producer`] does.
#[derive(Debug)]
pub struct MultiProducer {
    servers: Servers,
    slots: Vec<Slot>,
    /// The server round-robin tries first for the next unkeyed job.
    next: usize,
}

impl MultiProducer {
    /// A producer over `servers`. Connects nothing yet.
    pub fn new(servers: Servers) -> MultiProducer {
        let start = RandomState::new().hash_one(std::process::id());
        let next = usize::try_from(start % servers.len() as u64).unwrap_or(0);
        let slots = servers.iter().map(|_| Slot::default()).collect();
        MultiProducer {
            servers,
            slots,
            next,
        }
    }

    /// The servers, in the order given.
    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// Puts `{"task": task, "kwargs": kwargs, "reply_to": ...}` on `tube`
    /// on one server and says which.
    ///
    /// # Errors
    ///
    /// [`PutError::Invalid`] for a bad `tube` or `reply_to`,
    /// [`PutError::Refused`], [`PutError::OutcomeUnknown`] or
    /// [`PutError::AllDown`].
    pub async fn put(
        &mut self,
        tube: &str,
        task: &str,
        kwargs: &Map<String, Value>,
        opts: &PutOptions,
    ) -> Result<Placed, PutError> {
        let body = crate::producer::job_body(task, kwargs, opts).map_err(PutError::Invalid)?;
        self.put_body(tube, &body, opts).await
    }

    /// Puts a ready-made body on `tube` on one server and says which.
    /// `opts.reply_to` is ignored: the body is sent as given.
    ///
    /// # Errors
    ///
    /// As [`MultiProducer::put`].
    pub async fn put_body(
        &mut self,
        tube: &str,
        body: &[u8],
        opts: &PutOptions,
    ) -> Result<Placed, PutError> {
        validate_tube(tube).map_err(PutError::Invalid)?;
        let preference = match &opts.key {
            Some(key) => placement::by_key(self.servers.as_slice(), key),
            None => placement::round_robin(self.servers.len(), self.next),
        };
        let now = Instant::now();
        let order = placement::try_order(preference, |i| {
            placement::skipped(self.slots[i].down_at, now)
        });
        let mut down: Vec<(usize, Unreachable)> = Vec::new();
        for i in order {
            let addr = self.servers.as_slice()[i].clone();
            match self.put_on(i, tube, body, opts).await {
                Ok(id) => {
                    self.slots[i].down_at = None;
                    if opts.key.is_none() {
                        self.next = (i + 1) % self.servers.len();
                    }
                    return Ok(Placed {
                        id,
                        server: i,
                        addr,
                    });
                }
                Err(Attempt::NotSent(e)) => {
                    self.slots[i].down_at = Some(Instant::now());
                    down.push((
                        i,
                        Unreachable {
                            addr,
                            why: e.to_string(),
                        },
                    ));
                }
                Err(Attempt::Refused(e)) if e.is_server_busy() => {
                    self.slots[i].down_at = Some(Instant::now());
                    down.push((
                        i,
                        Unreachable {
                            addr,
                            why: e.to_string(),
                        },
                    ));
                }
                Err(Attempt::Refused(source)) => return Err(PutError::Refused { addr, source }),
                Err(Attempt::Unknown(source)) => {
                    return Err(PutError::OutcomeUnknown { addr, source });
                }
            }
        }
        down.sort_by_key(|(i, _)| *i);
        Err(PutError::AllDown(
            down.into_iter().map(|(_, u)| u).collect(),
        ))
    }

    /// Puts on server `i`: on its connection if that is still alive, else
    /// (or when the old connection turns out dead before the put was sent)
    /// on a new one. A broken connection is dropped.
    async fn put_on(
        &mut self,
        i: usize,
        tube: &str,
        body: &[u8],
        opts: &PutOptions,
    ) -> Result<u64, Attempt> {
        let addr = &self.servers.as_slice()[i];
        let slot = &mut self.slots[i];
        if slot.producer.as_ref().is_some_and(Producer::is_dead) {
            slot.producer = None;
        }
        let mut reused = slot.producer.is_some();
        loop {
            let mut producer = match slot.producer.take() {
                Some(producer) => producer,
                None => connect(addr).await?,
            };
            let result = producer.attempt(tube, body, opts).await;
            match result {
                // The server closed an idle connection (e.g. it was
                // restarted); a new one decides.
                Err(Attempt::NotSent(_)) if reused => reused = false,
                // The connection is dropped here.
                Err(Attempt::NotSent(_) | Attempt::Unknown(_)) => return result,
                _ => {
                    slot.producer = Some(producer);
                    return result;
                }
            }
        }
    }
}

/// Connects to `addr` within [`CONNECT_TIMEOUT`].
async fn connect(addr: &str) -> Result<Producer, Attempt> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Producer::connect(addr)).await {
        Ok(Ok(producer)) => Ok(producer),
        Ok(Err(e)) => Err(Attempt::NotSent(e)),
        Err(_) => Err(Attempt::NotSent(Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )))),
    }
}
