//! Tenants: who runs which modules on which tubes, under what limits and with
//! which WASI grants. Read from the optional TOML file of `runner --config`;
//! without one, every module is its own tenant with the worker's defaults.
//!
//! Why this file is over 600 lines: the model, the raw TOML schema, its
//! validation and the error-key diagnosis live together, with their unit
//! tests (about half the file); the split into model / file / diagnostics is
//! tracked with the rest of the house work (issue 15).
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

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
        parse_in(&text, &file, base, defaults)
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
        parse_in(text, file, base, defaults)
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

    /// The tenant that runs `module`.
    pub fn tenant_for_module(&self, module: &str) -> Option<&Tenant> {
        self.tenants
            .iter()
            .find(|t| t.routes.iter().any(|r| r.module == module))
    }

    /// The tenant serving `tube`, and the module that serves it.
    pub fn route(&self, tube: &str) -> Option<(&Tenant, &str)> {
        self.tenants.iter().find_map(|t| {
            t.routes
                .iter()
                .find(|r| r.tube == tube)
                .map(|r| (t, r.module.as_str()))
        })
    }
}

// ---- the file as serde sees it ----
//
// Every value is `Spanned` so a check after parsing can still point at its
// line. `deny_unknown_fields` everywhere: a misspelt limit must not silently
// leave the default in place.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: Option<RawSettings>,
    #[serde(default)]
    tenants: BTreeMap<Spanned<String>, Spanned<RawTenant>>,
}

/// `[defaults]`: the keys a tenant may also set, and nothing else.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    fuel: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    timeout_secs: Option<Spanned<f64>>,
    output_bytes: Option<Spanned<usize>>,
    max_attempts: Option<Spanned<u32>>,
    backoff_secs: Option<Spanned<f64>>,
    backoff_max_secs: Option<Spanned<f64>>,
    concurrency: Option<Spanned<usize>>,
    reuse: Option<Spanned<u32>>,
    max_puts: Option<Spanned<u32>>,
    max_module_mb: Option<Spanned<u64>>,
}

/// `[tenants.<name>]`. The settings repeat [`RawSettings`]: serde's
/// `flatten` would lose both the spans and `deny_unknown_fields`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    modules: Option<Spanned<Vec<Spanned<String>>>>,
    dir: Option<Spanned<String>>,
    tubes: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    put_tubes: Option<Vec<Spanned<String>>>,
    env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    dirs: Option<Vec<Spanned<RawDir>>>,
    fuel: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    timeout_secs: Option<Spanned<f64>>,
    output_bytes: Option<Spanned<usize>>,
    max_attempts: Option<Spanned<u32>>,
    backoff_secs: Option<Spanned<f64>>,
    backoff_max_secs: Option<Spanned<f64>>,
    concurrency: Option<Spanned<usize>>,
    reuse: Option<Spanned<RawReuse>>,
    max_puts: Option<Spanned<u32>>,
    max_module_mb: Option<Spanned<u64>>,
}

impl RawTenant {
    fn settings(&self) -> RawSettings {
        RawSettings {
            fuel: self.fuel.clone(),
            memory_mb: self.memory_mb.clone(),
            timeout_secs: self.timeout_secs.clone(),
            output_bytes: self.output_bytes.clone(),
            max_attempts: self.max_attempts.clone(),
            backoff_secs: self.backoff_secs.clone(),
            backoff_max_secs: self.backoff_max_secs.clone(),
            concurrency: self.concurrency.clone(),
            reuse: self.reuse.as_ref().and_then(|reuse| match reuse.get_ref() {
                RawReuse::All(n) => Some(Spanned::new(reuse.span(), *n)),
                RawReuse::PerModule(_) => None,
            }),
            max_puts: self.max_puts.clone(),
            max_module_mb: self.max_module_mb.clone(),
        }
    }
}

/// A tenant's `reuse`: one value for all its modules, or a table of module
/// = value. Deserialized by hand: an untagged enum would buffer the value and
/// lose the spans inside the table.
enum RawReuse {
    All(u32),
    PerModule(BTreeMap<Spanned<String>, Spanned<u32>>),
}

impl<'de> Deserialize<'de> for RawReuse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawReuse;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer or a table of module = integer")
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RawReuse, E> {
                u32::try_from(n)
                    .map(RawReuse::All)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RawReuse, E> {
                u32::try_from(n)
                    .map(RawReuse::All)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawReuse, A::Error> {
                let map = serde::de::value::MapAccessDeserializer::new(map);
                BTreeMap::deserialize(map).map(RawReuse::PerModule)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: Spanned<String>,
    guest: Spanned<String>,
    mode: Option<Spanned<String>>,
}

// ---- checking ----

/// The text being checked, to turn spans into lines.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, key: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: Some(line_of(self.text, span.start)),
            key: Some(key),
            message: message.into(),
        }
    }

    /// An error at a spanned value.
    fn at<T>(&self, value: &Spanned<T>, key: String, message: impl Into<String>) -> ConfigError {
        self.error(value.span(), key, message)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn parse_in(
    text: &str,
    file: &str,
    base: &Path,
    defaults: &Defaults,
) -> Result<Config, ConfigError> {
    let src = Source { text, file };
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let base_settings = overlay(
        &src,
        defaults,
        &raw.defaults.unwrap_or_default(),
        "defaults",
    )?;

    // Checked in file order, so "already served by" names the earlier one.
    let mut raw_tenants: Vec<_> = raw.tenants.into_iter().collect();
    raw_tenants.sort_by_key(|(name, _)| name.span().start);

    let mut module_owner: HashMap<String, String> = HashMap::new();
    let mut tube_owner: HashMap<String, (String, String)> = HashMap::new();
    let mut tenants = Vec::with_capacity(raw_tenants.len());
    for (name, raw) in raw_tenants {
        let tenant = check_tenant(
            &src,
            base,
            &base_settings,
            &name,
            raw.get_ref(),
            &mut module_owner,
            &mut tube_owner,
        )?;
        tenants.push(tenant);
    }
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Config { tenants })
}

