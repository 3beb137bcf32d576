//! Hot deploy end to end: modules added, replaced (validly or not) and
//! removed under a running `runner`, a `--tube` whose module comes late, and
//! the compiled-code cache across restarts. The `version` export of patched
//! `hello.wasm` copies tells which version served a job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beanbox_queue::testing::Beanstalkd;
use beanbox_queue::{JobState, Producer, ReplyBody};
use serde_json::json;

use crate::deploy_support::{
    Modules, assert_stays_ready, cache_entries, hello_version, tube_stats, version_marker,
    wait_watching, worker_cache_dir,
};
use crate::worker_support::Runner;
use crate::worker_support::{Replies, TempDir, abc, connect, job_stats, ok, put, wait_deleted};

/// Replacements of `hello.wasm` in the swap test: valid and invalid in turn.
const SWAPS: u16 = 10;
/// Time between two replacements, after a valid version has served.
const SWAP_EVERY: Duration = Duration::from_millis(700);
/// Jobs the swap test puts at least.
const MIN_JOBS: usize = 5_000;
/// Jobs put but not yet answered, at most: keeps jobs flowing through every
/// swap without piling up a backlog the test would wait for at the end.
const MAX_OUTSTANDING: usize = 200;
/// How soon after its rename a valid version must serve: ten times what a
/// debug build takes to compile hello on a busy machine (~2 s). The swapper
/// waits for each valid version to serve before it swaps again, so the test
/// does not depend on the machine's speed.
const SERVE_BOUND: Duration = Duration::from_secs(20);
/// How long the swap test may take in all.
const SWAP_TEST_BOUND: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_lose_no_job_and_every_valid_version_serves() {
    const REPLIES: &str = "swap-replies";
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    let versions: Vec<Vec<u8>> = (1..=SWAPS / 2).map(hello_version).collect();
    let hello = std::fs::read(modules.file("hello")).unwrap();
    let truncated = hello[..hello.len() / 2].to_vec();
    let garbage = b"\0asm but not really a component".repeat(100);

    let worker = Runner::start(
        &addr,
        &["--modules", modules.as_str(), "--concurrency", "4"],
        &[],
    );
    let mut client = connect(&addr).await;
    wait_watching(&mut client, "hello", 4).await;

    let put_count = AtomicUsize::new(0);
    let replied = AtomicUsize::new(0);
    let swaps_done = AtomicBool::new(false);
    // The newest version a reply came from.
    let newest_served = AtomicU16::new(0);
    let producing_done = AtomicBool::new(false);
    let started = Instant::now();

    // Puts `version` jobs until the swaps are over and MIN_JOBS are out.
    let producer = async {
        let mut producer = Producer::connect(&addr).await.unwrap();
        let mut ids = Vec::new();
        while ids.len() < MIN_JOBS || !swaps_done.load(Ordering::SeqCst) {
            assert!(
                started.elapsed() < SWAP_TEST_BOUND,
                "only {} of {} jobs answered after {SWAP_TEST_BOUND:?}",
                replied.load(Ordering::SeqCst),
                ids.len()
            );
            if ids.len() - replied.load(Ordering::SeqCst) >= MAX_OUTSTANDING {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            ids.push(put(&mut producer, "hello", "version", json!({}), Some(REPLIES)).await);
            put_count.store(ids.len(), Ordering::SeqCst);
        }
        producing_done.store(true, Ordering::SeqCst);
        ids
    };

    // Replaces the module: version 1, garbage, version 2, truncated, ...
    let swapper = async {
        let mut deployed: Vec<(u16, Instant)> = Vec::new();
        for swap in 0..SWAPS {
            tokio::time::sleep(SWAP_EVERY).await;
            match swap % 4 {
                0 | 2 => {
                    let version = swap / 2 + 1;
                    modules.deploy("hello", &versions[usize::from(version - 1)]);
                    let at = Instant::now();
                    deployed.push((version, at));
                    while newest_served.load(Ordering::SeqCst) < version
                        && at.elapsed() < SERVE_BOUND
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                1 => modules.deploy("hello", &garbage),
                _ => modules.deploy("hello", &truncated),
            }
        }
        // Let the last valid version serve past the last (invalid) swap.
        tokio::time::sleep(SWAP_EVERY).await;
        swaps_done.store(true, Ordering::SeqCst);
        deployed
    };

    // Takes every reply, noting when it came.
    let collector = async {
        let mut client = connect(&addr).await;
        client.watch(REPLIES).await.unwrap();
        client.ignore("default").await.unwrap();
        let mut got: Vec<(Instant, ReplyBody)> = Vec::new();
        while !(producing_done.load(Ordering::SeqCst)
            && got.len() >= put_count.load(Ordering::SeqCst))
            && started.elapsed() < SWAP_TEST_BOUND + Duration::from_secs(5)
        {
            let job = match client.reserve_with_timeout(1).await {
                Ok(job) => job,
                Err(e) if e.is_timeout() => continue,
                Err(e) => panic!("reserve on {REPLIES} failed: {e}"),
            };
            let at = Instant::now();
            client.delete(job.id).await.unwrap();
            let reply = ReplyBody::parse(&job.body).unwrap();
            if let Some(v) = (1..=SWAPS / 2)
                .find(|v| reply.outcome.as_ref().ok() == Some(&json!(version_marker(*v))))
            {
                newest_served.fetch_max(v, Ordering::SeqCst);
            }
            got.push((at, reply));
            replied.store(got.len(), Ordering::SeqCst);
        }
        got
    };

    let (ids, deployed, replies) = tokio::join!(producer, swapper, collector);
    let elapsed = started.elapsed();
    eprintln!(
        "swap test: {} jobs, {} replies in {elapsed:.1?} ({:.0} jobs/s)",
        ids.len(),
        replies.len(),
        replies.len() as f64 / elapsed.as_secs_f64()
    );

    // Every job answered exactly once, and successfully.
    let mut answers: HashMap<u64, usize> = HashMap::new();
    for (_, reply) in &replies {
        *answers.entry(reply.job).or_default() += 1;
        let served_by = ok(reply).as_str().unwrap_or_default();
        assert!(
            (0..=SWAPS / 2).any(|v| served_by == version_marker(v)),
            "job {} answered {served_by:?}",
            reply.job
        );
    }
    let twice: Vec<_> = answers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs answered more than once: {twice:?}");
    let unanswered: Vec<_> = ids.iter().filter(|id| !answers.contains_key(id)).collect();
    assert!(
        unanswered.is_empty(),
        "{} of {} jobs got no reply, e.g. {:?}",
        unanswered.len(),
        ids.len(),
        &unanswered[..unanswered.len().min(10)]
    );
    assert_eq!(answers.len(), ids.len(), "replies for jobs never put");

    // Each valid version served, soon after its rename.
    for (version, at) in &deployed {
        let marker = version_marker(*version);
        let first = replies
            .iter()
            .find(|(_, reply)| reply.outcome.as_ref().ok() == Some(&json!(marker)))
            .map(|(t, _)| t.duration_since(*at));
        let Some(first) = first else {
            panic!("version {version} never served a job");
        };
        eprintln!(
            "swap test: version {version:04} served its first job {first:.0?} after its rename"
        );
        assert!(
            first < SERVE_BOUND,
            "version {version} first served {first:?} after its rename"
        );
    }

    // Nothing left behind, nothing buried, and the log agrees.
    let hello = tube_stats(&mut client, "hello").await.unwrap();
    assert_eq!(
        (
            hello.current_jobs_ready,
            hello.current_jobs_reserved,
            hello.current_jobs_delayed,
            hello.current_jobs_buried
        ),
        (0, 0, 0, 0),
        "{hello:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A reply tube nobody uses or watches any more is gone: no reply left.
    let extra = tube_stats(&mut client, REPLIES).await;
    assert_eq!(
        extra.as_ref().map_or(0, |s| s.current_jobs_ready),
        0,
        "late duplicate replies: {extra:?}"
    );
    let count = |prefix: &str| worker.events_starting(prefix).len();
    assert_eq!(count("job failed"), 0, "jobs failed during the swaps");
    assert_eq!(count("module replaced"), usize::from(SWAPS / 2));
    // Each invalid version is logged once at most: one replaced before the
    // scanner saw it (a compile of the version before it outlasting the
    // swap interval on a busy machine) is never read at all.
    let failed = count("module failed to load");
    assert!(
        (1..=usize::from(SWAPS / 2)).contains(&failed),
        "{failed} failed loads for {} invalid versions",
        SWAPS / 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_added_at_runtime_serves_its_tube() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["showcase"]);
    let worker = Runner::start(
        &addr,
        &["--modules", modules.as_str(), "--concurrency", "1"],
        &[],
    );
    let mut client = connect(&addr).await;
    wait_watching(&mut client, "showcase", 1).await;
    let mut replies = Replies::watch(&addr, "added-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "hello",
        "task-one",
        abc(),
        Some("added-replies"),
    )
    .await;

    assert_stays_ready(&mut client, id, Duration::from_secs(1)).await;

    // A plain copy, written in place: the registry waits for it to settle.
    modules.copy("hello", "hello");
    let reply = replies.next(Duration::from_secs(15)).await;
    assert_eq!((reply.job, ok(&reply)), (id, &json!("abc")));
    wait_deleted(&mut client, id).await;
    let loaded = worker.events_starting("module loaded");
    assert!(
        loaded.iter().any(|e| e["module"] == "hello"),
        "no `module loaded` line for hello: {loaded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_module_leaves_its_jobs_ready_until_it_returns() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    let mut worker = Runner::start(
        &addr,
        &["--modules", modules.as_str(), "--concurrency", "2"],
        &[],
    );
    let mut client = connect(&addr).await;
    wait_watching(&mut client, "hello", 2).await;
    let mut replies = Replies::watch(&addr, "removed-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let before = put(
        &mut producer,
        "hello",
        "task-one",
        abc(),
        Some("removed-replies"),
    )
    .await;
    assert_eq!(replies.next(Duration::from_secs(15)).await.job, before);

    modules.remove("hello");
    let removed = worker
        .wait_event("module removed", Duration::from_secs(10))
        .await;
    assert_eq!(removed["module"], "hello", "{removed}");
    // The tube is no longer served: no connection watches it.
    wait_watching(&mut client, "hello", 0).await;
    let id = put(
        &mut producer,
        "hello",
        "task-one",
        abc(),
        Some("removed-replies"),
    )
    .await;
    assert_stays_ready(&mut client, id, Duration::from_secs(2)).await;
    assert!(worker.is_running(), "the worker exited");

    modules.copy("hello", "hello");
    let reply = replies.next(Duration::from_secs(15)).await;
    assert_eq!((reply.job, ok(&reply)), (id, &json!("abc")));
    wait_deleted(&mut client, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_module_of_a_named_tube_hands_reserved_jobs_back_uncounted() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    let mut worker = Runner::start(
        &addr,
        &[
            "--modules",
            modules.as_str(),
            "--tube",
            "hello",
            "--concurrency",
            "2",
        ],
        &[],
    );
    let mut client = connect(&addr).await;
    wait_watching(&mut client, "hello", 2).await;

    modules.remove("hello");
    worker
        .wait_event("module removed", Duration::from_secs(10))
        .await;
    // The slots may still wait in a reserve on the tube: a job they get now
    // finds its module gone and goes back, not counted as an attempt.
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "hello",
        "describe-job",
        json!({}),
        Some("named-replies"),
    )
    .await;
    wait_watching(&mut client, "hello", 0).await;
    let stats = job_stats(&mut client, id)
        .await
        .expect("the job is still there");
    assert!(
        stats.state == JobState::Ready && (stats.releases, stats.buries) == (0, 0),
        "{stats:?}"
    );
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let now = job_stats(&mut client, id)
            .await
            .expect("the job is still there");
        assert_eq!(
            (now.state, now.reserves),
            (JobState::Ready, stats.reserves),
            "{now:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let mut replies = Replies::watch(&addr, "named-replies").await;
    modules.copy("hello", "hello");
    let reply = replies.next(Duration::from_secs(15)).await;
    assert_eq!(reply.job, id);
    assert_eq!(
        ok(&reply),
        &json!(format!("id={id} tube=hello task=describe-job attempt=1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tube_waits_for_its_missing_module() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&[]);
    let mut worker = Runner::start(
        &addr,
        &["--modules", modules.as_str(), "--tube", "hello"],
        &[],
    );
    let warning = worker
        .wait_event("waiting for modules", Duration::from_secs(20))
        .await;
    assert_eq!(warning["level"], "WARN", "{warning}");
    // The module is named (not only the tenant, which is also `hello`).
    let mut named = warning.clone();
    named["tenant"].take();
    assert!(named.to_string().contains("hello"), "{warning}");
    let mut replies = Replies::watch(&addr, "late-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "hello",
        "task-one",
        abc(),
        Some("late-replies"),
    )
    .await;
    let mut client = connect(&addr).await;
    assert_stays_ready(&mut client, id, Duration::from_millis(500)).await;
    assert!(worker.is_running(), "the worker exited");

    modules.copy("hello", "hello");
    let reply = replies.next(Duration::from_secs(15)).await;
    assert_eq!((reply.job, ok(&reply)), (id, &json!("abc")));
    assert!(worker.is_running(), "the worker exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loads_compiled_code_from_cache_and_recompiles_a_corrupt_entry() {
    let server = Beanstalkd::start();
    let addr = server.addr();
    let modules = Modules::with(&["hello"]);
    let args = ["--modules", modules.as_str(), "--tube", "hello"];
    // The default cache, shared by the three starts.
    let home = TempDir::new("cache-home");
    let env = [("XDG_CACHE_HOME", home.as_str())];
    let messages = Runner::cache_messages;

    let mut first = Runner::start(&addr, &args, &env);
    first.wait_loaded("hello").await;
    assert_eq!(messages(&first), ["module compiled"]);
    first.kill();

    let mut second = Runner::start(&addr, &args, &env);
    second.wait_loaded("hello").await;
    assert_eq!(messages(&second), ["module loaded from cache"]);
    second.kill();

    // Damage the entry in the middle, where only the checksum notices.
    let entries = cache_entries(&worker_cache_dir(home.path()));
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&entries[0], &bytes).unwrap();

    let mut third = Runner::start(&addr, &args, &env);
    third.wait_loaded("hello").await;
    assert_eq!(
        messages(&third),
        ["cache entry refused: checksum mismatch; recompiled"]
    );
    let corrupt = third.events_starting("cache entry refused");
    assert_eq!(corrupt[0]["reason"], "checksum mismatch", "{}", corrupt[0]);
    let mut replies = Replies::watch(&addr, "cache-replies").await;
    let mut producer = Producer::connect(&addr).await.unwrap();
    let id = put(
        &mut producer,
        "hello",
        "task-one",
        abc(),
        Some("cache-replies"),
    )
    .await;
    let reply = replies.next(Duration::from_secs(15)).await;
    assert_eq!((reply.job, ok(&reply)), (id, &json!("abc")));
    third.kill();
}
