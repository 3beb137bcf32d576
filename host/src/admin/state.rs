//! The `/api/state` JSON and readiness, built by pure functions from what
//! the metrics, the registry and the poller know (per beanstalkd server).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::metrics::BoardSnapshot;
use crate::metrics::board::{FailureEntry, TubeCounts, Usage};
use crate::registry::ModuleStatus;

/// The whole `/api/state` document.
#[derive(Debug, Serialize)]
pub struct State {
    /// This worker.
    pub worker: WorkerView,
    /// Its beanstalkd servers, in the order given, up or down.
    pub servers: Vec<ServerView>,
    /// The tubes it serves, summed over the servers.
    pub tubes: Vec<TubeView>,
    /// Its tenants.
    pub tenants: Vec<TenantView>,
    /// Its modules.
    pub modules: Vec<ModuleStatus>,
    /// The last failed attempts, newest first.
    pub failures: Vec<FailureEntry>,
}

/// `worker` in [`State`].
#[derive(Debug, Serialize)]
pub struct WorkerView {
    /// beanbox's version.
    pub version: &'static str,
    /// When the worker started, in Unix seconds.
    pub started_at: u64,
    /// The beanstalkd servers, comma-separated.
    pub beanstalkd: String,
    /// Whether the poller reaches every server.
    pub up: bool,
    /// Whether `/readyz` says ready.
    pub ready: bool,
    /// Whether actions are enabled (a token is configured).
    pub actions: bool,
}

/// One beanstalkd server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerView {
    /// Its address.
    pub server: String,
    /// Whether the poller reaches it.
    pub up: bool,
}

/// One served tube.
#[derive(Debug, Serialize)]
pub struct TubeView {
    /// Its name.
    pub tube: String,
    /// Its counts summed over the servers that answer, zero before the
    /// first poll.
    #[serde(flatten)]
    pub counts: TubeCounts,
    /// `[Unix s, finished jobs/s]` over all servers, oldest first, the last
    /// 10 minutes.
    pub rate: Vec<(u64, f64)>,
    /// Each server's counts, in the order of the list (a server down, or
    /// not polled yet, is left out).
    pub servers: Vec<ServerCounts>,
}

/// One server's counts of a tube.
#[derive(Debug, Serialize)]
pub struct ServerCounts {
    /// The server's address.
    pub server: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: TubeCounts,
}

/// When the worker counts as ready as to its beanstalkd servers
/// (`--ready-when`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadyWhen {
    /// While at least one server is up: the others' jobs wait, the fleet
    /// serves.
    #[default]
    Any,
    /// Only while every server is up.
    All,
}

/// One tenant.
#[derive(Debug, Serialize)]
pub struct TenantView {
    /// Its name.
    pub name: String,
    /// Its tubes.
    pub tubes: Vec<String>,
    /// Jobs it may run at once.
    pub slots: usize,
    /// Jobs it runs now.
    pub busy: u64,
    /// The budget of each of its jobs.
    pub limits: LimitsView,
    /// What its jobs used since the worker started.
    pub used: Usage,
}

/// A tenant's limits.
#[derive(Debug, Serialize)]
pub struct LimitsView {
    /// Fuel per call.
    pub fuel: u64,
    /// Linear memory per call, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock seconds per call.
    pub timeout_secs: f64,
    /// Attempts before a failing job is buried.
    pub max_attempts: u32,
}

/// What [`state`] is built from.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The worker part.
    pub worker: WorkerView,
    /// The servers, in the order given, up or down.
    pub servers: Vec<ServerView>,
    /// The tenants served now.
    pub tenants: &'a Config,
    /// Busy slots by tenant name (missing: none).
    pub busy: BTreeMap<String, u64>,
    /// The dashboard aggregates.
    pub board: BoardSnapshot,
    /// The registry's modules.
    pub modules: Vec<ModuleStatus>,
}

