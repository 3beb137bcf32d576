//! Typed views of the YAML that `stats-job`, `stats-tube`, `stats` and the
//! `list-*` commands return. beanstalkd writes only flat `key: value` maps
//! and `- item` lists after `---`, so a dozen lines of parsing replace a YAML
//! dependency.
//!
//! Each numeric field has the type its value can take in beanstalkd 1.12
//! (`prot.c`, `STATS_JOB_FMT` and `STATS_TUBE_FMT`): the fields beanstalkd
//! computes as a difference of two clock readings are signed, because they
//! go negative — `time-left` of a reserved job whose TTR has passed but which
//! the server has not yet timed out, `age` after the wall clock stepped back,
//! `pause-time-left` between a pause's end and the server's next tick.
//!
//! A reply that cannot be read is [`Error::Malformed`], not a connection
//! error: the whole body was read, so the connection is still in step and
//! the next request works.

use std::collections::BTreeMap;

use super::error::Error;

/// Where a job is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting to be reserved.
    Ready,
    /// Waiting for its delay to pass.
    Delayed,
    /// Held by a worker.
    Reserved,
    /// Set aside until kicked.
    Buried,
}

/// The reply to `stats-job`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStats {
    /// The job's id.
    pub id: u64,
    /// The tube that holds it.
    pub tube: String,
    /// Its state.
    pub state: JobState,
    /// Its priority (0 is most urgent).
    pub pri: u32,
    /// Seconds since it was put (wall clock, so negative after the clock
    /// stepped back).
    pub age: i64,
    /// The delay it was put or released with, in seconds (beanstalkd prints
    /// it signed but only ever stores the `u32` a command gave it).
    pub delay: u32,
    /// Its time to run, in seconds (a `u32` from `put`, as `delay`).
    pub ttr: u32,
    /// Seconds until a reserved job times out or a delayed one gets ready;
    /// 0 in the other states. Negative when that moment has passed and the
    /// server has not acted on it yet.
    pub time_left: i64,
    /// The binlog file that holds it (0 without `-b`).
    pub file: u64,
    /// How often it was reserved.
    pub reserves: u64,
    /// How often a reservation timed out.
    pub timeouts: u64,
    /// How often it was released.
    pub releases: u64,
    /// How often it was buried.
    pub buries: u64,
    /// How often it was kicked.
    pub kicks: u64,
}

/// The reply to `stats-tube`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TubeStats {
    /// The tube's name.
    pub name: String,
    /// Ready jobs with priority below 1024.
    pub current_jobs_urgent: u64,
    /// Ready jobs.
    pub current_jobs_ready: u64,
    /// Reserved jobs.
    pub current_jobs_reserved: u64,
    /// Delayed jobs.
    pub current_jobs_delayed: u64,
    /// Buried jobs.
    pub current_jobs_buried: u64,
    /// Jobs ever created in the tube.
    pub total_jobs: u64,
    /// Connections that `use` the tube.
    pub current_using: u64,
    /// Connections that watch the tube.
    pub current_watching: u64,
    /// Connections waiting in a reserve that watches the tube.
    pub current_waiting: u64,
    /// `delete` commands on the tube's jobs.
    pub cmd_delete: u64,
    /// `pause-tube` commands on the tube.
    pub cmd_pause_tube: u64,
    /// Seconds the tube was last paused for.
    pub pause: u64,
    /// Seconds until the pause ends; negative between its end and the
    /// server's next tick.
    pub pause_time_left: i64,
}

impl JobStats {
    /// Reads a `stats-job` YAML body.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when the body is not a flat map, lacks a key or
    /// has a value out of its field's range.
    pub fn from_yaml(yaml: &[u8]) -> Result<JobStats, Error> {
        let pairs = pairs(yaml)?;
        let get = Fields(&pairs);
        Ok(JobStats {
            id: get.num("id")?,
            tube: get.str("tube")?.to_owned(),
            state: match get.str("state")? {
                "ready" => JobState::Ready,
                "delayed" => JobState::Delayed,
                "reserved" => JobState::Reserved,
                "buried" => JobState::Buried,
                other => return Err(Error::Malformed(format!("unknown job state {other:?}"))),
            },
            pri: get.num("pri")?,
            age: get.num("age")?,
            delay: get.num("delay")?,
            ttr: get.num("ttr")?,
            time_left: get.num("time-left")?,
            file: get.num("file")?,
            reserves: get.num("reserves")?,
            timeouts: get.num("timeouts")?,
            releases: get.num("releases")?,
            buries: get.num("buries")?,
            kicks: get.num("kicks")?,
        })
    }
}

