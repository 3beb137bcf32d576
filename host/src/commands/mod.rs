//! The `runner` subcommands, one file each, and what they share: the clap
//! root, logging set-up, limit flags and exit codes.

mod admin;
mod call;
mod deploy;
mod inspect;
mod put;
mod wit;
mod worker;

pub use wit::TASK_WIT;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::sandbox::{
    self, CallError, CodeCache, FailureClass, Limits, LoadError, Module, Sandbox,
};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error of the runner itself (I/O, beanstalkd unreachable).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: bad input (module, task name, kwargs); retrying cannot help.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the task ran and failed (returned `err` or trapped).
pub const EXIT_TASK_FAILED: u8 = 3;
/// Exit code: the task hit a limit (fuel, memory, time, output).
pub const EXIT_LIMIT: u8 = 4;

/// The exit-code table for `after_help` texts (a macro so `concat!` takes it).
macro_rules! exit_codes_help {
    () => {
        "Exit codes:
  0  success
  1  runner error (I/O, beanstalkd unreachable, ...)
  2  bad input: module does not load, unknown task, kwargs that do not fit
  3  task failed: it returned `err` (its err value is printed on stdout as JSON) or trapped
  4  limit hit: fuel, memory, wall-clock time or output size"
    };
}
pub(crate) use exit_codes_help;

/// Runs beanstalkd jobs inside WebAssembly component sandboxes.
#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = worker::AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub worker: worker::WorkerArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options for every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing's EnvFilter syntax, e.g. `info`, `warn,task=debug`);
    /// RUST_LOG works too.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one task of a component once in the sandbox, without a queue.
    #[command(after_help = call::AFTER_HELP)]
    Call(call::CallArgs),
    /// List a component's tasks with their parameter names and WIT types.
    #[command(after_help = inspect::AFTER_HELP)]
    Inspect(inspect::InspectArgs),
    /// Put a job on a tube; with --wait, print its result.
    #[command(after_help = put::AFTER_HELP)]
    Put(put::PutArgs),
    /// Show each tube's job counts (ready, reserved, delayed, buried, paused).
    #[command(after_help = admin::STATS_HELP)]
    Stats(admin::StatsArgs),
    /// List a tube's buried jobs with why they failed.
    #[command(after_help = admin::BURIED_HELP)]
    Buried(admin::BuriedArgs),
    /// Retry buried jobs with a fresh attempt budget.
    #[command(after_help = admin::KICK_HELP)]
    Kick(admin::KickArgs),
    /// Delete a buried or delayed job (and its failure record).
    #[command(after_help = admin::DELETE_HELP)]
    Delete(admin::DeleteArgs),
    /// Pause a tube for some seconds.
    #[command(after_help = admin::PAUSE_HELP)]
    Pause(admin::PauseArgs),
    /// Deploy a component to a worker's modules directory, checked and atomic.
    #[command(after_help = deploy::AFTER_HELP)]
    Deploy(deploy::DeployArgs),
    /// Write the WIT package beanbox:task (what the host offers every task).
    #[command(after_help = wit::AFTER_HELP)]
    Wit(wit::WitArgs),
}

/// Limit flags shared by the commands that run tasks.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Fuel (roughly, wasm operations) one job may burn.
    #[arg(long, default_value_t = sandbox::DEFAULT_FUEL)]
    pub fuel: u64,
    /// Linear memory one job may use, in MiB.
    #[arg(long, default_value_t = sandbox::DEFAULT_MEMORY_BYTES >> 20)]
    pub memory_mb: u64,
    /// Wall-clock seconds one job may take (fractions allowed).
    #[arg(long, default_value_t = sandbox::DEFAULT_TIMEOUT.as_secs_f64())]
    pub timeout: f64,
    /// Bytes one job may write to stdout, and to stderr.
    #[arg(long, default_value_t = sandbox::DEFAULT_OUTPUT_BYTES)]
    pub output_bytes: usize,
}

