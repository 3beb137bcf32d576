//! Section d: put → done at low load. A worker at concurrency 1 serves
//! hello; the bench puts one `task_one` job with `reply_to`, waits for the
//! reply (the worker replies, then deletes), and repeats, one job in flight.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::report::{Goal, Table, percentile};
use crate::server::fresh_tube;
use crate::{Ctx, runner};

/// Measures and prints the table.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let jobs = if ctx.quick { 200 } else { 1_000 };
    let tube = fresh_tube("lat");
    let modules = runner::modules_for(ctx, &tube, &ctx.paths.wasm("hello"))?;
    let mut worker = runner::start(
        ctx,
        &modules,
        &ctx.work.join("cache-latency"),
        &["--tube", &tube, "--concurrency", "1"],
    )?;
    let mut asker = runner::Asker::connect(ctx, &fresh_tube("lat-reply")).await?;
    let kwargs = runner::kwargs(json!({"arg1": "1", "arg2": "2", "arg3": "3"}));
    // The first reply waits for start-up; a few more warm the path.
    for i in 0..20 {
        let timeout = Duration::from_secs(if i == 0 { 60 } else { 5 });
        asker.ask(&tube, "task_one", &kwargs, timeout).await?;
    }
    let mut ms = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let started = Instant::now();
        let result = asker
            .ask(&tube, "task_one", &kwargs, Duration::from_secs(5))
            .await?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        if result != json!("123") {
            bail!("task_one replied {result}");
        }
        worker.check_alive("runner")?;
    }
    worker.kill();
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&ms, 50.0), percentile(&ms, 99.0));
    eprintln!("  put → reply: p50 {p50:.3} ms, p99 {p99:.3} ms");
    let mut table = Table::new(
        format!(
            "d. put → done at low load: {jobs} jobs one at a time, ms ({})",
            ctx.pin.describe()
        ),
        &["worker", "p50", "p90", "p99", "max"],
    );
    table.row(vec![
        "runner --concurrency 1, hello task_one".into(),
        format!("{p50:.3}"),
        format!("{:.3}", percentile(&ms, 90.0)),
        format!("{p99:.3}"),
        format!("{:.3}", ms.last().copied().unwrap_or(f64::NAN)),
    ]);
    table.note(
        "From the bench's `put` (with `reply_to`) to its `reserve` returning the reply; the worker puts the reply, then deletes the job. \
         The bench process (producer and reply consumer) is unpinned.",
    );
    table.print();
    Ok(vec![Goal::new(
        "put → done p99 ≤ 2 ms at low load",
        Some(p99),
        2.0,
        false,
        "ms",
    )])
}
