//! `beanbox-bench`: the figures behind BENCHMARKS.md, printed as markdown
//! tables, with the goals marked reached or missed (reported, never
//! asserted). Sections:
//!
//! - `drain`: 20,000 seed-style jobs through `runner` at concurrency 1–8,
//!   next to a raw std-only client and a Python worker that works as the
//!   seed's does (both in `bench/peers`);
//! - `sandbox`: the per-job cost of a fresh instance, by engine options;
//! - `compute`: a compute-heavy guest against the same code native;
//! - `latency`: put → reply at low load;
//! - `startup`: spawn → first job with 10 modules, cache cold and warm, and
//!   the worker's resident memory;
//! - `scale`: two runner processes over 1, 2 and 3 beanstalkd servers.
//!
//! It builds nothing: `scripts/bench.sh` builds and then runs it.

mod compute;
mod drain;
mod latency;
mod report;
mod runner;
mod sandbox;
mod scale;
mod server;
mod startup;
mod system;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

use report::Goal;
use server::{Beanstalkd, Pin};

/// The figures behind BENCHMARKS.md. Run it through `scripts/bench.sh`,
/// which builds what it needs first.
#[derive(Debug, Parser)]
#[command(after_help = "\
Examples:
  scripts/bench.sh                          # everything, as in BENCHMARKS.md
  scripts/bench.sh --quick                  # a smoke run: one run a cell, fewer jobs
  scripts/bench.sh --only drain --pin same  # one section, another CPU placement")]
struct Args {
    /// Sections to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "drain,sandbox,compute,latency,startup,scale"
    )]
    only: Vec<Section>,
    /// Jobs per drain run [default: 20000, 2000 with --quick].
    #[arg(long)]
    jobs: Option<u64>,
    /// Where beanstalkd and the clients under test run.
    #[arg(long, value_enum, default_value_t = Pin::Split)]
    pin: Pin,
    /// A fast smoke run: one run per cell and fewer jobs, calls and samples.
    #[arg(long)]
    quick: bool,
    /// Runs per drain cell and start-up figure (the median is reported)
    /// [default: 3, 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// A drain run whose other processes (anything but beanstalkd and the
    /// client) used more than this many cores, or from which the hypervisor
    /// stole more than this many cores, is redone, up to twice.
    #[arg(long, default_value_t = 0.15)]
    max_other: f64,
    /// The workspace root [default: the one this binary was built from].
    #[arg(long)]
    root: Option<PathBuf>,
    /// The directory with the task components [default:
    /// ROOT/tasks/target/wasm32-wasip2/release].
    #[arg(long)]
    tasks_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Drain,
    Sandbox,
    Compute,
    Latency,
    Startup,
    Scale,
}

/// What every section may use.
#[derive(Debug)]
pub struct Ctx {
    /// CPU placement.
    pub pin: Pin,
    /// Jobs per drain run.
    pub jobs: u64,
    /// Runs per cell.
    pub runs: usize,
    /// A smoke run.
    pub quick: bool,
    /// See `Args::max_other`.
    pub max_other: f64,
    /// The programs and components.
    pub paths: Paths,
    /// A scratch directory, removed at the end.
    pub work: PathBuf,
    /// The bench's beanstalkd.
    pub server: Beanstalkd,
}

/// Where the bench finds what it runs.
#[derive(Debug)]
pub struct Paths {
    /// `target/release/runner`.
    pub runner: PathBuf,
    /// The task components (`hello.wasm`, `compute.wasm`).
    pub tasks: PathBuf,
    /// The raw std-only client (`bench/peers/raw_drain.rs`).
    pub raw_drain: PathBuf,
    /// The Python worker that works as the seed's does
    /// (`bench/peers/seed_worker.py`).
    pub seed_worker: PathBuf,
    /// A Python with greenstalk.
    pub python: PathBuf,
}

impl Paths {
    fn new(root: &Path, tasks: Option<PathBuf>) -> Paths {
        let target = root.join("target");
        Paths {
            runner: target.join("release/runner"),
            tasks: tasks.unwrap_or_else(|| root.join("tasks/target/wasm32-wasip2/release")),
            raw_drain: target.join("release/raw-drain"),
            seed_worker: root.join("bench/peers/seed_worker.py"),
            python: target.join("seed-venv/bin/python"),
        }
    }

    /// A task component.
    pub fn wasm(&self, name: &str) -> PathBuf {
        self.tasks.join(format!("{name}.wasm"))
    }

    /// The Python task component (`tasks/hello-py`), if it was built.
    pub fn python_task(&self) -> Option<PathBuf> {
        self.built("py/hello-py.wasm")
    }

