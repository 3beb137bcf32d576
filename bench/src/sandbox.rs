//! Section b: what one job costs the sandbox, in process: `Module::call` of
//! hello's `task_one` (new store, instantiate from the `InstancePre`, call,
//! drop) timed call by call on a current-thread runtime, for each engine
//! configuration.

use std::time::Instant;

use anyhow::{Context as _, bail};
use beanbox::sandbox::{Allocator, CallContext, Limits, Sandbox, SandboxOptions};
use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::report::{Goal, Table, percentile};

/// The configurations measured; the first is the worker's.
const VARIANTS: [(&str, SandboxOptions); 4] = [
    (
        "pooling, fuel (the worker's default)",
        SandboxOptions {
            allocator: Allocator::Pooling,
            fuel: true,
            epochs: false,
        },
    ),
    (
        "on-demand, fuel",
        SandboxOptions {
            allocator: Allocator::OnDemand,
            fuel: true,
            epochs: false,
        },
    ),
    (
        "pooling, fuel + epochs",
        SandboxOptions {
            allocator: Allocator::Pooling,
            fuel: true,
            epochs: true,
        },
    ),
    (
        "on-demand, no fuel, no epochs",
        SandboxOptions {
            allocator: Allocator::OnDemand,
            fuel: false,
            epochs: false,
        },
    ),
];

/// Per-call figures of one configuration, in µs.
struct Cost {
    p50: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

/// Measures every configuration and prints the table.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let (warmup, calls) = if ctx.quick {
        (200, 2_000)
    } else {
        (2_000, 20_000)
    };
    let kwargs = kwargs();
    let mut table = Table::new(
        format!(
            "b. Sandbox cost per job: hello `task_one`, {} calls after {warmup} warm-up, µs",
            crate::report::thousands(calls as f64)
        ),
        &["engine", "p50", "p99", "mean", "max"],
    );
    let mut default_p50 = None;
    for (i, (name, options)) in VARIANTS.into_iter().enumerate() {
        let cost = match measure(ctx, options, &kwargs, warmup, calls).await {
            Ok(cost) => cost,
            Err(e) => {
                table.row(vec![
                    format!("{name}: {e:#}"),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                    "–".into(),
                ]);
                continue;
            }
        };
        eprintln!("  {name}: p50 {:.1} µs, p99 {:.1} µs", cost.p50, cost.p99);
        if i == 0 {
            default_p50 = Some(cost.p50);
        }
        table.row(vec![
            name.to_string(),
            format!("{:.1}", cost.p50),
            format!("{:.1}", cost.p99),
            format!("{:.1}", cost.mean),
            format!("{:.0}", cost.max),
        ]);
    }
    // Components of other languages, when built (scripts/bench.sh builds
    // them): the same task in Python and in JavaScript, fresh instance each.
    let built = ctx
        .paths
        .tasks
        .parent()
        .and_then(|p| p.parent())
        .map(|t| t.to_path_buf());
    for (name, rel) in [
        (
            "hello-py (Python, componentize-py), pooling, fuel",
            "py/hello-py.wasm",
        ),
        (
            "hello-js (JavaScript, componentize-js), pooling, fuel",
            "js/hello-js.wasm",
        ),
    ] {
        let Some(path) = built.as_ref().map(|t| t.join(rel)).filter(|p| p.is_file()) else {
            table.row(vec![
                format!("{name}: not built"),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]);
            continue;
        };
        let (warmup, calls) = (warmup / 20 + 5, calls / 40 + 50);
        match measure_file(&path, VARIANTS[0].1, &kwargs, warmup, calls).await {
            Ok(cost) => {
                eprintln!("  {name}: p50 {:.1} µs, p99 {:.1} µs", cost.p50, cost.p99);
                table.row(vec![
                    format!("{name} ({calls} calls)"),
                    format!("{:.1}", cost.p50),
                    format!("{:.1}", cost.p99),
                    format!("{:.1}", cost.mean),
                    format!("{:.0}", cost.max),
                ]);
            }
            Err(e) => table.row(vec![
                format!("{name}: {e:#}"),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]),
        }
    }
    table.note(
        "Each call is `Module::call`: kwargs → typed params, a fresh `Store` with WASI (nothing granted) and limits, \
         instantiate from the module's `InstancePre` (the host always pre-links; there is no non-InstancePre path to compare), \
         the call (task_one logs one line through the host: no subscriber in the bench, so it costs the call only) and the drop. \
         Single thread, tokio current-thread runtime, the bench process unpinned.",
    );
    table.print();
    Ok(vec![Goal::new(
        "sandbox cost per job ≤ 10 µs p50 (worker's configuration)",
        default_p50,
        10.0,
        false,
        "µs",
    )])
}

/// `{"arg1": "1", "arg2": "2", "arg3": "3"}`.
fn kwargs() -> Map<String, Value> {
    match json!({"arg1": "1", "arg2": "2", "arg3": "3"}) {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

async fn measure(
    ctx: &Ctx,
    options: SandboxOptions,
    kwargs: &Map<String, Value>,
    warmup: usize,
    calls: usize,
) -> anyhow::Result<Cost> {
    measure_file(&ctx.paths.wasm("hello"), options, kwargs, warmup, calls).await
}

/// [`measure`] for the component at `path` (whose `task_one` joins its
/// three arguments).
async fn measure_file(
    path: &std::path::Path,
    options: SandboxOptions,
    kwargs: &Map<String, Value>,
    warmup: usize,
    calls: usize,
) -> anyhow::Result<Cost> {
    let sandbox = Sandbox::with_options(options)?;
    let module = sandbox
        .load_file(path)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let call_ctx = CallContext::standalone("task_one", Limits::default());
    for _ in 0..warmup {
        let outcome = module.call("task_one", kwargs, &call_ctx).await;
        if outcome.result.as_ref().ok() != Some(&json!("123")) {
            bail!("task_one returned {:?}", outcome.result);
        }
    }
    let mut micros = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let outcome = module.call("task_one", kwargs, &call_ctx).await;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        if outcome.result.is_err() {
            bail!("task_one failed: {:?}", outcome.result);
        }
    }
    micros.sort_by(f64::total_cmp);
    Ok(Cost {
        p50: percentile(&micros, 50.0),
        p99: percentile(&micros, 99.0),
        mean: micros.iter().sum::<f64>() / micros.len() as f64,
        max: micros.last().copied().unwrap_or(f64::NAN),
    })
}
