//! The `/api/state` JSON and readiness, built by pure functions from what
//! the metrics, the registry and the poller know.

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
    /// The tubes it serves.
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
    /// beanstalkd's address.
    pub beanstalkd: String,
    /// Whether the poller reaches beanstalkd.
    pub up: bool,
    /// Whether `/readyz` says ready.
    pub ready: bool,
    /// Whether actions are enabled (a token is configured).
    pub actions: bool,
}

/// One served tube.
#[derive(Debug, Serialize)]
pub struct TubeView {
    /// Its name.
    pub tube: String,
    /// Its counts, zero before the first poll.
    #[serde(flatten)]
    pub counts: TubeCounts,
    /// `[Unix s, finished jobs/s]`, oldest first, the last 10 minutes.
    pub rate: Vec<(u64, f64)>,
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
            let polled = board.tubes.remove(tube).unwrap_or_default();
            TubeView {
                tube: tube.to_string(),
                counts: polled.counts.unwrap_or_default(),
                rate: polled.rate,
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

/// Whether the worker is ready: the poller reaches beanstalkd and every
/// wanted module has a serving version.
///
/// # Errors
///
/// One line saying what is not ready (the first thing found).
pub fn readiness(
    up: bool,
    beanstalkd: &str,
    wanted: &[String],
    modules: &[ModuleStatus],
) -> Result<(), String> {
    if !up {
        return Err(format!("beanstalkd {beanstalkd} unreachable"));
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

    #[test]
    fn ready_needs_beanstalkd_and_every_wanted_module() {
        let wanted = vec!["a".to_string(), "b".to_string()];
        let loaded = [module("a", Some("h"), None), module("b", Some("h"), None)];
        assert_eq!(readiness(true, "x:1", &wanted, &loaded), Ok(()));
        assert_eq!(
            readiness(false, "127.0.0.1:11300", &wanted, &loaded),
            Err("beanstalkd 127.0.0.1:11300 unreachable".into())
        );
        let failed = [module("a", Some("h"), None), module("b", None, Some("bad"))];
        assert_eq!(
            readiness(true, "x:1", &wanted, &failed),
            Err("module b not loaded: bad".into())
        );
        assert_eq!(
            readiness(true, "x:1", &wanted, &loaded[..1]),
            Err("module b not loaded yet".into())
        );
        // A newer version that failed leaves the old one serving: ready.
        let old_serves = [module("a", Some("h"), Some("bad")), loaded[1].clone()];
        assert_eq!(readiness(true, "x:1", &wanted, &old_serves), Ok(()));
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
