//! `runner --tube T …`: the worker. Loads the modules that serve the tubes,
//! then runs until SIGTERM/SIGINT: the first signal stops reserving and lets
//! running jobs finish within the grace period, a second one (or the end of
//! the grace period) hands unfinished jobs back to beanstalkd at once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::sync::{mpsc, watch};

use super::LimitArgs;
use crate::admin::{self, AdminConfig};
use crate::config::{Defaults, PutTubes};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::sandbox::{CodeCache, Sandbox};
use crate::worker::{self, Phase, Tenants, WorkerConfig};

/// Arguments of the worker (the root command).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// A tube to serve, from the module `<modules>/<tube>.wasm`; repeat for
    /// more. A missing module is waited for. Without it (and without
    /// --config), every module in the directory is served, new ones too.
    #[arg(long = "tube", value_name = "TUBE", conflicts_with = "config")]
    pub tubes: Vec<String>,
    /// Directory holding the task modules; new and changed files are
    /// deployed live (copy to a temporary name, then rename into place).
    #[arg(long, value_name = "DIR", default_value = "modules")]
    pub modules: PathBuf,
    /// Tenants file (TOML): modules, tubes, limits, shares and grants per
    /// tenant. Reloaded on SIGHUP. See examples/tenants.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where compiled modules are cached. Must be a directory (not a
    /// symlink) owned by this user and not writable by group or others, or
    /// the worker does not start [default: one per modules directory in
    /// $XDG_CACHE_HOME/beanbox, else ~/.cache/beanbox; unusable: none].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache compiled modules on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// beanstalkd servers, comma-separated; every tenant's slots take jobs
    /// from all of them, and a job's reply and follow-up jobs go to the
    /// server it came from. A server that is down is retried with backoff
    /// while the others are served.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]", env = beanbox_queue::ADDR_ENV, default_value = beanbox_queue::DEFAULT_ADDR)]
    pub beanstalkd: beanbox_queue::Servers,
    /// Jobs each tenant runs at once (one beanstalkd connection each per
    /// server), unless its config says otherwise. With several servers, at
    /// least as many slots as servers picks a job up the moment it is put
    /// on any of them; fewer may leave it up to a second.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Jobs one instance may serve before it is replaced (1: a fresh
    /// instance per job), unless its config says otherwise. Only consecutive
    /// jobs of one tenant ever share an instance; a failed job always
    /// discards it. Worth it for heavy runtimes (Python, JavaScript).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub reuse: u32,
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
    /// Default: a module's own tube. (With --config: per tenant.)
    #[arg(long = "put-tube", value_name = "TUBE", conflicts_with = "config")]
    pub put_tubes: Vec<String>,
    /// Follow-up jobs one job may put (staged, and put only if it
    /// succeeds); further puts are refused. Unless its config says otherwise.
    #[arg(long, value_name = "N", default_value_t = crate::sandbox::DEFAULT_MAX_PUTS)]
    pub max_puts: u32,
    /// Seconds between rescans of the modules directory (inotify does the
    /// rest).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub rescan: f64,
    /// The largest module file loaded, in MiB, unless its tenant's config
    /// says otherwise; a bigger file is refused before it is read.
    #[arg(long, value_name = "MIB", default_value_t = crate::sandbox::DEFAULT_MAX_MODULE_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_module_mb: u64,
    /// Serve Prometheus metrics (/metrics), health and readiness checks
    /// (/healthz, /readyz) and the dashboard (/) on this address. Off by
    /// default; keep it on loopback (e.g. 127.0.0.1:9100) or behind a proxy.
    #[arg(long, value_name = "HOST:PORT", env = "BEANBOX_ADMIN")]
    pub admin: Option<String>,
    /// The bearer token the admin listener's actions (kick, delete, pause)
    /// need; without it the listener is read-only.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "BEANBOX_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// A host name the admin listener is reached by (e.g. through a
    /// proxy), besides IP addresses, `localhost` and the --admin host;
    /// requests naming other hosts are refused (DNS rebinding). Repeatable.
    #[arg(
        long = "admin-host",
        value_name = "NAME",
        env = "BEANBOX_ADMIN_HOSTS",
        value_delimiter = ','
    )]
    pub admin_hosts: Vec<String>,
    /// When the admin listener's /readyz says ready, as to the beanstalkd
    /// servers: while `any` is reachable, or only while `all` are.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        env = "BEANBOX_READY_WHEN",
        default_value = "any"
    )]
    pub ready_when: admin::state::ReadyWhen,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub(super) const AFTER_HELP: &str = "\
Examples:
  runner --tube hello                      # serve ./modules/hello.wasm on tube `hello`
  runner --modules /srv/tasks --concurrency 8 --beanstalkd 10.0.0.5:11300
  runner --tube resize --beanstalkd 10.0.0.5:11300,10.0.0.6:11300,10.0.0.7:11300
  runner --config tenants.toml             # tenants: tubes, limits, shares, grants
  BEANSTALKD_ADDR=127.0.0.1:11301 runner --tube resize --timeout 10

