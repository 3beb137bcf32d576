//! Opt-in instance reuse. In the sandbox: a kept instance serves up to N
//! calls (the guest's own call counter shows it, for Rust, Python and
//! JavaScript), each call with its own fuel, output cap and deadline; a
//! failure of any kind, an abandoned call, another module version or other
//! grants get a fresh instance. On the worker: `reuse` in the tenants file
//! and `--reuse` make N consecutive jobs of a tenant share an instance, a
//! failing job discards it, the default is a fresh instance per job, and
//! two tenants never share one, even for the same component.

use std::sync::Arc;
use std::time::Duration;

use beanbox::sandbox::{CallContext, CallError, Grants, KeptInstance, Limits, Module, Outcome};
use beanbox_queue::Producer;
use beanbox_queue::testing::Beanstalkd;
use serde_json::{Value, json};

use crate::deploy_support::{Modules, wait_watching, write_config};
use crate::support::{self, object};
use crate::worker_support::Runner;
use crate::worker_support::{Replies, TempDir, connect, err, ok, put};

/// Calls `task` in `kept`'s instance (or a fresh one) allowing `reuse`
/// jobs per instance, under `limits`.
async fn call(
    module: &Module,
    kept: &mut KeptInstance,
    reuse: u32,
    task: &str,
    kwargs: Value,
    limits: Limits,
) -> Outcome {
    let ctx = CallContext::standalone(task, limits);
    module
        .call_reusing(task, &object(kwargs), &ctx, kept, reuse)
        .await
}

/// The guest's call counter, read through `kept` with `reuse`.
async fn count(module: &Module, kept: &mut KeptInstance, reuse: u32) -> u64 {
    let outcome = call(
        module,
        kept,
        reuse,
        "count-calls",
        json!({}),
        Limits::default(),
    )
    .await;
    let value = outcome
        .result
        .unwrap_or_else(|e| panic!("count-calls failed: {e}"));
    let n = value.as_u64().expect("count-calls returns a number");
    assert_eq!(
        u64::from(outcome.instance_jobs),
        n,
        "the outcome counts the instance's jobs as the guest does"
    );
    n
}

/// Counts `calls` times; returns the counter after each.
async fn counts(module: &Module, kept: &mut KeptInstance, reuse: u32, calls: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..calls {
        seen.push(count(module, kept, reuse).await);
    }
    seen
}

#[tokio::test]
async fn a_kept_rust_instance_serves_n_calls_then_a_fresh_one_takes_over() {
    let hostile = support::module("hostile");
    let mut kept = KeptInstance::default();
    assert_eq!(
        counts(&hostile, &mut kept, 3, 7).await,
        [1, 2, 3, 1, 2, 3, 1]
    );
    assert_eq!(kept.jobs(), Some(1));
    kept.clear();
    assert_eq!(count(&hostile, &mut kept, 3).await, 1);
}

#[tokio::test]
async fn without_reuse_every_call_gets_a_fresh_instance() {
    let hostile = support::module("hostile");
    let mut kept = KeptInstance::default();
    assert_eq!(counts(&hostile, &mut kept, 1, 3).await, [1, 1, 1]);
    assert_eq!(kept.jobs(), None, "reuse 1 keeps nothing");
    // The plain call never keeps anything either.
    let ctx = CallContext::standalone("count-calls", Limits::default());
    for _ in 0..2 {
        let outcome = hostile.call("count-calls", &object(json!({})), &ctx).await;
        assert_eq!(outcome.result.unwrap(), json!(1));
        assert_eq!(outcome.instance_jobs, 1);
    }
}

/// Counts twice on a kept instance, fails once with `boom`, and counts
/// again: the failure discarded the instance.
async fn failure_discards(module: &Module, boom_says: &str) {
    let mut kept = KeptInstance::default();
    assert_eq!(counts(module, &mut kept, 10, 2).await, [1, 2]);
    let outcome = call(
        module,
        &mut kept,
        10,
        "boom",
        json!({"message": "reuse me not"}),
        Limits::default(),
    )
    .await;
    let error = outcome.result.expect_err("boom fails");
    assert!(
        error.to_string().contains(boom_says),
        "the failure is reported as usual: {error}"
    );
    assert_eq!(kept.jobs(), None, "a failed call keeps no instance");
    assert_eq!(counts(module, &mut kept, 10, 2).await, [1, 2]);
}