impl TubeStats {
    /// Reads a `stats-tube` YAML body.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when the body is not a flat map, lacks a key or
    /// has a value out of its field's range.
    pub fn from_yaml(yaml: &[u8]) -> Result<TubeStats, Error> {
        let pairs = pairs(yaml)?;
        let get = Fields(&pairs);
        Ok(TubeStats {
            name: get.str("name")?.to_owned(),
            current_jobs_urgent: get.num("current-jobs-urgent")?,
            current_jobs_ready: get.num("current-jobs-ready")?,
            current_jobs_reserved: get.num("current-jobs-reserved")?,
            current_jobs_delayed: get.num("current-jobs-delayed")?,
            current_jobs_buried: get.num("current-jobs-buried")?,
            total_jobs: get.num("total-jobs")?,
            current_using: get.num("current-using")?,
            current_watching: get.num("current-watching")?,
            current_waiting: get.num("current-waiting")?,
            cmd_delete: get.num("cmd-delete")?,
            cmd_pause_tube: get.num("cmd-pause-tube")?,
            pause: get.num("pause")?,
            pause_time_left: get.num("pause-time-left")?,
        })
    }
}

/// A reply's `key: value` pairs, borrowed, in beanstalkd's order. A typed
/// view looks each of its dozen fields up by a linear scan: with no map and
/// no copies, reading the `stats-job` that comes with a job's delete costs a
/// fraction of a microsecond (a `BTreeMap<String, String>` cost several).
struct Fields<'a>(&'a [(&'a str, &'a str)]);

impl Fields<'_> {
    fn str(&self, key: &str) -> Result<&str, Error> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| Error::Malformed(format!("stats reply has no {key:?}")))
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<T, Error> {
        let value = self.str(key)?;
        value.parse().map_err(|_| {
            Error::Malformed(format!(
                "stats field {key:?} is not a number in range: {value:?}"
            ))
        })
    }
}