/// `base` with the settings `raw` gives applied; `prefix` is their table.
fn overlay(
    src: &Source<'_>,
    base: &Defaults,
    raw: &RawSettings,
    prefix: &str,
) -> Result<Defaults, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let mut out = *base;
    if let Some(fuel) = &raw.fuel {
        out.limits.fuel = *fuel.get_ref();
    }
    if let Some(mb) = &raw.memory_mb {
        let bytes = match *mb.get_ref() {
            0 => return Err(src.at(mb, key("memory_mb"), "must be at least 1")),
            n => n
                .checked_mul(1 << 20)
                .ok_or_else(|| src.at(mb, key("memory_mb"), format!("{n} MiB is too large")))?,
        };
        out.limits.memory_bytes = bytes;
    }
    if let Some(secs) = &raw.timeout_secs {
        out.limits.timeout = Duration::try_from_secs_f64(*secs.get_ref())
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                src.at(
                    secs,
                    key("timeout_secs"),
                    format!(
                        "must be a positive number of seconds, got {}",
                        secs.get_ref()
                    ),
                )
            })?;
    }
    if let Some(bytes) = &raw.output_bytes {
        out.limits.output_bytes = *bytes.get_ref();
    }
    if let Some(n) = &raw.max_attempts {
        if *n.get_ref() == 0 {
            return Err(src.at(n, key("max_attempts"), "must be at least 1"));
        }
        out.max_attempts = *n.get_ref();
    }
    for (raw, slot, name) in [
        (&raw.backoff_secs, &mut out.backoff, "backoff_secs"),
        (
            &raw.backoff_max_secs,
            &mut out.backoff_max,
            "backoff_max_secs",
        ),
    ] {
        if let Some(secs) = raw {
            *slot = Duration::try_from_secs_f64(*secs.get_ref()).map_err(|_| {
                src.at(
                    secs,
                    key(name),
                    format!(
                        "must be a non-negative number of seconds, got {}",
                        secs.get_ref()
                    ),
                )
            })?;
        }
    }
    if let Some(n) = &raw.concurrency {
        if *n.get_ref() == 0 {
            return Err(src.at(n, key("concurrency"), "must be at least 1"));
        }
        out.concurrency = *n.get_ref();
    }
    if let Some(n) = &raw.reuse {
        if *n.get_ref() == 0 {
            return Err(src.at(n, key("reuse"), "must be at least 1"));
        }
        out.reuse = *n.get_ref();
    }
    if let Some(n) = &raw.max_puts {
        // 0 is allowed: a tenant whose tasks may not put at all.
        out.limits.max_puts = *n.get_ref();
    }
    if let Some(mb) = &raw.max_module_mb {
        out.max_module_bytes = match *mb.get_ref() {
            0 => return Err(src.at(mb, key("max_module_mb"), "must be at least 1")),
            n => n
                .checked_mul(1 << 20)
                .ok_or_else(|| src.at(mb, key("max_module_mb"), format!("{n} MiB is too large")))?,
        };
    }
    Ok(out)
}

fn check_tenant(
    src: &Source<'_>,
    base: &Path,
    defaults: &Defaults,
    name: &Spanned<String>,
    raw: &RawTenant,
    module_owner: &mut HashMap<String, String>,
    tube_owner: &mut HashMap<String, (String, String)>,
) -> Result<Tenant, ConfigError> {
    let tenant = name.get_ref();
    let prefix = format!("tenants.{}", key_segment(tenant));
    let key = |rest: &str| format!("{prefix}.{rest}");
    if tenant.is_empty() {
        return Err(src.at(name, prefix, "a tenant needs a non-empty name"));
    }
    let settings = overlay(src, defaults, &raw.settings(), &prefix)?;

    // Modules, each serving the tube of its own name.
    let modules = match &raw.modules {
        Some(list) if !list.get_ref().is_empty() => list.get_ref(),
        Some(list) => {
            return Err(src.at(list, key("modules"), "a tenant needs at least one module"));
        }
        None => {
            return Err(src.at(
                name,
                key("modules"),
                "missing: a tenant needs at least one module",
            ));
        }
    };
    let mut routes = Vec::new();
    let mut serve = |tube: &Spanned<String>, module: &str, tube_key: String| {
        if tube.get_ref() == FAILURES_TUBE {
            return Err(src.at(tube, tube_key, reserved_tube()));
        }
        if let Some((owner, by)) = tube_owner.get(tube.get_ref()) {
            let whose = if owner == tenant {
                "this tenant".to_string()
            } else {
                format!("tenant `{owner}`")
            };
            return Err(src.at(
                tube,
                tube_key,
                format!(
                    "tube `{}` is already served by module `{by}` of {whose}",
                    tube.get_ref()
                ),
            ));
        }
        tube_owner.insert(tube.get_ref().clone(), (tenant.clone(), module.to_string()));
        routes.push(Route {
            tube: tube.get_ref().clone(),
            module: module.to_string(),
        });
        Ok(())
    };
    for (i, module) in modules.iter().enumerate() {
        let module_key = key(&format!("modules[{i}]"));
        check_module_name(module.get_ref()).map_err(|m| src.at(module, module_key.clone(), m))?;
        match module_owner.get(module.get_ref()) {
            Some(owner) if owner == tenant => {
                return Err(src.at(
                    module,
                    module_key,
                    format!("module `{}` is listed twice", module.get_ref()),
                ));
            }
            Some(owner) => {
                return Err(src.at(
                    module,
                    module_key,
                    format!(
                        "module `{}` already belongs to tenant `{owner}`",
                        module.get_ref()
                    ),
                ));
            }
            None => {}
        }
        module_owner.insert(module.get_ref().clone(), tenant.clone());
        serve(module, module.get_ref(), module_key)?;
    }

    // More tubes for its modules.
    for (tube, module) in raw.tubes.iter().flatten() {
        let tube_key = key(&format!("tubes.{}", key_segment(tube.get_ref())));
        beanbox_queue::beanstalk::proto::validate_tube(tube.get_ref())
            .map_err(|_| src.at(tube, tube_key.clone(), bad_tube(tube.get_ref())))?;
        if !modules.iter().any(|m| m.get_ref() == module.get_ref()) {
            return Err(src.at(
                module,
                tube_key,
                format!(
                    "module `{}` is not one of this tenant's `modules`",
                    module.get_ref()
                ),
            ));
        }
        serve(tube, module.get_ref(), tube_key)?;
    }
    routes.sort_by(|a, b| a.tube.cmp(&b.tube));

    let put_tubes = match &raw.put_tubes {
        None => PutTubes::Only(routes.iter().map(|r| r.tube.clone()).collect()),
        Some(list) => {
            let mut only = Vec::new();
            let mut any = false;
            for (i, tube) in list.iter().enumerate() {
                if tube.get_ref() == "*" {
                    any = true;
                    continue;
                }
                beanbox_queue::beanstalk::proto::validate_tube(tube.get_ref()).map_err(|_| {
                    src.at(
                        tube,
                        key(&format!("put_tubes[{i}]")),
                        bad_tube(tube.get_ref()),
                    )
                })?;
                if tube.get_ref() == FAILURES_TUBE {
                    return Err(src.at(tube, key(&format!("put_tubes[{i}]")), reserved_tube()));
                }
                if !only.contains(tube.get_ref()) {
                    only.push(tube.get_ref().clone());
                }
            }
            if any {
                PutTubes::Any
            } else {
                PutTubes::Only(only)
            }
        }
    };

    let grants = Grants {
        env: check_env(src, &prefix, raw.env.as_ref())?,
        dirs: check_dirs(src, &prefix, base, raw.dirs.as_deref())?,
    };
    let reuse = check_reuse(src, &prefix, modules, settings.reuse, raw.reuse.as_ref())?;
    let modules_dir = match &raw.dir {
        None => None,
        Some(dir) => Some(host_dir(base, dir.get_ref()).map_err(|m| src.at(dir, key("dir"), m))?),
    };

    Ok(Tenant {
        name: tenant.clone(),
        routes,
        limits: settings.limits,
        concurrency: settings.concurrency,
        max_attempts: settings.max_attempts,
        backoff: settings.backoff,
        backoff_max: settings.backoff_max,
        grants,
        put_tubes,
        reuse,
        max_module_bytes: settings.max_module_bytes,
        modules_dir,
    })
}

