//! Operator actions on beanstalkd, shared by the admin CLI (`runner stats`,
//! `buried`, `kick`, `delete`, `pause`) and the dashboard's HTTP actions.
//! Each call opens its own connection to `addr` and closes it when done
//! (so anything it held goes back to beanstalkd, even on a crash).
//!
//! - `listing.rs`: [`tube_stats`] and [`buried`] (failure records + peek);
//! - `actions.rs`: [`kick`] (retry with a fresh attempt budget), [`delete`],
//!   [`pause`];
//! - `servers.rs`: the same over a list of servers (`--beanstalkd a,b`),
//!   each asked on its own connection at once ([`Over`]);
//! - `merge.rs`: how their answers add up (pure).

mod actions;
mod listing;
pub mod merge;
mod servers;

use beanbox_queue::{Client, JobState};
use serde::Serialize;

pub use actions::{delete, kick, pause};
pub use listing::{buried, tube_stats};
pub use merge::{ServerBuried, ServerRow, TubeTotal};
pub use servers::{Over, buried_over, delete_over, kick_over, listed, pause_over, tube_stats_over};

/// The most bytes of a buried job's body shown.
pub const MAX_BODY_BYTES: usize = 4096;

/// Which buried jobs of a tube to kick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// This one.
    Job(u64),
    /// All that are buried when the kick starts.
    All,
}

/// One kicked job: the buried one, gone, and its copy, ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kicked {
    /// The buried job's id (deleted).
    pub job: u64,
    /// The new job's id (ready, attempt 1).
    pub new_job: u64,
    /// The server of both, when there is more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// One tube's counts, as `stats-tube` gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TubeRow {
    /// The tube.
    pub tube: String,
    /// Ready jobs.
    pub ready: u64,
    /// Reserved jobs (running).
    pub reserved: u64,
    /// Delayed jobs (waiting out a retry backoff, or put with a delay).
    pub delayed: u64,
    /// Buried jobs (failed for good until kicked).
    pub buried: u64,
    /// Ready jobs with priority below 1024.
    pub urgent: u64,
    /// Connections waiting in a reserve on the tube.
    pub waiting: u64,
    /// Whether the tube is paused.
    pub paused: bool,
    /// Seconds until the pause ends (0 when not paused).
    pub pause_time_left: u64,
    /// Jobs ever put on the tube.
    pub total: u64,
}

/// One buried job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuriedJob {
    /// Its id.
    pub job: u64,
    /// Its server, when there is more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The task (from its failure record; `None` without one).
    pub task: Option<String>,
    /// The attempt that failed.
    pub attempt: Option<u32>,
    /// The failure's kind (`guest-error`, `fuel`, …).
    pub kind: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// The tenant that ran it.
    pub tenant: Option<String>,
    /// When it was buried, Unix seconds.
    pub at: Option<u64>,
    /// Seconds since it was put (beanstalkd's `age`).
    pub age: i64,
    /// The first [`MAX_BODY_BYTES`] of its body (lossy UTF-8).
    pub body: String,
}

/// A tube's buried jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuriedList {
    /// The tube.
    pub tube: String,
    /// How many jobs are buried there (`stats-tube`).
    pub buried: u64,
    /// Those with a failure record, and the oldest one without (beanstalkd
    /// can only show the oldest buried job), by id; at most the limit asked.
    pub jobs: Vec<BuriedJob>,
    /// Buried jobs without a failure record (buried by another tool, or
    /// their record was refused or is held by a concurrent reader).
    pub unrecorded: u64,
    /// Whether every failure record was read (false while another reader
    /// held some).
    pub complete: bool,
    /// Each server's counts, when there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerBuried>,
}