Hot deploy: copy a new version next to the old one and rename it into place
(`cp new.wasm modules/.hello.tmp && mv modules/.hello.tmp modules/hello.wasm`):
new jobs run it once it has compiled; running jobs finish on the old one; a
file that fails to load leaves the old version serving. At start each module
serves as soon as it has compiled, smallest first. Module files over
--max-module-mb, or whose name cannot be a tube, are refused unread with one
log line. Removing a module stops its tubes; their jobs stay queued until it
returns. SIGHUP reloads --config.

Several servers (--beanstalkd A,B,C): each tenant keeps --concurrency slots;
each slot has a connection to every server, blocks on its own (home) server
when idle and, when busy, takes jobs from the servers in turn, so no server
is starved. A job's reply, follow-up jobs, failure record, touches and
delete/release/bury go to the server it came from. A server that goes down
is logged once and retried with backoff (100 ms doubling to 5 s) while the
others are served at full speed. Its jobs wait for it: with beanstalkd's -b
binlog they are back when it restarts; without, they are lost.

Failure policy: success puts the task's follow-up jobs, replies to
`reply_to` and deletes the job; a guest error, trap or timeout is released
with backoff until --max-attempts, then buried; a bad envelope, unknown task,
bad kwargs, or fuel/memory/output limit is buried at once. A job is never
deleted unless it succeeded, and a reply never decides its fate: one too big
for beanstalkd becomes a `reply-too-big` error, one refused is logged as
lost. A job for a task only a version being deployed has waits for it.
Before it buries a job the worker puts why on the tube beanbox.failures
(`runner buried --tube T` shows it; `runner kick` retries with a fresh
attempt budget).";

/// Runs the worker.
///
/// # Errors
///
/// Bad flags, an unreadable modules directory or cache, a bad config file.
pub fn execute(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let limits = crate::sandbox::Limits {
        max_puts: args.max_puts,
        ..args.limits.limits()?
    };
    let grace = Duration::try_from_secs_f64(args.grace)
        .map_err(|_| anyhow::anyhow!("--grace must be a non-negative number of seconds"))?;
    let rescan = Duration::try_from_secs_f64(args.rescan)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--rescan must be a positive number of seconds"))?;
    for tube in &args.tubes {
        beanbox_queue::beanstalk::proto::validate_tube(tube)
            .map_err(|e| anyhow::anyhow!("`{tube}` cannot be a tube: {e}"))?;
        if tube == crate::failures::FAILURES_TUBE {
            anyhow::bail!("--tube: {}", crate::config::reserved_tube());
        }
    }
    let defaults = Defaults {
        limits,
        concurrency: usize::from(args.concurrency),
        max_attempts: args.max_attempts,
        backoff: Duration::from_secs(args.backoff),
        backoff_max: Duration::from_secs(args.backoff_max),
        reuse: args.reuse,
        max_module_bytes: args.max_module_mb << 20,
    };
    let tenants = match &args.config {
        Some(path) => Tenants::File {
            path: path.clone(),
            defaults,
        },
        None => Tenants::Implicit {
            tubes: (!args.tubes.is_empty()).then(|| args.tubes.clone()),
            defaults,
            put_tubes: if args.put_tubes.iter().any(|t| t == "*") {
                Some(PutTubes::Any)
            } else if args.put_tubes.is_empty() {
                None
            } else {
                Some(PutTubes::Only(args.put_tubes.clone()))
            },
        },
    };
    // Two runtimes: this one reserves, touches, logs and handles signals;
    // guests run on the other, one thread per core, so a guest spinning in
    // any way never holds up another slot or a shutdown. Both are sized to
    // the CPUs this process may run on (its affinity and cgroup quota):
    // threads beyond them only add context switches to every job's handoff.
    let (io_threads, guest_threads) = runtime_threads(
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads)
        .thread_name("beanbox-io")
        .enable_all()
        .build()?;
    let guests = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(guest_threads)
        .thread_name("beanbox-guest")
        .enable_all()
        .build()?;
    if !args.modules.is_dir() {
        anyhow::bail!(
            "the modules directory {} does not exist (or is not a directory)",
            args.modules.display()
        );
    }
    let guest_handle = guests.handle().clone();
    runtime.block_on(async move {
        // A bad address or one in use stops the worker before anything.
        let admin_listener = match &args.admin {
            Some(addr) => Some((
                admin::bind(addr).await?,
                admin::guard::Hosts::new(addr, &args.admin_hosts).map_err(anyhow::Error::msg)?,
            )),
            None => None,
        };
        let metrics = Metrics::new();
        let sandbox = Sandbox::new()?.with_max_module_bytes(args.max_module_mb << 20);
        let cache = open_cache(&args)?;
        let registry = Registry::open_with_metrics(&args.modules, sandbox, cache, metrics.clone())?;
        // A bad config is refused at start, naming file, line and key,
        // before any module is compiled.
        let config = tenants.resolve(&registry)?;
        registry.configure(&config);
        if let Some((listener, hosts)) = admin_listener {
            // Serving every module in the directory: ready once those
            // there at start have loaded.
            let serve_all = matches!(tenants, Tenants::Implicit { tubes: None, .. });
            metrics.set_tenants(&config);
            admin::spawn(
                listener,
                AdminConfig {
                    token: args.admin_token.clone().filter(|t| !t.is_empty()),
                    beanstalkd: args.beanstalkd.clone(),
                    ready_when: args.ready_when,
                    metrics: metrics.clone(),
                    registry: registry.clone(),
                    modules_at_start: if serve_all {
                        registry.on_disk()
                    } else {
                        Vec::new()
                    },
                    hosts,
                },
            )?;
        }
        // Modules load in the background, smallest first; each one's tubes
        // are served as soon as it is loaded.
        let _watcher = registry.spawn_watcher(rescan);
        let (tx, rx) = watch::channel(Phase::Running);
        let (reload_tx, reload_rx) = mpsc::unbounded_channel();
        tokio::spawn(watch_signals(tx, reload_tx, grace));
        let config = WorkerConfig {
            servers: args.beanstalkd,
            registry,
            tenants,
            guests: guest_handle,
            metrics,
        };
        worker::run(config, rx, reload_rx).await
    })?;
    // Every slot has finished; a call still running was abandoned with its
    // job: no need to wait for it.
    guests.shutdown_background();
    Ok(ExitCode::SUCCESS)
}

