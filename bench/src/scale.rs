//! Section `scale`: one fleet over 1, 2 and 3 beanstalkd servers. The same
//! total of jobs (the drain section's body), spread evenly over the
//! servers, drained by two `runner` processes that each serve every server
//! (`--beanstalkd a,b,c`). It reports jobs/s, each server's and each
//! process's CPU, and the whole machine's, so the table says what bounds
//! the fleet: one beanstalkd's core, or the runners' CPU.

use anyhow::Context as _;

use crate::drain::{Drained, body, fill_on, time_drain_over};
use crate::report::{Table, median, percent, ratio, thousands};
use crate::server::{Beanstalkd, Children, fresh_tube};
use crate::{Ctx, IDLE_PATIENCE, runner, system};

/// Server counts compared.
const SERVERS: [usize; 3] = [1, 2, 3];
/// Worker processes, each serving every server.
const PROCESSES: usize = 2;
/// Each process's `--concurrency`.
const CONCURRENCY: u16 = 4;

/// The medians of one server count's runs.
struct Row {
    servers: usize,
    rate: f64,
    server_cpu: Vec<f64>,
    worker_cpu: Vec<f64>,
    machine: f64,
    rates: Vec<f64>,
}

/// Runs the three server counts and prints the table.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<crate::report::Goal>> {
    let mut rows: Vec<Row> = Vec::new();
    for n in SERVERS {
        let mut runs: Vec<Drained> = Vec::new();
        for run in 1..=ctx.runs {
            system::wait_idle(IDLE_PATIENCE);
            let drained = measure(ctx, n)
                .await
                .with_context(|| format!("{n} server(s)"))?;
            eprintln!(
                "  {n} server(s) run {run}: {} jobs/s, servers {:?}, runners {:?}",
                thousands(drained.sample.rate),
                cores(&drained.servers, drained.sample.secs),
                cores(&drained.workers, drained.sample.secs),
            );
            runs.push(drained);
        }
        rows.push(summarize(n, &runs));
    }
    let one = rows.first().map(|r| r.rate);
    let mut table = Table::new(
        format!(
            "f. One fleet over several servers: {} jobs, {PROCESSES} runner processes at concurrency {CONCURRENCY}, median of {} ({})",
            thousands(ctx.jobs as f64),
            ctx.runs,
            ctx.pin.describe()
        ),
        &[
            "servers",
            "jobs/s",
            "vs 1 server",
            "each beanstalkd's CPU",
            "each runner's CPU",
            "machine busy (of 2 cores)",
            "runs",
        ],
    );
    for row in &rows {
        let list = |v: &[f64]| {
            v.iter()
                .map(|c| percent(*c))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        table.row(vec![
            row.servers.to_string(),
            thousands(row.rate),
            ratio(Some(row.rate), one),
            list(&row.server_cpu),
            list(&row.worker_cpu),
            percent(row.machine),
            row.rates
                .iter()
                .map(|r| thousands(*r))
                .collect::<Vec<_>>()
                .join(" / "),
        ]);
    }
    table.note(format!(
        "Body: `{}`; the jobs are split evenly over the servers before the runners start; timed from the first delete seen on any server to the last. \
         CPU is a fraction of one core over the timed window; `machine busy` is all CPUs together (200% = both cores).",
        body("TUBE")
    ));
    table.print();
    Ok(Vec::new())
}

/// One run with `n` servers of our own.
async fn measure(ctx: &Ctx, n: usize) -> anyhow::Result<Drained> {
    let servers: Vec<Beanstalkd> = (0..n)
        .map(|_| Beanstalkd::start(ctx.pin))
        .collect::<anyhow::Result<_>>()?;
    let addrs: Vec<String> = servers.iter().map(Beanstalkd::addr).collect();
    let tube = fresh_tube("scale");
    let per = ctx.jobs / n as u64;
    let total = per * n as u64;
    for addr in &addrs {
        fill_on(ctx, addr, &tube, per)?;
    }
    let modules = runner::modules_for(ctx, &tube, &ctx.paths.wasm("hello"))?;
    let list = addrs.join(",");
    let concurrency = CONCURRENCY.to_string();
    let mut children = Children::default();
    for p in 0..PROCESSES {
        let mut one = runner::start_on(
            ctx,
            &list,
            &modules,
            &ctx.work.join("cache-scale"),
            &["--tube", &tube, "--concurrency", &concurrency],
            &format!("{p}.log"),
        )?;
        children.0.append(&mut one.0);
    }
    let drained = time_drain_over(&addrs, &tube, total, &mut children, "runner").await;
    children.kill();
    drop(servers);
    let _ = std::fs::remove_dir_all(&modules);
    drained.with_context(|| format!("the runners' logs: {}.*.log", modules.display()))
}

/// Medians over runs, per column.
fn summarize(servers: usize, runs: &[Drained]) -> Row {
    let col = |f: &dyn Fn(&Drained) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let each = |pick: &dyn Fn(&Drained) -> &Vec<f64>, i: usize| {
        col(&|d: &Drained| pick(d).get(i).copied().unwrap_or(0.0) / d.sample.secs)
    };
    Row {
        servers,
        rate: col(&|d| d.sample.rate),
        server_cpu: (0..servers).map(|i| each(&|d| &d.servers, i)).collect(),
        worker_cpu: (0..PROCESSES).map(|i| each(&|d| &d.workers, i)).collect(),
        machine: col(&|d| d.sample.machine / d.sample.secs),
        rates: runs.iter().map(|d| d.sample.rate).collect(),
    }
}

/// CPU seconds as fractions of a core over `secs`, for the progress line.
fn cores(cpu: &[f64], secs: f64) -> Vec<String> {
    cpu.iter().map(|c| percent(c / secs)).collect()
}