impl LimitArgs {
    /// The limits these flags ask for.
    ///
    /// # Errors
    ///
    /// When the timeout is not a positive, finite number of seconds.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let timeout = Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--timeout must be a positive number of seconds, got {}",
                    self.timeout
                )
            })?;
        Ok(Limits {
            fuel: self.fuel,
            memory_bytes: self.memory_mb << 20,
            timeout,
            output_bytes: self.output_bytes,
            ..Limits::default()
        })
    }
}

/// Loading flags of the one-shot commands (`call`, `inspect`): the code
/// cache, so that only the first run on a component compiles it (an 18 MB
/// Python component takes seconds), and the module size limit.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Where compiled modules are cached [default: $XDG_CACHE_HOME/beanbox,
    /// else ~/.cache/beanbox].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile without reading or writing the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// The largest module file read, in MiB; a bigger one is refused
    /// before it is read.
    #[arg(long, value_name = "MIB", default_value_t = sandbox::DEFAULT_MAX_MODULE_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_module_mb: u64,
}

impl CacheArgs {
    /// The cache directory these flags ask for, if any.
    fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        user_cache_dir()
    }

    /// Loads the component at `path`, through the cache when there is one.
    /// A cache that cannot be used costs a compile and a warning, never the
    /// command.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::load_file`].
    pub fn load(&self, sandbox: &Sandbox, path: &Path) -> Result<Module, LoadError> {
        let cache = self.dir().and_then(|dir| {
            CodeCache::new(&dir)
                .inspect_err(|e| {
                    tracing::warn!(dir = %dir.display(), error = %e, "compiling without the code cache");
                })
                .ok()
        });
        sandbox
            .clone()
            .with_max_module_bytes(self.max_module_mb << 20)
            .load_file_through(path, cache.as_ref())
    }
}

/// The user's cache directory for beanbox: `$XDG_CACHE_HOME/beanbox`, else
/// `$HOME/.cache/beanbox` (relative values are ignored); `None` when neither
/// is set. `call` and `inspect` cache here; a worker in a subdirectory.
pub(crate) fn user_cache_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("beanbox"))
}

/// Sets up the process log on stderr. For `call` and `inspect`, whose
/// stderr is the task's own output and the error, the code cache says only
/// what went wrong (a worker also logs each compile and cache hit).
pub fn init_logging(cli: &Cli) {
    let global = &cli.global;
    let mut filter = tracing_subscriber::EnvFilter::try_new(&global.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if matches!(cli.command, Some(Command::Call(_) | Command::Inspect(_)))
        && !global.log.contains("sandbox::cache")
    {
        filter = filter.add_directive(
            "beanbox::sandbox::cache=warn"
                .parse()
                .expect("a valid log directive"),
        );
    }
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the chosen subcommand; returns the process exit code.
///
/// # Errors
///
/// Runner errors (exit 1); task outcomes are exit codes, not errors.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Call(args)) => call::execute(args),
        Some(Command::Inspect(args)) => inspect::execute(args),
        Some(Command::Put(args)) => put::execute(args),
        Some(Command::Stats(args)) => admin::stats(args),
        Some(Command::Buried(args)) => admin::buried(args),
        Some(Command::Kick(args)) => admin::kick(args),
        Some(Command::Delete(args)) => admin::delete(args),
        Some(Command::Pause(args)) => admin::pause(args),
        Some(Command::Deploy(args)) => deploy::execute(args),
        Some(Command::Wit(args)) => wit::execute(args),
        None => worker::execute(cli.worker),
    }
}

/// The exit code for a failed call.
pub fn exit_code_for(error: &CallError) -> u8 {
    match error.class() {
        FailureClass::BadInput => EXIT_BAD_INPUT,
        FailureClass::TaskFailed => EXIT_TASK_FAILED,
        FailureClass::LimitHit => EXIT_LIMIT,
    }
}

/// A current-thread tokio runtime for one-shot commands.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