/// Threads of the I/O and the guest runtime for a process that may use
/// `cpus` CPUs: two for I/O (one on a single CPU), one per CPU for guests.
/// Measured (BENCHMARKS.md, per-job cost): on one CPU, a second I/O thread
/// cost each trivial job about 10 µs of context switches.
fn runtime_threads(cpus: usize) -> (usize, usize) {
    (cpus.clamp(1, 2), cpus.max(1))
}

/// The worker's code cache: `--cache-dir` (refused or unusable: the worker
/// does not start, as the operator named it), else its own directory in the
/// user's cache directory, never inside the modules directory, whose
/// writers need not be trusted with native code (unusable: a warning, and
/// every start compiles).
fn open_cache(args: &WorkerArgs) -> anyhow::Result<Option<CodeCache>> {
    if args.no_cache {
        return Ok(None);
    }
    if let Some(dir) = &args.cache_dir {
        return Ok(Some(
            CodeCache::new(dir).map_err(|e| anyhow::anyhow!("--cache-dir: {e}"))?,
        ));
    }
    let Some(base) = super::user_cache_dir() else {
        tracing::warn!(
            "no code cache: neither $XDG_CACHE_HOME nor $HOME is set; \
             every start compiles (--cache-dir DIR to cache)"
        );
        return Ok(None);
    };
    let modules = std::fs::canonicalize(&args.modules).unwrap_or_else(|_| args.modules.clone());
    let dir = base.join(worker_cache_name(&modules));
    match CodeCache::new(&dir) {
        Ok(cache) => Ok(Some(cache)),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                "no code cache: {e}; every start compiles (--cache-dir DIR for another)"
            );
            Ok(None)
        }
    }
}

/// The name of a worker's default cache directory, one per modules
/// directory (`modules`, canonical): workers of different directories, and
/// `runner call`, keep entries of their own, which each prunes alone.
fn worker_cache_name(modules: &Path) -> String {
    use sha2::Digest as _;
    use std::os::unix::ffi::OsStrExt as _;
    let digest = sha2::Sha256::digest(modules.as_os_str().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("worker-{hex}")
}

/// SIGHUP: reload. First SIGTERM/SIGINT: drain; after `grace`, or on a
/// second one: abort.
async fn watch_signals(
    tx: watch::Sender<Phase>,
    reload: mpsc::UnboundedSender<()>,
    grace: Duration,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the worker with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { let _ = reload.send(()); }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_modules_directory_has_a_cache_directory_of_its_own() {
        let a = worker_cache_name(Path::new("/srv/a/modules"));
        assert_eq!(a, worker_cache_name(Path::new("/srv/a/modules")));
        assert_ne!(a, worker_cache_name(Path::new("/srv/b/modules")));
        assert!(
            a.starts_with("worker-") && a.len() == "worker-".len() + 16,
            "{a}"
        );
    }

    #[test]
    fn runtimes_have_no_more_threads_than_cpus_to_run_them() {
        assert_eq!(runtime_threads(1), (1, 1));
        assert_eq!(runtime_threads(2), (2, 2));
        assert_eq!(runtime_threads(16), (2, 16));
        // available_parallelism never says 0, but the sizes stay usable.
        assert_eq!(runtime_threads(0), (1, 1));
    }
}
