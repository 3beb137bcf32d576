//! The queue side of beanbox: a tokio [beanstalkd](https://beanstalkd.github.io/)
//! client, the JSON job [envelope](Envelope) and a [`Producer`] for putting
//! jobs. It knows nothing of WebAssembly, so a program that only puts jobs
//! depends on this crate alone.
//!
//! # Putting a job
//!
//! ```no_run
//! use beanbox_queue::{Producer, PutOptions, ReplyBody, Client};
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = std::env::var(beanbox_queue::ADDR_ENV)
//!     .unwrap_or_else(|_| beanbox_queue::DEFAULT_ADDR.to_owned());
//! let mut producer = Producer::connect(&addr).await?;
//!
//! // {"task": "resize", "kwargs": {...}, "reply_to": "results"} on tube "images".
//! let kwargs = json!({"url": "https://example.com/cat.png", "width": 200});
//! let opts = PutOptions {
//!     ttr: 120,
//!     reply_to: Some("results".to_owned()),
//!     ..PutOptions::default()
//! };
//! let id = producer
//!     .put("images", "resize", kwargs.as_object().unwrap(), &opts)
//!     .await?;
//! println!("put job {id}");
//!
//! // The worker puts the outcome on "results".
//! let mut consumer = Client::connect(&addr).await?;
//! consumer.watch("results").await?;
//! let reply = consumer.reserve_with_timeout(30).await?;
//! let body = ReplyBody::parse(&reply.body)?;
//! consumer.delete(reply.id).await?;
//! match body.outcome {
//!     Ok(value) => println!("job {} returned {value}", body.job),
//!     Err(e) => println!("job {} failed: {e}", body.job),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Putting jobs over several servers
//!
//! A [`MultiProducer`] spreads jobs over a list of servers ([`Servers`],
//! parsed from `"a:11300,b:11300"` as `--beanstalkd` and `BEANSTALKD_ADDR`
//! give it): round-robin, or by [`PutOptions::key`] with rendezvous hashing
//! (the same key, the same server; see [`placement`] for the exact hash). A
//! server that cannot be reached is skipped for a while and the job goes to
//! the next; a put whose reply was lost is reported, never repeated. Each
//! job comes back with the server that holds it, since job ids are per
//! server.
//!
//! ```no_run
//! use beanbox_queue::{MultiProducer, PutError, PutOptions, Servers};
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let servers: Servers = "10.0.0.1:11300,10.0.0.2:11300,10.0.0.3:11300".parse()?;
//! let mut producer = MultiProducer::new(servers); // connects on first use
//!
//! let kwargs = json!({"order": 1234});
//! let opts = PutOptions {
//!     key: Some("customer-42".to_owned()), // all of this customer's jobs on one server
//!     ..PutOptions::default()
//! };
//! match producer.put("invoices", "render", kwargs.as_object().unwrap(), &opts).await {
//!     Ok(placed) => println!("put job {} on {}", placed.id, placed.addr),
//!     // Sent, but the connection broke before the reply: it may be there.
//!     Err(PutError::OutcomeUnknown { addr, .. }) => println!("check {addr} before putting again"),
//!     Err(e) => return Err(e.into()), // e.g. AllDown, naming every server
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Errors and retries
//!
//! Every request returns [`Result`]: the [`Error`] variants mirror
//! beanstalkd's replies, and the `is_*` predicates say what to do next —
//! [`Error::is_connection_error`] means reconnect, [`Error::is_server_busy`]
//! means try again later.

pub mod beanstalk;
pub mod envelope;
pub mod kwargs;
pub mod multi;
pub mod placement;
pub mod producer;
pub mod servers;
#[cfg(feature = "testing")]
pub mod testing;

pub use beanstalk::{Client, Error, Job, JobState, JobStats, Result, ServerError, TubeStats};
pub use envelope::{
    Envelope, EnvelopeError, ErrorKind, ReplyBody, ReplyError, reply_err, reply_ok,
};
pub use kwargs::{KwargsError, parse_kwargs};
pub use multi::{MultiProducer, Placed, PutError, Unreachable};
pub use producer::{Producer, PutOptions};
pub use servers::{Servers, ServersError};

/// Where beanstalkd listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:11300";

/// The environment variable that overrides [`DEFAULT_ADDR`].
pub const ADDR_ENV: &str = "BEANSTALKD_ADDR";
