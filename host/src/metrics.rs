//! The worker's metrics: Prometheus families (prometheus-client, served as
//! OpenMetrics text on the admin listener's `/metrics`) and the in-memory
//! aggregates the dashboard shows ([`board`]). Always on: recording is a few
//! atomic adds and one short lock per job.
//!
//! Label values are bounded: tenant and tube names come from the config,
//! module names from valid module files, and a task label is an export of
//! the module serving the tube, else [`UNKNOWN_TASK`].

pub mod board;
mod families;
mod polled;

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::failures::{MAX_REASON_BYTES, cut};
use crate::sandbox::Module;
use board::{Board, FailedOutcome, FailureEntry, TubeCounts, Usage, sum_rates};
use families::{
    Families, JobLabels, ModuleLabel, OutcomeLabel, TUBE_STATES, TaskLabels, TenantLabel,
    TubeStateLabels,
};

/// The task label of a job whose task is not an export of its module (or
/// whose body named none).
pub const UNKNOWN_TASK: &str = "unknown";

/// The task label of a job naming `task`: the name of the export of
/// `module` it resolves to (snake_case finds kebab-case), else
/// [`UNKNOWN_TASK`]. Never the job's own text: labels stay bounded.
pub fn task_label(module: Option<&Module>, task: &str) -> String {
    module
        .and_then(|m| m.task(task).ok())
        .map_or_else(|| UNKNOWN_TASK.to_string(), |t| t.name.clone())
}

/// What became of a job, as `beanbox_jobs_total{outcome}` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// It succeeded and was deleted.
    Deleted,
    /// It failed and will be tried again.
    Released,
    /// It failed for good.
    Buried,
    /// Left untouched for beanstalkd to hand out again (worker stopping,
    /// module gone).
    HandedBack,
}

impl JobOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Deleted => "deleted",
            JobOutcome::Released => "released",
            JobOutcome::Buried => "buried",
            JobOutcome::HandedBack => "handed_back",
        }
    }
}

/// What a failure record put came to (`beanbox_failure_records_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The record is on beanstalkd.
    Written,
    /// It could not be put; the job was buried anyway.
    Lost,
}

/// One settled job, as the worker records it.
#[derive(Debug, Clone)]
pub struct JobRecord<'a> {
    /// The job id.
    pub job: u64,
    /// Its tenant (from the config).
    pub tenant: &'a str,
    /// Its tube (from the config).
    pub tube: &'a str,
    /// Its task label ([`task_label`]).
    pub task: &'a str,
    /// Deleted, released or buried.
    pub outcome: JobOutcome,
    /// Which attempt it was (0: unknown).
    pub attempt: u32,
    /// Seconds from reserve to settle.
    pub seconds: f64,
    /// Wall-clock seconds of its call (0 without one).
    pub call_seconds: f64,
    /// Fuel its call burned.
    pub fuel: u64,
    /// Peak linear memory of its call's store, in bytes.
    pub memory_peak: u64,
    /// Jobs its instance had served, this one included: 1 = a fresh
    /// instance, more = a kept one, 0 = no instance.
    pub instance_jobs: u32,
    /// For a failure: its kind (`guest-error`, …) and reason.
    pub failure: Option<(&'a str, String)>,
}

struct Inner {
    registry: Registry,
    families: Families,
    board: Mutex<Board>,
    tenants: RwLock<Config>,
}

