//! Putting jobs: a [`Producer`] keeps one connection and writes the job
//! [envelope](crate::Envelope) for you; [`PutOptions`] carries priority,
//! delay, time to run and the reply tube.

use serde_json::{Map, Value};

use crate::beanstalk::proto::validate_tube;
use crate::beanstalk::{Client, Error};
use crate::envelope;

/// beanstalkd's conventional priority: jobs below it count as urgent.
pub const DEFAULT_PRIORITY: u32 = 1024;

/// Seconds a worker may hold a job before beanstalkd hands it to another.
pub const DEFAULT_TTR: u32 = 60;

/// How to put a job. `Default` gives priority 1024, no delay, a 60 s time to
/// run and no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// 0 is most urgent, `u32::MAX` least.
    pub priority: u32,
    /// Seconds before the job becomes ready.
    pub delay: u32,
    /// Seconds a worker may hold the job (beanstalkd raises 0 to 1).
    pub ttr: u32,
    /// A tube that gets the job's outcome (used by [`Producer::put`] only).
    pub reply_to: Option<String>,
    /// Picks the server by hashing this key, for a
    /// [`MultiProducer`](crate::MultiProducer): jobs with the same key go to
    /// the same server while it is up. `None`: round-robin. A [`Producer`]
    /// has one server and ignores it.
    pub key: Option<String>,
}

impl Default for PutOptions {
    fn default() -> PutOptions {
        PutOptions {
            priority: DEFAULT_PRIORITY,
            delay: 0,
            ttr: DEFAULT_TTR,
            reply_to: None,
            key: None,
        }
    }
}

/// How a put on one connection failed, as far as placing it elsewhere goes.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Nothing of the put reached the server: it made no job there.
    NotSent(Error),
    /// The put was sent and the connection broke before its reply.
    Unknown(Error),
    /// The server answered with a refusal; the connection is fine.
    Refused(Error),
}

/// Puts jobs on any tube over one reused connection.
///
/// It remembers the tube it last `use`d, so a run of puts to one tube costs
/// one round trip each. After a connection error
/// ([`Error::is_connection_error`]) connect a new one: a put is not retried
/// here because it may have reached the server before the connection broke.
#[derive(Debug)]
pub struct Producer {
    client: Client,
    /// The tube the connection uses, when known.
    used: Option<String>,
}

impl Producer {
    /// Connects to beanstalkd at `addr` (`"host:port"`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the server cannot be reached.
    pub async fn connect(addr: &str) -> Result<Producer, Error> {
        let client = Client::connect(addr).await?;
        Ok(Producer {
            client,
            // Every new connection starts out using `default`.
            used: Some("default".to_owned()),
        })
    }

    /// Wraps a connected client, whatever tube it uses.
    pub fn from_client(client: Client) -> Producer {
        Producer { client, used: None }
    }

    /// Puts `{"task": task, "kwargs": kwargs, "reply_to": ...}` on `tube` and
    /// returns the job's id.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTube`] for a bad `tube` or `reply_to`, the server's
    /// refusals ([`ServerError::JobTooBig`](crate::ServerError::JobTooBig), [`ServerError::Draining`](crate::ServerError::Draining), …), or a
    /// connection error.
    pub async fn put(
        &mut self,
        tube: &str,
        task: &str,
        kwargs: &Map<String, Value>,
        opts: &PutOptions,
    ) -> Result<u64, Error> {
        let body = job_body(task, kwargs, opts)?;
        self.put_body(tube, &body, opts).await
    }

    /// Puts a ready-made body on `tube` and returns the job's id.
    /// `opts.reply_to` is ignored: the body is sent as given.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTube`], the server's refusals ([`ServerError::JobTooBig`](crate::ServerError::JobTooBig),
    /// [`ServerError::Draining`](crate::ServerError::Draining), …), or a connection error.
    pub async fn put_body(
        &mut self,
        tube: &str,
        body: &[u8],
        opts: &PutOptions,
    ) -> Result<u64, Error> {
        if self.used.as_deref() != Some(tube) {
            // Forget the old tube first: if `use` fails midway, which tube
            // the server has is unknown.
            self.used = None;
            self.client.use_tube(tube).await?;
            self.used = Some(tube.to_owned());
        }
        self.client
            .put(opts.priority, opts.delay, opts.ttr, body)
            .await
    }

    /// [`Producer::put_body`], saying whether a failed put can have made a
    /// job. The body and tube are already checked.
    pub(crate) async fn attempt(
        &mut self,
        tube: &str,
        body: &[u8],
        opts: &PutOptions,
    ) -> Result<u64, Attempt> {
        if self.used.as_deref() != Some(tube) {
            self.used = None;
            // A failed `use` sent nothing of the put.
            self.client.use_tube(tube).await.map_err(|e| {
                if e.is_connection_error() {
                    Attempt::NotSent(e)
                } else {
                    Attempt::Refused(e)
                }
            })?;
            self.used = Some(tube.to_owned());
        }
        match self
            .client
            .put(opts.priority, opts.delay, opts.ttr, body)
            .await
        {
            Ok(id) => Ok(id),
            Err(e) if !e.is_connection_error() => Err(Attempt::Refused(e)),
            Err(e) if self.client.last_request_unsent() => Err(Attempt::NotSent(e)),
            Err(e) => Err(Attempt::Unknown(e)),
        }
    }

    /// Whether the connection can no longer be used (an earlier failure,
    /// or the server closed it while idle).
    pub(crate) fn is_dead(&self) -> bool {
        self.client.is_broken() || self.client.peer_closed()
    }

    /// The underlying connection, for other commands. The producer forgets
    /// which tube is used, since the caller may `use` another.
    pub fn client(&mut self) -> &mut Client {
        self.used = None;
        &mut self.client
    }

    /// Gives back the connection.
    pub fn into_client(self) -> Client {
        self.client
    }
}

/// The envelope `{"task", "kwargs", "reply_to"}` of a job, after checking
/// `opts.reply_to` (for [`Producer::put`] and `MultiProducer::put`).
///
/// # Errors
///
/// [`Error::InvalidTube`] for a bad `reply_to`.
pub(crate) fn job_body(
    task: &str,
    kwargs: &Map<String, Value>,
    opts: &PutOptions,
) -> Result<Vec<u8>, Error> {
    if let Some(reply_to) = &opts.reply_to {
        validate_tube(reply_to)?;
    }
    Ok(envelope::encode(task, kwargs, opts.reply_to.as_deref()))
}