/// `reuse` of every module: the table's value for the modules it names, the
/// tenant's (already in `inherited`) for the rest.
fn check_reuse(
    src: &Source<'_>,
    prefix: &str,
    modules: &[Spanned<String>],
    inherited: u32,
    raw: Option<&Spanned<RawReuse>>,
) -> Result<BTreeMap<String, u32>, ConfigError> {
    let mut reuse: BTreeMap<String, u32> = modules
        .iter()
        .map(|m| (m.get_ref().clone(), inherited))
        .collect();
    if let Some(RawReuse::PerModule(table)) = raw.map(Spanned::get_ref) {
        for (module, n) in table {
            let name = module.get_ref();
            let module_key = format!("{prefix}.reuse.{}", key_segment(name));
            let Some(slot) = reuse.get_mut(name) else {
                return Err(src.at(
                    module,
                    module_key,
                    format!("module `{name}` is not one of this tenant's `modules`"),
                ));
            };
            if *n.get_ref() == 0 {
                return Err(src.at(n, module_key, "must be at least 1"));
            }
            *slot = *n.get_ref();
        }
    }
    Ok(reuse)
}

/// `env`: names a process could have, values without NUL.
fn check_env(
    src: &Source<'_>,
    prefix: &str,
    raw: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let key = |rest: &str| format!("{prefix}.{rest}");
    let mut env = Vec::new();
    for (var, value) in raw.into_iter().flatten() {
        let var_key = key(&format!("env.{}", key_segment(var.get_ref())));
        let var_name = var.get_ref();
        if var_name.is_empty() || var_name.contains(['=', '\0']) {
            return Err(src.at(
                var,
                var_key,
                format!(
                    "`{var_name}` cannot be an environment variable name: \
                     it must be non-empty, without `=` or NUL"
                ),
            ));
        }
        if value.get_ref().contains('\0') {
            return Err(src.at(value, var_key, "an environment variable cannot hold NUL"));
        }
        env.push((var_name.clone(), value.get_ref().clone()));
    }
    Ok(env)
}

/// `dirs`: existing host directories at absolute guest paths, each once.
fn check_dirs(
    src: &Source<'_>,
    prefix: &str,
    base: &Path,
    raw: Option<&[Spanned<RawDir>]>,
) -> Result<Vec<DirGrant>, ConfigError> {
    let key = |rest: &str| format!("{prefix}.{rest}");
    let mut dirs: Vec<DirGrant> = Vec::new();
    for (i, dir) in raw.into_iter().flatten().enumerate() {
        let dir_key = |field: &str| key(&format!("dirs[{i}].{field}"));
        let dir = dir.get_ref();
        let writable = match dir.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "ro")) => false,
            Some((_, "rw")) => true,
            Some((mode, other)) => {
                return Err(src.at(
                    mode,
                    dir_key("mode"),
                    format!("expected `ro` or `rw`, got `{other}`"),
                ));
            }
        };
        let guest = dir.guest.get_ref();
        if !guest.starts_with('/') {
            return Err(src.at(
                &dir.guest,
                dir_key("guest"),
                format!("guest path `{guest}` must be absolute"),
            ));
        }
        if dirs.iter().any(|d| d.guest == *guest) {
            return Err(src.at(
                &dir.guest,
                dir_key("guest"),
                format!("guest path `{guest}` is granted twice"),
            ));
        }
        let host = host_dir(base, dir.host.get_ref())
            .map_err(|m| src.at(&dir.host, dir_key("host"), m))?;
        dirs.push(DirGrant {
            host,
            guest: guest.clone(),
            writable,
        });
    }
    Ok(dirs)
}

/// A module name is a file stem in the modules directory, and the name of
/// the tube it serves.
fn check_module_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "`{name}` cannot be a module name: \
             expected a file stem in the modules directory, like `resize` for resize.wasm"
        ));
    }
    if let Some(stem) = name.strip_suffix(".wasm") {
        return Err(format!(
            "`{name}` cannot be a module name: write the file stem, `{stem}`"
        ));
    }
    beanbox_queue::beanstalk::proto::validate_tube(name).map_err(|_| {
        format!(
            "`{name}` cannot be a module name: it also names its tube, and {}",
            bad_tube_rule()
        )
    })
}

fn bad_tube(tube: &str) -> String {
    let shown: String = tube.chars().take(64).collect();
    format!("`{shown}` cannot be a tube: {}", bad_tube_rule())
}

/// Why [`FAILURES_TUBE`] cannot be a tenant's tube.
pub fn reserved_tube() -> String {
    format!(
        "`{FAILURES_TUBE}` is beanbox's own tube (it holds why buried jobs failed); \
         a tenant cannot serve or put on it: pick another tube name"
    )
}