/// The worker's metrics and dashboard aggregates. Cheap to clone; all
/// clones record into the same families.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered and empty.
    pub fn new() -> Metrics {
        let (registry, families) = Families::register();
        Metrics {
            inner: Arc::new(Inner {
                registry,
                families,
                board: Mutex::new(Board::default()),
                tenants: RwLock::new(Config {
                    tenants: Vec::new(),
                }),
            }),
        }
    }

    /// Every family as OpenMetrics text (what `/metrics` serves).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }

    /// Records a settled job: its outcome, duration, fuel and memory, its
    /// instance, its tenant's usage and, for a failure, the failures list.
    pub fn job_settled(&self, job: &JobRecord<'_>) {
        let i = &self.inner;
        i.families
            .jobs
            .get_or_create(&JobLabels {
                tenant: job.tenant.to_string(),
                tube: job.tube.to_string(),
                task: job.task.to_string(),
                outcome: job.outcome.as_str(),
            })
            .inc();
        let labels = TaskLabels {
            tenant: job.tenant.to_string(),
            tube: job.tube.to_string(),
            task: job.task.to_string(),
        };
        i.families
            .duration
            .get_or_create(&labels)
            .observe(job.seconds);
        i.families
            .fuel
            .get_or_create(&labels)
            .observe(job.fuel as f64);
        i.families
            .memory
            .get_or_create(&labels)
            .observe(job.memory_peak as f64);
        let tenant = TenantLabel {
            tenant: job.tenant.to_string(),
        };
        match job.instance_jobs {
            0 => {}
            1 => {
                i.families.instances_created.get_or_create(&tenant).inc();
            }
            _ => {
                i.families.instances_reused.get_or_create(&tenant).inc();
            }
        }
        let failed = match job.outcome {
            JobOutcome::Released => Some(FailedOutcome::Released),
            JobOutcome::Buried => Some(FailedOutcome::Buried),
            JobOutcome::Deleted | JobOutcome::HandedBack => None,
        };
        let mut board = self.board();
        board.usage.entry(job.tenant.to_string()).or_default().add(
            job.fuel,
            job.call_seconds,
            job.memory_peak,
        );
        if let (Some(outcome), Some((kind, reason))) = (failed, &job.failure) {
            board.failures.push(FailureEntry {
                job: job.job,
                tube: job.tube.to_string(),
                task: job.task.to_string(),
                tenant: job.tenant.to_string(),
                attempt: job.attempt,
                kind: (*kind).to_string(),
                reason: cut(reason, MAX_REASON_BYTES).to_owned(),
                at: unix_now(),
                outcome,
            });
        }
    }

    /// Records a job left for beanstalkd to hand out again.
    pub fn job_handed_back(&self, tenant: &str, tube: &str, task: &str) {
        self.inner
            .families
            .jobs
            .get_or_create(&JobLabels {
                tenant: tenant.to_string(),
                tube: tube.to_string(),
                task: task.to_string(),
                outcome: JobOutcome::HandedBack.as_str(),
            })
            .inc();
    }

    /// Counts one of `tenant`'s slots as busy until the guard is dropped.
    pub fn busy(&self, tenant: &str) -> BusyGuard {
        let gauge = self
            .inner
            .families
            .busy_slots
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .clone();
        gauge.inc();
        BusyGuard(gauge)
    }

    /// `tenant`'s slots running a job now.
    pub fn busy_slots(&self, tenant: &str) -> u64 {
        let label = TenantLabel {
            tenant: tenant.to_string(),
        };
        self.inner
            .families
            .busy_slots
            .get(&label)
            .map_or(0, |g| u64::try_from(g.get()).unwrap_or(0))
    }

    /// Counts a slot connection reopened after one was lost.
    pub fn reconnected(&self) {
        self.inner.families.reconnects.inc();
    }

    /// Records a module version loaded in `seconds`.
    pub fn module_loaded(&self, module: &str, seconds: f64) {
        let label = ModuleLabel {
            module: module.to_string(),
        };
        self.inner.families.module_loads.get_or_create(&label).inc();
        self.inner
            .families
            .compile_seconds
            .get_or_create(&label)
            .observe(seconds);
    }

    /// Records a module version that failed to load.
    pub fn module_load_failed(&self, module: &str) {
        let label = ModuleLabel {
            module: module.to_string(),
        };
        self.inner
            .families
            .module_load_failures
            .get_or_create(&label)
            .inc();
    }

    /// Records what a failure record put came to.
    pub fn failure_record(&self, outcome: RecordOutcome) {
        let outcome = match outcome {
            RecordOutcome::Written => "written",
            RecordOutcome::Lost => "lost",
        };
        self.inner
            .families
            .failure_records
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Publishes the tenants the worker serves now (at start and after each
    /// reload): the dashboard lists them, the poller polls their tubes, and
    /// readiness waits for their modules. Tubes no longer served are dropped.
    pub fn set_tenants(&self, config: &Config) {
        let served: Vec<String> = config
            .tenants
            .iter()
            .flat_map(|t| t.tubes().map(str::to_string))
            .collect();
        for labels in self.tube_labels_gone(&served) {
            self.inner.families.tube_jobs.remove(&labels);
        }
        self.board().retain_tubes(&served);
        *self.inner.tenants.write().expect("metrics lock poisoned") = config.clone();
    }

    /// The gauge labels of polled tubes that are not in `served`.
    fn tube_labels_gone(&self, served: &[String]) -> Vec<TubeStateLabels> {
        let board = self.board();
        board
            .tubes
            .keys()
            .filter(|t| !served.contains(t))
            .flat_map(|t| {
                TUBE_STATES.map(|state| TubeStateLabels {
                    tube: t.clone(),
                    state,
                })
            })
            .collect()
    }

    /// The tenants last published by [`Metrics::set_tenants`].
    pub fn tenants(&self) -> Config {
        self.inner
            .tenants
            .read()
            .expect("metrics lock poisoned")
            .clone()
    }

    /// The tubes of the published tenants, sorted.
    pub fn served_tubes(&self) -> Vec<String> {
        let mut tubes: Vec<String> = self
            .tenants()
            .tenants
            .iter()
            .flat_map(|t| t.tubes().map(str::to_string))
            .collect();
        tubes.sort();
        tubes
    }

    /// A copy of the dashboard aggregates.
    pub fn board_snapshot(&self) -> BoardSnapshot {
        let board = self.board();
        BoardSnapshot {
            usage: board.usage.clone(),
            failures: board.failures.iter().rev().cloned().collect(),
            tubes: board
                .tubes
                .iter()
                .map(|(t, servers)| {
                    let polled: std::collections::BTreeMap<String, TubeCounts> = servers
                        .iter()
                        .filter_map(|(s, (counts, _))| Some((s.clone(), (*counts)?)))
                        .collect();
                    let rates: Vec<Vec<(u64, f64)>> =
                        servers.values().map(|(_, r)| r.samples()).collect();
                    let snapshot = TubeSnapshot {
                        counts: (!polled.is_empty()).then(|| TubeCounts::sum(polled.values())),
                        rate: sum_rates(&rates),
                        servers: polled,
                    };
                    (t.clone(), snapshot)
                })
                .collect(),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.board.lock().expect("metrics lock poisoned")
    }
}

/// A copy of the dashboard aggregates ([`Metrics::board_snapshot`]).
#[derive(Debug, Clone)]
pub struct BoardSnapshot {
    /// What each tenant's jobs used, by tenant name.
    pub usage: std::collections::BTreeMap<String, Usage>,
    /// The last failed attempts, newest first.
    pub failures: Vec<FailureEntry>,
    /// Per polled tube: its last counts summed over the servers (`None`
    /// before the first poll) and `(Unix s, jobs/s)` samples, oldest first.
    pub tubes: std::collections::BTreeMap<String, TubeSnapshot>,
}

/// One polled tube in a [`BoardSnapshot`].
#[derive(Debug, Clone, Default)]
pub struct TubeSnapshot {
    /// Its last counts summed over the servers that answer; `None` before
    /// the first poll.
    pub counts: Option<TubeCounts>,
    /// `(Unix s, finished jobs/s)` over all servers, oldest first.
    pub rate: Vec<(u64, f64)>,
    /// Each answering server's counts, by address.
    pub servers: std::collections::BTreeMap<String, TubeCounts>,
}

/// One busy slot of a tenant ([`Metrics::busy`]); dropping it frees it.
#[derive(Debug)]
pub struct BusyGuard(Gauge<i64, AtomicI64>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(outcome: JobOutcome, instance_jobs: u32) -> JobRecord<'a> {
        JobRecord {
            job: 7,
            tenant: "acme",
            tube: "t",
            task: "fail",
            outcome,
            attempt: 1,
            seconds: 0.01,
            call_seconds: 0.005,
            fuel: 1000,
            memory_peak: 1 << 20,
            instance_jobs,
            failure: (outcome != JobOutcome::Deleted).then(|| ("guest-error", "x".repeat(5000))),
        }
    }

    #[test]
    fn a_settled_job_is_counted_observed_and_summed() {
        let m = Metrics::new();
        m.job_settled(&record(JobOutcome::Deleted, 1));
        m.job_settled(&record(JobOutcome::Buried, 2));
        let text = m.encode();
        assert!(
            text.contains(
                r#"beanbox_jobs_total{tenant="acme",tube="t",task="fail",outcome="deleted"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"beanbox_job_duration_seconds_count{tenant="acme",tube="t",task="fail"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"beanbox_instances_created_total{tenant="acme"} 1"#));
        assert!(text.contains(r#"beanbox_instances_reused_total{tenant="acme"} 1"#));
        assert!(text.ends_with("# EOF\n"));
        let board = m.board_snapshot();
        assert_eq!(board.usage["acme"].jobs, 2);
        assert_eq!(board.usage["acme"].fuel, 2000);
        assert_eq!(board.failures.len(), 1, "only the failure is listed");
        let failure = &board.failures[0];
        assert_eq!(failure.outcome, FailedOutcome::Buried);
        assert_eq!(failure.reason.len(), MAX_REASON_BYTES);
    }

    #[test]
    fn busy_slots_count_while_the_guard_lives() {
        let m = Metrics::new();
        let a = m.busy("acme");
        let b = m.busy("acme");
        assert_eq!(m.busy_slots("acme"), 2);
        drop(a);
        assert_eq!(m.busy_slots("acme"), 1);
        drop(b);
        assert_eq!(m.busy_slots("acme"), 0);
        assert_eq!(m.busy_slots("other"), 0);
    }

    #[test]
    fn a_tube_no_longer_served_leaves_the_gauges_and_the_board() {
        let m = Metrics::new();
        let counts = TubeCounts {
            buried: 3,
            ..TubeCounts::default()
        };
        m.tube_polled("a:1", "old", counts, 0, 1.0);
        assert!(
            m.encode()
                .contains(r#"beanbox_tube_jobs{tube="old",state="buried"} 3"#)
        );
        m.set_tenants(&Config {
            tenants: Vec::new(),
        });
        assert!(!m.encode().contains(r#"tube="old""#));
        assert!(m.board_snapshot().tubes.is_empty());
    }
}
