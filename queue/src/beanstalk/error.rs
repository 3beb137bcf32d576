//! The client's error type: one variant per beanstalkd error reply, plus what
//! can go wrong on our side of the connection. The `is_*` predicates group the
//! variants by what a caller should do next (retry, reconnect, give up).

/// Everything a beanstalkd request can fail with.
///
/// The first group mirrors the server's replies one to one; the last five
/// (`InvalidTube`, `Malformed`, `Io`, `Protocol`, `Closed`) are raised by
/// the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `OUT_OF_MEMORY`: the server cannot allocate the job; try again later.
    #[error("beanstalkd is out of memory (OUT_OF_MEMORY)")]
    OutOfMemory,
    /// `INTERNAL_ERROR`: a bug in the server.
    #[error("beanstalkd reported an internal error (INTERNAL_ERROR)")]
    InternalError,
    /// `BAD_FORMAT`: the server could not parse the command line.
    #[error("beanstalkd rejected a malformed command (BAD_FORMAT)")]
    BadFormat,
    /// `UNKNOWN_COMMAND`: the server does not know the command.
    #[error("beanstalkd does not know the command (UNKNOWN_COMMAND)")]
    UnknownCommand,
    /// `EXPECTED_CRLF`: a job body was not followed by `\r\n`.
    #[error("beanstalkd expected CRLF after the job body (EXPECTED_CRLF)")]
    ExpectedCrlf,
    /// `JOB_TOO_BIG`: the body is larger than the server's `-z` limit.
    #[error("job body is larger than the server's maximum job size (JOB_TOO_BIG)")]
    JobTooBig,
    /// `DRAINING`: the server is in drain mode and accepts no new jobs.
    #[error("beanstalkd is draining and accepts no new jobs (DRAINING)")]
    Draining,
    /// `DEADLINE_SOON`: a job this connection holds reaches its TTR within a
    /// second; touch, finish or release it.
    #[error("a reserved job's time-to-run ends within a second (DEADLINE_SOON)")]
    DeadlineSoon,
    /// `TIMED_OUT`: `reserve-with-timeout` found no job in time.
    #[error("no job became ready before the reserve timeout (TIMED_OUT)")]
    TimedOut,
    /// `NOT_FOUND`: no such job (or tube), or the job is not in a state that
    /// allows the command, e.g. reserved by another connection.
    #[error("job or tube not found (NOT_FOUND)")]
    NotFound,
    /// `NOT_IGNORED`: the connection tried to ignore its only watched tube.
    #[error("cannot ignore the only watched tube (NOT_IGNORED)")]
    NotIgnored,
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
    /// `TIMED_OUT`: a reserve with timeout found no job. Not a failure.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::TimedOut)
    }

    /// `DEADLINE_SOON`: a job held by this connection is about to time out.
    pub fn is_deadline_soon(&self) -> bool {
        matches!(self, Error::DeadlineSoon)
    }

    /// `NOT_FOUND`: the job or tube does not exist (any more) or is not ours.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound)
    }

    /// The connection is unusable: drop the [`Client`](super::Client) and
    /// reconnect. Anything it held is released by the server.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Closed | Error::Protocol(_))
    }

    /// The server cannot take the request now; the same request may succeed
    /// later (or on another server).
    pub fn is_server_busy(&self) -> bool {
        matches!(
            self,
            Error::OutOfMemory | Error::InternalError | Error::Draining
        )
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
