//! How the answers of several beanstalkd servers add up (pure): which
//! answers count, tube counts summed with each server's split, buried lists
//! joined with each job's server, and which server holds a job id.

use serde::Serialize;

use super::{BuriedList, OpsError, TubeRow};
use crate::failures::FAILURES_TUBE;

/// What the servers asked said: the answers of those that answered, in
/// list order, and the errors of those that could not be asked (each names
/// its server).
#[derive(Debug)]
pub struct Split<T> {
    /// `(server, answer)`.
    pub answers: Vec<(String, T)>,
    /// One per server not reached (or refusing).
    pub errors: Vec<OpsError>,
}

/// Sorts per-server results into answers and unreachable servers. A
/// bad-input error (the input's fault, hence the same on every server) is
/// returned as is: the first one met.
///
/// # Errors
///
/// That bad-input error.
pub fn split<T>(results: Vec<(String, Result<T, OpsError>)>) -> Result<Split<T>, OpsError> {
    let mut answers = Vec::new();
    let mut errors = Vec::new();
    for (server, result) in results {
        match result {
            Ok(answer) => answers.push((server, answer)),
            Err(e) if e.is_bad_input() => return Err(e),
            Err(e) => errors.push(e),
        }
    }
    Ok(Split { answers, errors })
}

/// One tube summed over the servers, with each server's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TubeTotal {
    /// The sums (paused: on any server; time left: the longest).
    #[serde(flatten)]
    pub total: TubeRow,
    /// Each server that answered, in list order (zeros where the tube does
    /// not exist).
    pub servers: Vec<ServerRow>,
}

/// One server's counts of a tube.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerRow {
    /// The server's address.
    pub server: String,
    /// Its counts.
    #[serde(flatten)]
    pub row: TubeRow,
}

/// Every tube any server lists, sorted by name with [`FAILURES_TUBE`]
/// last: its sums and each server's counts.
pub fn sum_tubes(answers: &[(String, Vec<TubeRow>)]) -> Vec<TubeTotal> {
    let mut names: Vec<&str> = answers
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.tube.as_str()))
        .collect();
    names.sort_by_key(|t| (*t == FAILURES_TUBE, *t));
    names.dedup();
    names
        .into_iter()
        .map(|tube| {
            let servers: Vec<ServerRow> = answers
                .iter()
                .map(|(server, rows)| ServerRow {
                    server: server.clone(),
                    row: rows
                        .iter()
                        .find(|r| r.tube == tube)
                        .cloned()
                        .unwrap_or_else(|| empty_row(tube)),
                })
                .collect();
            TubeTotal {
                total: add_rows(tube, servers.iter().map(|s| &s.row)),
                servers,
            }
        })
        .collect()
}

fn empty_row(tube: &str) -> TubeRow {
    add_rows(tube, std::iter::empty())
}

/// The rows of one tube added up: counts summed, paused when paused on any
/// server, for the longest time left.
pub fn add_rows<'a>(tube: &str, rows: impl Iterator<Item = &'a TubeRow>) -> TubeRow {
    let mut sum = TubeRow {
        tube: tube.to_owned(),
        ready: 0,
        reserved: 0,
        delayed: 0,
        buried: 0,
        urgent: 0,
        waiting: 0,
        paused: false,
        pause_time_left: 0,
        total: 0,
    };
    for r in rows {
        sum.ready += r.ready;
        sum.reserved += r.reserved;
        sum.delayed += r.delayed;
        sum.buried += r.buried;
        sum.urgent += r.urgent;
        sum.waiting += r.waiting;
        sum.paused |= r.paused;
        sum.pause_time_left = sum.pause_time_left.max(r.pause_time_left);
        sum.total += r.total;
    }
    sum
}

/// One server's part of a buried listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerBuried {
    /// The server's address.
    pub server: String,
    /// Jobs buried in the tube there.
    pub buried: u64,
    /// Those without a failure record.
    pub unrecorded: u64,
    /// Whether every failure record there was read.
    pub complete: bool,
}

