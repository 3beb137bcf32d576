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
}

impl Default for PutOptions {
    fn default() -> PutOptions {
        PutOptions {
            priority: DEFAULT_PRIORITY,
            delay: 0,
            ttr: DEFAULT_TTR,
            reply_to: None,
        }
    }
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
        if let Some(reply_to) = &opts.reply_to {
            validate_tube(reply_to)?;
        }
        let body = envelope::encode(task, kwargs, opts.reply_to.as_deref());
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