/// What an operator action can fail with. One line each, naming what was
/// wrong.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// beanstalkd cannot be reached, or the connection failed midway.
    #[error("cannot reach beanstalkd at {addr}: {source}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// What failed.
        source: beanbox_queue::Error,
    },
    /// A name beanstalkd would refuse.
    #[error(
        "invalid tube name `{0}`: 1 to 200 bytes of letters, digits and `-+/;.$_()`, not starting with `-`"
    )]
    InvalidTube(String),
    /// A tube beanstalkd does not list (it has no jobs and nobody uses or
    /// watches it).
    #[error("unknown tube `{0}`: beanstalkd does not list it")]
    UnknownTube(String),
    /// No job with this id.
    #[error("no such job: {0}")]
    NoSuchJob(u64),
    /// The job is in another tube than the one named.
    #[error("job {job} is in tube `{actual}`, not `{tube}`")]
    WrongTube {
        /// The job.
        job: u64,
        /// The tube named.
        tube: String,
        /// Its tube.
        actual: String,
    },
    /// Only a buried job can be kicked.
    #[error("job {job} is {}, not buried: only buried jobs are kicked", state_name(*.state))]
    NotBuried {
        /// The job.
        job: u64,
        /// Its state.
        state: JobState,
    },
    /// Without `force`, only buried and delayed jobs are deleted.
    #[error("job {job} is {}: only buried or delayed jobs are deleted without --force", state_name(*.state))]
    NotDeletable {
        /// The job.
        job: u64,
        /// Its state.
        state: JobState,
    },
    /// A reserved job can be deleted only by the worker that holds it.
    #[error("job {0} is reserved by a worker: beanstalkd lets only that worker delete it")]
    Reserved(u64),
    /// The job changed while the action ran (another operator or worker).
    #[error("job {0} changed state during the action; look again and retry")]
    Changed(u64),
    /// beanstalkd refused a request.
    #[error("beanstalkd at {addr} refused the request: {source}")]
    Refused {
        /// The server.
        addr: String,
        /// Its answer.
        source: beanbox_queue::Error,
    },
    /// Several servers hold a job with this id (ids are per server).
    #[error("job {job} is on several servers ({}): name one with --server ADDR", .servers.join(", "))]
    Ambiguous {
        /// The job id.
        job: u64,
        /// The servers holding one.
        servers: Vec<String>,
    },
    /// A server that could not be asked may hold the job too.
    #[error("{}", unsure(*.job, .found.as_deref()))]
    Unsure {
        /// The job id.
        job: u64,
        /// The one server reached that holds it, if any.
        found: Option<String>,
    },
    /// A server that is not in the list.
    #[error("server `{server}` is not one of the beanstalkd servers ({servers})")]
    NotListed {
        /// The server named.
        server: String,
        /// The list.
        servers: String,
    },
}

fn unsure(job: u64, found: Option<&str>) -> String {
    match found {
        Some(server) => format!(
            "job {job} is on {server}, but a server not reached may hold a job {job} too: name it with --server {server}"
        ),
        None => format!(
            "no job {job} on the servers reached; one not reached may hold it: retry, or name it with --server ADDR"
        ),
    }
}

impl OpsError {
    /// Whether the input was at fault (a bad or unknown name, a job in the
    /// wrong state): the CLI's exit 2, an HTTP 4xx.
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            OpsError::Unreachable { .. } | OpsError::Refused { .. } | OpsError::Unsure { .. }
        )
    }

    /// The HTTP status for the dashboard's actions: 400 for a bad name,
    /// 404 for an unknown tube or job, 409 for a job in the wrong state,
    /// 503 when beanstalkd is unreachable, 502 when it refused.
    pub fn http_status(&self) -> u16 {
        match self {
            OpsError::InvalidTube(_) | OpsError::NotListed { .. } => 400,
            OpsError::UnknownTube(_) | OpsError::NoSuchJob(_) => 404,
            OpsError::WrongTube { .. }
            | OpsError::NotBuried { .. }
            | OpsError::NotDeletable { .. }
            | OpsError::Reserved(_)
            | OpsError::Changed(_)
            | OpsError::Ambiguous { .. } => 409,
            OpsError::Unreachable { .. } | OpsError::Unsure { .. } => 503,
            OpsError::Refused { .. } => 502,
        }
    }
}