fn bad_tube_rule() -> &'static str {
    "a tube name is 1-200 bytes of letters, digits and `-+/;.$_()`, not starting with `-`"
}

/// The granted directory: relative to the config file's directory, made
/// absolute, and a directory now.
fn host_dir(base: &Path, host: &str) -> Result<PathBuf, String> {
    let joined = base.join(host);
    let path = std::path::absolute(&joined).unwrap_or(joined);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{} does not exist", path.display()))
        }
        Err(e) => Err(format!("cannot use {}: {e}", path.display())),
    }
}

// ---- serde errors, made to name their key ----

fn toml_error(text: &str, file: &str, error: &toml::de::Error) -> ConfigError {
    let (line, key) = match error.span() {
        Some(span) => (
            Some(line_of(text, span.start)),
            key_at(text, span.start).or_else(|| key_on_line(text, span.start)),
        ),
        None => (None, None),
    };
    ConfigError {
        file: file.to_string(),
        line,
        key,
        message: humanize(error.message()),
    }
}

/// The dotted path of the deepest key or value at `offset`, when the text
/// is valid TOML (a type error or an unknown key).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut best = Vec::new();
    walk_table(doc.get_ref(), offset, &mut Vec::new(), &mut best);
    (!best.is_empty()).then(|| join_path(&best))
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn walk_table(
    table: &toml::de::DeTable<'_>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Vec<String>,
) {
    for (key, value) in table {
        path.push(key_segment(key.get_ref()));
        // An unknown key points at the key, a bad value at the value.
        if contains(&key.span(), offset) && path.len() > best.len() {
            best.clone_from(path);
        }
        visit(value, offset, path, best);
        path.pop();
    }
}

fn visit(
    value: &Spanned<toml::de::DeValue<'_>>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Vec<String>,
) {
    if contains(&value.span(), offset) && path.len() > best.len() {
        best.clone_from(path);
    }
    match value.get_ref() {
        toml::de::DeValue::Table(table) => walk_table(table, offset, path, best),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                visit(item, offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments {
        if !out.is_empty() && !segment.starts_with('[') {
            out.push('.');
        }
        out.push_str(segment);
    }
    out
}

/// A key as TOML would write it: bare when it can be, quoted otherwise.
fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// For a syntax error, where no tree exists: the key on the error's line
/// under the nearest table header above it. A best effort for plain files
/// (bare keys, one key a line); `None` when the line does not look like that.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    fn plain(s: &str) -> Option<&str> {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-. ".contains(&b));
        ok.then_some(s)
    }
    fn header(line: &str) -> Option<&str> {
        let line = line.trim();
        let inner = line.strip_prefix('[')?;
        let end = inner.find(']')?;
        plain(inner[..end].trim_start_matches('['))
    }
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    if let Some(h) = header(line) {
        return Some(h.replace(' ', ""));
    }
    let key = plain(line.split_once('=')?.0)?.replace(' ', "");
    let table = text[..start].lines().rev().find_map(header);
    Some(match table {
        Some(t) => format!("{}.{key}", t.replace(' ', "")),
        None => key,
    })
}

/// serde's wording, in the file's terms: keys not fields, tables not maps,
/// and what was expected before what was found.
fn humanize(message: &str) -> String {
    let message = message.replace('\n', " ");
    let message = message.trim();
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((got, expected)) = rest.rsplit_once(", expected ")
    {
        return format!("expected {}, got {got}", expected_name(expected));
    }
    message
        .replacen("unknown field", "unknown key", 1)
        .replacen("missing field", "missing key", 1)
}