/// Reads a flat YAML map (`---` then `key: value` lines).
///
/// # Errors
///
/// [`Error::Malformed`] when the text is not UTF-8, lacks the `---` header, or
/// has a line without `: `.
pub fn parse_map(yaml: &[u8]) -> Result<BTreeMap<String, String>, Error> {
    Ok(pairs(yaml)?
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// The `key: value` lines of a flat YAML map, borrowed from `yaml`, values
/// unquoted. Errors as [`parse_map`].
fn pairs(yaml: &[u8]) -> Result<Vec<(&str, &str)>, Error> {
    document_lines(yaml)?
        .map(|line| {
            // beanstalkd writes `key: value`, and `key:` would be an empty value.
            line.split_once(": ")
                .or_else(|| line.strip_suffix(':').map(|key| (key, "")))
                .map(|(key, value)| (key, unquote(value)))
                .ok_or_else(|| {
                    Error::Malformed(format!("stats line is not `key: value`: {line:?}"))
                })
        })
        .collect()
}

/// Reads a YAML list of strings (`---` then `- item` lines).
///
/// # Errors
///
/// [`Error::Malformed`] when the text is not UTF-8, lacks the `---` header, or
/// has a line that is not `- item`.
pub fn parse_list(yaml: &[u8]) -> Result<Vec<String>, Error> {
    document_lines(yaml)?
        .map(|line| {
            line.strip_prefix("- ")
                .map(|item| unquote(item).to_owned())
                .ok_or_else(|| Error::Malformed(format!("list line is not `- item`: {line:?}")))
        })
        .collect()
}

fn document_lines(yaml: &[u8]) -> Result<impl Iterator<Item = &str>, Error> {
    let text = std::str::from_utf8(yaml)
        .map_err(|_| Error::Malformed("stats reply is not UTF-8".to_owned()))?;
    let mut lines = text.lines();
    if lines.next() != Some("---") {
        return Err(Error::Malformed(
            "stats reply does not start with `---`".to_owned(),
        ));
    }
    Ok(lines.filter(|line| !line.is_empty()))
}

/// beanstalkd quotes some scalars (`version: "1.12"`) and never escapes.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &[u8] = b"---\nid: 1\ntube: foo\nstate: ready\npri: 5\nage: 0\ndelay: 0\nttr: 10\ntime-left: 0\nfile: 0\nreserves: 0\ntimeouts: 0\nreleases: 0\nburies: 0\nkicks: 0\n";

    #[test]
    fn reads_job_stats_as_beanstalkd_writes_them() {
        let s = JobStats::from_yaml(JOB).unwrap();
        assert_eq!(s.id, 1);
        assert_eq!(s.tube, "foo");
        assert_eq!(s.state, JobState::Ready);
        assert_eq!((s.pri, s.ttr), (5, 10));
    }

    #[test]
    fn missing_or_bad_fields_are_malformed() {
        let without_ttr = String::from_utf8(JOB.to_vec())
            .unwrap()
            .replace("ttr: 10\n", "");
        let e = JobStats::from_yaml(without_ttr.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("\"ttr\""), "{e}");
        let bad_state = String::from_utf8(JOB.to_vec())
            .unwrap()
            .replace("ready", "sleepy");
        let e = JobStats::from_yaml(bad_state.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("sleepy"), "{e}");
        let bad_pri = String::from_utf8(JOB.to_vec())
            .unwrap()
            .replace("pri: 5", "pri: -5");
        assert!(JobStats::from_yaml(bad_pri.as_bytes()).is_err());
    }

    /// `stats-job` as beanstalkd 1.12 wrote it for a reserved job one second
    /// past its TTR that the server had not yet timed out (issue 10: a `u64`
    /// here dropped the worker's connection and the job ran again).
    const OVERDUE: &[u8] = b"---\nid: 7\ntube: default\nstate: reserved\npri: 1024\nage: 21\ndelay: 0\nttr: 5\ntime-left: -1\nfile: 0\nreserves: 1\ntimeouts: 0\nreleases: 0\nburies: 0\nkicks: 0\n";

    #[test]
    fn negative_time_left_is_read() {
        let s = JobStats::from_yaml(OVERDUE).unwrap();
        assert_eq!((s.id, s.state, s.ttr), (7, JobState::Reserved, 5));
        assert_eq!((s.time_left, s.age), (-1, 21));
    }

    #[test]
    fn signed_fields_take_what_beanstalkd_prints() {
        // PRId64 fields: the whole i64 range, both ends.
        let job = String::from_utf8(JOB.to_vec())
            .unwrap()
            .replace("time-left: 0", "time-left: -9223372036854775808")
            .replace("age: 0", "age: -3")
            .replace("\ntube: foo", "\ntube: \"foo\"");
        let s = JobStats::from_yaml(job.as_bytes()).unwrap();
        assert_eq!((s.time_left, s.age, s.tube.as_str()), (i64::MIN, -3, "foo"));
        let tube = b"---\nname: \"t\"\ncurrent-jobs-urgent: 0\ncurrent-jobs-ready: 0\ncurrent-jobs-reserved: 0\ncurrent-jobs-delayed: 0\ncurrent-jobs-buried: 0\ntotal-jobs: 18446744073709551615\ncurrent-using: 0\ncurrent-watching: 0\ncurrent-waiting: 0\ncmd-delete: 0\ncmd-pause-tube: 1\npause: 2\npause-time-left: -1\n";
        let s = TubeStats::from_yaml(tube).unwrap();
        assert_eq!((s.name.as_str(), s.total_jobs), ("t", u64::MAX));
        assert_eq!((s.pause, s.pause_time_left), (2, -1));
    }

    #[test]
    fn unreadable_fields_are_malformed_not_connection_errors() {
        for (from, to) in [
            ("time-left: 0", "time-left: soon"),
            ("pri: 5", "pri: 4294967296"),
            ("reserves: 0", "reserves: -1"),
            ("kicks: 0\n", ""),
        ] {
            let job = String::from_utf8(JOB.to_vec()).unwrap().replace(from, to);
            let e = JobStats::from_yaml(job.as_bytes()).unwrap_err();
            assert!(matches!(e, Error::Malformed(_)), "{to:?}: {e:?}");
            assert!(!e.is_connection_error(), "{to:?}: {e:?}");
        }
    }

    #[test]
    fn reads_maps_and_lists() {
        let map = parse_map(b"---\nversion: \"1.12\"\nos: #1 SMP x\nempty:\n").unwrap();
        assert_eq!(map["version"], "1.12");
        assert_eq!(map["os"], "#1 SMP x");
        assert_eq!(map["empty"], "");
        assert_eq!(
            parse_list(b"---\n- default\n- foo\n").unwrap(),
            ["default", "foo"]
        );
        assert_eq!(parse_list(b"---\n").unwrap(), Vec::<String>::new());
        assert!(parse_map(b"id: 1\n").is_err());
        assert!(parse_map(b"---\nnot a pair\n").is_err());
        assert!(parse_list(b"---\nfoo\n").is_err());
        assert!(parse_list(b"---\n- \xff\n").is_err());
    }
}