/// The `/api/state` document.
pub fn state(inputs: Inputs<'_>) -> State {
    let Inputs {
        worker,
        servers,
        tenants,
        busy,
        mut board,
        modules,
    } = inputs;
    let mut tubes: Vec<TubeView> = tenants
        .tenants
        .iter()
        .flat_map(|t| t.tubes())
        .map(|tube| {
            let mut polled = board.tubes.remove(tube).unwrap_or_default();
            let split = servers
                .iter()
                .filter_map(|s| {
                    let counts = polled.servers.remove(&s.server)?;
                    Some(ServerCounts {
                        server: s.server.clone(),
                        counts,
                    })
                })
                .collect();
            TubeView {
                tube: tube.to_string(),
                counts: polled.counts.unwrap_or_default(),
                rate: polled.rate,
                servers: split,
            }
        })
        .collect();
    tubes.sort_by(|a, b| a.tube.cmp(&b.tube));
    let tenants = tenants
        .tenants
        .iter()
        .map(|t| TenantView {
            name: t.name.clone(),
            tubes: t.tubes().map(str::to_string).collect(),
            slots: t.concurrency,
            busy: busy.get(&t.name).copied().unwrap_or(0),
            limits: LimitsView {
                fuel: t.limits.fuel,
                memory_bytes: t.limits.memory_bytes,
                timeout_secs: t.limits.timeout.as_secs_f64(),
                max_attempts: t.max_attempts,
            },
            used: board.usage.get(&t.name).copied().unwrap_or_default(),
        })
        .collect();
    State {
        worker,
        servers,
        tubes,
        tenants,
        modules,
        failures: board.failures,
    }
}

/// The modules that must be loaded before the worker is ready: every
/// tenant's, and `at_start` (with no config and no `--tube`: the module
/// files found at start), sorted, each once.
pub fn wanted_modules(tenants: &Config, at_start: &[String]) -> Vec<String> {
    let mut wanted: Vec<String> = tenants
        .tenants
        .iter()
        .flat_map(|t| t.modules().into_iter().map(str::to_string))
        .chain(at_start.iter().cloned())
        .collect();
    wanted.sort();
    wanted.dedup();
    wanted
}