#[tokio::test]
async fn a_kept_python_instance_counts_up_and_a_failure_discards_it() {
    failure_discards(&support::python_module(), "RuntimeError: reuse me not").await;
}

#[tokio::test]
async fn a_kept_javascript_instance_counts_up_and_a_failure_discards_it() {
    failure_discards(&support::javascript_module(), "reuse me not").await;
}

#[tokio::test]
async fn each_call_on_a_kept_instance_gets_its_own_fuel_and_output_cap() {
    let hostile = support::module("hostile");
    // Fuel for one burn (start-up included) and a half, not for two.
    let fresh = support::call("hostile", "burn", json!({"iterations": 1_000_000})).await;
    fresh.result.expect("burn succeeds");
    let limits = Limits {
        fuel: fresh.fuel_used * 3 / 2,
        output_bytes: 1000,
        ..Limits::default()
    };
    let mut kept = KeptInstance::default();
    for round in 1..=3 {
        let outcome = call(
            &hostile,
            &mut kept,
            10,
            "burn",
            json!({"iterations": 1_000_000}),
            limits,
        )
        .await;
        assert!(outcome.result.is_ok(), "burn {round}: {:?}", outcome.result);
        assert_eq!(outcome.instance_jobs, round);
    }
    // 600 bytes a call, 1000 allowed a call: each call's output is its own.
    for round in 4..=5 {
        let outcome = call(
            &hostile,
            &mut kept,
            10,
            "print",
            json!({"bytes": 600}),
            limits,
        )
        .await;
        assert_eq!(outcome.result.unwrap(), json!(600), "print {round}");
        assert_eq!(outcome.stdout.len(), 600, "print {round}");
        assert_eq!(outcome.instance_jobs, round);
    }
    // A call that runs out of its fuel fails as usual and is not kept.
    let outcome = call(
        &hostile,
        &mut kept,
        10,
        "burn",
        json!({"iterations": 10_000_000}),
        limits,
    )
    .await;
    assert!(
        matches!(outcome.result, Err(CallError::Fuel { .. })),
        "{:?}",
        outcome.result
    );
    assert_eq!(kept.jobs(), None);
    assert_eq!(count(&hostile, &mut kept, 10).await, 1);
}

#[tokio::test]
async fn limit_hits_and_abandoned_calls_discard_the_instance() {
    let hostile = support::module("hostile");
    let mut kept = KeptInstance::default();
    let cases = [
        ("allocate-forever", json!({}), support::memory_mb(16)),
        (
            "print",
            json!({"bytes": 5000}),
            Limits {
                output_bytes: 1000,
                ..Limits::default()
            },
        ),
        (
            "sleep-ms",
            json!({"ms": 5000}),
            support::timeout(Duration::from_millis(100)),
        ),
    ];
    for (task, kwargs, limits) in cases {
        assert_eq!(counts(&hostile, &mut kept, 10, 2).await, [1, 2], "{task}");
        let outcome = call(&hostile, &mut kept, 10, task, kwargs, limits).await;
        assert!(outcome.result.is_err(), "{task} should hit its limit");
        assert_eq!(kept.jobs(), None, "{task}");
    }
    // Dropped mid-call (as the worker does at a job's TTR or on shutdown).
    assert_eq!(counts(&hostile, &mut kept, 10, 2).await, [1, 2]);
    {
        let sleeping = call(
            &hostile,
            &mut kept,
            10,
            "sleep-ms",
            json!({"ms": 5000}),
            Limits::default(),
        );
        let stopped = tokio::time::timeout(Duration::from_millis(100), sleeping).await;
        assert!(stopped.is_err(), "the call should still be sleeping");
    }
    assert_eq!(kept.jobs(), None, "an abandoned call keeps no instance");
    assert_eq!(count(&hostile, &mut kept, 10).await, 1);
}

