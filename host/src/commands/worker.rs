//! `runner --tube T …`: the worker. Loads the modules that serve the tubes,
//! then runs until SIGTERM/SIGINT: the first signal stops reserving and lets
//! running jobs finish within the grace period, a second one (or the end of
//! the grace period) hands unfinished jobs back to beanstalkd at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::sync::watch;

use super::LimitArgs;
use crate::sandbox::{Module, Sandbox};
use crate::worker::{self, Phase, PutPolicy, WorkerConfig};

/// Arguments of the worker (the root command).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// A tube to serve, from the module `<modules>/<tube>.wasm`; repeat for
    /// more. Without it, every module in the directory is served.
    #[arg(long = "tube", value_name = "TUBE")]
    pub tubes: Vec<String>,
    /// Directory holding the task modules.
    #[arg(long, value_name = "DIR", default_value = "modules")]
    pub modules: PathBuf,
    /// beanstalkd address.
    #[arg(long, value_name = "HOST:PORT", env = beanbox_queue::ADDR_ENV, default_value = beanbox_queue::DEFAULT_ADDR)]
    pub beanstalkd: String,
    /// Jobs run at once (one beanstalkd connection each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Attempts before a failing job (guest error, trap, timeout) is buried.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Seconds a failed job waits before its second attempt; doubles each time.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    pub backoff: u64,
    /// The longest wait between attempts, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub backoff_max: u64,
    /// Seconds running jobs get to finish after SIGTERM/SIGINT.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub grace: f64,
    /// A tube tasks may put follow-up jobs on; repeat for more, `*` for any.
    /// Default: the tubes this worker serves.
    #[arg(long = "put-tube", value_name = "TUBE")]
    pub put_tubes: Vec<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub(super) const AFTER_HELP: &str = "\
Examples:
  runner --tube hello                      # serve ./modules/hello.wasm on tube `hello`
  runner --modules /srv/tasks --concurrency 8 --beanstalkd 10.0.0.5:11300
  BEANSTALKD_ADDR=127.0.0.1:11301 runner --tube resize --timeout 10

Failure policy: success deletes the job (and replies to `reply_to`); a guest
error, trap or timeout is released with backoff until --max-attempts, then
buried; a bad envelope, unknown task, bad kwargs, or fuel/memory/output limit
is buried at once. A job is never deleted unless it succeeded.";

/// Runs the worker.
///
/// # Errors
///
/// Bad flags, a missing module, or a module that does not load.
pub fn execute(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let limits = args.limits.limits()?;
    let grace = Duration::try_from_secs_f64(args.grace)
        .map_err(|_| anyhow::anyhow!("--grace must be a non-negative number of seconds"))?;
    let sandbox = Sandbox::new()?;
    let modules = load_modules(&sandbox, &args.modules, &args.tubes)?;
    let put_policy = if args.put_tubes.iter().any(|t| t == "*") {
        PutPolicy::Any
    } else if args.put_tubes.is_empty() {
        PutPolicy::Only(modules.keys().cloned().collect())
    } else {
        PutPolicy::Only(args.put_tubes.clone())
    };
    let config = WorkerConfig {
        addr: args.beanstalkd,
        modules,
        concurrency: usize::from(args.concurrency),
        limits,
        max_attempts: args.max_attempts,
        backoff: Duration::from_secs(args.backoff),
        backoff_max: Duration::from_secs(args.backoff_max),
        put_policy,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (tx, rx) = watch::channel(Phase::Running);
        tokio::spawn(watch_signals(tx, grace));
        worker::run(config, rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Loads `<dir>/<tube>.wasm` for each tube, or every module in `dir`.
fn load_modules(
    sandbox: &Sandbox,
    dir: &Path,
    tubes: &[String],
) -> anyhow::Result<HashMap<String, Module>> {
    let tubes: Vec<String> = if tubes.is_empty() {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the modules directory {}", dir.display()))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "wasm")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                found.push(stem.to_string());
            }
        }
        if found.is_empty() {
            bail!("no modules (*.wasm) in {}: nothing to serve", dir.display());
        }
        found
    } else {
        tubes.to_vec()
    };
    let mut modules = HashMap::new();
    for tube in tubes {
        beanbox_queue::beanstalk::proto::validate_tube(&tube)
            .map_err(|e| anyhow::anyhow!("`{tube}` cannot be a tube: {e}"))?;
        let path = dir.join(format!("{tube}.wasm"));
        if !path.is_file() {
            bail!("no module for tube `{tube}`: expected {}", path.display());
        }
        let module = sandbox.load_file(&path)?;
        tracing::info!(tube = %tube, module = %path.display(), tasks = module.tasks().len(), "module loaded");
        modules.insert(tube, module);
    }
    Ok(modules)
}

/// First SIGTERM/SIGINT: drain; after `grace`, or on a second signal: abort.
async fn watch_signals(tx: watch::Sender<Phase>, grace: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the worker with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(grace = ?grace, "stopping: no new jobs; running jobs may finish");
    tx.send_replace(Phase::Draining);
    tokio::select! {
        _ = tokio::time::sleep(grace) => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tx.send_replace(Phase::Abort);
}