    /// The JavaScript task component (`tasks/hello-js`), if it was built.
    pub fn javascript_task(&self) -> Option<PathBuf> {
        self.built("js/hello-js.wasm")
    }

    /// `tasks/target/<rel>` (beside the Rust components' target dir), if it
    /// is there.
    fn built(&self, rel: &str) -> Option<PathBuf> {
        let target = self.tasks.parent()?.parent()?;
        Some(target.join(rel)).filter(|p| p.is_file())
    }

    /// Fails, saying how to get them, unless the files `sections` need are
    /// there.
    fn check(&self, sections: &[Section]) -> anyhow::Result<()> {
        let mut need: Vec<PathBuf> = Vec::new();
        let wants = |s: Section| sections.contains(&s);
        if wants(Section::Drain)
            || wants(Section::Latency)
            || wants(Section::Startup)
            || wants(Section::Scale)
        {
            need.push(self.runner.clone());
        }
        if sections.iter().any(|s| *s != Section::Compute) {
            need.push(self.wasm("hello"));
        }
        if wants(Section::Compute) {
            need.push(self.wasm("compute"));
        }
        if wants(Section::Drain) || wants(Section::Scale) {
            need.push(self.raw_drain.clone());
        }
        if wants(Section::Drain) {
            need.extend([
                self.raw_drain.clone(),
                self.seed_worker.clone(),
                self.python.clone(),
            ]);
        }
        let missing: Vec<String> = need
            .iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            bail!(
                "missing {}; scripts/bench.sh builds everything the bench needs",
                missing.join(", ")
            );
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let root = args
        .root
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    let root = root
        .canonicalize()
        .with_context(|| format!("no workspace root at {}", root.display()))?;
    let paths = Paths::new(&root, args.tasks_dir.clone());
    let mut sections = args.only.clone();
    sections.dedup();
    paths.check(&sections)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.pin != Pin::None && cpus < 2 && args.pin == Pin::Split {
        bail!("--pin split needs 2 CPUs; this machine has {cpus}: use --pin same or none");
    }

    let work = std::env::temp_dir().join(format!("beanbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = RemoveOnDrop(work.clone());
    let server = Beanstalkd::start(args.pin)?;
    let ctx = Ctx {
        pin: args.pin,
        jobs: args.jobs.unwrap_or(if args.quick { 2_000 } else { 20_000 }),
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        quick: args.quick,
        max_other: args.max_other,
        paths,
        work,
        server,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        print_header(&ctx, &sections).await?;
        let mut goals: Vec<Goal> = Vec::new();
        for section in [
            Section::Drain,
            Section::Sandbox,
            Section::Compute,
            Section::Latency,
            Section::Startup,
            Section::Scale,
        ] {
            if !sections.contains(&section) {
                continue;
            }
            eprintln!("== {section:?}");
            let found = match section {
                Section::Drain => drain::run(&ctx).await,
                Section::Sandbox => sandbox::run(&ctx).await,
                Section::Compute => compute::run(&ctx).await,
                Section::Latency => latency::run(&ctx).await,
                Section::Startup => startup::run(&ctx).await,
                Section::Scale => scale::run(&ctx).await,
            }
            .with_context(|| format!("section {section:?}"))?;
            goals.extend(found);
        }
        report::print_goals(&goals);
        anyhow::Ok(())
    })
}

async fn print_header(ctx: &Ctx, sections: &[Section]) -> anyhow::Result<()> {
    let machine = system::Machine::read();
    let mut client = ctx.server.connect().await?;
    let stats = client.stats().await?;
    let version = stats.get("version").map_or("?", String::as_str);
    let command: Vec<String> = std::env::args().skip(1).collect();
    println!("## beanbox-bench");
    println!();
    println!(
        "- date: {}",
        system::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!(
        "- machine: {} CPUs, {}, {}",
        machine.cpus, machine.model, machine.kernel
    );
    println!("- beanstalkd {version}, default flags (no binlog), on 127.0.0.1");
    println!("- {}", ctx.pin.describe());
    println!(
        "- arguments: `{}`; sections: {}",
        command.join(" "),
        sections
            .iter()
            .map(|s| format!("{s:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "- drain: {} jobs a run, median of {} run(s){}",
        report::thousands(ctx.jobs as f64),
        ctx.runs,
        if ctx.quick { " (--quick)" } else { "" }
    );
    Ok(())
}

/// Removes a scratch directory when the bench ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long a section waits for the machine to go idle before a run.
pub const IDLE_PATIENCE: Duration = Duration::from_secs(5);
