//! The async client: one TCP connection, requests answered in order.
//!
//! Each method writes one command and waits for its reply; the calls that
//! write several commands at once (a worker's fast paths) are in
//! `client/pipelined.rs`.

mod pipelined;

use std::collections::BTreeMap;
use std::fmt;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{Error, Result};
use super::proto::{self, Command, Response};
use super::stats::{self, JobStats, TubeStats};

/// Bytes asked of the socket per read; large bodies grow the buffer further.
const READ_CHUNK: usize = 8 * 1024;

/// A write buffer that held a large body is given back rather than kept.
const KEEP_WRITE_BUFFER: usize = 64 * 1024;

/// A job as `reserve` and `peek` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id, unique within one beanstalkd.
    pub id: u64,
    /// The job's body, verbatim.
    pub body: Bytes,
}

/// A connection to beanstalkd.
///
/// # Cancellation
///
/// A request is a write followed by a read. If its future is dropped before
/// it completes (e.g. a `reserve_with_timeout` abandoned at shutdown), the
/// reply may still arrive and would be taken as the answer to the next
/// request. The client therefore marks itself broken: every later request
/// fails with [`Error::Protocol`] and the `Client` must be discarded. The
/// same holds after any connection error ([`Error::is_connection_error`]).
/// Dropping the `Client` closes the connection, and beanstalkd releases the
/// jobs it held.
pub struct Client {
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Replies still owed by the server. Non-zero between requests means a
    /// request failed or was abandoned midway.
    in_flight: usize,
    /// A reply did not fit its request: the stream is out of step.
    desynced: bool,
    /// The last request was not written whole: the server cannot act on it.
    unsent: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.stream.peer_addr().ok())
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to beanstalkd at `addr` (`"host:port"`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the address does not resolve or the server does
    /// not accept the connection.
    pub async fn connect(addr: &str) -> Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are small and each waits for its reply: Nagle would only
        // add latency.
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(1024),
            in_flight: 0,
            desynced: false,
            unsent: false,
        })
    }

    /// Whether the connection is out of step (an error or an abandoned
    /// request) and the client must be replaced.
    pub fn is_broken(&self) -> bool {
        self.desynced || self.in_flight > 0
    }

    /// Whether the last request failed before all of it was written, so
    /// the server cannot have acted on it (a `put` made no job).
    pub(crate) fn last_request_unsent(&self) -> bool {
        self.unsent
    }

    /// Whether the server has closed the connection (or reset it) while it
    /// was idle, seen without waiting: a peek at the socket finds the end
    /// of the stream. Unsolicited bytes also count, as the stream is then
    /// out of step.
    pub(crate) fn peer_closed(&self) -> bool {
        use std::os::fd::AsFd as _;
        // A duplicate descriptor shares the socket and its non-blocking
        // flag; a plain peek needs no readiness from the runtime.
        let Ok(fd) = self.stream.as_fd().try_clone_to_owned() else {
            return false;
        };
        let socket = std::net::TcpStream::from(fd);
        !matches!(socket.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Makes later `put`s go to `tube` (`use`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTube`] for a name beanstalkd would refuse, or a
    /// connection error.
    pub async fn use_tube(&mut self, tube: &str) -> Result<()> {
        proto::validate_tube(tube)?;
        let cmd = Command::Use(tube);
        match self.request(cmd).await? {
            Response::Using(used) if used == tube => Ok(()),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    /// Puts a job into the used tube and returns its id.
    ///
    /// # Errors
    ///
    /// [`ServerError::JobTooBig`](super::ServerError::JobTooBig) over the server's size limit, [`ServerError::Draining`](super::ServerError::Draining),
    /// [`Error::Buried`] with the new id when the server ran out of memory,
    /// or a connection error.
    pub async fn put(&mut self, priority: u32, delay: u32, ttr: u32, body: &[u8]) -> Result<u64> {
        let cmd = Command::Put {
            priority,
            delay,
            ttr,
            body,
        };
        let reply = self.request(cmd).await;
        if self.write_buf.capacity() > KEEP_WRITE_BUFFER {
            self.write_buf = BytesMut::with_capacity(1024);
        }
        match reply? {
            Response::Inserted(id) => Ok(id),
            Response::Buried(Some(id)) => Err(Error::Buried(Some(id))),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    /// Waits for a job from the watched tubes, however long it takes.
    ///
    /// # Errors
    ///
    /// [`ServerError::DeadlineSoon`](super::ServerError::DeadlineSoon) when a job this connection holds is about to
    /// time out, or a connection error.
    pub async fn reserve(&mut self) -> Result<Job> {
        self.job_request(Command::Reserve).await
    }

    /// Waits up to `secs` seconds for a job from the watched tubes.
    ///
    /// # Errors
    ///
    /// [`ServerError::TimedOut`](super::ServerError::TimedOut) when none came, [`ServerError::DeadlineSoon`](super::ServerError::DeadlineSoon) when a job
    /// this connection holds is about to time out, or a connection error.
    pub async fn reserve_with_timeout(&mut self, secs: u32) -> Result<Job> {
        self.job_request(Command::ReserveWithTimeout(secs)).await
    }

    /// Reserves the job with this id, whatever tube it is in.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when it does not exist or is reserved, or a
    /// connection error.
    pub async fn reserve_job(&mut self, id: u64) -> Result<Job> {
        self.job_request(Command::ReserveJob(id)).await
    }

    /// Deletes a job this connection reserved, or a buried, ready or delayed
    /// one.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when the job does not exist or another connection
    /// holds it (e.g. its TTR ran out), or a connection error.
    pub async fn delete(&mut self, id: u64) -> Result<()> {
        self.expect(Command::Delete(id), Response::Deleted).await
    }

    /// Puts a reserved job back, ready after `delay` seconds.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when this connection does not hold the job,
    /// [`Error::Buried`] when the server ran out of memory and buried it, or
    /// a connection error.
    pub async fn release(&mut self, id: u64, priority: u32, delay: u32) -> Result<()> {
        let cmd = Command::Release {
            id,
            priority,
            delay,
        };
        match self.request(cmd).await? {
            Response::Released => Ok(()),
            Response::Buried(None) => Err(Error::Buried(None)),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    /// Buries a reserved job until someone kicks it.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when this connection does not hold the job, or a
    /// connection error.
    pub async fn bury(&mut self, id: u64, priority: u32) -> Result<()> {
        self.expect(Command::Bury { id, priority }, Response::Buried(None))
            .await
    }

    /// Restarts the TTR of a reserved job.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when this connection does not hold the job, or a
    /// connection error.
    pub async fn touch(&mut self, id: u64) -> Result<()> {
        self.expect(Command::Touch(id), Response::Touched).await
    }

    /// Adds `tube` to the watch list; returns how many tubes are watched.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTube`], or a connection error.
    pub async fn watch(&mut self, tube: &str) -> Result<u32> {
        proto::validate_tube(tube)?;
        self.watching(Command::Watch(tube)).await
    }

    /// Removes `tube` from the watch list; returns how many remain.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotIgnored`](super::ServerError::NotIgnored) when it is the only watched tube,
    /// [`Error::InvalidTube`], or a connection error.
    pub async fn ignore(&mut self, tube: &str) -> Result<u32> {
        proto::validate_tube(tube)?;
        self.watching(Command::Ignore(tube)).await
    }

    /// Returns the job with this id without reserving it.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound), or a connection error.
    pub async fn peek(&mut self, id: u64) -> Result<Job> {
        self.job_request(Command::Peek(id)).await
    }

    /// Returns the next ready job of the used tube.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when there is none, or a connection error.
    pub async fn peek_ready(&mut self) -> Result<Job> {
        self.job_request(Command::PeekReady).await
    }

    /// Returns the delayed job of the used tube that gets ready first.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when there is none, or a connection error.
    pub async fn peek_delayed(&mut self) -> Result<Job> {
        self.job_request(Command::PeekDelayed).await
    }

    /// Returns the oldest buried job of the used tube.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when there is none, or a connection error.
    pub async fn peek_buried(&mut self) -> Result<Job> {
        self.job_request(Command::PeekBuried).await
    }

    /// Moves up to `bound` jobs of the used tube to ready: buried ones if
    /// there are any, delayed ones otherwise. Returns how many moved.
    ///
    /// # Errors
    ///
    /// A connection error.
    pub async fn kick(&mut self, bound: u32) -> Result<u64> {
        let cmd = Command::Kick(bound);
        match self.request(cmd).await? {
            Response::Kicked(Some(n)) => Ok(n),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    /// Moves one buried or delayed job to ready.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when the job does not exist or is neither buried
    /// nor delayed, or a connection error.
    pub async fn kick_job(&mut self, id: u64) -> Result<()> {
        self.expect(Command::KickJob(id), Response::Kicked(None))
            .await
    }

    /// Returns a job's statistics.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound), or a connection error.
    pub async fn stats_job(&mut self, id: u64) -> Result<JobStats> {
        JobStats::from_yaml(&self.yaml(Command::StatsJob(id)).await?)
    }

    /// Returns a tube's statistics.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when the tube does not exist (a tube exists only
    /// while it has jobs, users or watchers), [`Error::InvalidTube`], or a
    /// connection error.
    pub async fn stats_tube(&mut self, tube: &str) -> Result<TubeStats> {
        proto::validate_tube(tube)?;
        TubeStats::from_yaml(&self.yaml(Command::StatsTube(tube)).await?)
    }

    /// Returns the server's statistics, keys as beanstalkd names them
    /// (`current-jobs-ready`, `pid`, `version`, …).
    ///
    /// # Errors
    ///
    /// A connection error.
    pub async fn stats(&mut self) -> Result<BTreeMap<String, String>> {
        stats::parse_map(&self.yaml(Command::Stats).await?)
    }

    /// Returns the names of all existing tubes.
    ///
    /// # Errors
    ///
    /// A connection error.
    pub async fn list_tubes(&mut self) -> Result<Vec<String>> {
        stats::parse_list(&self.yaml(Command::ListTubes).await?)
    }

    /// Returns the tube `put` goes to.
    ///
    /// # Errors
    ///
    /// A connection error.
    pub async fn list_tube_used(&mut self) -> Result<String> {
        let cmd = Command::ListTubeUsed;
        match self.request(cmd).await? {
            Response::Using(tube) => Ok(tube),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    /// Returns the watched tubes.
    ///
    /// # Errors
    ///
    /// A connection error.
    pub async fn list_tubes_watched(&mut self) -> Result<Vec<String>> {
        stats::parse_list(&self.yaml(Command::ListTubesWatched).await?)
    }

    /// Stops reserves from `tube` for `delay` seconds.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotFound`](super::ServerError::NotFound) when the tube does not exist,
    /// [`Error::InvalidTube`], or a connection error.
    pub async fn pause_tube(&mut self, tube: &str, delay: u32) -> Result<()> {
        proto::validate_tube(tube)?;
        self.expect(Command::PauseTube { tube, delay }, Response::Paused)
            .await
    }

    async fn request(&mut self, cmd: Command<'_>) -> Result<Response> {
        self.send(&[cmd]).await?;
        self.receive().await
    }

    async fn expect(&mut self, cmd: Command<'_>, success: Response) -> Result<()> {
        match self.request(cmd).await? {
            reply if reply == success => Ok(()),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    async fn job_request(&mut self, cmd: Command<'_>) -> Result<Job> {
        let reply = self.request(cmd).await?;
        self.job(cmd, reply)
    }

    fn job(&mut self, cmd: Command<'_>, reply: Response) -> Result<Job> {
        match (cmd, reply) {
            (
                Command::Reserve | Command::ReserveWithTimeout(_) | Command::ReserveJob(_),
                Response::Reserved { id, body },
            )
            | (
                Command::Peek(_) | Command::PeekReady | Command::PeekDelayed | Command::PeekBuried,
                Response::Found { id, body },
            ) => Ok(Job { id, body }),
            (cmd, other) => Err(self.unexpected(cmd, other)),
        }
    }

    async fn watching(&mut self, cmd: Command<'_>) -> Result<u32> {
        match self.request(cmd).await? {
            Response::Watching(n) => Ok(n),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    async fn yaml(&mut self, cmd: Command<'_>) -> Result<Bytes> {
        match self.request(cmd).await? {
            Response::Ok(body) => Ok(body),
            other => Err(self.unexpected(cmd, other)),
        }
    }

    /// Turns a reply that is not the command's success into an error: an
    /// error reply as such, anything else as a desynchronised stream.
    fn unexpected(&mut self, cmd: Command<'_>, reply: Response) -> Error {
        match reply {
            Response::ServerError(e) => Error::Server(e),
            other => {
                self.desynced = true;
                Error::Protocol(format!(
                    "unexpected reply {} to `{}`",
                    other.name(),
                    cmd.name()
                ))
            }
        }
    }

    async fn send(&mut self, cmds: &[Command<'_>]) -> Result<()> {
        self.unsent = true;
        if self.is_broken() {
            return Err(Error::Protocol(
                "connection is out of step after an earlier failure or an abandoned request; reconnect"
                    .to_owned(),
            ));
        }
        self.write_buf.clear();
        for cmd in cmds {
            cmd.encode(&mut self.write_buf);
        }
        // Counted down by `receive`; stays non-zero if this future is
        // dropped or fails before every reply is in.
        self.in_flight = cmds.len();
        self.stream.write_all(&self.write_buf).await?;
        self.unsent = false;
        Ok(())
    }

    async fn receive(&mut self) -> Result<Response> {
        loop {
            if let Some(reply) = proto::parse(&mut self.read_buf)? {
                self.in_flight = self.in_flight.saturating_sub(1);
                return Ok(reply);
            }
            self.read_buf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(Error::Closed);
            }
        }
    }
}
