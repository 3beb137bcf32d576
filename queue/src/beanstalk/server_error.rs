//! beanstalkd's error replies: one enum that owns each reply's wire name, its
//! message and what a caller should do about it, so the parser, `Display` and
//! the [`Error`](super::Error) predicates read the same table.

use std::fmt;

/// An error reply: the server refused the request, the connection is fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// `OUT_OF_MEMORY`: the server cannot allocate the job; try again later.
    OutOfMemory,
    /// `INTERNAL_ERROR`: a bug in the server.
    InternalError,
    /// `BAD_FORMAT`: the server could not parse the command line.
    BadFormat,
    /// `UNKNOWN_COMMAND`: the server does not know the command.
    UnknownCommand,
    /// `EXPECTED_CRLF`: a job body was not followed by `\r\n`.
    ExpectedCrlf,
    /// `JOB_TOO_BIG`: the body is larger than the server's `-z` limit.
    JobTooBig,
    /// `DRAINING`: the server is in drain mode and accepts no new jobs.
    Draining,
    /// `DEADLINE_SOON`: a job this connection holds reaches its TTR within a
    /// second; touch, finish or release it.
    DeadlineSoon,
    /// `TIMED_OUT`: `reserve-with-timeout` found no job in time.
    TimedOut,
    /// `NOT_FOUND`: no such job (or tube), or the job is not in a state that
    /// allows the command, e.g. reserved by another connection.
    NotFound,
    /// `NOT_IGNORED`: the connection tried to ignore its only watched tube.
    NotIgnored,
}

/// What the server's refusal means for the caller.
struct Props {
    /// The reply's keyword on the wire.
    name: &'static str,
    /// The sentence `Display` shows (followed by the wire name).
    message: &'static str,
    /// The server cannot take the request now; the same request may succeed
    /// later (or on another server).
    busy: bool,
}

impl ServerError {
    /// Every error reply, for parsing by name.
    pub const ALL: [ServerError; 11] = [
        ServerError::OutOfMemory,
        ServerError::InternalError,
        ServerError::BadFormat,
        ServerError::UnknownCommand,
        ServerError::ExpectedCrlf,
        ServerError::JobTooBig,
        ServerError::Draining,
        ServerError::DeadlineSoon,
        ServerError::TimedOut,
        ServerError::NotFound,
        ServerError::NotIgnored,
    ];

    /// The one table: each reply's name, message and properties.
    const fn props(self) -> Props {
        let (name, message, busy) = match self {
            ServerError::OutOfMemory => ("OUT_OF_MEMORY", "beanstalkd is out of memory", true),
            ServerError::InternalError => (
                "INTERNAL_ERROR",
                "beanstalkd reported an internal error",
                true,
            ),
            ServerError::BadFormat => (
                "BAD_FORMAT",
                "beanstalkd rejected a malformed command",
                false,
            ),
            ServerError::UnknownCommand => (
                "UNKNOWN_COMMAND",
                "beanstalkd does not know the command",
                false,
            ),
            ServerError::ExpectedCrlf => (
                "EXPECTED_CRLF",
                "beanstalkd expected CRLF after the job body",
                false,
            ),
            ServerError::JobTooBig => (
                "JOB_TOO_BIG",
                "job body is larger than the server's maximum job size",
                false,
            ),
            ServerError::Draining => (
                "DRAINING",
                "beanstalkd is draining and accepts no new jobs",
                true,
            ),
            ServerError::DeadlineSoon => (
                "DEADLINE_SOON",
                "a reserved job's time-to-run ends within a second",
                false,
            ),
            ServerError::TimedOut => (
                "TIMED_OUT",
                "no job became ready before the reserve timeout",
                false,
            ),
            ServerError::NotFound => ("NOT_FOUND", "job or tube not found", false),
            ServerError::NotIgnored => {
                ("NOT_IGNORED", "cannot ignore the only watched tube", false)
            }
        };
        Props {
            name,
            message,
            busy,
        }
    }

    /// The reply's keyword on the wire, e.g. `"NOT_FOUND"`.
    pub const fn name(self) -> &'static str {
        self.props().name
    }

    /// The error reply called `name`, if it is one.
    pub fn from_name(name: &str) -> Option<ServerError> {
        ServerError::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The server cannot take the request now (`OUT_OF_MEMORY`,
    /// `INTERNAL_ERROR`, `DRAINING`); the same request may succeed later.
    pub const fn is_server_busy(self) -> bool {
        self.props().busy
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.props();
        write!(f, "{} ({})", p.message, p.name)
    }
}

impl std::error::Error for ServerError {}

#[cfg(test)]
mod tests {
    use super::ServerError;

    #[test]
    fn every_name_parses_back_to_its_variant() {
        for e in ServerError::ALL {
            assert_eq!(ServerError::from_name(e.name()), Some(e));
            assert!(e.to_string().ends_with(&format!(" ({})", e.name())), "{e}");
        }
        assert_eq!(ServerError::from_name("INSERTED"), None);
        assert_eq!(ServerError::from_name("not_found"), None);
    }

    #[test]
    fn only_the_busy_replies_are_retryable() {
        let busy: Vec<_> = ServerError::ALL
            .into_iter()
            .filter(|e| e.is_server_busy())
            .collect();
        assert_eq!(
            busy,
            [
                ServerError::OutOfMemory,
                ServerError::InternalError,
                ServerError::Draining
            ]
        );
    }

    #[test]
    fn display_keeps_the_known_texts() {
        assert_eq!(
            ServerError::NotFound.to_string(),
            "job or tube not found (NOT_FOUND)"
        );
        assert_eq!(
            ServerError::JobTooBig.to_string(),
            "job body is larger than the server's maximum job size (JOB_TOO_BIG)"
        );
    }
}