/// Whether the worker is ready: the poller reaches one server (`any`) or
/// every server (`all`), and every wanted module has a serving version.
///
/// # Errors
///
/// One line saying what is not ready (the first thing found), naming the
/// servers down.
pub fn readiness(
    servers: &[ServerView],
    when: ReadyWhen,
    wanted: &[String],
    modules: &[ModuleStatus],
) -> Result<(), String> {
    let down: Vec<&str> = servers
        .iter()
        .filter(|s| !s.up)
        .map(|s| s.server.as_str())
        .collect();
    let ready = match when {
        ReadyWhen::Any => down.len() < servers.len(),
        ReadyWhen::All => down.is_empty(),
    };
    if !ready {
        let all = if servers.len() > 1 && when == ReadyWhen::All && down.len() < servers.len() {
            " (--ready-when all)"
        } else {
            ""
        };
        return Err(format!("beanstalkd {} unreachable{all}", down.join(", ")));
    }
    for name in wanted {
        let status = modules.iter().find(|m| &m.name == name);
        match status {
            Some(m) if m.hash.is_some() => {}
            Some(ModuleStatus {
                error: Some(error), ..
            }) => return Err(format!("module {name} not loaded: {error}")),
            _ => return Err(format!("module {name} not loaded yet")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, hash: Option<&str>, error: Option<&str>) -> ModuleStatus {
        ModuleStatus {
            name: name.into(),
            hash: hash.map(Into::into),
            error: error.map(Into::into),
            ..ModuleStatus::default()
        }
    }

    fn servers(states: &[(&str, bool)]) -> Vec<ServerView> {
        states
            .iter()
            .map(|(server, up)| ServerView {
                server: (*server).into(),
                up: *up,
            })
            .collect()
    }

    #[test]
    fn ready_needs_beanstalkd_and_every_wanted_module() {
        let wanted = vec!["a".to_string(), "b".to_string()];
        let loaded = [module("a", Some("h"), None), module("b", Some("h"), None)];
        let up = servers(&[("x:1", true)]);
        let any = ReadyWhen::Any;
        assert_eq!(readiness(&up, any, &wanted, &loaded), Ok(()));
        for when in [ReadyWhen::Any, ReadyWhen::All] {
            assert_eq!(
                readiness(
                    &servers(&[("127.0.0.1:11300", false)]),
                    when,
                    &wanted,
                    &loaded
                ),
                Err("beanstalkd 127.0.0.1:11300 unreachable".into())
            );
        }
        let failed = [module("a", Some("h"), None), module("b", None, Some("bad"))];
        assert_eq!(
            readiness(&up, any, &wanted, &failed),
            Err("module b not loaded: bad".into())
        );
        assert_eq!(
            readiness(&up, any, &wanted, &loaded[..1]),
            Err("module b not loaded yet".into())
        );
        // A newer version that failed leaves the old one serving: ready.
        let old_serves = [module("a", Some("h"), Some("bad")), loaded[1].clone()];
        assert_eq!(readiness(&up, any, &wanted, &old_serves), Ok(()));
    }

    #[test]
    fn ready_while_any_server_is_up_or_only_while_all_are() {
        let one_down = servers(&[("a:1", true), ("b:2", false), ("c:3", true)]);
        assert_eq!(readiness(&one_down, ReadyWhen::Any, &[], &[]), Ok(()));
        assert_eq!(
            readiness(&one_down, ReadyWhen::All, &[], &[]),
            Err("beanstalkd b:2 unreachable (--ready-when all)".into())
        );
        let all_down = servers(&[("a:1", false), ("b:2", false)]);
        for when in [ReadyWhen::Any, ReadyWhen::All] {
            assert_eq!(
                readiness(&all_down, when, &[], &[]),
                Err("beanstalkd a:1, b:2 unreachable".into())
            );
        }
        let all_up = servers(&[("a:1", true), ("b:2", true)]);
        assert_eq!(readiness(&all_up, ReadyWhen::All, &[], &[]), Ok(()));
    }

    #[test]
    fn tubes_are_summed_with_each_servers_split_in_list_order() {
        let metrics = crate::metrics::Metrics::new();
        let counts = |ready| TubeCounts {
            ready,
            ..TubeCounts::default()
        };
        metrics.tube_polled("b:2", "t", counts(3), 0, 1.0);
        metrics.tube_polled("a:1", "t", counts(2), 0, 1.0);
        let config = Config::implicit(&["t".to_string()], &crate::config::Defaults::default());
        metrics.set_tenants(&config);
        let list = servers(&[("a:1", true), ("b:2", true), ("c:3", false)]);
        let doc = state(Inputs {
            worker: WorkerView {
                version: "0",
                started_at: 0,
                beanstalkd: "a:1,b:2,c:3".into(),
                up: false,
                ready: true,
                actions: false,
            },
            servers: list.clone(),
            tenants: &config,
            busy: BTreeMap::new(),
            board: metrics.board_snapshot(),
            modules: Vec::new(),
        });
        assert_eq!(doc.servers, list);
        assert_eq!(doc.tubes[0].counts.ready, 5);
        let split: Vec<(&str, u64)> = doc.tubes[0]
            .servers
            .iter()
            .map(|s| (s.server.as_str(), s.counts.ready))
            .collect();
        assert_eq!(split, [("a:1", 2), ("b:2", 3)]);
    }

    #[test]
    fn wanted_modules_join_the_tenants_and_those_found_at_start() {
        let config = Config::implicit(
            &["b".to_string(), "a".to_string()],
            &crate::config::Defaults::default(),
        );
        assert_eq!(
            wanted_modules(&config, &["c".to_string(), "a".to_string()]),
            ["a", "b", "c"]
        );
    }
}