#[tokio::test]
async fn another_version_or_other_grants_get_a_fresh_instance() {
    let first = support::module("hostile");
    let second = support::sandbox()
        .load_file(&support::wasm("hostile"))
        .expect("hostile loads");
    let mut kept = KeptInstance::default();
    assert_eq!(counts(&first, &mut kept, 10, 2).await, [1, 2]);
    assert_eq!(
        counts(&second, &mut kept, 10, 2).await,
        [1, 2],
        "a new version of the module never runs in the old one's instance"
    );

    let granted = |value: &str| {
        let mut ctx = CallContext::standalone("read-env", Limits::default());
        ctx.grants = Arc::new(Grants {
            env: vec![("WHO".into(), value.into())],
            ..Grants::default()
        });
        ctx
    };
    for (who, jobs) in [("a", 1), ("a", 2), ("b", 1)] {
        let outcome = second
            .call_reusing(
                "read-env",
                &object(json!({"name": "WHO"})),
                &granted(who),
                &mut kept,
                10,
            )
            .await;
        assert_eq!(outcome.result.unwrap(), json!(who));
        assert_eq!(outcome.instance_jobs, jobs, "grants {who}");
    }
}

#[tokio::test]
async fn more_python_instances_than_wasmtimes_default_pool_holds_live_at_once() {
    // A Python instance takes 14 core instances: wasmtime's default pool
    // (1,000 core instances) would refuse the 72nd.
    let python = support::python_module();
    let mut kept: Vec<KeptInstance> = (0..80).map(|_| KeptInstance::default()).collect();
    for (i, slot) in kept.iter_mut().enumerate() {
        assert_eq!(count(&python, slot, 2).await, 1, "instance {i}");
    }
    assert!(kept.iter().all(|slot| slot.jobs() == Some(1)));
}

// ---- on the worker ----

/// How long a Python module may take to compile and load in the worker.
const LOAD: Duration = Duration::from_secs(600);

/// How long a job may take to come back once the worker is ready.
const REPLY: Duration = Duration::from_secs(30);

