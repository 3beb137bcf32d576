//! The client's error type: beanstalkd's error replies ([`ServerError`]), plus what
//! can go wrong on our side of the connection. The `is_*` predicates group the
//! variants by what a caller should do next (retry, reconnect, give up).

use super::server_error::ServerError;

/// Everything a beanstalkd request can fail with.
///
/// `Server` and `Buried` are the server's refusals; the last five
/// (`InvalidTube`, `Malformed`, `Io`, `Protocol`, `Closed`) are raised by
/// the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One of the server's error replies (`NOT_FOUND`, `JOB_TOO_BIG`, …);
    /// the connection is fine.
    #[error("{0}")]
    Server(#[from] ServerError),
    /// `BURIED [id]`: the server ran out of memory growing a priority queue
    /// and buried the job instead (`put` carries the new job's id;
    /// `release` carries none).
    #[error("{}", buried_message(*.0))]
    Buried(Option<u64>),
    /// A tube name that beanstalkd would refuse; caught before sending.
    #[error(
        "invalid tube name {0:?}: 1 to 200 bytes of letters, digits and `-+/;.$_()`, not starting with `-`"
    )]
    InvalidTube(String),
    /// A reply arrived whole but its content could not be read (a stats
    /// field missing or out of range). Only this request failed: the
    /// connection is still in step and stays usable.
    #[error("beanstalkd reply could not be read: {0}")]
    Malformed(String),
    /// Reading from or writing to the connection failed.
    #[error("beanstalkd connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something this client cannot parse or did not expect,
    /// or an earlier request on this connection was abandoned.
    #[error("beanstalkd protocol error: {0}")]
    Protocol(String),
    /// The server closed the connection.
    #[error("beanstalkd closed the connection")]
    Closed,
}

fn buried_message(id: Option<u64>) -> String {
    match id {
        Some(id) => format!("beanstalkd is out of memory and buried job {id} (BURIED)"),
        None => "beanstalkd is out of memory and buried the job (BURIED)".to_owned(),
    }
}

impl Error {
    /// The server's error reply, when this is one.
    pub fn server_error(&self) -> Option<ServerError> {
        match self {
            Error::Server(e) => Some(*e),
            _ => None,
        }
    }

    /// `TIMED_OUT`: a reserve with timeout found no job. Not a failure.
    pub fn is_timeout(&self) -> bool {
        self.server_error() == Some(ServerError::TimedOut)
    }

    /// `DEADLINE_SOON`: a job held by this connection is about to time out.
    pub fn is_deadline_soon(&self) -> bool {
        self.server_error() == Some(ServerError::DeadlineSoon)
    }

    /// `NOT_FOUND`: the job or tube does not exist (any more) or is not ours.
    pub fn is_not_found(&self) -> bool {
        self.server_error() == Some(ServerError::NotFound)
    }

    /// The connection is unusable: drop the [`Client`](super::Client) and
    /// reconnect. Anything it held is released by the server.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Closed | Error::Protocol(_))
    }

    /// The server cannot take the request now; the same request may succeed
    /// later (or on another server).
    pub fn is_server_busy(&self) -> bool {
        self.server_error().is_some_and(ServerError::is_server_busy)
    }

    /// A copy for reporting one connection failure to two pipelined requests.
    /// `io::Error` is not `Clone`, so its kind and message are carried over.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Closed => Error::Closed,
            Error::Protocol(m) => Error::Protocol(m.clone()),
            other => Error::Protocol(format!("earlier pipelined request failed: {other}")),
        }
    }
}

/// The result of every beanstalkd request.
pub type Result<T> = std::result::Result<T, Error>;
