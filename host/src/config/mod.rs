//! Tenants: who runs which modules on which tubes, under what limits and with
//! which WASI grants. Read from the optional TOML file of `runner --config`;
//! without one, every module is its own tenant with the worker's defaults.
//!
//! - this file: the model (what a [`Config`] says) and its constructors;
//! - `file.rs`: the TOML file as serde sees it, and its checks;
//! - `diagnose.rs`: serde's errors turned into file, line and key.
//!
//! # The file
//!
//! ```toml
//! # Values here override the worker's flags for every tenant.
//! [defaults]
//! fuel = 10_000_000_000
//! memory_mb = 64
//! timeout_secs = 30        # fractions allowed
//! output_bytes = 1048576   # stdout cap, and separately stderr
//! max_attempts = 3
//! backoff_secs = 1         # fractions allowed
//! backoff_max_secs = 3600
//! concurrency = 1          # a tenant's share of the worker: jobs at once
//! reuse = 1                # jobs one instance may serve; 1: a fresh one per job
//! max_puts = 100           # follow-up jobs one job may put (sent if it succeeds)
//! max_module_mb = 64       # largest module file loaded, MiB; checked before reading
//!
//! [tenants.acme]
//! modules = ["resize", "thumbs"]   # tube `resize` from resize.wasm, `thumbs` from thumbs.wasm
//! dir = "/srv/acme/modules"        # where its modules are deployed; default: --modules
//! tubes = { images = "resize" }    # more tubes for one of its modules
//! concurrency = 2
//! memory_mb = 128
//! reuse = { thumbs = 50 }          # per module; `resize` keeps the inherited value
//! put_tubes = ["results"]          # where its tasks may put jobs; ["*"] for anywhere
//! env = { API_URL = "https://api.example" }
//! dirs = [
//!     { host = "/srv/acme/in", guest = "/in", mode = "ro" },
//!     { host = "/srv/acme/out", guest = "/out", mode = "rw" },
//! ]
//!
//! [tenants.globex]
//! modules = ["report"]
//! ```
//!
//! A tenant takes every key of `[defaults]` plus `modules` (required),
//! `dir` (its own modules directory; default: the worker's `--modules`),
//! `tubes`, `put_tubes` (default: its own tubes), `env` and `dirs` (default:
//! none; a dir's `mode` defaults to `ro`; a relative `dir` or `host` is
//! relative to the file's directory). Its `reuse` may also be a table of module =
//! integer; the modules it does not name keep the inherited value. Settings
//! resolve as flag, then `[defaults]`, then the tenant. A module belongs to
//! one tenant and a tube to one module.
//!
//! An error names the file, and the line and key whenever it has them, in
//! one line: ``tenants.toml:12: key `tenants.acme.fuel`: expected a
//! non-negative integer, got string "lots"``. Nothing is half-applied: a
//! caller that reloads keeps its old [`Config`] when [`Config::load`] fails.

mod diagnose;
mod file;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sandbox::Limits;

/// Who runs what: every tenant, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Sorted by name; no module and no tube appears in two of them.
    pub tenants: Vec<Tenant>,
}

/// A group of modules with its own tubes, limits, grants and share of the
/// worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// The key under `[tenants]`, or the module name without a file.
    pub name: String,
    /// The tubes it serves, sorted by tube; several may share a module.
    pub routes: Vec<Route>,
    /// The budget of each of its jobs.
    pub limits: Limits,
    /// Its share of the worker: at most this many of its jobs at once.
    pub concurrency: usize,
    /// Attempts before a failing job is buried.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
    /// What its modules may touch besides their arguments.
    pub grants: Grants,
    /// Where its tasks may put follow-up jobs.
    pub put_tubes: PutTubes,
    /// Jobs one instance may serve, for every one of its modules: 1 = a
    /// fresh instance per job (the default).
    pub reuse: BTreeMap<String, u32>,
    /// The largest module file of its modules that is loaded, in bytes.
    pub max_module_bytes: u64,
    /// Where its module files are (`<dir>/<module>.wasm`); `None`: the
    /// worker's `--modules` directory.
    pub modules_dir: Option<PathBuf>,
}

impl Tenant {
    /// The tubes it serves, sorted.
    pub fn tubes(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.tube.as_str())
    }

    /// The modules it runs, sorted, each once.
    pub fn modules(&self) -> Vec<&str> {
        let mut modules: Vec<&str> = self.routes.iter().map(|r| r.module.as_str()).collect();
        modules.sort_unstable();
        modules.dedup();
        modules
    }

    /// Consecutive jobs of this tenant that one instance of `module` may
    /// serve: 1 = a fresh instance per job (the default, and the answer for a
    /// module it does not run).
    pub fn jobs_per_instance(&self, module: &str) -> u32 {
        self.reuse.get(module).copied().unwrap_or(1)
    }
}

/// One tube and the module that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The beanstalkd tube.
    pub tube: String,
    /// The module's file stem: `<modules dir>/<module>.wasm`.
    pub module: String,
}

use crate::failures::FAILURES_TUBE;
pub use crate::sandbox::{DirGrant, Grants};