/// A job state as people say it.
pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Ready => "ready",
        JobState::Delayed => "delayed",
        JobState::Reserved => "reserved",
        JobState::Buried => "buried",
        _ => "in an unknown state",
    }
}

/// A connection and its address, turning beanstalkd errors into
/// [`OpsError`]s.
struct Conn {
    client: Client,
    addr: String,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, OpsError> {
        let client = Client::connect(addr)
            .await
            .map_err(|source| OpsError::Unreachable {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Conn {
            client,
            addr: addr.to_owned(),
        })
    }

    /// A failed request as an [`OpsError`]: a connection error is
    /// [`OpsError::Unreachable`], anything else a refusal.
    fn fail(&self, e: beanbox_queue::Error) -> OpsError {
        if e.is_connection_error() {
            OpsError::Unreachable {
                addr: self.addr.clone(),
                source: e,
            }
        } else {
            OpsError::Refused {
                addr: self.addr.clone(),
                source: e,
            }
        }
    }

    /// The statistics of `tube`, which must exist.
    async fn tube(&mut self, tube: &str) -> Result<beanbox_queue::TubeStats, OpsError> {
        check_tube(tube)?;
        match self.client.stats_tube(tube).await {
            Ok(stats) => Ok(stats),
            Err(e) if e.is_not_found() => Err(OpsError::UnknownTube(tube.to_owned())),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Whether job `id` is on this server.
    async fn has_job(&mut self, id: u64) -> Result<bool, OpsError> {
        match self.job(id).await {
            Ok(_) => Ok(true),
            Err(OpsError::NoSuchJob(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The statistics of job `id`, which must exist.
    async fn job(&mut self, id: u64) -> Result<beanbox_queue::JobStats, OpsError> {
        match self.client.stats_job(id).await {
            Ok(stats) => Ok(stats),
            Err(e) if e.is_not_found() => Err(OpsError::NoSuchJob(id)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads the failure records (dropping the stale ones).
    async fn records(&mut self) -> Result<crate::failures::Records, OpsError> {
        crate::failures::read(&mut self.client)
            .await
            .map_err(|e| self.fail(e))
    }
}

fn check_tube(tube: &str) -> Result<(), OpsError> {
    beanbox_queue::beanstalk::proto::validate_tube(tube)
        .map_err(|_| OpsError::InvalidTube(tube.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dashboard's HTTP handlers run these on a multi-threaded runtime.
    #[test]
    fn every_action_is_send() {
        fn send<T: Send>(_: T) {}
        send(tube_stats("a", None));
        send(buried("a", "t", 1));
        send(kick("a", "t", Kick::All));
        send(delete("a", 1, false));
        send(pause("a", "t", 1));
        let servers: beanbox_queue::Servers = "a:1,b:2".parse().unwrap();
        send(buried_over(&servers, "t", 1));
        send(kick_over(&servers, None, "t", Kick::Job(1)));
        send(delete_over(&servers, Some("a:1"), 1, false));
        send(pause_over(&servers, "t", 1));
        send(tube_stats_over(&servers, None));
    }

    #[test]
    fn errors_say_whose_fault_and_which_status() {
        let unreachable = OpsError::Unreachable {
            addr: "127.0.0.1:1".into(),
            source: beanbox_queue::Error::Closed,
        };
        assert!(!unreachable.is_bad_input());
        assert_eq!(unreachable.http_status(), 503);
        assert!(unreachable.to_string().contains("127.0.0.1:1"));
        let not_buried = OpsError::NotBuried {
            job: 7,
            state: JobState::Ready,
        };
        assert!(not_buried.is_bad_input());
        assert_eq!(not_buried.http_status(), 409);
        assert_eq!(
            not_buried.to_string(),
            "job 7 is ready, not buried: only buried jobs are kicked"
        );
        assert_eq!(OpsError::UnknownTube("t".into()).http_status(), 404);
        assert_eq!(OpsError::NoSuchJob(3).to_string(), "no such job: 3");
        assert_eq!(OpsError::InvalidTube("-x".into()).http_status(), 400);
    }
}