fn expected_name(expected: &str) -> &str {
    match expected {
        "u64" | "usize" => "a non-negative integer",
        "u32" => "a non-negative 32-bit integer",
        "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "a table",
        s if s.starts_with("struct ") => "a table",
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/beanbox/tenants.toml";
    const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, FILE, &Defaults::default())
    }

    /// Asserts the error names the file, the line and the key, and says
    /// `words`.
    #[track_caller]
    fn assert_error(text: &str, line: usize, key: &str, words: &str) {
        let error = parse(text).expect_err("the config should be rejected");
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("{FILE}:{line}: key `{key}`: ")),
            "{shown}"
        );
        assert!(shown.contains(words), "{shown:?} should say {words:?}");
        assert!(!shown.contains('\n'), "{shown:?} should be one line");
        assert_eq!(error.file, FILE);
        assert_eq!(error.line, Some(line));
        assert_eq!(error.key.as_deref(), Some(key));
    }

    fn full_file() -> String {
        format!(
            r#"
[defaults]
fuel = 5_000
memory_mb = 32
timeout_secs = 2.5
output_bytes = 4096
max_attempts = 4
backoff_secs = 0.5
backoff_max_secs = 90
concurrency = 3
reuse = 2
max_puts = 7
max_module_mb = 16

[tenants.acme]
modules = ["resize", "thumbs"]
tubes = {{ images = "resize", "pics.v2" = "resize" }}
concurrency = 2
reuse = {{ thumbs = 50 }}
memory_mb = 128
fuel = 20_000_000_000
timeout_secs = 10
output_bytes = 65536
max_attempts = 5
backoff_secs = 2
backoff_max_secs = 60
max_puts = 0
max_module_mb = 100
put_tubes = ["results", "images"]
env = {{ API_URL = "https://api.example", MODE = "fast" }}
dirs = [
    {{ host = '{MANIFEST_DIR}', guest = "/in", mode = "ro" }},
    {{ host = '{MANIFEST_DIR}/src', guest = "/out", mode = "rw" }},
    {{ host = '{MANIFEST_DIR}', guest = "/plain" }},
]

[tenants.globex]
modules = ["report"]

[tenants.anything]
modules = ["relay"]
put_tubes = ["*"]
"#
        )
    }

    fn route(tube: &str, module: &str) -> Route {
        Route {
            tube: tube.into(),
            module: module.into(),
        }
    }

    #[test]
    fn full_file_puts_every_field_in_its_place() {
        let config = parse(&full_file()).unwrap();
        let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["acme", "anything", "globex"], "sorted by name");

        let acme = &config.tenants[0];
        assert_eq!(
            acme.routes,
            [
                route("images", "resize"),
                route("pics.v2", "resize"),
                route("resize", "resize"),
                route("thumbs", "thumbs"),
            ]
        );
        assert_eq!(acme.modules(), ["resize", "thumbs"]);
        assert_eq!(
            acme.limits,
            Limits {
                fuel: 20_000_000_000,
                memory_bytes: 128 << 20,
                timeout: Duration::from_secs(10),
                output_bytes: 65536,
                max_puts: 0,
                ..Limits::default()
            }
        );
        assert_eq!(acme.concurrency, 2);
        assert_eq!(acme.max_attempts, 5);
        assert_eq!(acme.backoff, Duration::from_secs(2));
        assert_eq!(acme.backoff_max, Duration::from_secs(60));
        assert_eq!(
            acme.put_tubes,
            PutTubes::Only(vec!["results".into(), "images".into()])
        );
        assert_eq!(
            acme.reuse,
            BTreeMap::from([("resize".into(), 2), ("thumbs".into(), 50)])
        );
        assert_eq!(acme.max_module_bytes, 100 << 20);
        assert_eq!(
            acme.grants.env,
            [
                ("API_URL".to_string(), "https://api.example".to_string()),
                ("MODE".to_string(), "fast".to_string()),
            ]
        );
        assert_eq!(
            acme.grants.dirs,
            [
                DirGrant {
                    host: MANIFEST_DIR.into(),
                    guest: "/in".into(),
                    writable: false,
                },
                DirGrant {
                    host: Path::new(MANIFEST_DIR).join("src"),
                    guest: "/out".into(),
                    writable: true,
                },
                DirGrant {
                    host: MANIFEST_DIR.into(),
                    guest: "/plain".into(),
                    writable: false,
                },
            ]
        );

        // Everything it does not set comes from `[defaults]`.
        let globex = &config.tenants[2];
        assert_eq!(globex.routes, [route("report", "report")]);
        assert_eq!(
            globex.limits,
            Limits {
                fuel: 5_000,
                memory_bytes: 32 << 20,
                timeout: Duration::from_millis(2500),
                output_bytes: 4096,
                max_puts: 7,
                ..Limits::default()
            }
        );
        assert_eq!(globex.concurrency, 3);
        assert_eq!(globex.max_attempts, 4);
        assert_eq!(globex.backoff, Duration::from_millis(500));
        assert_eq!(globex.backoff_max, Duration::from_secs(90));
        assert_eq!(globex.max_module_bytes, 16 << 20);
        assert_eq!(globex.modules_dir, None);
        assert_eq!(globex.grants, Grants::default());
        assert_eq!(globex.put_tubes, PutTubes::Only(vec!["report".into()]));
        assert!(!globex.put_tubes.allows("resize"));
        assert_eq!(globex.reuse, BTreeMap::from([("report".into(), 2)]));

        assert_eq!(config.tenants[1].put_tubes, PutTubes::Any);
        assert!(config.tenants[1].put_tubes.allows("whatever"));
    }

    #[test]
    fn routes_tubes_and_modules_to_their_tenant() {
        let config = parse(&full_file()).unwrap();
        let (tenant, module) = config.route("images").unwrap();
        assert_eq!((tenant.name.as_str(), module), ("acme", "resize"));
        let (tenant, module) = config.route("report").unwrap();
        assert_eq!((tenant.name.as_str(), module), ("globex", "report"));
        assert!(config.route("nobody").is_none());
        assert_eq!(config.tenant_for_module("thumbs").unwrap().name, "acme");
        assert!(
            config.tenant_for_module("images").is_none(),
            "a tube, not a module"
        );
    }

    #[test]
    fn without_a_section_settings_come_from_the_flags() {
        let flags = Defaults {
            limits: Limits {
                fuel: 7,
                ..Limits::default()
            },
            concurrency: 9,
            max_attempts: 2,
            backoff: Duration::from_secs(4),
            backoff_max: Duration::from_secs(8),
            reuse: 5,
            max_module_bytes: 3 << 20,
        };
        let config = Config::parse(
            "[tenants.a]\nmodules = [\"a\"]\nmax_attempts = 6\n",
            FILE,
            &flags,
        )
        .unwrap();
        let a = &config.tenants[0];
        assert_eq!(a.limits, flags.limits);
        assert_eq!(a.concurrency, 9);
        assert_eq!(a.max_attempts, 6);
        assert_eq!(
            (a.backoff, a.backoff_max),
            (flags.backoff, flags.backoff_max)
        );
        assert_eq!(a.jobs_per_instance("a"), 5);
        assert_eq!(a.max_module_bytes, 3 << 20);
    }

    #[test]
    fn a_tenant_dir_holds_its_modules_relative_to_the_file() {
        let file = format!("{MANIFEST_DIR}/tenants.toml");
        let text = "[tenants.a]\nmodules = [\"x\", \"y\"]\ndir = \"src\"\n\
                    [tenants.b]\nmodules = [\"z\"]\n";
        let config = Config::parse(text, &file, &Defaults::default()).unwrap();
        let src = Path::new(MANIFEST_DIR).join("src");
        assert_eq!(
            config.tenants[0].modules_dir.as_deref(),
            Some(src.as_path())
        );
        assert_eq!(
            config.module_dirs(),
            HashMap::from([("x".into(), src.clone()), ("y".into(), src)])
        );
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\ndir = \"/nonexistent/beanbox\"\n",
            3,
            "tenants.a.dir",
            "/nonexistent/beanbox does not exist",
        );
        assert_error(
            "[defaults]\ndir = \"/tmp\"\n",
            2,
            "defaults.dir",
            "unknown key `dir`",
        );
    }

    #[test]
    fn max_module_mb_resolves_as_flag_then_defaults_then_tenant() {
        let flags = Defaults {
            max_module_bytes: 3 << 20,
            ..Defaults::default()
        };
        let tenants = "[tenants.a]\nmodules = [\"x\", \"y\"]\nmax_module_mb = 8\n\
                       [tenants.b]\nmodules = [\"z\"]\n";
        let config = Config::parse(tenants, FILE, &flags).unwrap();
        assert_eq!(config.tenants[0].max_module_bytes, 8 << 20);
        assert_eq!(config.tenants[1].max_module_bytes, 3 << 20, "from the flag");
        let config = Config::parse(
            &format!("[defaults]\nmax_module_mb = 6\n{tenants}"),
            FILE,
            &flags,
        )
        .unwrap();
        assert_eq!(config.tenants[1].max_module_bytes, 6 << 20);
        assert_eq!(
            config.module_size_limits(),
            HashMap::from([
                ("x".into(), 8 << 20),
                ("y".into(), 8 << 20),
                ("z".into(), 6 << 20)
            ])
        );
        let implicit = Config::implicit(&["x".into()], &flags);
        assert_eq!(implicit.tenants[0].max_module_bytes, 3 << 20);
    }

    #[test]
    fn reuse_is_a_fresh_instance_per_job_unless_set() {
        let config = parse("[tenants.a]\nmodules = [\"x\", \"y\"]\n").unwrap();
        let a = &config.tenants[0];
        assert_eq!(a.reuse, BTreeMap::from([("x".into(), 1), ("y".into(), 1)]));
        assert_eq!(a.jobs_per_instance("x"), 1);
        assert_eq!(a.jobs_per_instance("elsewhere"), 1, "an unknown module");
    }

    #[test]
    fn reuse_as_an_integer_sets_every_module_of_the_tenant() {
        let config = parse("[tenants.a]\nmodules = [\"x\", \"y\"]\nreuse = 10\n").unwrap();
        let a = &config.tenants[0];
        assert_eq!(
            a.reuse,
            BTreeMap::from([("x".into(), 10), ("y".into(), 10)])
        );
        assert_eq!(a.jobs_per_instance("y"), 10);
    }

    #[test]
    fn reuse_as_a_table_sets_the_modules_it_names_and_others_inherit() {
        let flags = Defaults {
            reuse: 3,
            ..Defaults::default()
        };
        let text = "[tenants.a]\nmodules = [\"x\", \"y\", \"hello.py\"]\n\
                    reuse = { \"hello.py\" = 50, x = 7 }\n";
        let a = Config::parse(text, FILE, &flags).unwrap().tenants.remove(0);
        assert_eq!(a.jobs_per_instance("hello.py"), 50);
        assert_eq!(a.jobs_per_instance("x"), 7);
        assert_eq!(a.jobs_per_instance("y"), 3, "from the flag");

        let text = format!("[defaults]\nreuse = 4\n{text}");
        let a = Config::parse(&text, FILE, &flags)
            .unwrap()
            .tenants
            .remove(0);
        assert_eq!(a.jobs_per_instance("hello.py"), 50);
        assert_eq!(
            a.jobs_per_instance("y"),
            4,
            "from [defaults], over the flag"
        );
    }

    #[test]
    fn reuse_resolves_as_flag_then_defaults_then_tenant() {
        let flags = Defaults {
            reuse: 3,
            ..Defaults::default()
        };
        let tenants = "[tenants.a]\nmodules = [\"x\"]\nreuse = 8\n[tenants.b]\nmodules = [\"y\"]\n";
        let config = Config::parse(tenants, FILE, &flags).unwrap();
        assert_eq!(config.tenants[0].jobs_per_instance("x"), 8);
        assert_eq!(config.tenants[1].jobs_per_instance("y"), 3);

        let config =
            Config::parse(&format!("[defaults]\nreuse = 6\n{tenants}"), FILE, &flags).unwrap();
        assert_eq!(config.tenants[0].jobs_per_instance("x"), 8);
        assert_eq!(config.tenants[1].jobs_per_instance("y"), 6);
    }

    #[test]
    fn an_empty_file_has_no_tenants() {
        assert_eq!(parse("").unwrap().tenants, []);
    }

    #[test]
    fn implicit_config_makes_every_module_its_own_tenant() {
        let defaults = Defaults {
            concurrency: 2,
            reuse: 20,
            ..Defaults::default()
        };
        let modules = ["thumbs".to_string(), "hello".into(), "thumbs".into()];
        let config = Config::implicit(&modules, &defaults);
        assert_eq!(config.tenants.len(), 2);
        let hello = &config.tenants[0];
        assert_eq!(hello.name, "hello");
        assert_eq!(hello.routes, [route("hello", "hello")]);
        assert_eq!(hello.limits, defaults.limits);
        assert_eq!(hello.concurrency, 2);
        assert_eq!(hello.max_attempts, defaults.max_attempts);
        assert_eq!(hello.grants, Grants::default());
        assert_eq!(hello.put_tubes, PutTubes::Only(vec!["hello".into()]));
        assert_eq!(hello.reuse, BTreeMap::from([("hello".into(), 20)]));
        assert_eq!(hello.jobs_per_instance("hello"), 20);
        assert_eq!(config.route("thumbs").unwrap().1, "thumbs");
        assert_eq!(config.tenant_for_module("thumbs").unwrap().name, "thumbs");
    }

    #[test]
    fn relative_dirs_are_relative_to_the_file() {
        let file = format!("{MANIFEST_DIR}/tenants.toml");
        let text =
            "[tenants.a]\nmodules = [\"a\"]\ndirs = [{ host = \"src\", guest = \"/src\" }]\n";
        let config = Config::parse(text, &file, &Defaults::default()).unwrap();
        assert_eq!(
            config.tenants[0].grants.dirs[0].host,
            Path::new(MANIFEST_DIR).join("src")
        );
    }

    #[test]
    fn example_file_is_valid() {
        let path = Path::new(MANIFEST_DIR).join("../examples/tenants.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        // Its directories are examples; point them at ones that exist here.
        let text = text
            .replace("/srv/acme/in", MANIFEST_DIR)
            .replace("/srv/acme/out", &format!("{MANIFEST_DIR}/src"));
        let config = Config::parse(&text, "tenants.toml", &Defaults::default()).unwrap();
        assert!(config.tenants.len() >= 2);
        assert!(config.route("images").is_some());
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let path = std::env::temp_dir().join(format!("beanbox-config-{}.toml", std::process::id()));
        std::fs::write(&path, "[tenants.a]\nmodules = [\"a\"]\nfuel = \"lots\"\n").unwrap();
        let error = Config::load(&path, &Defaults::default()).unwrap_err();
        std::fs::write(&path, "[tenants.a]\nmodules = [\"a\"]\n").unwrap();
        let loaded = Config::load(&path, &Defaults::default());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "{}:3: key `tenants.a.fuel`: expected a non-negative integer, got string \"lots\"",
                path.display()
            )
        );
        assert_eq!(loaded.unwrap().tenants[0].name, "a");

        let missing = Path::new("/nonexistent/beanbox/tenants.toml");
        let error = Config::load(missing, &Defaults::default()).unwrap_err();
        assert_eq!((error.line, error.key.as_deref()), (None, None));
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/beanbox/tenants.toml: cannot read the config file: "),
            "{error}"
        );
    }

    // ---- every rejection names file, line and key ----

    #[test]
    fn rejects_unknown_keys() {
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nfuell = 3\n",
            3,
            "tenants.acme.fuell",
            "unknown key `fuell`, expected one of",
        );
        assert_error(
            "[defaults]\nfuel = 3\nmodules = [\"a\"]\n",
            3,
            "defaults.modules",
            "unknown key `modules`",
        );
        assert_error("tenant = 1\n", 1, "tenant", "unknown key `tenant`");
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\ndirs = [\n  { host = \"/\", guest = \"/x\", mod = \"ro\" },\n]\n",
            4,
            "tenants.acme.dirs[0].mod",
            "unknown key `mod`",
        );
    }

    #[test]
    fn rejects_wrong_types() {
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\n\nfuel = \"lots\"\n",
            4,
            "tenants.acme.fuel",
            "expected a non-negative integer, got string \"lots\"",
        );
        assert_error(
            "[tenants.acme]\nmodules = \"a\"\n",
            2,
            "tenants.acme.modules",
            "expected an array",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nmax_puts = \"many\"\n",
            3,
            "tenants.acme.max_puts",
            "expected a non-negative 32-bit integer, got string \"many\"",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nmax_attempts = -1\n",
            3,
            "tenants.acme.max_attempts",
            "expected a non-negative 32-bit integer, got integer `-1`",
        );
        assert_error(
            "[defaults]\ntimeout_secs = \"30s\"\n",
            2,
            "defaults.timeout_secs",
            "expected a number",
        );
        assert_error(
            "[tenants]\nacme = 3\n",
            2,
            "tenants.acme",
            "expected a table",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nreuse = \"lots\"\n",
            3,
            "tenants.acme.reuse",
            "expected a positive integer or a table of module = integer, got string \"lots\"",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nreuse = -1\n",
            3,
            "tenants.acme.reuse",
            "expected a positive integer or a table of module = integer, got integer `-1`",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nreuse = 1.5\n",
            3,
            "tenants.acme.reuse",
            "expected a positive integer or a table of module = integer, got floating point",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\", \"b\"]\n[tenants.acme.reuse]\na = 2\nb = \"many\"\n",
            5,
            "tenants.acme.reuse.b",
            "expected a non-negative 32-bit integer, got string \"many\"",
        );
        assert_error(
            "[defaults]\nreuse = { a = 2 }\n",
            2,
            "defaults.reuse",
            "expected a non-negative 32-bit integer",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\ndirs = [{ host = \"/\" }]\n",
            3,
            "tenants.acme.dirs[0]",
            "missing key `guest`",
        );
    }

    #[test]
    fn rejects_bad_toml_with_the_line_and_key() {
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nfuel = \n",
            3,
            "tenants.acme.fuel",
            "",
        );
        assert_error(
            "[tenants.acme]\nmodules = [\"a\"]\nfuel = 1\nfuel = 2\n",
            4,
            "tenants.acme.fuel",
            "duplicate key",
        );
    }

    #[test]
    fn rejects_a_module_in_two_tenants() {
        assert_error(
            "[tenants.b]\nmodules = [\"resize\"]\n\n[tenants.a]\nmodules = [\"x\", \"resize\"]\n",
            5,
            "tenants.a.modules[1]",
            "module `resize` already belongs to tenant `b`",
        );
        assert_error(
            "[tenants.a]\nmodules = [\"resize\",\n  \"resize\"]\n",
            3,
            "tenants.a.modules[1]",
            "listed twice",
        );
    }

    #[test]
    fn rejects_a_tube_served_twice() {
        // Across tenants: a's extra tube is b's module.
        assert_error(
            "[tenants.b]\nmodules = [\"report\"]\n[tenants.a]\nmodules = [\"x\"]\ntubes = { report = \"x\" }\n",
            5,
            "tenants.a.tubes.report",
            "tube `report` is already served by module `report` of tenant `b`",
        );
        // Within a tenant: an extra tube named like one of its modules.
        assert_error(
            "[tenants.a]\nmodules = [\"x\", \"y\"]\n[tenants.a.tubes]\ny = \"x\"\n",
            4,
            "tenants.a.tubes.y",
            "tube `y` is already served by module `y` of this tenant",
        );
    }

    #[test]
    fn rejects_the_failure_records_tube() {
        let words = "`beanbox.failures` is beanbox's own tube";
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\ntubes = { \"beanbox.failures\" = \"x\" }\n",
            3,
            "tenants.a.tubes.\"beanbox.failures\"",
            words,
        );
        assert_error(
            "[tenants.a]\nmodules = [\"beanbox.failures\"]\n",
            2,
            "tenants.a.modules[0]",
            words,
        );
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\nput_tubes = [\"beanbox.failures\"]\n",
            3,
            "tenants.a.put_tubes[0]",
            words,
        );
        // Not even with `*`.
        assert!(!PutTubes::Any.allows(FAILURES_TUBE));
        assert!(PutTubes::Any.allows("results"));
    }

    #[test]
    fn rejects_a_tube_for_a_module_the_tenant_does_not_list() {
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\ntubes = { images = \"resize\" }\n",
            3,
            "tenants.a.tubes.images",
            "module `resize` is not one of this tenant's `modules`",
        );
    }

    #[test]
    fn rejects_reuse_for_a_module_the_tenant_does_not_list() {
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\n[tenants.a.reuse]\nx = 2\nhello-py = 50\n",
            5,
            "tenants.a.reuse.hello-py",
            "module `hello-py` is not one of this tenant's `modules`",
        );
    }

    #[test]
    fn rejects_invalid_tube_names() {
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\ntubes = { \"-bad\" = \"x\" }\n",
            3,
            "tenants.a.tubes.-bad",
            "`-bad` cannot be a tube",
        );
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\nput_tubes = [\"ok\", \"sp ace\"]\n",
            3,
            "tenants.a.put_tubes[1]",
            "`sp ace` cannot be a tube",
        );
        let long = "t".repeat(201);
        assert_error(
            &format!("[tenants.a]\nmodules = [\"x\"]\nput_tubes = [\"{long}\"]\n"),
            3,
            "tenants.a.put_tubes[0]",
            "cannot be a tube: a tube name is 1-200 bytes",
        );
    }

    #[test]
    fn rejects_module_names_that_are_not_file_stems() {
        assert_error(
            "[tenants.a]\nmodules = [\"../etc/x\"]\n",
            2,
            "tenants.a.modules[0]",
            "`../etc/x` cannot be a module name",
        );
        assert_error(
            "[tenants.a]\nmodules = [\"ok\", \"\"]\n",
            2,
            "tenants.a.modules[1]",
            "`` cannot be a module name",
        );
        assert_error(
            "[tenants.a]\nmodules = [\"resize.wasm\"]\n",
            2,
            "tenants.a.modules[0]",
            "write the file stem, `resize`",
        );
        assert_error(
            "[tenants.a]\nmodules = [\"has space\"]\n",
            2,
            "tenants.a.modules[0]",
            "it also names its tube",
        );
    }

    #[test]
    fn rejects_zero_and_non_positive_settings() {
        let tenant = "[tenants.a]\nmodules = [\"x\"]\n";
        assert_error(
            &format!("{tenant}concurrency = 0\n"),
            3,
            "tenants.a.concurrency",
            "must be at least 1",
        );
        assert_error(
            "[defaults]\nconcurrency = 0\n",
            2,
            "defaults.concurrency",
            "must be at least 1",
        );
        assert_error(
            &format!("{tenant}reuse = 0\n"),
            3,
            "tenants.a.reuse",
            "must be at least 1",
        );
        assert_error(
            "[defaults]\nreuse = 0\n",
            2,
            "defaults.reuse",
            "must be at least 1",
        );
        assert_error(
            &format!("{tenant}max_module_mb = 0\n"),
            3,
            "tenants.a.max_module_mb",
            "must be at least 1",
        );
        assert_error(
            "[defaults]\nmax_module_mb = 0\n",
            2,
            "defaults.max_module_mb",
            "must be at least 1",
        );
        assert_error(
            &format!("{tenant}max_module_mb = {}\n", u64::MAX >> 10),
            3,
            "tenants.a.max_module_mb",
            "too large",
        );
        assert_error(
            "[tenants.a]\nmodules = [\"x\", \"hello.py\"]\n[tenants.a.reuse]\nx = 2\n\"hello.py\" = 0\n",
            5,
            "tenants.a.reuse.\"hello.py\"",
            "must be at least 1",
        );
        assert_error(
            &format!("{tenant}max_attempts = 0\n"),
            3,
            "tenants.a.max_attempts",
            "must be at least 1",
        );
        assert_error(
            &format!("{tenant}memory_mb = 0\n"),
            3,
            "tenants.a.memory_mb",
            "must be at least 1",
        );
        assert_error(
            &format!("{tenant}timeout_secs = 0\n"),
            3,
            "tenants.a.timeout_secs",
            "must be a positive number of seconds, got 0",
        );
        assert_error(
            "[defaults]\ntimeout_secs = -1.5\n",
            2,
            "defaults.timeout_secs",
            "must be a positive number of seconds, got -1.5",
        );
        assert_error(
            &format!("{tenant}backoff_secs = -1\n"),
            3,
            "tenants.a.backoff_secs",
            "must be a non-negative number of seconds",
        );
        assert_error(
            &format!("{tenant}backoff_max_secs = nan\n"),
            3,
            "tenants.a.backoff_max_secs",
            "must be a non-negative number of seconds",
        );
    }

    #[test]
    fn rejects_bad_dir_grants() {
        let dirs =
            |entry: &str| format!("[tenants.a]\nmodules = [\"x\"]\ndirs = [\n  {entry},\n]\n");
        assert_error(
            &dirs(&format!(
                "{{ host = '{MANIFEST_DIR}', guest = \"/in\", mode = \"rx\" }}"
            )),
            4,
            "tenants.a.dirs[0].mode",
            "expected `ro` or `rw`, got `rx`",
        );
        assert_error(
            &dirs("{ host = \"/nonexistent/beanbox/in\", guest = \"/in\" }"),
            4,
            "tenants.a.dirs[0].host",
            "/nonexistent/beanbox/in does not exist",
        );
        assert_error(
            &dirs(&format!(
                "{{ host = '{MANIFEST_DIR}/Cargo.toml', guest = \"/in\" }}"
            )),
            4,
            "tenants.a.dirs[0].host",
            &format!("{MANIFEST_DIR}/Cargo.toml is not a directory"),
        );
        assert_error(
            &dirs(&format!("{{ host = '{MANIFEST_DIR}', guest = \"in\" }}")),
            4,
            "tenants.a.dirs[0].guest",
            "guest path `in` must be absolute",
        );
        assert_error(
            &format!(
                "[tenants.a]\nmodules = [\"x\"]\n\
                 [[tenants.a.dirs]]\nhost = '{MANIFEST_DIR}'\nguest = \"/in\"\n\
                 [[tenants.a.dirs]]\nhost = '{MANIFEST_DIR}'\nguest = \"/in\"\n"
            ),
            8,
            "tenants.a.dirs[1].guest",
            "guest path `/in` is granted twice",
        );
    }

    #[test]
    fn rejects_bad_env_names() {
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\nenv = { \"\" = \"v\" }\n",
            3,
            "tenants.a.env.\"\"",
            "cannot be an environment variable name",
        );
        assert_error(
            "[tenants.a]\nmodules = [\"x\"]\n[tenants.a.env]\nOK = \"1\"\n\"A=B\" = \"v\"\n",
            5,
            "tenants.a.env.\"A=B\"",
            "`A=B` cannot be an environment variable name",
        );
    }

    #[test]
    fn rejects_a_tenant_without_modules() {
        assert_error(
            "[tenants.ok]\nmodules = [\"x\"]\n\n[tenants.empty]\nfuel = 1\n",
            4,
            "tenants.empty.modules",
            "a tenant needs at least one module",
        );
        assert_error(
            "[tenants.empty]\nmodules = []\n",
            2,
            "tenants.empty.modules",
            "a tenant needs at least one module",
        );
    }
}
