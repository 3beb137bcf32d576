//! Section b: what one job costs the sandbox, in process: `Module::call` of
//! hello's `task_one` (new store, instantiate from the `InstancePre`, call,
//! drop) timed call by call on a current-thread runtime, for each engine
//! configuration; then with an instance kept between calls
//! (`Module::call_reusing`), for the Rust, Python and JavaScript task.

use std::time::Instant;

use anyhow::{Context as _, bail};
use beanbox::sandbox::{Allocator, CallContext, KeptInstance, Limits, Sandbox, SandboxOptions};
use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::report::{Goal, Table, percentile};

/// Calls one instance serves in the reuse rows.
const REUSE: u32 = 100;

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
    // Instance reuse (opt-in, `reuse` in the tenants file), then components
    // of other languages when built (scripts/bench.sh builds them): the same
    // task in Python and in JavaScript, each with a fresh instance per call
    // and with one instance kept for up to REUSE calls.
    let components = [
        // Its fresh-instance row is the table's first.
        (
            "hello (Rust)",
            Some(ctx.paths.wasm("hello")),
            calls,
            default_p50,
        ),
        (
            "hello-py (Python, componentize-py)",
            ctx.paths.python_task(),
            calls / 40 + 50,
            None,
        ),
        (
            "hello-js (JavaScript, componentize-js)",
            ctx.paths.javascript_task(),
            calls / 40 + 50,
            None,
        ),
    ];
    let mut reuse_notes = Vec::new();
    let mut python_fresh = None;
    for (language, path, calls, measured_fresh) in components {
        let Some(path) = path.filter(|p| p.is_file()) else {
            table.row(vec![
                format!("{language}: not built"),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]);
            continue;
        };
        let warmup = (calls / 10).max(5);
        let mut fresh_p50 = measured_fresh;
        for reuse in [1, REUSE] {
            if reuse == 1 && measured_fresh.is_some() {
                continue;
            }
            let name = if reuse == 1 {
                format!("{language}, fresh instance ({calls} calls)")
            } else {
                format!("{language}, instance reused for ≤ {reuse} calls ({calls} calls)")
            };
            match measure_file(&path, VARIANTS[0].1, &kwargs, warmup, calls, reuse).await {
                Ok(cost) => {
                    eprintln!("  {name}: p50 {:.1} µs, p99 {:.1} µs", cost.p50, cost.p99);
                    match (reuse, fresh_p50) {
                        (1, _) => {
                            fresh_p50 = Some(cost.p50);
                            if language.starts_with("hello-py") {
                                python_fresh = Some(cost.p50);
                            }
                        }
                        (_, Some(fresh)) => {
                            reuse_notes.push(format!("{language} {:.0}x", fresh / cost.p50))
                        }
                        _ => {}
                    }
                    table.row(vec![
                        name,
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
    }
    if !reuse_notes.is_empty() {
        table.note(format!(
            "Reuse speed-up, fresh p50 / reused p50 (same run): {}. A reused call skips the store, \
             WASI context and instantiation (and the runtime's own start-up: Python's and \
             JavaScript's interpreters initialise per instance); every {REUSE}th call still \
             pays for a fresh instance, in the p99.",
            reuse_notes.join(", ")
        ));
    }
    table.note(
        "Each fresh-instance call is `Module::call`: kwargs → typed params, a fresh `Store` with WASI (nothing granted) and limits, \
         instantiate from the module's `InstancePre` (the host always pre-links; there is no non-InstancePre path to compare), \
         the call (task_one logs one line through the host: no subscriber in the bench, so it costs the call only) and the drop. \
         Single thread, tokio current-thread runtime, the bench process unpinned.",
    );
    table.print();
    Ok(vec![
        Goal::new(
            "sandbox cost per job ≤ 10 µs p50 (worker's configuration)",
            default_p50,
            10.0,
            false,
            "µs",
        ),
        Goal::new(
            "Python task, fresh instance ≤ 300 µs p50",
            python_fresh,
            300.0,
            false,
            "µs",
        ),
    ])
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
    measure_file(&ctx.paths.wasm("hello"), options, kwargs, warmup, calls, 1).await
}

/// [`measure`] for the component at `path` (whose `task_one` joins its
/// three arguments), with an instance serving up to `reuse` calls (1: a
/// fresh one each call, as `Module::call`).
async fn measure_file(
    path: &std::path::Path,
    options: SandboxOptions,
    kwargs: &Map<String, Value>,
    warmup: usize,
    calls: usize,
    reuse: u32,
) -> anyhow::Result<Cost> {
    let sandbox = Sandbox::with_options(options)?;
    let module = sandbox
        .load_file(path)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let call_ctx = CallContext::standalone("task_one", Limits::default());
    let mut kept = KeptInstance::default();
    for _ in 0..warmup {
        let outcome = module
            .call_reusing("task_one", kwargs, &call_ctx, &mut kept, reuse)
            .await;
        if outcome.result.as_ref().ok() != Some(&json!("123")) {
            bail!("task_one returned {:?}", outcome.result);
        }
    }
    let mut micros = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let outcome = module
            .call_reusing("task_one", kwargs, &call_ctx, &mut kept, reuse)
            .await;
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
