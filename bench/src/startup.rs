//! Section e: start-up to the first job with 10 modules, compiled-code cache
//! cold and warm, and the worker's resident memory idle and with 8 jobs
//! running at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::report::{Goal, Table, median};
use crate::server::fresh_tube;
use crate::{Ctx, runner, system};

/// The marker hello keeps verbatim in its data; patching its digits makes
/// distinct files (and distinct cache keys) of one build.
const MARKER: &[u8] = b"beanbox-version:0000";

/// Modules in the start-up directory.
const MODULES: usize = 10;

/// Measures and prints the table.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let dir = ctx.work.join("startup-modules");
    write_modules(&ctx.paths.wasm("hello"), &dir)?;

    let mut cold = Vec::new();
    let mut cache = PathBuf::new();
    for run in 0..ctx.runs {
        cache = ctx.work.join(format!("cache-cold-{run}"));
        let (ms, _) = first_job(ctx, &dir, &cache, false).await?;
        eprintln!("  cold cache: first job after {ms:.1} ms");
        cold.push(ms);
    }
    let mut warm = Vec::new();
    let mut idle_rss = None;
    for run in 0..ctx.runs {
        let last = run + 1 == ctx.runs;
        let (ms, rss) = first_job(ctx, &dir, &cache, last).await?;
        eprintln!("  warm cache: first job after {ms:.1} ms");
        warm.push(ms);
        idle_rss = idle_rss.or(rss);
    }
    let (cold, warm) = (median(&mut cold), median(&mut warm));
    // hello0 is hello.wasm unpatched (marker 0000): the warm cache has it.
    let rss = rss_at_concurrency_8(ctx, &cache).await?;

    let mut table = Table::new(
        format!(
            "e. Start-up and memory ({}; median of {} for times)",
            ctx.pin.describe(),
            ctx.runs
        ),
        &["figure", "value"],
    );
    let mib = |kib: Option<u64>| {
        kib.map_or_else(|| "–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    };
    table.row(vec![
        format!("spawn → first job's reply, {MODULES} modules, cache cold"),
        format!("{cold:.1} ms"),
    ]);
    table.row(vec![
        format!("spawn → first job's reply, {MODULES} modules, cache warm"),
        format!("{warm:.1} ms"),
    ]);
    table.row(vec![
        format!("RSS idle, {MODULES} modules × 4 slots (default concurrency)"),
        mib(idle_rss),
    ]);
    table.row(vec![
        "RSS idle, hello only, --concurrency 8".into(),
        mib(rss.idle),
    ]);
    table.row(vec![
        "RSS with 8 `nap` jobs (500 ms) running".into(),
        mib(rss.busy),
    ]);
    table.row(vec!["peak RSS (VmHWM) after those".into(), mib(rss.peak)]);
    table.note(format!(
        "{MODULES} copies of hello.wasm whose `beanbox-version:0000` marker is patched to 0000..{:04}, so each has its own cache key. \
         The job (`version` on tube hello0, with `reply_to`) is put before the worker is spawned; the clock runs from spawn to the reply. \
         Cold: a fresh `--cache-dir` each run; warm: the cache the last cold run filled. \
         RSS is VmRSS from /proc, every worker started on the warm cache (no compilation in the process); \
         the concurrency-8 worker serves hello alone and has run one job before `idle` is read.",
        MODULES - 1
    ));
    table.print();
    Ok(vec![Goal::new(
        "first job ≤ 100 ms after start, warm cache",
        Some(warm),
        100.0,
        false,
        "ms",
    )])
}

/// Writes hello0.wasm … hello9.wasm into `dir`, each with its own marker.
fn write_modules(hello: &Path, dir: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(hello).with_context(|| format!("cannot read {}", hello.display()))?;
    let at: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i)
        .collect();
    let [at] = at[..] else {
        bail!(
            "{} has {} copies of the version marker, expected 1",
            hello.display(),
            at.len()
        );
    };
    std::fs::create_dir_all(dir)?;
    for i in 0..MODULES {
        let mut patched = bytes.clone();
        let digits = format!("{i:04}");
        patched[at + MARKER.len() - 4..at + MARKER.len()].copy_from_slice(digits.as_bytes());
        std::fs::write(dir.join(format!("hello{i}.wasm")), patched)?;
    }
    Ok(())
}

/// Puts a job on hello0, spawns the worker on `dir`, and returns the ms
/// from spawn to the reply; with `read_rss`, also the worker's RSS (KiB)
/// once idle after it.
async fn first_job(
    ctx: &Ctx,
    dir: &Path,
    cache: &Path,
    read_rss: bool,
) -> anyhow::Result<(f64, Option<u64>)> {
    let mut asker = runner::Asker::connect(ctx, &fresh_tube("start-reply")).await?;
    asker
        .put("hello0", "version", &runner::kwargs(json!({})))
        .await?;
    system::wait_idle(crate::IDLE_PATIENCE);
    let started = Instant::now();
    let mut worker = runner::start(ctx, dir, cache, &[])?;
    let version = asker.reply(Duration::from_secs(60)).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if version != json!("beanbox-version:0000") {
        bail!("hello0's version replied {version}");
    }
    let mut rss = None;
    if read_rss {
        tokio::time::sleep(Duration::from_secs(1)).await;
        worker.check_alive("runner")?;
        rss = system::status_kib(worker.pids()[0], "VmRSS");
    }
    worker.kill();
    Ok((ms, rss))
}

/// Resident memory of a worker at `--concurrency 8`, in KiB.
struct Rss {
    idle: Option<u64>,
    busy: Option<u64>,
    peak: Option<u64>,
}

async fn rss_at_concurrency_8(ctx: &Ctx, warm_cache: &Path) -> anyhow::Result<Rss> {
    let tube = fresh_tube("rss");
    let modules = runner::modules_for(ctx, &tube, &ctx.paths.wasm("hello"))?;
    let mut worker = runner::start(
        ctx,
        &modules,
        warm_cache,
        &["--tube", &tube, "--concurrency", "8"],
    )?;
    let pid = worker.pids()[0];
    let mut asker = runner::Asker::connect(ctx, &fresh_tube("rss-reply")).await?;
    asker
        .ask(
            &tube,
            "version",
            &runner::kwargs(json!({})),
            Duration::from_secs(60),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = system::status_kib(pid, "VmRSS");
    let nap = runner::kwargs(json!({"ms": 500}));
    for _ in 0..8 {
        asker.put(&tube, "nap", &nap).await?;
    }
    let mut client = ctx.server.connect().await?;
    let until = Instant::now() + Duration::from_secs(2);
    while client.stats_tube(&tube).await?.current_jobs_reserved < 8 {
        if Instant::now() >= until {
            bail!("the worker did not take 8 jobs at once");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = system::status_kib(pid, "VmRSS");
    for _ in 0..8 {
        asker.reply(Duration::from_secs(10)).await?;
    }
    let peak = system::status_kib(pid, "VmHWM");
    worker.check_alive("runner")?;
    worker.kill();
    Ok(Rss { idle, busy, peak })
}