/// Starts `runner --modules DIR ARGS` with a code cache kept across runs,
/// one per set of `tubes` (a worker prunes the entries of modules it does
/// not serve), and waits until each of `tubes` is watched.
async fn start(addr: &str, modules: &Modules, args: &[&str], tubes: &[&str]) -> Runner {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("reuse-worker-cache-{}", tubes.join("-")));
    let mut all = vec![
        "--modules",
        modules.as_str(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let runner = Runner::start(addr, &all, &[]);
    let mut client = connect(addr).await;
    for tube in tubes {
        crate::worker_support::eventually(LOAD, &format!("a slot on `{tube}`"), async || {
            let stats = client.stats_tube(tube).await.ok()?;
            (stats.current_watching >= 1).then_some(())
        })
        .await;
    }
    runner
}

/// Puts `tasks` (task, kwargs) on `tube` in order, each replying to
/// `replies`; returns the replies' outcomes in the same order (the tube's
/// tenant runs one job at a time).
async fn run_in_order(
    addr: &str,
    tube: &str,
    tasks: &[(&str, Value)],
) -> Vec<Result<Value, String>> {
    let reply_tube = format!("{tube}-replies");
    let mut replies = Replies::watch(addr, &reply_tube).await;
    let mut producer = Producer::connect(addr).await.unwrap();
    let mut ids = Vec::new();
    for (task, kwargs) in tasks {
        ids.push(put(&mut producer, tube, task, kwargs.clone(), Some(&reply_tube)).await);
    }
    let mut outcomes = Vec::new();
    for id in ids {
        let reply = replies.next(REPLY).await;
        assert_eq!(reply.job, id, "replies come in the order of the jobs");
        outcomes.push(match &reply.outcome {
            Ok(_) => Ok(ok(&reply).clone()),
            Err(_) => Err(err(&reply).message.clone()),
        });
    }
    outcomes
}

fn counts_of(outcomes: &[Result<Value, String>]) -> Vec<Option<u64>> {
    outcomes
        .iter()
        .map(|o| o.as_ref().ok().and_then(Value::as_u64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_jobs_of_a_tenant_share_an_instance_up_to_its_reuse() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&[]);
    std::fs::copy(support::python_wasm(), modules.file("py")).unwrap();
    let dir = TempDir::new("reuse-config");
    let config = write_config(
        &dir,
        "[tenants.pythonistas]\nmodules = [\"py\"]\nconcurrency = 1\n\
         max_attempts = 1\nreuse = { py = 3 }\n",
    );
    let runner = start(&addr, &modules, &["--config", &config], &["py"]).await;

    let count = ("count-calls", json!({}));
    let boom = ("boom", json!({"message": "discard me"}));
    let mut tasks = vec![count.clone(); 7];
    tasks.extend([count.clone(), boom, count.clone(), count]);
    let outcomes = run_in_order(&addr, "py", &tasks).await;
    assert_eq!(
        counts_of(&outcomes),
        [
            Some(1),
            Some(2),
            Some(3),
            Some(1),
            Some(2),
            Some(3),
            Some(1),
            Some(2),
            None,
            Some(1),
            Some(2)
        ],
        "{outcomes:?}"
    );
    let failed = outcomes[8].as_ref().unwrap_err();
    assert!(failed.contains("RuntimeError: discard me"), "{failed}");

    // The log says which of its instance's jobs each one was. (A job's
    // reply goes out before its log line is written.)
    let counted = |runner: &Runner| -> Vec<u64> {
        runner
            .events()
            .iter()
            .filter(|e| e["task"] == "count-calls")
            .filter_map(|e| e["instance_jobs"].as_u64())
            .collect()
    };
    let jobs = crate::worker_support::eventually(REPLY, "10 log lines", async || {
        let jobs = counted(&runner);
        (jobs.len() >= 10).then_some(jobs)
    })
    .await;
    assert_eq!(jobs, [1, 2, 3, 1, 2, 3, 1, 2, 1, 2], "{}", runner.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_every_python_and_javascript_job_starts_fresh() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&[]);
    std::fs::copy(support::python_wasm(), modules.file("py")).unwrap();
    std::fs::copy(support::javascript_wasm(), modules.file("js")).unwrap();
    let _runner = start(
        &addr,
        &modules,
        &["--tube", "py", "--tube", "js", "--concurrency", "1"],
        &["py", "js"],
    )
    .await;
    let count = ("count-calls", json!({}));
    for tube in ["py", "js"] {
        let outcomes =
            run_in_order(&addr, tube, &[count.clone(), count.clone(), count.clone()]).await;
        assert_eq!(
            counts_of(&outcomes),
            [Some(1), Some(1), Some(1)],
            "{tube}: {outcomes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reuse_flag_applies_to_every_module_and_an_idle_slot_lets_go() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hostile"]);
    let _runner = start(
        &addr,
        &modules,
        &["--tube", "hostile", "--concurrency", "1", "--reuse", "2"],
        &["hostile"],
    )
    .await;
    let count = ("count-calls", json!({}));
    let outcomes = run_in_order(&addr, "hostile", &vec![count; 5]).await;
    assert_eq!(
        counts_of(&outcomes),
        [Some(1), Some(2), Some(1), Some(2), Some(1)],
        "{outcomes:?}"
    );

    // A slot idle for a second lets its instance go; 10 s leave a busy
    // machine ample time to notice.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let outcomes = run_in_order(&addr, "hostile", &[("count-calls", json!({}))]).await;
    assert_eq!(counts_of(&outcomes), [Some(1)], "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_never_share_an_instance_of_the_same_component() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&[]);
    modules.copy("hostile", "count-a");
    modules.copy("hostile", "count-b");
    let dir = TempDir::new("reuse-tenants");
    let config = write_config(
        &dir,
        "[defaults]\nreuse = 100\nconcurrency = 1\n\n\
         [tenants.a]\nmodules = [\"count-a\"]\n\n\
         [tenants.b]\nmodules = [\"count-b\"]\n",
    );
    let _runner = start(
        &addr,
        &modules,
        &["--config", &config],
        &["count-a", "count-b"],
    )
    .await;
    let mut client = connect(&addr).await;
    wait_watching(&mut client, "count-a", 1).await;
    wait_watching(&mut client, "count-b", 1).await;

    let mut replies = Replies::watch(&addr, "both").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let mut tube_of = std::collections::HashMap::new();
    for tube in ["count-a", "count-b", "count-a", "count-b", "count-a"] {
        let id = put(&mut producer, tube, "count-calls", json!({}), Some("both")).await;
        tube_of.insert(id, tube);
        // One at a time, so that the two tenants' jobs interleave.
        let reply = replies.next(REPLY).await;
        assert_eq!(reply.job, id);
        let n = ok(&reply).as_u64().unwrap();
        let seen = tube_of.values().filter(|t| **t == tube).count() as u64;
        assert_eq!(n, seen, "{tube}'s instance counts only its own jobs");
    }
}