/// The tubes a tenant's tasks may put follow-up jobs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutTubes {
    /// Any tube (`put_tubes = ["*"]`).
    Any,
    /// Only these.
    Only(Vec<String>),
}

impl PutTubes {
    /// Whether a task may put a job on `tube`. Never on the failure
    /// records' tube, not even with `*`: no task forges a record.
    pub fn allows(&self, tube: &str) -> bool {
        if tube == FAILURES_TUBE {
            return false;
        }
        match self {
            PutTubes::Any => true,
            PutTubes::Only(tubes) => tubes.iter().any(|t| t == tube),
        }
    }
}

/// The settings every tenant starts from: what the worker's flags give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// The budget of one job.
    pub limits: Limits,
    /// A tenant's jobs at once.
    pub concurrency: usize,
    /// Attempts before a failing job is buried.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
    /// Jobs one instance may serve: 1 = a fresh instance per job (the
    /// default).
    pub reuse: u32,
    /// The largest module file loaded, in bytes.
    pub max_module_bytes: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            concurrency: 1,
            max_attempts: 3,
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            reuse: 1,
            max_module_bytes: crate::sandbox::DEFAULT_MAX_MODULE_BYTES,
        }
    }
}

/// A config file that cannot be used, located as precisely as it can be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}: {message}", LineSuffix(*.line), KeySuffix(.key.as_deref()))]
pub struct ConfigError {
    /// The file as it was named.
    pub file: String,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// Dotted path of the offending key (`tenants.acme.dirs[1].mode`).
    pub key: Option<String>,
    /// What is wrong, one line.
    pub message: String,
}

struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

struct KeySuffix<'a>(Option<&'a str>);

impl fmt::Display for KeySuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, ": key `{key}`"),
            None => Ok(()),
        }
    }
}

impl Config {
    /// Reads, parses and checks a config file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not TOML, has an unknown key or a
    /// value of the wrong type, or fails a check (see [`Config::parse`]).
    pub fn load(path: &Path, defaults: &Defaults) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        file::parse_in(&text, &file, base, defaults)
    }

    /// Parses and checks config text; `file` names it in errors, and relative
    /// dir grants are taken relative to its directory.
    ///
    /// # Errors
    ///
    /// Bad TOML, an unknown key, a value of the wrong type, a tenant without
    /// modules, a module in two tenants, a tube served twice, a `tubes` or
    /// `reuse` entry for a module the tenant does not list, an invalid tube or
    /// module name, a zero `concurrency`, `max_attempts`, `memory_mb`,
    /// `reuse` or `max_module_mb`, a timeout that is not positive, a dir
    /// that is missing or not a directory, a guest path that is not
    /// absolute, a mode other than `ro`/`rw`, or an env var name that is
    /// empty or holds `=`.
    pub fn parse(text: &str, file: &str, defaults: &Defaults) -> Result<Config, ConfigError> {
        let base = Path::new(file).parent().unwrap_or(Path::new(""));
        file::parse_in(text, file, base, defaults)
    }

    /// Without a config file: every module name is its own tenant serving
    /// tube `<name>`, with the defaults, no grants, and puts to its own tube
    /// only. Names are taken as they are: the caller has checked them.
    pub fn implicit(modules: &[String], defaults: &Defaults) -> Config {
        let mut names: Vec<&String> = modules.iter().collect();
        names.sort();
        names.dedup();
        let tenants = names
            .into_iter()
            .map(|name| Tenant {
                name: name.clone(),
                routes: vec![Route {
                    tube: name.clone(),
                    module: name.clone(),
                }],
                limits: defaults.limits,
                concurrency: defaults.concurrency,
                max_attempts: defaults.max_attempts,
                backoff: defaults.backoff,
                backoff_max: defaults.backoff_max,
                grants: Grants::default(),
                put_tubes: PutTubes::Only(vec![name.clone()]),
                reuse: BTreeMap::from([(name.clone(), defaults.reuse)]),
                max_module_bytes: defaults.max_module_bytes,
                modules_dir: None,
            })
            .collect();
        Config { tenants }
    }

    /// The size limit of every module a tenant names (its
    /// `max_module_mb`), for [`crate::registry::Registry::set_module_size_limits`].
    pub fn module_size_limits(&self) -> HashMap<String, u64> {
        self.tenants
            .iter()
            .flat_map(|t| {
                t.routes
                    .iter()
                    .map(|r| (r.module.clone(), t.max_module_bytes))
            })
            .collect()
    }

    /// The directory of every module whose tenant has its own `dir`.
    pub fn module_dirs(&self) -> HashMap<String, PathBuf> {
        self.tenants
            .iter()
            .filter_map(|t| t.modules_dir.as_ref().map(|dir| (t, dir)))
            .flat_map(|(t, dir)| t.routes.iter().map(|r| (r.module.clone(), dir.clone())))
            .collect()
    }
}

/// Why [`FAILURES_TUBE`] cannot be a tenant's tube.
pub fn reserved_tube() -> String {
    format!(
        "`{FAILURES_TUBE}` is beanbox's own tube (it holds why buried jobs failed); \
         a tenant cannot serve or put on it: pick another tube name"
    )
}