/// The servers' listings of `tube` as one: counts summed, jobs by server
/// (in list order) then id, at most `limit`. With `show_server` (more than
/// one server) each job names its server and the list gives each server's
/// counts.
pub fn join_buried(
    tube: &str,
    answers: Vec<(String, BuriedList)>,
    limit: usize,
    show_server: bool,
) -> BuriedList {
    let mut joined = BuriedList {
        tube: tube.to_owned(),
        buried: 0,
        jobs: Vec::new(),
        unrecorded: 0,
        complete: true,
        servers: Vec::new(),
    };
    for (server, list) in answers {
        joined.buried += list.buried;
        joined.unrecorded += list.unrecorded;
        joined.complete &= list.complete;
        if show_server {
            joined.servers.push(ServerBuried {
                server: server.clone(),
                buried: list.buried,
                unrecorded: list.unrecorded,
                complete: list.complete,
            });
        }
        joined.jobs.extend(list.jobs.into_iter().map(|mut job| {
            if show_server {
                job.server = Some(server.clone());
            }
            job
        }));
    }
    joined.jobs.truncate(limit);
    joined
}

/// The one server holding job `id`, from each server's answer to "do you
/// have it?".
///
/// # Errors
///
/// [`OpsError::NoSuchJob`] when no server has it; [`OpsError::Ambiguous`]
/// when several do; when a server could not be asked, its error and
/// [`OpsError::Unsure`] (it may hold one too).
pub fn holder(
    id: u64,
    lookups: Vec<(String, Result<bool, OpsError>)>,
) -> Result<String, Vec<OpsError>> {
    let mut holders = Vec::new();
    let mut errors = Vec::new();
    for (server, lookup) in lookups {
        match lookup {
            Ok(true) => holders.push(server),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    if holders.len() > 1 {
        return Err(vec![OpsError::Ambiguous {
            job: id,
            servers: holders,
        }]);
    }
    let found = holders.pop();
    match (found, errors.is_empty()) {
        (Some(server), true) => Ok(server),
        (None, true) => Err(vec![OpsError::NoSuchJob(id)]),
        (found, false) => {
            errors.push(OpsError::Unsure { job: id, found });
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::BuriedJob;

    fn row(tube: &str, ready: u64, buried: u64, pause: u64) -> TubeRow {
        TubeRow {
            ready,
            buried,
            total: ready + buried,
            paused: pause > 0,
            pause_time_left: pause,
            ..empty_row(tube)
        }
    }

    fn unreachable(addr: &str) -> OpsError {
        OpsError::Unreachable {
            addr: addr.into(),
            source: beanbox_queue::Error::Closed,
        }
    }

    #[test]
    fn tubes_add_up_with_each_servers_split() {
        let answers = vec![
            (
                "a:1".to_string(),
                vec![row(FAILURES_TUBE, 1, 0, 0), row("t", 2, 1, 0)],
            ),
            (
                "b:2".to_string(),
                vec![row("t", 5, 0, 30), row("u", 1, 0, 0)],
            ),
        ];
        let sums = sum_tubes(&answers);
        let names: Vec<&str> = sums.iter().map(|t| t.total.tube.as_str()).collect();
        assert_eq!(names, ["t", "u", FAILURES_TUBE], "the records' tube last");
        let t = &sums[0];
        assert_eq!((t.total.ready, t.total.buried, t.total.total), (7, 1, 8));
        assert!(t.total.paused, "paused on one server");
        assert_eq!(t.total.pause_time_left, 30);
        let split: Vec<(&str, u64)> = t
            .servers
            .iter()
            .map(|s| (s.server.as_str(), s.row.ready))
            .collect();
        assert_eq!(split, [("a:1", 2), ("b:2", 5)]);
        // A tube a server does not list shows zeros there.
        assert_eq!(sums[1].servers[0].row, empty_row("u"));
        assert_eq!(sums[1].servers[0].server, "a:1");
    }

    fn job(id: u64) -> BuriedJob {
        BuriedJob {
            job: id,
            server: None,
            task: None,
            attempt: None,
            kind: None,
            reason: None,
            tenant: None,
            at: None,
            age: 0,
            body: String::new(),
        }
    }

    fn list(ids: &[u64], unrecorded: u64, complete: bool) -> BuriedList {
        BuriedList {
            tube: "t".into(),
            buried: ids.len() as u64,
            jobs: ids.iter().map(|&id| job(id)).collect(),
            unrecorded,
            complete,
            servers: Vec::new(),
        }
    }

    #[test]
    fn buried_lists_join_with_each_jobs_server() {
        let answers = || {
            vec![
                ("a:1".to_string(), list(&[3, 7], 0, true)),
                ("b:2".to_string(), list(&[3], 1, false)),
            ]
        };
        let joined = join_buried("t", answers(), 10, true);
        assert_eq!((joined.buried, joined.unrecorded), (3, 1));
        assert!(!joined.complete);
        let jobs: Vec<(u64, Option<&str>)> = joined
            .jobs
            .iter()
            .map(|j| (j.job, j.server.as_deref()))
            .collect();
        assert_eq!(
            jobs,
            [(3, Some("a:1")), (7, Some("a:1")), (3, Some("b:2"))],
            "the same id on two servers is two jobs"
        );
        assert_eq!(joined.servers.len(), 2);
        assert_eq!(joined.servers[1].buried, 1);
        assert_eq!(join_buried("t", answers(), 2, true).jobs.len(), 2);
        // One server: the listing as it was.
        let one = join_buried(
            "t",
            vec![("a:1".to_string(), list(&[3], 0, true))],
            10,
            false,
        );
        assert_eq!(one, list(&[3], 0, true));
    }

    #[test]
    fn a_job_is_acted_on_where_exactly_one_server_holds_it() {
        let ask = |a: Result<bool, OpsError>, b: Result<bool, OpsError>| {
            holder(5, vec![("a:1".to_string(), a), ("b:2".to_string(), b)])
        };
        assert_eq!(ask(Ok(false), Ok(true)).unwrap(), "b:2");
        let none = ask(Ok(false), Ok(false)).unwrap_err();
        assert!(matches!(none[..], [OpsError::NoSuchJob(5)]), "{none:?}");
        let both = ask(Ok(true), Ok(true)).unwrap_err();
        assert_eq!(
            both[0].to_string(),
            "job 5 is on several servers (a:1, b:2): name one with --server ADDR"
        );
        assert!(both[0].is_bad_input());
        // A server not reached might hold one too: not acted on.
        let unsure = ask(Ok(true), Err(unreachable("b:2"))).unwrap_err();
        assert_eq!(unsure.len(), 2);
        assert!(unsure[0].to_string().contains("b:2"));
        assert!(
            unsure[1].to_string().contains("--server a:1"),
            "{}",
            unsure[1]
        );
        assert!(!unsure[1].is_bad_input());
        let lost = ask(Ok(false), Err(unreachable("b:2"))).unwrap_err();
        assert!(
            lost[1]
                .to_string()
                .starts_with("no job 5 on the servers reached")
        );
    }

    #[test]
    fn bad_input_stands_and_unreachable_servers_are_set_aside() {
        let results = vec![
            ("a:1".to_string(), Ok(1)),
            ("b:2".to_string(), Err(unreachable("b:2"))),
            ("c:3".to_string(), Ok(3)),
        ];
        let split = split(results).unwrap();
        assert_eq!(
            split.answers,
            [("a:1".to_string(), 1), ("c:3".to_string(), 3)]
        );
        assert_eq!(split.errors.len(), 1);
        let bad: Vec<(String, Result<u8, OpsError>)> = vec![
            ("a:1".to_string(), Err(unreachable("a:1"))),
            ("b:2".to_string(), Err(OpsError::InvalidTube("-x".into()))),
        ];
        assert!(matches!(super::split(bad), Err(OpsError::InvalidTube(_))));
    }
}
